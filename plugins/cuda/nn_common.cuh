// Shared by the CUDA plugin's transformer kernels (layer_norm.cu, cross_entropy.cu, index.cu,
// topk.cu, sample.cu, foreach.cu): accumulation types, aligned vectors, deterministic warp and
// block sums, loads/stores of small per-row tensors by runtime dtype, and shape text for
// messages.
#pragma once

#include <cstdio>
#include <type_traits>

#include "cuda_common.cuh"

namespace tcu {
namespace nn {

// Statistics and sums: float32 for float16/bfloat16/float32, float64 for float64.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// E elements of T loaded/stored as one (16 bytes when E = 16 / sizeof(T)).
template <class T, int E>
struct alignas(sizeof(T) * E) Vec {
  T v[E];
};

inline bool aligned_to(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}
inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
inline unsigned grid_cap(int64_t b) {
  return static_cast<unsigned>(b < 1 ? 1 : (b > (int64_t{1} << 30) ? (int64_t{1} << 30) : b));
}

// "[16384, 384]" for messages.
struct ShapeText {
  char s[160];
  explicit ShapeText(const TsrTensorDesc& d) {
    int n = std::snprintf(s, sizeof s, "[");
    for (int i = 0; i < d.ndim && n < static_cast<int>(sizeof s) - 24; ++i)
      n += std::snprintf(s + n, sizeof s - n, i ? ", %lld" : "%lld", static_cast<long long>(d.sizes[i]));
    std::snprintf(s + n, sizeof s - n, "]");
  }
  operator const char*() const { return s; }
};

// The dtype a statistic (mean, rstd, lse, a norm) is stored in for inputs of dtype `dt`.
inline int32_t stat_dtype(int32_t dt) {
  return dt == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
}

#ifdef __CUDACC__
// Butterfly sums: every lane gets the same value (a fixed order: deterministic).
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Every thread of the block gets the block's sum, merged in warp order. smem: 32 values;
// every thread of the block must call it.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* smem) {
  v = warp_sum(v);
  const int nw = (blockDim.x + 31) >> 5;
  if ((threadIdx.x & 31) == 0) smem[threadIdx.x >> 5] = v;
  __syncthreads();
  v = smem[0];
  for (int w = 1; w < nw; ++w) v += smem[w];
  __syncthreads();  // smem free for the next use
  return v;
}
// A warp's or the block's sum.
template <bool kWarp, class A>
__device__ __forceinline__ A group_sum(A v, A* smem) {
  if constexpr (kWarp)
    return warp_sum(v);
  else
    return block_sum(v, smem);
}

// Element i of a float tensor whose dtype is known only at run time (per-row statistics,
// per-row gradients: a few values per row, so the switch costs nothing).
__device__ __forceinline__ double load_f(const void* p, int32_t dtype, int64_t i) {
  switch (dtype) {
    case TSR_FLOAT16:
      return __half2float(static_cast<const half*>(p)[i]);
    case TSR_BFLOAT16:
      return __bfloat162float(static_cast<const bf16*>(p)[i]);
    case TSR_FLOAT32:
      return static_cast<const float*>(p)[i];
    default:
      return static_cast<const double*>(p)[i];
  }
}
__device__ __forceinline__ void store_f(void* p, int32_t dtype, int64_t i, double v) {
  switch (dtype) {
    case TSR_FLOAT16:
      static_cast<half*>(p)[i] = __float2half_rn(static_cast<float>(v));
      break;
    case TSR_BFLOAT16:
      static_cast<bf16*>(p)[i] = __float2bfloat16_rn(static_cast<float>(v));
      break;
    case TSR_FLOAT32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      break;
    default:
      static_cast<double*>(p)[i] = v;
      break;
  }
}
#endif  // __CUDACC__

inline bool is_float_dtype(int32_t dt) {
  return dt == TSR_FLOAT16 || dt == TSR_BFLOAT16 || dt == TSR_FLOAT32 || dt == TSR_FLOAT64;
}

// Bits needed for values 0 .. max_value.
inline int bits_for(uint64_t max_value) {
  int b = 1;
  while (b < 64 && (max_value >> b) != 0) ++b;
  return b;
}

}  // namespace nn
}  // namespace tcu
