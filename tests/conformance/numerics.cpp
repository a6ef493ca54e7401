// Host-side numerics of the conformance suite: rounding, fp16/bf16 bits, promotion, generator.
#include "numerics.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace conf {

bool is_float(int32_t dtype) { return dtype >= TSR_FLOAT16 && dtype <= TSR_FLOAT64; }

size_t itemsize(int32_t dtype) {
  static const size_t sizes[TSR_NUM_DTYPES] = {1, 1, 4, 8, 2, 2, 4, 8};
  return sizes[dtype];
}

const char* dtype_str(int32_t dtype) {
  static const char* names[TSR_NUM_DTYPES] = {"bool",     "uint8",    "int32",   "int64",
                                              "float16",  "bfloat16", "float32", "float64"};
  return dtype >= 0 && dtype < TSR_NUM_DTYPES ? names[dtype] : "?";
}

std::string shape_str(const Shape& sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(sizes[i]);
  }
  return s + "]";
}

int64_t numel(const Shape& sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

// Rounds v to a binary format with `bits` significant bits whose smallest normal
// exponent is min_exp (values in [2^(min_exp-1), 2^min_exp) are the smallest normals'
// binade), overflowing to inf beyond max_finite. Ties go to even (default FP mode).
static double round_binary(double v, int bits, int min_exp, double max_finite) {
  if (!std::isfinite(v) || v == 0) return v;
  int e = 0;
  std::frexp(v, &e);  // |v| in [2^(e-1), 2^e)
  int quantum = std::max(e, min_exp) - bits;
  double r = std::ldexp(std::nearbyint(std::ldexp(v, -quantum)), quantum);
  return std::fabs(r) > max_finite ? std::copysign(INFINITY, v) : r;
}

static double round_f16(double v) { return round_binary(v, 11, -13, 65504.0); }
static double round_bf16(double v) { return round_binary(v, 8, -125, 0x1.fep127); }

static double round_int(double v, int bits) {
  if (!std::isfinite(v)) return 0;
  auto t = static_cast<int64_t>(std::trunc(v));
  if (bits == 8) return static_cast<double>(static_cast<uint8_t>(static_cast<uint64_t>(t)));
  if (bits == 32) return static_cast<double>(static_cast<int32_t>(static_cast<uint32_t>(t)));
  return static_cast<double>(t);
}

double round_to(int32_t dtype, double v) {
  switch (dtype) {
    case TSR_BOOL: return v != 0 ? 1 : 0;
    case TSR_UINT8: return round_int(v, 8);
    case TSR_INT32: return round_int(v, 32);
    case TSR_INT64: return round_int(v, 64);
    case TSR_FLOAT16: return round_f16(v);
    case TSR_BFLOAT16: return round_bf16(v);
    case TSR_FLOAT32: return static_cast<float>(v);
    default: return v;
  }
}

uint16_t f16_bits(double v) {
  v = round_f16(v);
  uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  double a = std::fabs(v);
  if (std::isnan(v)) return 0x7e00;
  if (std::isinf(a)) return sign | 0x7c00;
  if (a < 0x1p-14) return sign | static_cast<uint16_t>(a * 0x1p24);  // subnormal, exact
  int e = 0;
  double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  return sign | static_cast<uint16_t>((e + 14) << 10) | static_cast<uint16_t>((m * 2 - 1) * 1024);
}

double f16_value(uint16_t bits) {
  double sign = (bits & 0x8000) ? -1 : 1;
  int exp = (bits >> 10) & 31, man = bits & 1023;
  if (exp == 0) return sign * std::ldexp(man, -24);
  if (exp == 31) return man ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + man, exp - 25);
}

uint16_t bf16_bits(double v) {
  if (std::isnan(v)) return 0x7fc0;
  float f = static_cast<float>(round_bf16(v));  // exact: already a bfloat16 value
  uint32_t u = 0;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}

