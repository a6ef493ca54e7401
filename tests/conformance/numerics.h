// Host-side numerics of the conformance suite, independent of every plugin: dtype facts,
// our own float16/bfloat16 encode/decode, rounding a double to what a dtype stores,
// PyTorch's type promotion, Philox4x32-10, a fixed-seed generator and row-major index helpers.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "tessera/tessera.h"

namespace conf {

using Shape = std::vector<int64_t>;

bool is_float(int32_t dtype);
size_t itemsize(int32_t dtype);
const char* dtype_str(int32_t dtype);
std::string shape_str(const Shape& sizes);
int64_t numel(const Shape& sizes);

// The value `dtype` stores for v: ints truncate and wrap, bool is v != 0, floats round to
// nearest even (float16/bfloat16 with their subnormals and overflow to inf).
double round_to(int32_t dtype, double v);
uint16_t f16_bits(double v);
double f16_value(uint16_t bits);
uint16_t bf16_bits(double v);
double bf16_value(uint16_t bits);
// Row-major element bytes of `values` in `dtype` (values are rounded first), and back.
std::vector<uint8_t> encode(int32_t dtype, const std::vector<double>& values);
std::vector<double> decode(int32_t dtype, const void* data, int64_t n);

// PyTorch's promote_types and result_type (dimensioned tensors, then 0-dim tensors, then
// Python scalars, each group only counting when its category is higher).
enum class Rank { Tensor, ZeroDim, Scalar };
struct Operand {
  int32_t dtype;
  Rank rank;
};
int32_t promote_types(int32_t a, int32_t b);
int32_t result_type(std::initializer_list<Operand> operands);
// The dtype a Python scalar takes part in promotion with: bool, int64, float32 (default).
int32_t scalar_dtype(const TsrScalar& s);
double scalar_value(const TsrScalar& s);
// PyTorch's can_cast: no float -> int, no non-bool -> bool.
bool can_cast(int32_t from, int32_t to);

// Philox4x32-10 (Random123) of counter ctr under key: the RANDOM stream of plugin.h.
void philox(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]);
// Lane `lane` of counter n under seed, as u = (x + 0.5) * 2^-32.
double philox_u(uint64_t seed, uint64_t n, int lane);
// Whether philox gives Random123's known answer for counter 0, key 0.
bool philox_known_answer();

// splitmix64: a fixed-seed generator, the same on every machine.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform(double lo, double hi);
  int64_t integer(int64_t lo, int64_t hi);  // inclusive

 private:
  uint64_t state_;
};

// Where generated values live. Integer dtypes take the integers of [lo, hi] (uint8 from 0),
// bool takes 0/1; `nonzero` rejects 0; `halves` makes floats multiples of 0.5 (for ties).
struct Domain {
  double lo, hi;
  bool nonzero = false;
  bool halves = false;
};

// A logical tensor on the host: row-major values, exactly what its dtype stores.
struct HostTensor {
  int32_t dtype;
  Shape sizes;
  std::vector<double> values;
};
HostTensor random_tensor(Rng& rng, int32_t dtype, const Shape& sizes, const Domain& dom);

Shape contiguous_strides(const Shape& sizes);
Shape unravel(int64_t flat, const Shape& sizes);
// Broadcast result of two shapes (numpy rules); false when they do not broadcast.
bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out);
// For each row-major element of `out`, the flat index of a tensor of sizes `in` broadcast to it.
std::vector<int64_t> broadcast_map(const Shape& in, const Shape& out);

}  // namespace conf
