// Random ops that read an input (ops.def SAMPLE) of the CUDA plugin, with plugin.h's RANDOM
// Philox layout (element e: counter offset + e/4, lane e%4, u = (x + 0.5) * 2^-32), so a
// (seed, offset) gives the CPU plugin's draws:
//   dropout(x) -> y: element i kept iff u(i) < 1 - p (bernoulli_'s rule, in double: the mask
//     is bitwise the CPU's), kept values times 1 / (1 - p), both computed in float32 (float64
//     for float64) as the CPU plugin; p = 1 gives x * 0 (as torch and the CPU).
//   multinomial(probs[R, C]) -> int64 [R, k]: sample s of row r takes u(r * k + s) and the first
//     category whose cumulative weight (a sequential float64 sum) exceeds u * total; hp[0] = 0:
//     without replacement (chosen categories weigh 0 in later sums).
// A row without a valid draw (total weight 0, NaN or infinite, or fewer positive categories
// than samples without replacement) gets -1 where the CPU raises an error: a device kernel
// cannot, and the runtime does not read device data. (Negative weights are not detected.)
// Like the RANDOM fills, these refuse a CUDA graph capture (a replay would repeat the same
// draws: the generator's offset is a host value baked into the launch); dropout with p = 0 or
// p = 1 draws nothing and may be captured.
#include <algorithm>

#include "nn_common.cuh"

namespace tcu {
namespace {
using namespace nn;

constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------
// dropout: thread g handles the four elements 4g .. 4g+3 of one Philox call.

template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads)
    dropout_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, uint64_t seed, uint64_t offset,
                   double keep, acc_t<T> scale) {
  using A = acc_t<T>;
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t r[4];
    philox4x32_10(seed, offset + static_cast<uint64_t>(g), r);
    const int64_t i0 = 4 * g;
    if (kVec && i0 + 4 <= n) {
      using V = Vec<T, 4>;
      V v = reinterpret_cast<const V*>(x)[g];
#pragma unroll
      for (int e = 0; e < 4; ++e)
        v.v[e] = philox_unit(r[e]) < keep ? cast<T>(cast<A>(v.v[e]) * scale) : cast<T>(A(0));
      reinterpret_cast<V*>(y)[g] = v;
    } else {
      for (int e = 0; e < 4 && i0 + e < n; ++e)
        y[i0 + e] = philox_unit(r[e]) < keep ? cast<T>(cast<A>(x[i0 + e]) * scale) : cast<T>(A(0));
    }
  }
}

// ---------------------------------------------------------------------------------------
// multinomial: a block per row (grid-stride). A round computes the row's cumulative weights
// cum[c] = (((0 + w0) + w1) + ... + wc) sequentially in double (the contract's sum, so the
// serial chain of C additions bounds the time): thread 0 adds a chunk staged in shared memory
// in order while the other warps stage the next chunk (categories already chosen zeroed), and
// the block writes each chunk's sums to the block's scratch row. Then each sample finds
// the first c with cum[c] > u * total by binary search (cum does not decrease: weights are
// >= 0). With replacement one round serves all samples; without, a round per sample.

constexpr int kChunk = 2048;

