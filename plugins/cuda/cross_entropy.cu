// Cross entropy of the CUDA plugin (ops.def NN), over logits[N, C] and int64 targets[N]:
//   cross_entropy -> loss[N], lse[N]: lse = log sum_c exp x[c];
//     loss = (1 - eps) * (lse - x[t]) + eps * (lse - mean_c x[c]), 0 where t == ignore_index
//   cross_entropy_backward(grad[N], logits, target, lse) -> dlogits[N, C]
//     = grad * (exp(x - lse) - (1 - eps) onehot(t) - eps / C), a zero row where t is ignored.
// ignore_index = hp[0], eps = hp[1] (label smoothing). Sums in float32 (float64 for float64).
// A target outside [0, C) that is not ignore_index gives a NaN loss and a NaN gradient row (a
// device kernel cannot raise an error; PyTorch stops with a device-side assert).
//
// The forward reads each row once: a warp (C <= 1024) or a 512-thread block per row keeps an
// online (max, sum of exp(x - max)) per thread over 16-byte vectors, merged in a fixed order.
// The backward is elementwise over 16-byte vectors, a row segment per block.
#include <cmath>
#include <limits>

#include "nn_common.cuh"

namespace tcu {
namespace {
using namespace nn;

constexpr int kWarpRowsBlock = 128;  // 4 rows a block
constexpr int kRowBlock = 512;

__device__ __forceinline__ float ex(float x) {
  return expf(x);
}
__device__ __forceinline__ double ex(double x) {
  return exp(x);
}
__device__ __forceinline__ float lg(float x) {
  return logf(x);
}
__device__ __forceinline__ double lg(double x) {
  return log(x);
}

// An online log-sum-exp: m the largest value seen (NaN excluded), s = sum exp(v - m); nan: a NaN
// was seen; sx: the sum of the values (label smoothing).
template <class A>
struct Lse {
  A m, s, sx;
  bool nan;
};
// s * exp(m - M) with M >= m, exact where m == M (M infinite: exp(inf - inf) would be NaN).
template <class A>
__device__ __forceinline__ A rescale(A s, A m, A M) {
  return m == M ? s : s * ex(m - M);
}
template <class A>
__device__ __forceinline__ void merge(Lse<A>& a, const Lse<A>& b) {
  const A M = a.m > b.m ? a.m : b.m;
  a.s = rescale(a.s, a.m, M) + rescale(b.s, b.m, M);
  a.m = M;
  a.sx += b.sx;
  a.nan = a.nan || b.nan;
}
template <class A>
__device__ __forceinline__ Lse<A> warp_merge(Lse<A> v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Lse<A> b;
    b.m = __shfl_xor_sync(0xffffffffu, v.m, o);
    b.s = __shfl_xor_sync(0xffffffffu, v.s, o);
    b.sx = __shfl_xor_sync(0xffffffffu, v.sx, o);
    b.nan = __shfl_xor_sync(0xffffffffu, static_cast<int>(v.nan), o) != 0;
    merge(v, b);
  }
  return v;
}

// Adds E values (one vector) to the running state.
template <class A, int E>
__device__ __forceinline__ void add_values(Lse<A>& st, const A (&v)[E]) {
  A vm = st.m;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    st.nan = st.nan || v[e] != v[e];
    vm = v[e] > vm ? v[e] : vm;
    st.sx += v[e];
  }
  A s = rescale(st.s, st.m, vm);
#pragma unroll
  for (int e = 0; e < E; ++e) {
    if (v[e] == vm)
      s += A(1);  // also an infinite maximum: exp(inf - inf) would be NaN
    else if (v[e] == v[e])
      s += ex(v[e] - vm);  // NaN: counted in st.nan
  }
  st.s = s;
  st.m = vm;
}

// A group (warp, or the block) per row; E = 16 / sizeof(T) with 16-byte aligned rows, else 1.
template <class T, bool kWarp, int E>
__global__ void __launch_bounds__(kWarp ? kWarpRowsBlock : kRowBlock)
    cross_entropy_forward_kernel(const T* __restrict__ x, const int64_t* __restrict__ target, void* loss,
                                 int32_t loss_dt, void* lse_out, int32_t lse_dt, int64_t rows, int64_t C,
                                 int64_t ignore_index, double eps) {
  using A = acc_t<T>;
  using V = Vec<T, E>;
  __shared__ Lse<A> part[kRowBlock / 32];
  const int G = kWarp ? 32 : static_cast<int>(blockDim.x);
  const int t = kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  const int64_t nvec = C / E;
  for (int64_t r = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0); r < rows;
       r += gridDim.x * per_block) {
    const V* xr = reinterpret_cast<const V*>(x + r * C);
    Lse<A> st{-std::numeric_limits<A>::infinity(), A(0), A(0), false};
    int64_t j = t;
    for (; j + 3 * G < nvec; j += 4 * G) {  // four loads in flight
      V raw[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) raw[u] = xr[j + u * G];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        A v[E];
#pragma unroll
        for (int e = 0; e < E; ++e) v[e] = cast<A>(raw[u].v[e]);
        add_values(st, v);
      }
    }
    for (; j < nvec; j += G) {
      const V raw = xr[j];
      A v[E];
#pragma unroll
      for (int e = 0; e < E; ++e) v[e] = cast<A>(raw.v[e]);
      add_values(st, v);
    }
    st = warp_merge(st);
    if constexpr (!kWarp) {
      if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = st;
      __syncthreads();
      if (threadIdx.x == 0)
        for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) merge(st, part[w]);
      __syncthreads();
    }
    if (t != 0) continue;
    // A NaN or +inf logit: NaN (as torch's log_softmax and the CPU); every logit -inf: -inf.
    const A lse = st.nan || st.m == std::numeric_limits<A>::infinity() ? std::numeric_limits<A>::quiet_NaN()
                                                                       : st.m + lg(st.s);
    const int64_t tg = target[r];
    A l;
    if (tg == ignore_index) {
      l = 0;
    } else if (tg < 0 || tg >= C) {
      l = std::numeric_limits<A>::quiet_NaN();
    } else {
      l = lse - cast<A>(x[r * C + tg]);
      if (eps != 0) l = A(1 - eps) * l + A(eps) * (lse - st.sx / A(C));
    }
    store_f(loss, loss_dt, r, static_cast<double>(l));
    store_f(lse_out, lse_dt, r, static_cast<double>(lse));
  }
}