double bf16_value(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f = 0;
  std::memcpy(&f, &u, 4);
  return f;
}

template <class T>
static void put(std::vector<uint8_t>& out, size_t i, T v) {
  std::memcpy(out.data() + i * sizeof(T), &v, sizeof(T));
}

template <class T>
static T get(const void* data, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(data) + i * sizeof(T), sizeof(T));
  return v;
}

std::vector<uint8_t> encode(int32_t dtype, const std::vector<double>& values) {
  std::vector<uint8_t> out(values.size() * itemsize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    double v = round_to(dtype, values[i]);
    switch (dtype) {
      case TSR_BOOL: put<uint8_t>(out, i, v != 0); break;
      case TSR_UINT8: put<uint8_t>(out, i, static_cast<uint8_t>(v)); break;
      case TSR_INT32: put<int32_t>(out, i, static_cast<int32_t>(v)); break;
      case TSR_INT64: put<int64_t>(out, i, static_cast<int64_t>(v)); break;
      case TSR_FLOAT16: put<uint16_t>(out, i, f16_bits(v)); break;
      case TSR_BFLOAT16: put<uint16_t>(out, i, bf16_bits(v)); break;
      case TSR_FLOAT32: put<float>(out, i, static_cast<float>(v)); break;
      default: put<double>(out, i, v); break;
    }
  }
  return out;
}

std::vector<double> decode(int32_t dtype, const void* data, int64_t n) {
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) {
    switch (dtype) {
      case TSR_BOOL: out[i] = get<uint8_t>(data, i) != 0; break;
      case TSR_UINT8: out[i] = get<uint8_t>(data, i); break;
      case TSR_INT32: out[i] = get<int32_t>(data, i); break;
      case TSR_INT64: out[i] = static_cast<double>(get<int64_t>(data, i)); break;
      case TSR_FLOAT16: out[i] = f16_value(get<uint16_t>(data, i)); break;
      case TSR_BFLOAT16: out[i] = bf16_value(get<uint16_t>(data, i)); break;
      case TSR_FLOAT32: out[i] = get<float>(data, i); break;
      default: out[i] = get<double>(data, i); break;
    }
  }
  return out;
}

int32_t promote_types(int32_t a, int32_t b) {
  if (a < 0) return b;
  if (b < 0 || a == b) return a;
  bool fa = is_float(a), fb = is_float(b);
  if (fa && fb) {
    bool half_pair = (a == TSR_FLOAT16 && b == TSR_BFLOAT16) || (a == TSR_BFLOAT16 && b == TSR_FLOAT16);
    return half_pair ? TSR_FLOAT32 : std::max(a, b);
  }
  if (fa) return a;
  if (fb) return b;
  return std::max(a, b);  // bool < uint8 < int32 < int64
}

// c10's combine_categories: the higher-priority group wins unless the lower one is of a
// higher category (float over int over bool).
static int32_t combine_categories(int32_t higher, int32_t lower) {
  if (higher >= 0 && is_float(higher)) return higher;
  if (higher == TSR_BOOL || (lower >= 0 && is_float(lower))) return promote_types(higher, lower);
  return higher >= 0 ? higher : lower;
}

int32_t result_type(std::initializer_list<Operand> operands) {
  int32_t group[3] = {-1, -1, -1};
  for (const Operand& o : operands) {
    int g = static_cast<int>(o.rank);
    group[g] = promote_types(group[g], o.dtype);
  }
  return combine_categories(group[0], combine_categories(group[1], group[2]));
}

int32_t scalar_dtype(const TsrScalar& s) {
  return s.kind == TSR_SCALAR_FLOAT ? TSR_FLOAT32 : s.kind == TSR_SCALAR_INT ? TSR_INT64 : TSR_BOOL;
}

double scalar_value(const TsrScalar& s) {
  return s.kind == TSR_SCALAR_FLOAT ? s.v.f : static_cast<double>(s.v.i);
}

