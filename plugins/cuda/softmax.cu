// CUDA softmax and log_softmax over one dim (float16/bfloat16 in float32, float32, float64).
//
// Semantics as the CPU plugin: m = max of the row (NaN-propagating); a row whose max is NaN or
// +-inf (e.g. all -inf) is all NaN; else softmax = exp(x - m) * (1 / sum exp(x - m)) and
// log_softmax = x - (m + log(sum exp(x - m))). Sums accumulate in float (double for float64).
// Paths:
//  - registers: rows along a contiguous last dim (16-byte aligned, length a multiple of 16
//    bytes, up to 8192 vectors): the row is read once into registers and written once; a warp
//    per row up to 256 vectors (1024 float32), else a block of up to 1024 threads per row.
//  - rows: a warp (n <= 1024) or a 512-thread block per row, elements read three times (max,
//    sum, write) with the dim's stride; for other rows along a contiguous dim, or few rows.
//  - cols: a thread per row, for a strided dim with many rows (adjacent threads read adjacent
//    rows: e.g. softmax over dim 1 of [N, C, H, W]).
#include <cstring>
#include <limits>
#include <type_traits>

#include "cuda_common.cuh"

namespace tcu {
namespace {

template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
__device__ __forceinline__ float lg(float x) { return logf(x); }
__device__ __forceinline__ double lg(double x) { return log(x); }

template <class A>
__device__ __forceinline__ A nan_max(A a, A b) {  // NaN-propagating
  return (b > a || b != b) ? b : a;
}
template <class A>
__device__ __forceinline__ A quiet_nan() {
  return std::numeric_limits<A>::quiet_NaN();
}
template <class A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}

// Every lane gets the warp's max (sum); butterflies give all lanes the same value.
template <class A>
__device__ __forceinline__ A warp_all_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <class A>
__device__ __forceinline__ A warp_all_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Every thread of the block gets the block's max (sum), merged in warp order. smem: 32 values.
template <bool kMax, class A>
__device__ __forceinline__ A block_all(A v, A* smem) {
  v = kMax ? warp_all_max(v) : warp_all_sum(v);
  const int nw = blockDim.x >> 5;
  if ((threadIdx.x & 31) == 0) smem[threadIdx.x >> 5] = v;
  __syncthreads();
  v = smem[0];
  for (int w = 1; w < nw; ++w) v = kMax ? nan_max(v, smem[w]) : v + smem[w];
  __syncthreads();  // smem free for the next use
  return v;
}
template <bool kWarp, bool kMax, class A>
__device__ __forceinline__ A group_all(A v, A* smem) {
  if constexpr (kWarp) return kMax ? warp_all_max(v) : warp_all_sum(v);
  else return block_all<kMax>(v, smem);
}

template <class T>
struct alignas(16) Vec16 {
  T v[16 / sizeof(T)];
};


// The rows: every dim but the softmax dim, collapsed over (out, in).
struct RowGeom {
  int64_t rows;
  int64_t n;                  // elements per row
  int64_t in_step, out_step;  // the dim's strides
  int32_t nd;
  int64_t size[TSR_MAX_DIMS], in_st[TSR_MAX_DIMS], out_st[TSR_MAX_DIMS];
};

constexpr int kWarpRowsBlock = 128;  // warp-per-row kernels: 4 rows per block
constexpr int kRowBlock = 512;       // block-per-row generic kernel
constexpr int kColBlock = 256;       // thread-per-row kernel

// Registers: rows of n = nvec * E contiguous elements, row r at in + r * in_rs (out + r *
// out_rs), all 16-byte aligned. A group (warp, or the block) per row; thread t holds vectors
// t, t + G, ..., kVPT of them.
template <class T, bool kLog, bool kWarp, int kVPT>
__global__ void __launch_bounds__(kWarp ? kWarpRowsBlock : 1024) softmax_reg_kernel(const T* in, T* out, int64_t rows, int nvec, int64_t in_rs,
                                                           int64_t out_rs) {
  using A = acc_t<T>;
  using Vec = Vec16<T>;
  constexpr int E = 16 / sizeof(T);
  __shared__ A smem[32];
  const int G = kWarp ? 32 : static_cast<int>(blockDim.x);
  const int t = kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  const int64_t step = static_cast<int64_t>(gridDim.x) * per_block;
  for (int64_t r = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0); r < rows; r += step) {  // uniform per group
    const Vec* x = reinterpret_cast<const Vec*>(in + r * in_rs);
    Vec* y = reinterpret_cast<Vec*>(out + r * out_rs);
    Vec raw[kVPT];
#pragma unroll
    for (int k = 0; k < kVPT; ++k)
      if (t + k * G < nvec) raw[k] = x[t + k * G];
    A v[kVPT][E];  // the row's values (softmax: then their exponentials)
    A mx = neg_inf<A>();
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      const bool ok = t + k * G < nvec;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        v[k][e] = ok ? cast<A>(raw[k].v[e]) : neg_inf<A>();
        mx = nan_max(mx, v[k][e]);
      }
    }
    mx = group_all<kWarp, true>(mx, smem);
    if (!(mx - mx == A(0))) {  // NaN or infinite max: the whole row is NaN
      Vec nanv;
#pragma unroll
      for (int e = 0; e < E; ++e) nanv.v[e] = cast<T>(quiet_nan<A>());
#pragma unroll
      for (int k = 0; k < kVPT; ++k)
        if (t + k * G < nvec) y[t + k * G] = nanv;
      continue;
    }
    A sum = 0;