// dlogits: blockIdx.y walks the rows, blockIdx.x covers kBwdVecs * 256 vectors of E elements
// of a row (C % E == 0, 16-byte aligned rows for E > 1); the row's target, grad and lse are
// read once per block, the x loads issued together.
constexpr int kBwdThreads = 256, kBwdVecs = 4;
template <class T, int E>
__global__ void __launch_bounds__(kBwdThreads)
    cross_entropy_backward_kernel(const void* grad, int32_t grad_dt, const T* __restrict__ x,
                                  const int64_t* __restrict__ target, const void* lse_in, int32_t lse_dt,
                                  T* __restrict__ dx, int64_t N, int64_t C, int64_t ignore_index,
                                  double eps) {
  using A = acc_t<T>;
  using V = Vec<T, E>;
  const int64_t nvec = C / E;
  const A on = A(1 - eps), off = A(eps / static_cast<double>(C));
  const int64_t v0 = static_cast<int64_t>(blockIdx.x) * kBwdThreads * kBwdVecs + threadIdx.x;
  for (int64_t r = blockIdx.y; r < N; r += gridDim.y) {
    const V* xr = reinterpret_cast<const V*>(x + r * C);
    V* dr = reinterpret_cast<V*>(dx + r * C);
    V raw[kBwdVecs];
#pragma unroll
    for (int q = 0; q < kBwdVecs; ++q)
      if (v0 + q * kBwdThreads < nvec) raw[q] = xr[v0 + q * kBwdThreads];
    const int64_t tg = target[r];
    const bool ignored = tg == ignore_index, bad = !ignored && (tg < 0 || tg >= C);
    const A g = ignored ? A(0) : static_cast<A>(load_f(grad, grad_dt, r));
    const A lse = ignored ? A(0) : static_cast<A>(load_f(lse_in, lse_dt, r));
#pragma unroll
    for (int q = 0; q < kBwdVecs; ++q) {
      const int64_t j = v0 + q * kBwdThreads;
      if (j >= nvec) continue;
      V o;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        A p = ex(cast<A>(raw[q].v[e]) - lse) - off;
        if (j * E + e == tg) p -= on;
        o.v[e] = cast<T>(ignored ? A(0) : bad ? std::numeric_limits<A>::quiet_NaN() : g * p);
      }
      dr[j] = o;
    }
  }
}

template <class T>
int32_t forward_typed(const TsrKernelArgs* a, int64_t N, int64_t C, int64_t ignore, double eps) {
  const cudaStream_t s = stream_of(a);
  const T* x = static_cast<const T*>(a->inputs[0].data);
  const int64_t* tg = static_cast<const int64_t*>(a->inputs[1].data);
  const TsrTensorDesc &loss = a->outputs[0], &lse = a->outputs[1];
  constexpr int E = 16 / sizeof(T);
  const bool vec = aligned_to(x, 16) && C % E == 0;
  auto go = [&](auto warp, auto e) {
    constexpr bool kWarp = decltype(warp)::value;
    const unsigned grid = grid_cap(kWarp ? ceil_div(N, kWarpRowsBlock / 32) : N);
    cross_entropy_forward_kernel<T, kWarp, decltype(e)::value>
        <<<grid, kWarp ? kWarpRowsBlock : kRowBlock, 0, s>>>(x, tg, loss.data, loss.dtype, lse.data,
                                                             lse.dtype, N, C, ignore, eps);
  };
  using W = std::true_type;
  using B = std::false_type;
  const bool warp = C <= 1024;
  if (vec) {
    if (warp)
      go(W{}, std::integral_constant<int, E>{});
    else
      go(B{}, std::integral_constant<int, E>{});
  } else {
    if (warp)
      go(W{}, std::integral_constant<int, 1>{});
    else
      go(B{}, std::integral_constant<int, 1>{});
  }
  return check_launch(a, "cross_entropy_forward_kernel");
}