template <class T>
__global__ void __launch_bounds__(kThreads)
    multinomial_kernel(const T* __restrict__ probs, int64_t* __restrict__ out, double* __restrict__ cum_rows,
                       int64_t R, int64_t C, int64_t k, bool replace, uint64_t seed, uint64_t offset) {
  __shared__ double buf[2][kChunk];  // chunk c in buf[c & 1]
  __shared__ double carry;
  double* cum = cum_rows + static_cast<int64_t>(blockIdx.x) * C;  // this block's row
  const int tid = threadIdx.x;
  const int64_t nch = (C + kChunk - 1) / kChunk;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T* w = probs + r * C;
    int64_t* o = out + r * k;
    const int64_t rounds = replace ? 1 : k;
    for (int64_t round = 0; round < rounds; ++round) {
      const int64_t chosen = replace ? 0 : round;  // o[0 .. chosen) already drawn
      auto len_of = [&](int64_t c) {
        return static_cast<int>(C - c * kChunk < kChunk ? C - c * kChunk : kChunk);
      };
      auto stage = [&](int64_t c, int first, int step) {  // weights of chunk c into buf[c & 1]
        double* b = buf[c & 1];
        const T* src = w + c * kChunk;
        const int len = len_of(c);
        for (int q = first; q < len; q += step) b[q] = cast<double>(src[q]);
      };
      auto zero_chosen = [&](int64_t c) {  // categories drawn earlier weigh 0
        const int64_t start = c * kChunk, len = len_of(c);
        for (int64_t j = tid; j < chosen; j += kThreads) {
          const int64_t cat = o[j];
          if (cat >= start && cat < start + len) buf[c & 1][cat - start] = 0.0;
        }
      };
      stage(0, tid, kThreads);
      __syncthreads();
      zero_chosen(0);
      __syncthreads();
      double run = 0.0;  // thread 0's running sum
      for (int64_t c = 0; c < nch; ++c) {
        // Thread 0 adds chunk c in order while warps 1.. stage chunk c + 1.
        if (tid == 0) {
          double* b = buf[c & 1];
          const int len = len_of(c);
          int q = 0;
          for (; q + 8 <= len; q += 8) {
            double v[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) v[e] = b[q + e];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              run = __dadd_rn(run, v[e]);
              b[q + e] = run;
            }
          }
          for (; q < len; ++q) {
            run = __dadd_rn(run, b[q]);
            b[q] = run;
          }
        } else if (tid >= 32 && c + 1 < nch) {
          stage(c + 1, tid - 32, kThreads - 32);
        }
        __syncthreads();
        if (c + 1 < nch) zero_chosen(c + 1);
        const int len = len_of(c);
        for (int q = tid; q < len; q += kThreads) cum[c * kChunk + q] = buf[c & 1][q];
        __syncthreads();
      }
      if (tid == 0) carry = run;
      __syncthreads();  // cum and carry complete
      const double total = carry;
      auto draw = [&](int64_t s) {
        const double t = __dmul_rn(philox_uniform(seed, offset, static_cast<uint64_t>(r * k + s)), total);
        int64_t lo = 0, hi = C;  // first c with cum[c] > t
        while (lo < hi) {
          const int64_t mid = (lo + hi) >> 1;
          if (cum[mid] > t)
            hi = mid;
          else
            lo = mid + 1;
        }
        if (lo >= C) {  // u * total rounded up to total (as the CPU: never a zero-weight category)
          lo = C - 1;
          while (lo > 0 && cum[lo] == cum[lo - 1]) --lo;
        }
        o[s] = total > 0.0 && total - total == 0.0 ? lo : -1;
      };
      if (replace) {
        for (int64_t s = tid; s < k; s += kThreads) draw(s);
      } else if (tid == 0) {
        draw(round);
      }
      __syncthreads();  // o[round] visible before the next round
    }
  }
}

bool refuse_capture(const TsrKernelArgs* a) {
  return stream_is_capturing(stream_of(a));
}

}  // namespace

