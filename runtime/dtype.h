// Element types: names, sizes, half-precision conversions, PyTorch type promotion and casting rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tessera/common.h"

namespace tessera {

inline bool dtype_valid(int32_t dt) { return dt >= 0 && dt < TSR_NUM_DTYPES; }

// "float32"; nullptr for an unknown dtype.
const char* dtype_name(int32_t dt);
// dtype_name, or "dtype(<n>)" for messages about bad values.
std::string dtype_str(int32_t dt);
// Dtype for a name, or -1.
int32_t dtype_from_name(const char* name);

inline constexpr size_t kItemsize[TSR_NUM_DTYPES] = {1, 1, 4, 8, 2, 2, 4, 8};
inline size_t itemsize(int32_t dt) { return kItemsize[dt]; }

inline bool is_floating(int32_t dt) { return dt >= TSR_FLOAT16; }
inline bool is_integral(int32_t dt) { return dt >= TSR_UINT8 && dt <= TSR_INT64; }

// Category for result_type: bool < int < float.
enum class Category : int { Bool = 0, Int = 1, Float = 2 };
inline Category category(int32_t dt) {
  return dt == TSR_BOOL ? Category::Bool : is_floating(dt) ? Category::Float : Category::Int;
}

// The promotion lattice: bool < uint8 < int32 < int64 < {float16, bfloat16} < float32 < float64.
inline constexpr int kPromoteRank[TSR_NUM_DTYPES] = {0, 1, 2, 3, 4, 4, 5, 6};  // float16, bfloat16 share one
inline int32_t promote_types(int32_t a, int32_t b) {
  if (a == b) return a;
  if (kPromoteRank[a] == kPromoteRank[b]) return TSR_FLOAT32;  // float16 with bfloat16
  return kPromoteRank[a] > kPromoteRank[b] ? a : b;
}

// PyTorch's canCast: float -> int/bool and int -> bool are refused.
inline bool can_cast(int32_t from, int32_t to) {
  if (is_floating(from) && !is_floating(to)) return false;
  if (from != TSR_BOOL && to == TSR_BOOL) return false;
  return true;
}

// FLOAT-typed ops compute bool/int inputs as float32.
inline int32_t to_floating(int32_t dt) { return is_floating(dt) ? dt : TSR_FLOAT32; }

// PyTorch's result_type: dimensioned tensors > zero-dim tensors > scalars; a lower-priority
// group only raises the category (bool < int < float) of the higher one.
struct ResultType {
  int32_t dim_ = -1;      // promoted dtype of tensors with ndim > 0
  int32_t zero_dim_ = -1; // of zero-dim tensors
  int32_t scalar_ = -1;   // of scalars: bool, int64, float32 (the default dtype)

  void add_tensor(int32_t dtype, int32_t ndim) {
    int32_t& group = ndim > 0 ? dim_ : zero_dim_;
    group = group < 0 ? dtype : promote_types(group, dtype);
  }
  void add_scalar(const TsrScalar& s);
  int32_t result() const;
};

// The dtype a scalar has on its own (bool, int64, float32).
int32_t scalar_dtype(const TsrScalar& s);
// s converted to the compute dtype `dt`: kind FLOAT (v.f) for floating dtypes, INT (v.i) else,
// an integer wrapped into dt's range (two's complement: -3 -> 253 for uint8, as PyTorch does).
TsrScalar scalar_to(const TsrScalar& s, int32_t dt);
inline double scalar_as_double(const TsrScalar& s) {
  return s.kind == TSR_SCALAR_FLOAT ? s.v.f : static_cast<double>(s.v.i);
}

// Round-to-nearest-even conversions.
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);
uint16_t float_to_bfloat16(float f);
float bfloat16_to_float(uint16_t h);

}  // namespace tessera
