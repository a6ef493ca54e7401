// Random kernels that read an input (ops.def kind SAMPLE): dropout and multinomial, from
// Philox4x32-10 (cpu.h) with the counter layout of plugin.h's RANDOM ops, so results depend
// only on (seed, offset) and element positions, never on how threads split the work.
#include <atomic>
#include <vector>

#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kGrainGroups = 4096;  // Philox counters (4 elements each) per task

// ---------------------------------------------------------------------------------------
// dropout: y[i] = x[i] / (1 - p) if u(i) < 1 - p (bernoulli_'s rule), else 0

template <class S>
struct DropoutK {
  using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
  // elements [4 * g0, min(n, 4 * g1))
  static TSR_INLINE void run(const S* x, S* y, int64_t n, int64_t g0, int64_t g1, uint64_t seed, uint64_t offset,
                             uint64_t keep_below, C scale) {
    for (int64_t grp = g0; grp < g1; ++grp) {
      uint32_t lanes[4];
      philox4x32_10(seed, offset + static_cast<uint64_t>(grp), lanes);
      const int64_t i0 = 4 * grp, m = std::min<int64_t>(4, n - i0);
      for (int64_t j = 0; j < m; ++j)
        y[i0 + j] = lanes[j] < keep_below ? cast<S>(cast<C>(x[i0 + j]) * scale) : cast<S>(C(0));
    }
  }
};

void dropout_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &x = a->inputs[0], &y = a->outputs[0];
  if (!is_float_dtype(x.dtype) || y.dtype != x.dtype || elem_count(y) != elem_count(x))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "x %s %s and y %s %s must share a float dtype and a shape",
                dtype_name(x.dtype), ShapeStr(x).c_str(), dtype_name(y.dtype), ShapeStr(y).c_str());
  const double p = a->attrs->hp[0];
  if (!(p >= 0 && p <= 1)) raise_error(TSR_ERR_INVALID_ARGUMENT, "p must be in [0, 1], got %g", p);
  const int64_t n = elem_count(x);
  dispatch_float_storage(x.dtype, [&](auto st) {
    using S = decltype(st);
    using C = typename DropoutK<S>::C;
    const S* xp = static_cast<const S*>(x.data);
    S* yp = static_cast<S*>(y.data);
    if (p == 0) {  // every u < 1: all kept, scale 1
      std::memcpy(static_cast<void*>(yp), xp, sizeof(S) * n);
      return;
    }
    if (p == 1) {  // torch: x * 0 (NaN stays NaN)
      for (int64_t i = 0; i < n; ++i) yp[i] = cast<S>(cast<C>(xp[i]) * C(0));
      return;
    }
    const C scale = C(1) / static_cast<C>(1.0 - p);
    const uint64_t keep_below = philox_threshold(1.0 - p), seed = a->attrs->seed, offset = a->attrs->offset;
    state_of(a).pool.parallel_for((n + 3) / 4, kGrainGroups, [&](int64_t g0, int64_t g1) {
      isa_run<DropoutK<S>>(xp, yp, n, g0, g1, seed, offset, keep_below, scale);
    });
  });
}

// ---------------------------------------------------------------------------------------
// multinomial: sample s of row r takes u(r * ns + s) and the first category whose
// cumulative weight (a sequential float64 sum) exceeds u * total

void multinomial_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &probs = a->inputs[0], &out = a->outputs[0];
  if (!is_float_dtype(probs.dtype) || probs.ndim < 1 || probs.ndim > 2)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "probs must be a 1-D or 2-D float tensor, got %s %s",
                dtype_name(probs.dtype), ShapeStr(probs).c_str());
  const int64_t C = probs.sizes[probs.ndim - 1], R = probs.ndim == 2 ? probs.sizes[0] : 1;
  const int64_t ns = a->attrs->index;
  const bool replacement = a->attrs->hp[0] != 0;
  if (out.dtype != TSR_INT64 || elem_count(out) != R * ns)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "out must be int64 [%lld, %lld], got %s %s",
                static_cast<long long>(R), static_cast<long long>(ns), dtype_name(out.dtype),
                ShapeStr(out).c_str());
  if (ns <= 0 || (!replacement && ns > C))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "cannot take %lld samples of %lld categories %s replacement",
                static_cast<long long>(ns), static_cast<long long>(C), replacement ? "with" : "without");
  // the weights in double, checked before any parallel work
  std::vector<double> w(R * C);
  load_run(TSR_FLOAT64, probs.dtype, static_cast<const char*>(probs.data), dtype_size(probs.dtype), R * C,
           w.data());
  for (int64_t r = 0; r < R; ++r) {
    double total = 0;
    int64_t positive = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double v = w[r * C + c];
      if (!(v >= 0) || std::isinf(v))
        raise_error(TSR_ERR_INVALID_ARGUMENT, "probs %s row %lld holds %g: weights must be finite and >= 0",
                    ShapeStr(probs).c_str(), static_cast<long long>(r), v);
      total += v;
      positive += v > 0;
    }
    if (!(total > 0))
      raise_error(TSR_ERR_INVALID_ARGUMENT, "probs %s row %lld sums to 0", ShapeStr(probs).c_str(),
                  static_cast<long long>(r));
    if (!replacement && positive < ns)
      raise_error(TSR_ERR_INVALID_ARGUMENT,
                  "probs %s row %lld has %lld categories of nonzero weight, fewer than %lld samples without "
                  "replacement",
                  ShapeStr(probs).c_str(), static_cast<long long>(r), static_cast<long long>(positive),
                  static_cast<long long>(ns));
  }
  int64_t* res = static_cast<int64_t*>(out.data);
  const uint64_t seed = a->attrs->seed, offset = a->attrs->offset;
  auto unit = [&](uint64_t e) {
    uint32_t lanes[4];
    philox4x32_10(seed, offset + e / 4, lanes);
    return (static_cast<double>(lanes[e % 4]) + 0.5) * 0x1.0p-32;
  };
  const int64_t grain = std::max<int64_t>(1, 16384 / (C * (replacement ? 1 : ns)));
  state_of(a).pool.parallel_for(R, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      double* row = w.data() + r * C;
      if (replacement) {
        for (int64_t c = 1; c < C; ++c) row[c] += row[c - 1];  // cumulative, in place
        const double total = row[C - 1];
        for (int64_t s = 0; s < ns; ++s) {
          const double target = unit(static_cast<uint64_t>(r * ns + s)) * total;
          int64_t c = std::upper_bound(row, row + C, target) - row;  // first cum > target
          if (c >= C) c = C - 1;
          while (c > 0 && row[c] == row[c - 1]) --c;  // never a zero-weight category
          res[r * ns + s] = c;
        }
      } else {
        for (int64_t s = 0; s < ns; ++s) {
          double total = 0;
          for (int64_t c = 0; c < C; ++c) total += row[c];
          const double target = unit(static_cast<uint64_t>(r * ns + s)) * total;
          double cum = 0;
          int64_t pick = -1, last_positive = 0;
          for (int64_t c = 0; c < C; ++c) {
            if (row[c] > 0) last_positive = c;
            cum += row[c];
            if (cum > target) {
              pick = c;
              break;
            }
          }
          if (pick < 0) pick = last_positive;  // u * total rounded up to total
          res[r * ns + s] = pick;
          row[pick] = 0;  // leaves the sum
        }
      }
    }
  });
}

}  // namespace

int32_t kernel_dropout(const TsrKernelArgs* a) {
  return run_kernel(a, &dropout_body);
}
int32_t kernel_multinomial(const TsrKernelArgs* a) {
  return run_kernel(a, &multinomial_body);
}

}  // namespace tessera_cpu