bool can_cast(int32_t from, int32_t to) {
  if (is_float(from) && !is_float(to)) return false;
  return from == TSR_BOOL || to != TSR_BOOL;
}

void philox(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t c[4] = {ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3]}, k[2] = {key_in[0], key_in[1]};
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = 0xD2511F53ull * c[0], p1 = 0xCD9E8D57ull * c[2];
    uint32_t next[4] = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
                        static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
    std::memcpy(c, next, sizeof c);
    k[0] += 0x9E3779B9u;
    k[1] += 0xBB67AE85u;
  }
  std::memcpy(out, c, sizeof c);
}

double philox_u(uint64_t seed, uint64_t n, int lane) {
  uint32_t ctr[4] = {static_cast<uint32_t>(n), static_cast<uint32_t>(n >> 32), 0, 0};
  uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}, x[4];
  philox(ctr, key, x);
  return (x[lane] + 0.5) * 0x1p-32;
}

bool philox_known_answer() {
  uint32_t zero[4] = {0, 0, 0, 0}, key[2] = {0, 0}, x[4];
  philox(zero, key, x);
  return x[0] == 0x6627e8d5u && x[1] == 0xe169c58du && x[2] == 0xbc57ac4cu && x[3] == 0x9b00dbd8u;
}

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * ((next() >> 11) * 0x1p-53); }

int64_t Rng::integer(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
}

HostTensor random_tensor(Rng& rng, int32_t dtype, const Shape& sizes, const Domain& dom) {
  HostTensor t{dtype, sizes, std::vector<double>(numel(sizes))};
  auto ilo = static_cast<int64_t>(std::ceil(dom.lo)), ihi = static_cast<int64_t>(std::floor(dom.hi));
  if (dtype == TSR_UINT8) ilo = std::max<int64_t>(ilo, 0);
  for (double& v : t.values) {
    do {
      if (dtype == TSR_BOOL) v = dom.nonzero ? 1 : static_cast<double>(rng.integer(0, 1));
      else if (!is_float(dtype)) v = static_cast<double>(rng.integer(ilo, ihi));
      else if (dom.halves) v = 0.5 * static_cast<double>(rng.integer(static_cast<int64_t>(std::ceil(2 * dom.lo)), static_cast<int64_t>(std::floor(2 * dom.hi))));
      else v = round_to(dtype, rng.uniform(dom.lo, dom.hi));
    } while (dom.nonzero && v == 0);
  }
  return t;
}

Shape contiguous_strides(const Shape& sizes) {
  Shape strides(sizes.size());
  int64_t s = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = s;
    s *= sizes[i];
  }
  return strides;
}

Shape unravel(int64_t flat, const Shape& sizes) {
  Shape idx(sizes.size());
  for (size_t i = sizes.size(); i-- > 0;) {
    idx[i] = sizes[i] ? flat % sizes[i] : 0;
    flat = sizes[i] ? flat / sizes[i] : 0;
  }
  return idx;
}

bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out) {
  size_t n = std::max(a.size(), b.size());
  out->assign(n, 1);
  for (size_t i = 0; i < n; ++i) {
    int64_t sa = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t sb = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (sa != sb && sa != 1 && sb != 1) return false;
    (*out)[i] = sa == 1 ? sb : sa;
  }
  return true;
}

std::vector<int64_t> broadcast_map(const Shape& in, const Shape& out) {
  size_t lead = out.size() - in.size();
  Shape in_strides = contiguous_strides(in);
  std::vector<int64_t> map(numel(out));
  for (int64_t flat = 0; flat < static_cast<int64_t>(map.size()); ++flat) {
    Shape idx = unravel(flat, out);
    int64_t src = 0;
    for (size_t d = 0; d < in.size(); ++d) src += (in[d] == 1 ? 0 : idx[lead + d]) * in_strides[d];
    map[flat] = src;
  }
  return map;
}

}  // namespace conf