#pragma unroll
    for (int k = 0; k < kVPT; ++k)
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const A p = ex(v[k][e] - mx);  // 0 for the padding (-inf)
        if constexpr (!kLog) v[k][e] = p;
        sum += p;
      }
    sum = group_all<kWarp, false>(sum, smem);
    const A mul = kLog ? A(1) : A(1) / sum;
    const A add = kLog ? -(mx + lg(sum)) : A(0);
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      if (t + k * G < nvec) {
        Vec o;
#pragma unroll
        for (int e = 0; e < E; ++e) o.v[e] = cast<T>(kLog ? v[k][e] + add : v[k][e] * mul);
        y[t + k * G] = o;
      }
    }
  }
}

// Rows with any strides: a group (warp or block) per row; max, sum and write passes each
// read the row (with the dim's stride) again.
template <class T, bool kLog, bool kWarp>
__global__ void __launch_bounds__(kRowBlock) softmax_rows_kernel(const T* in, T* out, RowGeom g) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  const int G = kWarp ? 32 : static_cast<int>(blockDim.x);
  const int t = kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  const int64_t step = static_cast<int64_t>(gridDim.x) * per_block;
  const int64_t n = g.n, is = g.in_step, os = g.out_step;
  for (int64_t r = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0); r < g.rows; r += step) {
    const T* x = in + offset_nd(r, g.nd, g.size, g.in_st);
    T* y = out + offset_nd(r, g.nd, g.size, g.out_st);
    A mx = neg_inf<A>();
    for (int64_t j = t; j < n; j += G) mx = nan_max(mx, cast<A>(x[j * is]));
    mx = group_all<kWarp, true>(mx, smem);
    if (!(mx - mx == A(0))) {
      for (int64_t j = t; j < n; j += G) y[j * os] = cast<T>(quiet_nan<A>());
      continue;
    }
    A sum = 0;
    for (int64_t j = t; j < n; j += G) sum += ex(cast<A>(x[j * is]) - mx);
    sum = group_all<kWarp, false>(sum, smem);
    const A inv = A(1) / sum;
    const A add = -(mx + lg(sum));
    for (int64_t j = t; j < n; j += G) {
      const A v = cast<A>(x[j * is]);
      y[j * os] = cast<T>(kLog ? v + add : ex(v - mx) * inv);
    }
  }
}