template <class T>
int32_t backward_typed(const TsrKernelArgs* a, int64_t N, int64_t C, int64_t ignore, double eps) {
  const cudaStream_t s = stream_of(a);
  const TsrTensorDesc &grad = a->inputs[0], &lse = a->inputs[3];
  const T* x = static_cast<const T*>(a->inputs[1].data);
  const int64_t* tg = static_cast<const int64_t*>(a->inputs[2].data);
  T* dx = static_cast<T*>(a->outputs[0].data);
  constexpr int E = 16 / sizeof(T);
  const bool vec = aligned_to(x, 16) && aligned_to(dx, 16) && C % E == 0;
  const int64_t nvec = vec ? C / E : C;
  const dim3 grid(grid_cap(ceil_div(nvec, kBwdThreads * kBwdVecs)),
                  static_cast<unsigned>(N < 65535 ? N : 65535));
  if (vec)
    cross_entropy_backward_kernel<T, E><<<grid, kBwdThreads, 0, s>>>(grad.data, grad.dtype, x, tg, lse.data,
                                                                     lse.dtype, dx, N, C, ignore, eps);
  else
    cross_entropy_backward_kernel<T, 1><<<grid, kBwdThreads, 0, s>>>(grad.data, grad.dtype, x, tg, lse.data,
                                                                     lse.dtype, dx, N, C, ignore, eps);
  return check_launch(a, "cross_entropy_backward_kernel");
}

bool is_vector(const TsrTensorDesc& d, int64_t n) {
  return d.ndim == 1 && d.sizes[0] == n && is_contiguous(d);
}

// Hyperparameters: ignore_index (an integer carried in a double) and eps.
int64_t ignore_of(const TsrKernelArgs* a) {
  return static_cast<int64_t>(std::llround(a->attrs->hp[0]));
}

}  // namespace

int32_t kernel_cross_entropy(const TsrKernelArgs* a) {
  if (a->num_inputs != 2 || a->num_outputs != 2)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected logits, target and outputs loss, lse (got %d inputs, %d outputs)", a->num_inputs,
                a->num_outputs);
  const TsrTensorDesc &x = a->inputs[0], &tg = a->inputs[1];
  if (!is_float_dtype(x.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", x.dtype);
  if (x.ndim != 2 || !is_contiguous(x))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "logits must be a contiguous [N, C] tensor (got %s)",
                ShapeText(x).s);
  const int64_t N = x.sizes[0], C = x.sizes[1];
  if (tg.dtype != TSR_INT64 || !is_vector(tg, N))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "target must be a contiguous int64 [%lld] tensor (got %s, dtype %d)",
                static_cast<long long>(N), ShapeText(tg).s, tg.dtype);
  for (int i = 0; i < 2; ++i)
    if (!is_vector(a->outputs[i], N) || !is_float_dtype(a->outputs[i].dtype))
      return fail(a, TSR_ERR_INVALID_ARGUMENT, "%s must be a float [%lld] tensor (got %s)",
                  i ? "lse" : "loss", static_cast<long long>(N), ShapeText(a->outputs[i]).s);
  const double eps = a->attrs->hp[1];
  int32_t status = TSR_OK;
  dispatch_float(x.dtype, [&](auto z) { status = forward_typed<decltype(z)>(a, N, C, ignore_of(a), eps); });
  return status;
}

int32_t kernel_cross_entropy_backward(const TsrKernelArgs* a) {
  if (a->num_inputs != 4 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected grad, logits, target, lse and output dlogits (got %d inputs, %d outputs)",
                a->num_inputs, a->num_outputs);
  const TsrTensorDesc &g = a->inputs[0], &x = a->inputs[1], &tg = a->inputs[2], &lse = a->inputs[3];
  const TsrTensorDesc& dx = a->outputs[0];
  if (!is_float_dtype(x.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", x.dtype);
  if (x.ndim != 2 || !is_contiguous(x))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "logits must be a contiguous [N, C] tensor (got %s)",
                ShapeText(x).s);
  const int64_t N = x.sizes[0], C = x.sizes[1];
  if (tg.dtype != TSR_INT64 || !is_vector(tg, N) || !is_vector(g, N) || !is_float_dtype(g.dtype) ||
      !is_vector(lse, N) || !is_float_dtype(lse.dtype))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "grad, target (int64) and lse must be contiguous [%lld] tensors (got %s, %s, %s)",
                static_cast<long long>(N), ShapeText(g).s, ShapeText(tg).s, ShapeText(lse).s);
  if (dx.dtype != x.dtype || dx.ndim != 2 || dx.sizes[0] != N || dx.sizes[1] != C || !is_contiguous(dx))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "dlogits must be a contiguous %s tensor of the logits' dtype",
                ShapeText(x).s);
  const double eps = a->attrs->hp[1];
  int32_t status = TSR_OK;
  dispatch_float(x.dtype, [&](auto z) { status = backward_typed<decltype(z)>(a, N, C, ignore_of(a), eps); });
  return status;
}

}  // namespace tcu
