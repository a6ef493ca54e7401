// Element types: names, promotion lattice, result_type, scalar conversion, fp16/bf16 rounding.
#include "dtype.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace tessera {

namespace {

constexpr const char* kNames[TSR_NUM_DTYPES] = {"bool",    "uint8",    "int32",   "int64",
                                                "float16", "bfloat16", "float32", "float64"};

// PyTorch's combine_categories: `lower` only raises the category of `higher`.
int32_t combine(int32_t higher, int32_t lower) {
  if (higher < 0) return lower;
  if (lower < 0 || is_floating(higher)) return higher;
  if (higher == TSR_BOOL || is_floating(lower)) return promote_types(higher, lower);
  return higher;
}

int32_t promote_opt(int32_t acc, int32_t dt) { return acc < 0 ? dt : promote_types(acc, dt); }

}  // namespace

const char* dtype_name(int32_t dt) { return dtype_valid(dt) ? kNames[dt] : nullptr; }

std::string dtype_str(int32_t dt) {
  return dtype_valid(dt) ? kNames[dt] : "dtype(" + std::to_string(dt) + ")";
}

int32_t dtype_from_name(const char* name) {
  for (int32_t i = 0; i < TSR_NUM_DTYPES; ++i)
    if (std::strcmp(name, kNames[i]) == 0) return i;
  return -1;
}

void ResultType::add_scalar(const TsrScalar& s) { scalar_ = promote_opt(scalar_, scalar_dtype(s)); }

int32_t ResultType::result() const { return combine(dim_, combine(zero_dim_, scalar_)); }

int32_t scalar_dtype(const TsrScalar& s) {
  return s.kind == TSR_SCALAR_BOOL ? TSR_BOOL : s.kind == TSR_SCALAR_INT ? TSR_INT64 : TSR_FLOAT32;
}

TsrScalar scalar_to(const TsrScalar& s, int32_t dt) {
  TsrScalar r{};
  if (is_floating(dt)) {
    r.kind = TSR_SCALAR_FLOAT;
    r.v.f = scalar_as_double(s);
  } else {
    r.kind = TSR_SCALAR_INT;
    int64_t i = s.kind != TSR_SCALAR_FLOAT ? s.v.i
                : std::isnan(s.v.f)         ? 0
                                            : static_cast<int64_t>(std::clamp(s.v.f, -0x1p63, 0x1p63 - 1024));
    // Wrapped into the dtype's width, as PyTorch casts a wrapped number: -3 is 253 in uint8, so
    // a kernel that computes uint8 in a wider type still compares and clamps against 253.
    if (dt == TSR_BOOL) i = scalar_as_double(s) != 0.0;
    if (dt == TSR_UINT8) i = static_cast<uint8_t>(i);
    if (dt == TSR_INT32) i = static_cast<int32_t>(i);
    r.v.i = i;
  }
  return r;
}

uint16_t float_to_half(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {
    // Below 2^-14 the result is subnormal: adding 0.5f puts the half ulp (2^-24) at the
    // float's last mantissa bit, so the FPU rounds to nearest even for us.
    float v = std::bit_cast<float>(a) + 0.5f;
    return static_cast<uint16_t>(sign | (std::bit_cast<uint32_t>(v) - 0x3f000000u));
  }
  uint32_t odd = (a >> 13) & 1u;
  a += 0xc8000fffu + odd;  // rebias the exponent by -112, round to nearest even
  return static_cast<uint16_t>(sign | (a >> 13));
}

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t float_to_bfloat16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

float bfloat16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

}  // namespace tessera
