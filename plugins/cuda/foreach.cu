// Kernels over a list of tensors (ops.def FOREACH) of the CUDA plugin:
//   grad_norm(t1, ..., tn) -> [] float32 (float64 if any ti is): the hp[0]-norm (2 or inf) of
//     all elements together;
//   clip_grad_scale(total_norm[]) with outputs t1..tn given: ti *= min(hp[0] / (total_norm +
//     1e-6), 1), the norm read on the device (no host read: capturable in a CUDA graph).
// The tensors go to the kernels by value (a TensorList of up to kMaxList pointers and sizes in
// the launch parameters, so a graph capture keeps them), one launch per dtype and list of up to
// kMaxList tensors; every block walks all tensors of its list grid-stride, 16-byte vectors
// where aligned. grad_norm: each block writes one partial (sum of squares in float32, float64
// for a float64 result; or max |x|, NaN propagating) and one block adds the partials in order:
// deterministic (no atomics) for given shapes and GPU.
// clip_grad_scale computes the factor as torch.nn.utils.clip_grad_norm_ does, in the norm's
// dtype (float32 for a float16/bfloat16/float32 norm): reciprocal(total_norm + 1e-6) * max_norm
// (Tensor.__rtruediv__), clamped to 1 (NaN stays NaN), then x = x * factor in float32 (float64
// for float64).
#include <cmath>

#include "nn_common.cuh"