// A thread per row.
template <class T, bool kLog>
__global__ void __launch_bounds__(kColBlock) softmax_cols_kernel(const T* in, T* out, RowGeom g) {
  using A = acc_t<T>;
  const int64_t n = g.n, is = g.in_step, os = g.out_step;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < g.rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* x = in + offset_nd(r, g.nd, g.size, g.in_st);
    T* y = out + offset_nd(r, g.nd, g.size, g.out_st);
    A mx = neg_inf<A>();
#pragma unroll 4
    for (int64_t j = 0; j < n; ++j) mx = nan_max(mx, cast<A>(x[j * is]));
    if (!(mx - mx == A(0))) {
      for (int64_t j = 0; j < n; ++j) y[j * os] = cast<T>(quiet_nan<A>());
      continue;
    }
    A sum = 0;
#pragma unroll 4
    for (int64_t j = 0; j < n; ++j) sum += ex(cast<A>(x[j * is]) - mx);
    const A inv = A(1) / sum;
    const A add = -(mx + lg(sum));
#pragma unroll 4
    for (int64_t j = 0; j < n; ++j) {
      const A v = cast<A>(x[j * is]);
      y[j * os] = cast<T>(kLog ? v + add : ex(v - mx) * inv);
    }
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
unsigned grid_cap(int64_t b) { return static_cast<unsigned>(b < 1 ? 1 : (b > (int64_t{1} << 30) ? (int64_t{1} << 30) : b)); }

// Collapses the row dims (every dim but `dim`) of out and in; returns the rows' ndim.
int collapse_rows(const TsrTensorDesc& out, const TsrTensorDesc& in, int dim, RowGeom& g) {
  int n = 0;
  for (int d = 0; d < in.ndim; ++d) {
    if (d == dim || in.sizes[d] == 1) continue;
    const int64_t sz = in.sizes[d], is = in.strides[d], os = out.strides[d];
    if (n > 0 && g.in_st[n - 1] == is * sz && g.out_st[n - 1] == os * sz) {
      g.size[n - 1] *= sz;
      g.in_st[n - 1] = is;
      g.out_st[n - 1] = os;
      continue;
    }
    g.size[n] = sz;
    g.in_st[n] = is;
    g.out_st[n] = os;
    ++n;
  }
  return n;
}

template <class T, bool kLog, bool kWarp, int kVPT>
void launch_reg(unsigned grid, int threads, cudaStream_t s, const T* in, T* out, const RowGeom& g, int nvec,
                int64_t in_rs, int64_t out_rs) {
  softmax_reg_kernel<T, kLog, kWarp, kVPT><<<grid, threads, 0, s>>>(in, out, g.rows, nvec, in_rs, out_rs);
}

template <class T, bool kLog>
int32_t softmax_typed(const TsrKernelArgs* a, const RowGeom& g) {
  const T* in = static_cast<const T*>(a->inputs[0].data);
  T* out = static_cast<T*>(a->outputs[0].data);
  cudaStream_t s = stream_of(a);
  constexpr int E = 16 / sizeof(T);
  constexpr int64_t kAlign = 16 / sizeof(T);  // elements per 16 bytes

  // Registers: contiguous rows, 16-byte aligned, a whole number of vectors. Values a thread
  // holds: up to 32 floats / 16 doubles with a warp per row (<= 255 registers), 16 / 8 with a
  // block per row (64 registers at 1024 threads; more spilled). kMaxW/kMaxB: vectors a thread.
  constexpr int kVals = sizeof(acc_t<T>) == 8 ? 16 : 32;
  constexpr int kMaxW = kVals / E, kMaxB = kVals / 2 / E;
  const int64_t in_rs = g.nd == 1 ? g.in_st[0] : 0, out_rs = g.nd == 1 ? g.out_st[0] : 0;
  const bool aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                       in_rs % kAlign == 0 && out_rs % kAlign == 0;
  if (g.in_step == 1 && g.out_step == 1 && g.nd <= 1 && aligned && g.n % E == 0 && g.n / E <= 1024 * kMaxB) {
    const int nvec = static_cast<int>(g.n / E);
    using W = std::true_type;
    using B = std::false_type;
    auto go = [&](auto w, auto v, unsigned grid, int threads) {
      launch_reg<T, kLog, decltype(w)::value, decltype(v)::value>(grid, threads, s, in, out, g, nvec, in_rs, out_rs);
    };
    if (nvec <= 32 * kMaxW) {  // a warp per row
      const unsigned grid = grid_cap(ceil_div(g.rows, kWarpRowsBlock / 32));
      if (nvec <= 32) go(W{}, std::integral_constant<int, 1>{}, grid, kWarpRowsBlock);
      else if (nvec <= 64) go(W{}, std::integral_constant<int, 2>{}, grid, kWarpRowsBlock);
      else if constexpr (kMaxW >= 8) {
        if (nvec <= 128) go(W{}, std::integral_constant<int, 4>{}, grid, kWarpRowsBlock);
        else go(W{}, std::integral_constant<int, 8>{}, grid, kWarpRowsBlock);
      } else {
        go(W{}, std::integral_constant<int, 4>{}, grid, kWarpRowsBlock);
      }
    } else {  // a block per row: up to 512 threads with one vector each, then more vectors (<= 1024 threads)
      int vpt = 1;
      while (nvec > 512 * vpt && vpt < kMaxB) vpt *= 2;
      const int threads = static_cast<int>(ceil_div(ceil_div(nvec, vpt), 32) * 32);
      const unsigned grid = grid_cap(g.rows);
      if (vpt == 1) go(B{}, std::integral_constant<int, 1>{}, grid, threads);
      else if (vpt == 2) go(B{}, std::integral_constant<int, 2>{}, grid, threads);
      else if constexpr (kMaxB >= 4) go(B{}, std::integral_constant<int, 4>{}, grid, threads);
    }
    return check_launch(a, "softmax_reg_kernel");
  }

  if (g.in_step == 1 || g.rows < 4096) {
    if (g.n <= 1024) softmax_rows_kernel<T, kLog, true><<<grid_cap(ceil_div(g.rows, kWarpRowsBlock / 32)), kWarpRowsBlock, 0, s>>>(in, out, g);
    else softmax_rows_kernel<T, kLog, false><<<grid_cap(g.rows), kRowBlock, 0, s>>>(in, out, g);
    return check_launch(a, "softmax_rows_kernel");
  }
  softmax_cols_kernel<T, kLog><<<grid_cap(ceil_div(g.rows, kColBlock)), kColBlock, 0, s>>>(in, out, g);
  return check_launch(a, "softmax_cols_kernel");
}

template <bool kLog>
int32_t softmax_entry(const TsrKernelArgs* a) {
  if (a->num_inputs < 1 || a->num_outputs < 1) return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected one input and one output");
  const TsrTensorDesc& in = a->inputs[0];
  const TsrTensorDesc& out = a->outputs[0];
  if (in.dtype != out.dtype || in.ndim != out.ndim)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "input and output must share sizes and dtype");
  const int64_t dim = a->attrs->dim;
  if (dim < 0 || dim >= (in.ndim > 0 ? in.ndim : 1))
    return fail(a, TSR_ERR_INDEX, "dim %lld out of range for %d dims", static_cast<long long>(dim), in.ndim);
  RowGeom g;
  std::memset(&g, 0, sizeof g);
  g.n = in.ndim > 0 ? in.sizes[dim] : 1;
  g.in_step = in.ndim > 0 ? in.strides[dim] : 0;
  g.out_step = in.ndim > 0 ? out.strides[dim] : 0;
  if (g.n == 1) g.in_step = g.out_step = 1;  // a single element: its stride is irrelevant
  g.nd = collapse_rows(out, in, static_cast<int>(dim), g);
  g.rows = 1;
  for (int d = 0; d < g.nd; ++d) g.rows *= g.size[d];
  int32_t status = TSR_OK;
  const bool known = dispatch_float(in.dtype, [&](auto z) {
    using T = decltype(z);
    status = softmax_typed<T, kLog>(a, g);
  });
  if (!known) return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", in.dtype);
  return status;
}

}  // namespace

int32_t kernel_softmax(const TsrKernelArgs* a) { return softmax_entry<false>(a); }
int32_t kernel_log_softmax(const TsrKernelArgs* a) { return softmax_entry<true>(a); }

}  // namespace tcu