int32_t kernel_dropout(const TsrKernelArgs* a) {
  if (a->num_inputs != 1 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected one input and one output");
  const TsrTensorDesc &x = a->inputs[0], &y = a->outputs[0];
  if (!is_float_dtype(x.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", x.dtype);
  if (y.dtype != x.dtype || y.ndim != x.ndim || numel(y) != numel(x) || !is_contiguous(x) ||
      !is_contiguous(y))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "x %s and y %s must be contiguous with one sizes and dtype",
                ShapeText(x).s, ShapeText(y).s);
  const double p = a->attrs->hp[0];
  if (!(p >= 0.0 && p <= 1.0)) return fail(a, TSR_ERR_INVALID_ARGUMENT, "p = %g must be in [0, 1]", p);
  if (p > 0.0 && p < 1.0 && refuse_capture(a))
    return fail(
        a, TSR_ERR_NOT_IMPLEMENTED,
        "dropout cannot be captured in a CUDA graph (the generator's offset would repeat on every replay)");
  const int64_t n = numel(x);
  const cudaStream_t s = stream_of(a);
  const int sms = sm_count(device_of(a)) > 0 ? sm_count(device_of(a)) : 1;
  int64_t blocks = ceil_div(ceil_div(n, 4), kThreads);
  if (blocks > 32LL * sms) blocks = 32LL * sms;
  const double keep = p < 1.0 ? 1.0 - p : 2.0;  // p = 1: every element "kept" with scale 0: x * 0 keeps NaN
  dispatch_float(x.dtype, [&](auto z) {
    using T = decltype(z);
    using A = acc_t<T>;
    const A scale = p < 1.0 ? A(1) / static_cast<A>(keep) : A(0);
    const T* xp = static_cast<const T*>(x.data);
    T* yp = static_cast<T*>(y.data);
    const bool vec = sizeof(T) * 4 <= 16 && aligned_to(xp, sizeof(T) * 4) && aligned_to(yp, sizeof(T) * 4);
    if (vec)
      dropout_kernel<T, true>
          <<<grid_cap(blocks), kThreads, 0, s>>>(xp, yp, n, a->attrs->seed, a->attrs->offset, keep, scale);
    else
      dropout_kernel<T, false>
          <<<grid_cap(blocks), kThreads, 0, s>>>(xp, yp, n, a->attrs->seed, a->attrs->offset, keep, scale);
  });
  return check_launch(a, "dropout_kernel");
}

int32_t kernel_multinomial(const TsrKernelArgs* a) {
  if (a->num_inputs != 1 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected probs and one output");
  const TsrTensorDesc &pr = a->inputs[0], &out = a->outputs[0];
  if (!is_float_dtype(pr.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", pr.dtype);
  if (pr.ndim != 2 || !is_contiguous(pr))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "probs must be a contiguous [R, C] tensor (got %s)",
                ShapeText(pr).s);
  const int64_t R = pr.sizes[0], C = pr.sizes[1], k = a->attrs->index;
  if (out.dtype != TSR_INT64 || out.ndim != 2 || out.sizes[0] != R || out.sizes[1] != k ||
      !is_contiguous(out))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "out must be a contiguous int64 [%lld, %lld] tensor (got %s)",
                static_cast<long long>(R), static_cast<long long>(k), ShapeText(out).s);
  const bool replace = a->attrs->hp[0] != 0;
  if (!replace && k > C)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "cannot draw %lld samples from %lld categories without replacement",
                static_cast<long long>(k), static_cast<long long>(C));
  if (refuse_capture(a))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED,
                "multinomial cannot be captured in a CUDA graph (the generator's offset would repeat on "
                "every replay)");
  const cudaStream_t s = stream_of(a);
  const int dev = device_of(a);
  const int sms = sm_count(dev) > 0 ? sm_count(dev) : 1;
  // A cumulative-sum row per block, at most 64 MiB in all (at least one block).
  int64_t grid = std::min<int64_t>(R, 4LL * sms);
  const int64_t row_bytes = C * static_cast<int64_t>(sizeof(double));
  if (grid * row_bytes > (int64_t{64} << 20)) grid = std::max<int64_t>(1, (int64_t{64} << 20) / row_bytes);
  Scratch cum(dev, static_cast<size_t>(grid * row_bytes), s);
  if (!cum)
    return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %lld bytes of cumulative sums",
                static_cast<long long>(grid * row_bytes));
  dispatch_float(pr.dtype, [&](auto z) {
    using T = decltype(z);
    multinomial_kernel<T><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(
        static_cast<const T*>(pr.data), static_cast<int64_t*>(out.data), cum.as<double>(), R, C, k, replace,
        a->attrs->seed, a->attrs->offset);
  });
  return check_launch(a, "multinomial_kernel");
}

}  // namespace tcu