namespace tcu {
namespace {
using namespace nn;

constexpr int kThreads = 256;
constexpr int kMaxList = 96;

struct TensorList {
  void* ptr[kMaxList];
  int64_t n[kMaxList];
  int32_t count;
};

template <class A>
__device__ __forceinline__ A nan_max(A a, A b) {  // NaN-propagating
  return (b > a || b != b) ? b : a;
}

// Adds v to acc: v * v for the 2-norm, |v| by maximum for the inf-norm.
template <bool kInf, class A>
__device__ __forceinline__ void accumulate(A& acc, A v) {
  if constexpr (kInf)
    acc = nan_max(acc, v < A(0) ? -v : v);
  else
    acc += v * v;
}

template <class T, class A, bool kInf>
__global__ void __launch_bounds__(kThreads) norm_partial_kernel(TensorList list, A* __restrict__ partial) {
  constexpr int E = 16 / sizeof(T);
  using V = Vec<T, E>;
  __shared__ A smem[kThreads / 32];
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  A acc = 0;
  for (int t = 0; t < list.count; ++t) {
    const T* p = static_cast<const T*>(list.ptr[t]);
    const int64_t n = list.n[t];
    int64_t done = 0;
    if (reinterpret_cast<uintptr_t>(p) % 16 == 0) {
      const int64_t nv = n / E;
      for (int64_t i = start; i < nv; i += 4 * step) {  // four loads in flight
        V v[4];
#pragma unroll
        for (int q = 0; q < 4; ++q)
          if (i + q * step < nv) v[q] = reinterpret_cast<const V*>(p)[i + q * step];
#pragma unroll
        for (int q = 0; q < 4; ++q)
          if (i + q * step < nv)
#pragma unroll
            for (int e = 0; e < E; ++e) accumulate<kInf>(acc, static_cast<A>(cast<acc_t<T>>(v[q].v[e])));
      }
      done = nv * E;
    }
    for (int64_t i = done + start; i < n; i += step)
      accumulate<kInf>(acc, static_cast<A>(cast<acc_t<T>>(p[i])));
  }
  // The block's threads in a fixed order.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A y = __shfl_xor_sync(0xffffffffu, acc, o);
    if constexpr (kInf)
      acc = nan_max(acc, y);
    else
      acc += y;
  }
  if ((threadIdx.x & 31) == 0) smem[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    A tot = smem[0];
    for (int w = 1; w < kThreads / 32; ++w) {
      if constexpr (kInf)
        tot = nan_max(tot, smem[w]);
      else
        tot += smem[w];
    }
    partial[blockIdx.x] = tot;
  }
}

template <class A, bool kInf>
__global__ void __launch_bounds__(kThreads)
    norm_finish_kernel(const A* __restrict__ partial, int64_t P, void* out, int32_t out_dt) {
  __shared__ A smem[kThreads];
  A acc = 0;
  for (int64_t p = threadIdx.x; p < P; p += kThreads) {
    if constexpr (kInf)
      acc = nan_max(acc, partial[p]);
    else
      acc += partial[p];
  }
  smem[threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    A tot = smem[0];
    for (int t = 1; t < kThreads; ++t) {
      if constexpr (kInf)
        tot = nan_max(tot, smem[t]);
      else
        tot += smem[t];
    }
    store_f(out, out_dt, 0, static_cast<double>(kInf ? tot : sqrt(tot)));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    clip_scale_kernel(TensorList list, const void* norm, int32_t norm_dt, double max_norm) {
  using A = acc_t<T>;
  constexpr int E = 16 / sizeof(T);
  using V = Vec<T, E>;
  A f;  // the clip factor, computed in the norm's dtype
  if (norm_dt == TSR_FLOAT64) {
    const double c = (1.0 / (load_f(norm, norm_dt, 0) + 1e-6)) * max_norm;
    f = static_cast<A>(c > 1.0 ? 1.0 : c);
  } else {
    const float c =
        (1.0f / (static_cast<float>(load_f(norm, norm_dt, 0)) + 1e-6f)) * static_cast<float>(max_norm);
    f = static_cast<A>(c > 1.0f ? 1.0f : c);
  }
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int t = 0; t < list.count; ++t) {
    T* p = static_cast<T*>(list.ptr[t]);
    const int64_t n = list.n[t];
    int64_t done = 0;
    if (reinterpret_cast<uintptr_t>(p) % 16 == 0) {
      const int64_t nv = n / E;
      for (int64_t i = start; i < nv; i += 4 * step) {  // four loads in flight
        V v[4];
#pragma unroll
        for (int q = 0; q < 4; ++q)
          if (i + q * step < nv) v[q] = reinterpret_cast<V*>(p)[i + q * step];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          if (i + q * step < nv) {
#pragma unroll
            for (int e = 0; e < E; ++e) v[q].v[e] = cast<T>(cast<A>(v[q].v[e]) * f);
            reinterpret_cast<V*>(p)[i + q * step] = v[q];
          }
        }
      }
      done = nv * E;
    }
    for (int64_t i = done + start; i < n; i += step) p[i] = cast<T>(cast<A>(p[i]) * f);
  }
}

// Calls fn(list, dtype, elements) for each run of up to kMaxList tensors of one dtype, dtypes in
// TsrDType order and tensors in argument order (a fixed order: the partials' order).
template <class F>
void for_each_list(const TsrTensorDesc* ts, int count, F&& fn) {
  const int32_t dtypes[4] = {TSR_FLOAT16, TSR_BFLOAT16, TSR_FLOAT32, TSR_FLOAT64};
  for (int32_t dt : dtypes) {
    TensorList list{};
    int64_t elems = 0;
    for (int i = 0; i < count; ++i) {
      if (ts[i].dtype != dt) continue;
      list.ptr[list.count] = ts[i].data;
      list.n[list.count] = numel(ts[i]);
      elems += list.n[list.count];
      if (++list.count == kMaxList) {
        fn(list, dt, elems);
        list.count = 0;
        elems = 0;
      }
    }
    if (list.count > 0) fn(list, dt, elems);
  }
}

// Blocks for a list of `elems` elements: about 32 elements a thread, at most 8 blocks per SM.
int64_t list_blocks(int64_t elems, int sms) {
  int64_t b = ceil_div(elems, kThreads * 32);
  if (b > 8LL * sms) b = 8LL * sms;
  return b < 1 ? 1 : b;
}

int32_t check_list(const TsrKernelArgs* a, const TsrTensorDesc* ts, int count, const char* what) {
  for (int i = 0; i < count; ++i) {
    if (!is_float_dtype(ts[i].dtype))
      return fail(a, TSR_ERR_NOT_IMPLEMENTED, "%s %d has dtype %d (float dtypes only)", what, i, ts[i].dtype);
    if (!is_contiguous(ts[i]))
      return fail(a, TSR_ERR_INVALID_ARGUMENT, "%s %d (%s) must be contiguous", what, i, ShapeText(ts[i]).s);
  }
  return TSR_OK;
}

}  // namespace

