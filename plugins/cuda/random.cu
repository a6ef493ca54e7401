// Random fills of the CUDA plugin: uniform, normal and bernoulli from Philox4x32-10
// (cuda_common.cuh) with exactly plugin.h's counter layout and plugins/cpu/random.cpp's double
// arithmetic (no fused multiply-adds), so a (seed, offset) gives the CPU plugin's numbers
// element for element.
#include <type_traits>

#include "cuda_common.cuh"

namespace tcu {
namespace {

constexpr int kThreads = 256;

// double -> storage type with the CPU's store rules (float16/bfloat16 through float, integers
// by truncation through int64, bool is != 0).
template <class T>
__device__ __forceinline__ void store_double(char* p, double v) {
  if constexpr (std::is_same_v<T, bool>) {
    *reinterpret_cast<uint8_t*>(p) = v != 0.0 ? 1 : 0;
  } else if constexpr (std::is_same_v<T, half>) {
    *reinterpret_cast<half*>(p) = __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, bf16>) {
    *reinterpret_cast<bf16*>(p) = __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_integral_v<T>) {
    *reinterpret_cast<T*>(p) = static_cast<T>(static_cast<int64_t>(v));
  } else {
    *reinterpret_cast<T*>(p) = static_cast<T>(v);
  }
}

enum class Dist { Uniform, Normal, Bernoulli };

// Thread t draws counter offset + t and writes the elements it covers (4, or 2 for normal)
// at their row-major positions. `linear`: the collapsed output is 1-D (offset i * s[0]).
template <Dist kDist, class T>
__global__ void __launch_bounds__(kThreads)
    random_kernel(char* out, Geometry g, Strides st, bool linear, int64_t n, uint64_t seed, uint64_t offset,
                  double p1, double p2) {
  constexpr int kPer = kDist == Dist::Normal ? 2 : 4;  // elements per Philox call
  const int64_t group = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t first = group * kPer;
  if (first >= n) return;
  uint32_t lanes[4];
  philox4x32_10(seed, offset + static_cast<uint64_t>(group), lanes);
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int64_t i = first + e;
    if (i >= n) break;
    double v;
    if constexpr (kDist == Dist::Normal) {
      const double u1 = philox_unit(lanes[2 * e]), u2 = philox_unit(lanes[2 * e + 1]);
      const double z = __dmul_rn(sqrt(__dmul_rn(-2.0, log(u1))), cos(__dmul_rn(2.0 * 3.14159265358979323846, u2)));
      v = __dadd_rn(p1, __dmul_rn(p2, z));
    } else if constexpr (kDist == Dist::Uniform) {
      v = __dadd_rn(p1, __dmul_rn(__dsub_rn(p2, p1), philox_unit(lanes[e])));
    } else {
      v = philox_unit(lanes[e]) < p1 ? 1.0 : 0.0;
    }
    const int64_t off = linear ? i * st.s[0] : offset_of(i, g, st);
    store_double<T>(out + off * static_cast<int64_t>(sizeof(T)), v);
  }
}

double scalar_double(const TsrScalar& s) {
  return s.kind == TSR_SCALAR_FLOAT ? s.v.f : static_cast<double>(s.v.i);
}

template <Dist kDist>
int32_t random_call(const TsrKernelArgs* a) {
  const cudaStream_t s = stream_of(a);
  if (stream_is_capturing(s))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED,
                "random ops cannot be captured in a CUDA graph (the generator's offset would repeat on every replay)");
  TsrTensorDesc& out = a->outputs[0];
  const TsrAttrs& at = *a->attrs;
  if (kDist != Dist::Bernoulli && out.dtype != TSR_FLOAT16 && out.dtype != TSR_BFLOAT16 &&
      out.dtype != TSR_FLOAT32 && out.dtype != TSR_FLOAT64)
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", out.dtype);
  const TsrTensorDesc* descs[1] = {&out};
  Geometry g;
  Strides st;
  collapse(descs, 1, g, &st);
  if (g.ndim == 0) st.s[0] = 0;  // one element: i is 0
  const bool linear = g.ndim <= 1;
  const int64_t n = numel(out);
  constexpr int64_t kPer = kDist == Dist::Normal ? 2 : 4;
  const int64_t blocks = ((n + kPer - 1) / kPer + kThreads - 1) / kThreads;
  if (blocks > 0x7FFFFFFF) return fail(a, TSR_ERR_INVALID_ARGUMENT, "tensor too large for one launch");
  const double p1 = scalar_double(at.scalar), p2 = scalar_double(at.scalar2);
  char* o = static_cast<char*>(out.data);
  const unsigned grid = static_cast<unsigned>(blocks < 1 ? 1 : blocks);
  auto launch = [&](auto t) {
    using T = decltype(t);
    random_kernel<kDist, T><<<grid, kThreads, 0, s>>>(o, g, st, linear, n, at.seed, at.offset, p1, p2);
  };
  switch (out.dtype) {
    case TSR_FLOAT16: launch(half{}); break;
    case TSR_BFLOAT16: launch(bf16{}); break;
    case TSR_FLOAT32: launch(float{}); break;
    case TSR_FLOAT64: launch(double{}); break;
    default:
      if constexpr (kDist == Dist::Bernoulli) {
        switch (out.dtype) {
          case TSR_BOOL: launch(bool{}); break;
          case TSR_UINT8: launch(uint8_t{}); break;
          case TSR_INT32: launch(int32_t{}); break;
          case TSR_INT64: launch(int64_t{}); break;
          default: return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", out.dtype);
        }
      }
      break;
  }
  return check_launch(a, "random");
}

}  // namespace

int32_t kernel_uniform(const TsrKernelArgs* a) { return random_call<Dist::Uniform>(a); }
int32_t kernel_normal(const TsrKernelArgs* a) { return random_call<Dist::Normal>(a); }
int32_t kernel_bernoulli(const TsrKernelArgs* a) { return random_call<Dist::Bernoulli>(a); }

}  // namespace tcu