int32_t kernel_grad_norm(const TsrKernelArgs* a) {
  if (a->num_inputs < 1 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected tensors and one output (got %d inputs, %d outputs)",
                a->num_inputs, a->num_outputs);
  const TsrTensorDesc& out = a->outputs[0];
  if (int32_t st = check_list(a, a->inputs, a->num_inputs, "tensor")) return st;
  if ((out.dtype != TSR_FLOAT32 && out.dtype != TSR_FLOAT64) || numel(out) != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "the output must be one float32 or float64 element (got %s, dtype %d)", ShapeText(out).s,
                out.dtype);
  const double p = a->attrs->hp[0];
  const bool inf = std::isinf(p) && p > 0;
  if (!inf && p != 2.0)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "norm type %g is not supported (2 or inf)", p);
  const cudaStream_t s = stream_of(a);
  const int dev = device_of(a);
  const int sms = sm_count(dev) > 0 ? sm_count(dev) : 1;
  int64_t P = 0;
  for_each_list(a->inputs, a->num_inputs,
                [&](const TensorList&, int32_t, int64_t elems) { P += list_blocks(elems, sms); });
  auto run = [&](auto acc, auto inf_flag) -> int32_t {
    using A = decltype(acc);
    constexpr bool kInf = decltype(inf_flag)::value;
    Scratch partial(dev, static_cast<size_t>(P) * sizeof(A), s);
    if (!partial)
      return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %lld partial norms",
                  static_cast<long long>(P));
    int64_t at = 0;
    int32_t status = TSR_OK;
    for_each_list(a->inputs, a->num_inputs, [&](const TensorList& list, int32_t dt, int64_t elems) {
      if (status != TSR_OK) return;
      const int64_t b = list_blocks(elems, sms);
      A* dst = partial.as<A>() + at;
      at += b;
      dispatch_float(dt, [&](auto z) {
        norm_partial_kernel<decltype(z), A, kInf><<<static_cast<unsigned>(b), kThreads, 0, s>>>(list, dst);
      });
      status = check_launch(a, "norm_partial_kernel");
    });
    if (status != TSR_OK) return status;
    norm_finish_kernel<A, kInf><<<1, kThreads, 0, s>>>(partial.as<A>(), P, out.data, out.dtype);
    return check_launch(a, "norm_finish_kernel");
  };
  if (out.dtype == TSR_FLOAT64)
    return inf ? run(double{}, std::true_type{}) : run(double{}, std::false_type{});
  return inf ? run(float{}, std::true_type{}) : run(float{}, std::false_type{});
}

int32_t kernel_clip_grad_scale(const TsrKernelArgs* a) {
  if (a->num_inputs != 1 || a->num_outputs < 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected the total norm and the tensors as outputs (got %d inputs, %d outputs)",
                a->num_inputs, a->num_outputs);
  const TsrTensorDesc& norm = a->inputs[0];
  if (!is_float_dtype(norm.dtype) || numel(norm) != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "total_norm must be one float element (got %s, dtype %d)",
                ShapeText(norm).s, norm.dtype);
  if (int32_t st = check_list(a, a->outputs, a->num_outputs, "tensor")) return st;
  const cudaStream_t s = stream_of(a);
  const int sms = sm_count(device_of(a)) > 0 ? sm_count(device_of(a)) : 1;
  const double max_norm = a->attrs->hp[0];
  int32_t status = TSR_OK;
  for_each_list(a->outputs, a->num_outputs, [&](const TensorList& list, int32_t dt, int64_t elems) {
    if (status != TSR_OK) return;
    int64_t b = ceil_div(elems, kThreads * 32);
    if (b > 8LL * sms) b = 8LL * sms;
    dispatch_float(dt, [&](auto z) {
      clip_scale_kernel<decltype(z)><<<grid_cap(b), kThreads, 0, s>>>(list, norm.data, norm.dtype, max_norm);
    });
    status = check_launch(a, "clip_scale_kernel");
  });
  return status;
}

}  // namespace tcu
