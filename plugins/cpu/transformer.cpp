// Fused transformer kernels of the CPU plugin (ops.def kinds NN and FOREACH): layer_norm and
// cross_entropy with their backwards, one pass over each row while it sits in cache (rows in
// parallel; float16/bfloat16 rows converted to float32 first), and grad_norm/clip_grad_scale
// over a list of tensors. Every sum across rows (layer_norm's dw/db, grad_norm) runs over a
// fixed partition that depends only on the shapes, so results are bit-identical whatever the
// thread count. Attention is in attention.cpp, INDEX ops in indexing.cpp, SAMPLE ops in
// sampling.cpp.
#include <atomic>
#include <limits>
#include <vector>

#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kGrain = 16384;   // elements per task
constexpr int64_t kMaxChunks = 64;  // parts of a fixed partition of a cross-row sum

// The statistics type of a float dtype: float32, float64 for float64 (ops.def NN).
template <class S>
using StatOf = std::conditional_t<std::is_same_v<S, double>, double, float>;

void check_float(const TsrTensorDesc& d, const char* what) {
  if (!is_float_dtype(d.dtype))
    raise_error(TSR_ERR_TYPE, "%s must be a float tensor, got %s", what, dtype_name(d.dtype));
}

// n values of a float tensor (any float dtype, contiguous) into dst as C.
template <class C>
void load_vector(const TsrTensorDesc& d, int64_t n, C* dst) {
  load_run(std::is_same_v<C, double> ? TSR_FLOAT64 : TSR_FLOAT32, d.dtype, static_cast<const char*>(d.data),
           dtype_size(d.dtype), n, dst);
}
template <class C>
void store_vector(const C* src, int64_t n, const TsrTensorDesc& d) {
  store_run(std::is_same_v<C, double> ? TSR_FLOAT64 : TSR_FLOAT32, d.dtype, src, n,
            static_cast<char*>(d.data), dtype_size(d.dtype));
}

// One value of element i of a contiguous float tensor, in double.
double read_at(const TsrTensorDesc& d, int64_t i) {
  double v;
  load_run(TSR_FLOAT64, d.dtype, static_cast<const char*>(d.data) + i * dtype_size(d.dtype), 0, 1, &v);
  return v;
}

// Row r of a contiguous (rows, n) tensor of storage type S as const C*: the row itself when
// S is C, else converted into buf.
template <class C, class S>
TSR_INLINE const C* row_as(const S* base, int64_t r, int64_t n, C* buf) {
  if constexpr (std::is_same_v<S, C>) {
    return base + r * n;
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = cast<C>(base[r * n + i]);
    return buf;
  }
}
template <class C, class S>
TSR_INLINE void put_row(const C* src, S* base, int64_t r, int64_t n) {
  if constexpr (!std::is_same_v<S, C>)
    for (int64_t i = 0; i < n; ++i) base[r * n + i] = cast<S>(src[i]);
}
// Where a row result goes: straight into the output when S is C, else into buf first.
template <class C, class S>
TSR_INLINE C* out_row(S* base, int64_t r, int64_t n, C* buf) {
  if constexpr (std::is_same_v<S, C>)
    return base + r * n;
  else
    return buf;
}

// ---------------------------------------------------------------------------------------
// Row primitives (TSR_INLINE: compiled into both ISA variants)

// Sum of x[0..n): 16 lanes of C within 4096-element blocks, blocks added in double.
template <class C>
TSR_INLINE double lane_sum(const C* x, int64_t n) {
  double total = 0;
  for (int64_t b = 0; b < n; b += 4096) {
    const int64_t m = std::min<int64_t>(4096, n - b);
    const C* xb = x + b;
    C acc[16] = {};
    int64_t i = 0;
    for (; i + 16 <= m; i += 16)
      for (int j = 0; j < 16; ++j) acc[j] += xb[i + j];
    for (; i < m; ++i) acc[i % 16] += xb[i];
    for (int w = 8; w > 0; w /= 2)
      for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
    total += acc[0];
  }
  return total;
}

// Sum of (x - mean)^2, as lane_sum.
template <class C>
TSR_INLINE double lane_sq_dev(const C* x, int64_t n, C mean) {
  double total = 0;
  for (int64_t b = 0; b < n; b += 4096) {
    const int64_t m = std::min<int64_t>(4096, n - b);
    const C* xb = x + b;
    C acc[16] = {};
    int64_t i = 0;
    for (; i + 16 <= m; i += 16)
      for (int j = 0; j < 16; ++j) {
        const C d = xb[i + j] - mean;
        acc[j] += d * d;
      }
    for (; i < m; ++i) {
      const C d = xb[i] - mean;
      acc[i % 16] += d * d;
    }
    for (int w = 8; w > 0; w /= 2)
      for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
    total += acc[0];
  }
  return total;
}

// Max of x[0..n) (-inf when n == 0); NaN if any element is NaN. GCC vector types: the
// compare-select reduction does not auto-vectorize without fast-math.
template <class C>
TSR_INLINE C row_max(const C* x, int64_t n) {
  typedef C V __attribute__((vector_size(32)));
  constexpr int kW = 32 / sizeof(C);
  const C lowest = -std::numeric_limits<C>::infinity();
  V acc = lowest - V{};
  auto nan = acc != acc;
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    V v;
    std::memcpy(&v, x + i, sizeof(V));
    acc = v > acc ? v : acc;
    nan |= v != v;
  }
  C r = lowest;
  bool any_nan = false;
  for (int j = 0; j < kW; ++j) {
    r = acc[j] > r ? acc[j] : r;
    any_nan |= nan[j] != 0;
  }
  for (; i < n; ++i) {
    r = x[i] > r ? x[i] : r;
    any_nan |= x[i] != x[i];
  }
  return any_nan ? std::numeric_limits<C>::quiet_NaN() : r;
}

// Sum of e^(x - shift) over x[0..n), shift finite and >= every x (terms in (0, 1]).
template <class C>
TSR_INLINE double sum_exp_shifted(const C* x, int64_t n, C shift) {
  if constexpr (std::is_same_v<C, float>) {
    double total = 0;
    const F32x8 s = shift - F32x8{};
    for (int64_t b = 0; b < n; b += 4096) {
      const int64_t m = std::min<int64_t>(4096, n - b);
      const float* xb = x + b;
      F32x8 acc0 = {}, acc1 = {};
      int64_t i = 0;
      for (; i + 16 <= m; i += 16) {
        F32x8 v0, v1;
        std::memcpy(&v0, xb + i, sizeof v0);
        std::memcpy(&v1, xb + i + 8, sizeof v1);
        acc0 += exp_nonpositive(v0 - s);
        acc1 += exp_nonpositive(v1 - s);
      }
      acc0 += acc1;
      float t = 0;
      for (int j = 0; j < 8; ++j) t += acc0[j];
      for (; i < m; ++i) t += exp_f32(xb[i] - shift);
      total += t;
    }
    return total;
  } else {
    double acc[4] = {};
    for (int64_t i = 0; i < n; ++i) acc[i % 4] += std::exp(x[i] - shift);
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
}

// e[i] = e^(x[i] - shift) for x[i] - shift <= 0.
template <class C>
TSR_INLINE void exp_shifted(const C* x, int64_t n, C shift, C* e) {
  int64_t i = 0;
  if constexpr (std::is_same_v<C, float>) {
    const F32x8 s = shift - F32x8{};
    for (; i + 8 <= n; i += 8) {
      F32x8 v;
      std::memcpy(&v, x + i, sizeof v);
      v = exp_nonpositive(v - s);
      std::memcpy(e + i, &v, sizeof v);
    }
  }
  for (; i < n; ++i) e[i] = exp_c(x[i] - shift);
}

// ---------------------------------------------------------------------------------------
// layer_norm: y = (x - mean) * rstd * w + b over rows of x (R, C); var biased.

template <class C>
struct LnForwardK {
  // One row: y[0..n) and its statistics.
  static TSR_INLINE void run(const C* x, int64_t n, const C* w, const C* b, C eps, C* y, C* mean_out,
                             C* rstd_out) {
    const C mean = static_cast<C>(lane_sum(x, n) / static_cast<double>(n));
    const C var = static_cast<C>(lane_sq_dev(x, n, mean) / static_cast<double>(n));
    const C rstd = C(1) / std::sqrt(var + eps);
    if (w != nullptr && b != nullptr) {
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
    } else if (w != nullptr) {
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * w[i];
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd;
    }
    *mean_out = mean;
    *rstd_out = rstd;
  }
};

// The (R, C) view of layer_norm's x: its last dims flattened as ops.def says (2-D when the
// runtime has flattened them already, else the last attrs->dim dims).
void ln_shape(const TsrKernelArgs* a, int64_t& R, int64_t& C) {
  const TsrTensorDesc& x = a->inputs[0];
  const int nd = x.ndim <= 2 ? 1 : static_cast<int>(std::clamp<int64_t>(a->attrs->dim, 1, x.ndim));
  C = 1;
  for (int d = x.ndim - nd; d < x.ndim; ++d) C *= x.sizes[d];
  R = C > 0 ? elem_count(x) / C : 0;
}

void check_ln_vector(const TsrTensorDesc& v, int64_t C, const char* what, const TsrTensorDesc& x) {
  check_float(v, what);
  if (elem_count(v) != C)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "%s %s does not match the %lld normalized elements of x %s", what,
                ShapeStr(v).c_str(), static_cast<long long>(C), ShapeStr(x).c_str());
}

void check_ln_stat(const TsrTensorDesc& s, int64_t R, const char* what, int32_t stat_dtype) {
  if (s.dtype != stat_dtype || elem_count(s) != R)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "%s must be %s with %lld elements, got %s %s", what,
                dtype_name(stat_dtype), static_cast<long long>(R), dtype_name(s.dtype), ShapeStr(s).c_str());
}

void layer_norm_body(const TsrKernelArgs* a) {
  const TsrTensorDesc& x = a->inputs[0];
  const TsrTensorDesc& y = a->outputs[0];
  int64_t R, C;
  ln_shape(a, R, C);
  check_float(x, "x");
  if (y.dtype != x.dtype || elem_count(y) != elem_count(x))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "y %s %s does not match x %s %s", dtype_name(y.dtype),
                ShapeStr(y).c_str(), dtype_name(x.dtype), ShapeStr(x).c_str());
  const bool has_w = a->num_inputs > 1, has_b = a->num_inputs > 2;
  if (has_w) check_ln_vector(a->inputs[1], C, "weight", x);
  if (has_b) check_ln_vector(a->inputs[2], C, "bias", x);
  const double eps = a->attrs->hp[0];
  dispatch_float_storage(x.dtype, [&](auto s) {
    using S = decltype(s);
    using T = StatOf<S>;
    const int32_t stat_dtype = std::is_same_v<T, double> ? TSR_FLOAT64 : TSR_FLOAT32;
    T* mean = nullptr;
    T* rstd = nullptr;
    if (a->num_outputs >= 3) {
      check_ln_stat(a->outputs[1], R, "mean", stat_dtype);
      check_ln_stat(a->outputs[2], R, "rstd", stat_dtype);
      mean = static_cast<T*>(a->outputs[1].data);
      rstd = static_cast<T*>(a->outputs[2].data);
    }
    std::vector<T> wb(has_w ? (has_b ? 2 * C : C) : 0);
    if (has_w) load_vector(a->inputs[1], C, wb.data());
    if (has_b) load_vector(a->inputs[2], C, wb.data() + C);
    const T* w = has_w ? wb.data() : nullptr;
    const T* b = has_b ? wb.data() + C : nullptr;
    const S* xs = static_cast<const S*>(x.data);
    S* ys = static_cast<S*>(y.data);
    std::atomic<bool> failed{false};
    state_of(a).pool.parallel_for(R, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)),
                                  [&](int64_t r0, int64_t r1) {
                                    TaskBuffer<T> buf(std::is_same_v<S, T> ? 0 : 2 * C);
                                    if (buf.data() == nullptr) return void(failed = true);
                                    for (int64_t r = r0; r < r1; ++r) {
                                      const T* xr = row_as<T>(xs, r, C, buf.data());
                                      T* yr = out_row<T>(ys, r, C, buf.data() + C);
                                      T m, rs;
                                      isa_run<LnForwardK<T>>(xr, C, w, b, static_cast<T>(eps), yr, &m, &rs);
                                      put_row(yr, ys, r, C);
                                      if (mean != nullptr) {
                                        mean[r] = m;
                                        rstd[r] = rs;
                                      }
                                    }
                                  });
    if (failed)
      raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for a row buffer of %lld elements",
                  static_cast<long long>(C));
  });
}

// One row of the gradient: xhat = (x - mean) rstd, gw = g w (or g),
// dx = rstd (gw - mean(gw) - xhat mean(gw xhat)); dw += g xhat, db += g (in double).
template <class C>
struct LnBackwardK {
  static TSR_INLINE void run(const C* __restrict g, const C* __restrict x, int64_t n, C mean, C rstd,
                             const C* __restrict w, C* __restrict dx, double* __restrict dw,
                             double* __restrict db) {
    typedef C V __attribute__((vector_size(32)));
    constexpr int kW = 32 / sizeof(C);
    V va = {}, vb = {};  // lanes of the sums of gw and gw (x - mean)
    int64_t i = 0;
    for (; i + kW <= n; i += kW) {
      V gv, xv, wv;
      std::memcpy(&gv, g + i, sizeof(V));
      std::memcpy(&xv, x + i, sizeof(V));
      if (w != nullptr) {
        std::memcpy(&wv, w + i, sizeof(V));
        gv *= wv;
      }
      va += gv;
      vb += gv * (xv - mean);
    }
    C sa = 0, sb = 0;
    for (int j = 0; j < kW; ++j) {
      sa += va[j];
      sb += vb[j];
    }
    for (; i < n; ++i) {
      const C gw = w != nullptr ? g[i] * w[i] : g[i];
      sa += gw;
      sb += gw * (x[i] - mean);
    }
    const C inv_n = C(1) / static_cast<C>(n);
    const C a = sa * inv_n, bm = sb * rstd * inv_n;
    if (w != nullptr) {
      for (int64_t k = 0; k < n; ++k) {
        const C xhat = (x[k] - mean) * rstd;
        dx[k] = rstd * (g[k] * w[k] - a - xhat * bm);
      }
      for (int64_t k = 0; k < n; ++k) {
        dw[k] += static_cast<double>(g[k] * ((x[k] - mean) * rstd));
        db[k] += static_cast<double>(g[k]);
      }
    } else {
      for (int64_t k = 0; k < n; ++k) dx[k] = rstd * (g[k] - a - (x[k] - mean) * rstd * bm);
    }
  }
};

void layer_norm_backward_body(const TsrKernelArgs* a) {
  if (a->num_inputs < 4) raise_error(TSR_ERR_INVALID_ARGUMENT, "expects grad, x, mean, rstd [, weight]");
  const TsrTensorDesc& g = a->inputs[0];
  const TsrTensorDesc& x = a->inputs[1];
  const TsrTensorDesc& dx = a->outputs[0];
  const int64_t R = elem_count(a->inputs[2]);  // one statistic per row
  const int64_t C = R > 0 ? elem_count(x) / R : 0;
  check_float(x, "x");
  if (R * C != elem_count(x))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "mean %s does not give x %s whole rows",
                ShapeStr(a->inputs[2]).c_str(), ShapeStr(x).c_str());
  if (g.dtype != x.dtype || elem_count(g) != elem_count(x) || dx.dtype != x.dtype ||
      elem_count(dx) != elem_count(x))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "grad %s %s and dx %s %s must match x %s %s", dtype_name(g.dtype),
                ShapeStr(g).c_str(), dtype_name(dx.dtype), ShapeStr(dx).c_str(), dtype_name(x.dtype),
                ShapeStr(x).c_str());
  const bool has_w = a->num_inputs > 4;
  if (has_w) {
    check_ln_vector(a->inputs[4], C, "weight", x);
    if (a->num_outputs < 3) raise_error(TSR_ERR_INVALID_ARGUMENT, "with a weight the outputs are dx, dw, db");
    check_ln_vector(a->outputs[1], C, "dw", x);
    check_ln_vector(a->outputs[2], C, "db", x);
  }
  dispatch_float_storage(x.dtype, [&](auto s) {
    using S = decltype(s);
    using T = StatOf<S>;
    const int32_t stat_dtype = std::is_same_v<T, double> ? TSR_FLOAT64 : TSR_FLOAT32;
    check_ln_stat(a->inputs[2], R, "mean", stat_dtype);
    check_ln_stat(a->inputs[3], R, "rstd", stat_dtype);
    const T* mean = static_cast<const T*>(a->inputs[2].data);
    const T* rstd = static_cast<const T*>(a->inputs[3].data);
    std::vector<T> w(has_w ? C : 0);
    if (has_w) load_vector(a->inputs[4], C, w.data());
    // fixed partition of the rows: the dw/db partial sums of each part, added in order
    int64_t rows_per_part = std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1));
    int64_t parts = (R + rows_per_part - 1) / rows_per_part;
    if (parts > kMaxChunks) {
      rows_per_part = (R + kMaxChunks - 1) / kMaxChunks;
      parts = (R + rows_per_part - 1) / rows_per_part;
    }
    std::vector<double> partial(has_w ? 2 * C * parts : 0, 0.0);  // part p: dw [C], db [C]
    const S* gs = static_cast<const S*>(g.data);
    const S* xs = static_cast<const S*>(x.data);
    S* dxs = static_cast<S*>(dx.data);
    std::atomic<bool> failed{false};
    state_of(a).pool.parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      TaskBuffer<T> buf(std::is_same_v<S, T> ? 0 : 3 * C);
      if (buf.data() == nullptr) return void(failed = true);
      for (int64_t p = p0; p < p1; ++p) {
        double* dw = has_w ? partial.data() + 2 * C * p : nullptr;
        double* db = has_w ? dw + C : nullptr;
        for (int64_t r = p * rows_per_part; r < std::min(R, (p + 1) * rows_per_part); ++r) {
          const T* gr = row_as<T>(gs, r, C, buf.data());
          const T* xr = row_as<T>(xs, r, C, buf.data() + C);
          T* dxr = out_row<T>(dxs, r, C, buf.data() + 2 * C);
          isa_run<LnBackwardK<T>>(gr, xr, C, mean[r], rstd[r], has_w ? w.data() : nullptr, dxr, dw, db);
          put_row(dxr, dxs, r, C);
        }
      }
    });
    if (failed)
      raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for a row buffer of %lld elements",
                  static_cast<long long>(C));
    if (!has_w) return;
    std::vector<double> sums(2 * C, 0.0);
    for (int64_t p = 0; p < parts; ++p)
      for (int64_t c = 0; c < 2 * C; ++c) sums[c] += partial[2 * C * p + c];
    store_vector(sums.data(), C, a->outputs[1]);
    store_vector(sums.data() + C, C, a->outputs[2]);
  });
}

// ---------------------------------------------------------------------------------------
// cross_entropy: loss = (1-eps)(lse - x[t]) + eps (lse - mean(x)), 0 where t is ignored.

struct CeGeom {
  int64_t N, C, ignore_index;
  double eps;
  const int64_t* target;
};

// The shapes, and every target either the ignore_index or in [0, C) (checked before any
// parallel work).
CeGeom ce_geom(const TsrKernelArgs* a, const TsrTensorDesc& logits, const TsrTensorDesc& target) {
  check_float(logits, "logits");
  if (logits.ndim != 2)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "logits must be 2-D [N, C], got %s", ShapeStr(logits).c_str());
  CeGeom g{logits.sizes[0], logits.sizes[1], static_cast<int64_t>(a->attrs->hp[0]), a->attrs->hp[1],
           static_cast<const int64_t*>(target.data)};
  if (target.dtype != TSR_INT64 || elem_count(target) != g.N)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "target must be int64 with %lld elements, got %s %s",
                static_cast<long long>(g.N), dtype_name(target.dtype), ShapeStr(target).c_str());
  for (int64_t r = 0; r < g.N; ++r) {
    const int64_t t = g.target[r];
    if (t != g.ignore_index && (t < 0 || t >= g.C))
      raise_error(TSR_ERR_INDEX, "target %lld is out of bounds for %lld classes (logits %s)",
                  static_cast<long long>(t), static_cast<long long>(g.C), ShapeStr(logits).c_str());
  }
  return g;
}

template <class C>
struct CeForwardK {
  // One row: its log-sum-exp and loss.
  static TSR_INLINE void run(const C* x, int64_t n, int64_t t, bool ignored, C eps, C* lse_out, C* loss_out) {
    const C m = row_max(x, n);
    constexpr C kInf = std::numeric_limits<C>::infinity();
    C lse;
    if (m == m && m != kInf && m != -kInf)
      lse = m + static_cast<C>(std::log(sum_exp_shifted(x, n, m)));
    else  // a NaN or +inf logit: NaN, as torch's log_softmax; every logit -inf: -inf (NaN loss)
      lse = m == -kInf ? m : std::numeric_limits<C>::quiet_NaN();
    C loss = 0;
    if (!ignored) {
      loss = (C(1) - eps) * (lse - x[t]);
      if (eps != C(0)) loss += eps * (lse - static_cast<C>(lane_sum(x, n) / static_cast<double>(n)));
    }
    *lse_out = lse;
    *loss_out = loss;
  }
};

void cross_entropy_body(const TsrKernelArgs* a) {
  if (a->num_inputs < 2) raise_error(TSR_ERR_INVALID_ARGUMENT, "expects logits, target");
  const TsrTensorDesc& x = a->inputs[0];
  const CeGeom g = ce_geom(a, x, a->inputs[1]);
  const TsrTensorDesc& loss = a->outputs[0];
  if (loss.dtype != x.dtype || elem_count(loss) != g.N)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "loss must be %s with %lld elements, got %s %s",
                dtype_name(x.dtype), static_cast<long long>(g.N), dtype_name(loss.dtype),
                ShapeStr(loss).c_str());
  dispatch_float_storage(x.dtype, [&](auto s) {
    using S = decltype(s);
    using T = StatOf<S>;
    T* lse = nullptr;
    if (a->num_outputs >= 2) {
      check_ln_stat(a->outputs[1], g.N, "lse", std::is_same_v<T, double> ? TSR_FLOAT64 : TSR_FLOAT32);
      lse = static_cast<T*>(a->outputs[1].data);
    }
    const S* xs = static_cast<const S*>(x.data);
    S* ls = static_cast<S*>(loss.data);
    std::atomic<bool> failed{false};
    state_of(a).pool.parallel_for(
        g.N, std::max<int64_t>(1, kGrain / std::max<int64_t>(g.C, 1)), [&](int64_t r0, int64_t r1) {
          TaskBuffer<T> buf(std::is_same_v<S, T> ? 0 : g.C);
          if (buf.data() == nullptr) return void(failed = true);
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t t = g.target[r];
            const bool ignored = t == g.ignore_index;
            const T* xr = row_as<T>(xs, r, g.C, buf.data());
            T l, v;
            isa_run<CeForwardK<T>>(xr, g.C, ignored ? int64_t{0} : t, ignored, static_cast<T>(g.eps), &l, &v);
            ls[r] = cast<S>(v);
            if (lse != nullptr) lse[r] = l;
          }
        });
    if (failed)
      raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for a row buffer of %lld elements",
                  static_cast<long long>(g.C));
  });
}

template <class C>
struct CeBackwardK {
  // One row: dx = grad (softmax - (1-eps) onehot(t) - eps/n).
  static TSR_INLINE void run(const C* x, int64_t n, int64_t t, C grad, C lse, C eps, C* dx) {
    if (lse == lse && lse != std::numeric_limits<C>::infinity() &&
        lse != -std::numeric_limits<C>::infinity()) {
      exp_shifted(x, n, lse, dx);
    } else {
      for (int64_t i = 0; i < n; ++i) dx[i] = exp_c(x[i] - lse);
    }
    const C smooth = eps / static_cast<C>(n);
    for (int64_t i = 0; i < n; ++i) dx[i] = grad * (dx[i] - smooth);
    dx[t] -= grad * (C(1) - eps);
  }
};

void cross_entropy_backward_body(const TsrKernelArgs* a) {
  if (a->num_inputs < 4) raise_error(TSR_ERR_INVALID_ARGUMENT, "expects grad, logits, target, lse");
  const TsrTensorDesc& grad = a->inputs[0];
  const TsrTensorDesc& x = a->inputs[1];
  const CeGeom g = ce_geom(a, x, a->inputs[2]);
  const TsrTensorDesc& dx = a->outputs[0];
  if (dx.dtype != x.dtype || elem_count(dx) != elem_count(x))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "dlogits %s %s must match logits %s %s", dtype_name(dx.dtype),
                ShapeStr(dx).c_str(), dtype_name(x.dtype), ShapeStr(x).c_str());
  check_float(grad, "grad");
  if (elem_count(grad) != g.N)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "grad %s must have %lld elements", ShapeStr(grad).c_str(),
                static_cast<long long>(g.N));
  dispatch_float_storage(x.dtype, [&](auto s) {
    using S = decltype(s);
    using T = StatOf<S>;
    check_ln_stat(a->inputs[3], g.N, "lse", std::is_same_v<T, double> ? TSR_FLOAT64 : TSR_FLOAT32);
    const T* lse = static_cast<const T*>(a->inputs[3].data);
    const S* xs = static_cast<const S*>(x.data);
    S* dxs = static_cast<S*>(dx.data);
    std::atomic<bool> failed{false};
    state_of(a).pool.parallel_for(g.N, std::max<int64_t>(1, kGrain / std::max<int64_t>(g.C, 1)),
                                  [&](int64_t r0, int64_t r1) {
                                    TaskBuffer<T> buf(std::is_same_v<S, T> ? 0 : 2 * g.C);
                                    if (buf.data() == nullptr) return void(failed = true);
                                    for (int64_t r = r0; r < r1; ++r) {
                                      const int64_t t = g.target[r];
                                      if (t == g.ignore_index) {
                                        std::memset(static_cast<void*>(dxs + r * g.C), 0, sizeof(S) * g.C);
                                        continue;
                                      }
                                      const T* xr = row_as<T>(xs, r, g.C, buf.data());
                                      T* dxr = out_row<T>(dxs, r, g.C, buf.data() + g.C);
                                      isa_run<CeBackwardK<T>>(xr, g.C, t, static_cast<T>(read_at(grad, r)),
                                                              lse[r], static_cast<T>(g.eps), dxr);
                                      put_row(dxr, dxs, r, g.C);
                                    }
                                  });
    if (failed)
      raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for a row buffer of %lld elements",
                  static_cast<long long>(g.C));
  });
}

// ---------------------------------------------------------------------------------------
// grad_norm: the p-norm of every element of t1..tn together; clip_grad_scale: ti *= coef.

constexpr int64_t kNormChunk = 32768;  // elements per partial sum (fixed: results do not
                                       // depend on the thread count)

enum class NormKind { Two, Inf, One, P };

// Partial of one contiguous run: sum of squares / max |x| (NaN wins) / sum |x| / sum |x|^p.
template <class S, NormKind K>
struct NormPartK {
  static TSR_INLINE double run(const S* x, int64_t n, double p) {
    using C = StatOf<S>;
    if constexpr (K == NormKind::Inf) {
      C m[8] = {};
      bool nan = false;
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) {
          const C v = std::fabs(cast<C>(x[i + j]));
          m[j] = v > m[j] ? v : m[j];
          nan |= v != v;
        }
      for (; i < n; ++i) {
        const C v = std::fabs(cast<C>(x[i]));
        m[0] = v > m[0] ? v : m[0];
        nan |= v != v;
      }
      C r = 0;
      for (int j = 0; j < 8; ++j) r = m[j] > r ? m[j] : r;
      return nan ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(r);
    } else {  // 8 lanes within 1024-element blocks, blocks added in order
      double total = 0;
      for (int64_t b = 0; b < n; b += 1024) {
        const int64_t m = std::min<int64_t>(1024, n - b);
        const S* xb = x + b;
        double acc[8] = {};
        int64_t i = 0;
        for (; i + 8 <= m; i += 8)
          for (int j = 0; j < 8; ++j) {
            const double v = static_cast<double>(cast<C>(xb[i + j]));
            acc[j] += K == NormKind::Two   ? v * v
                      : K == NormKind::One ? std::fabs(v)
                                           : std::pow(std::fabs(v), p);
          }
        for (; i < m; ++i) {
          const double v = static_cast<double>(cast<C>(xb[i]));
          acc[0] += K == NormKind::Two   ? v * v
                    : K == NormKind::One ? std::fabs(v)
                                         : std::pow(std::fabs(v), p);
        }
        total += ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
      }
      return total;
    }
  }
};

template <NormKind K>
double norm_part(const TsrTensorDesc& d, int64_t begin, int64_t end, double p) {
  double r = 0;
  dispatch_float_storage(d.dtype, [&](auto s) {
    using S = decltype(s);
    r = isa_run<NormPartK<S, K>>(static_cast<const S*>(d.data) + begin, end - begin, p);
  });
  return r;
}

void grad_norm_body(const TsrKernelArgs* a) {
  const double p = a->attrs->hp[0];
  if (!(p > 0)) raise_error(TSR_ERR_INVALID_ARGUMENT, "norm type must be > 0 (2 or inf), got %g", p);
  const NormKind kind = std::isinf(p) ? NormKind::Inf
                        : p == 2      ? NormKind::Two
                        : p == 1      ? NormKind::One
                                      : NormKind::P;
  bool any_double = false;
  struct Chunk {
    int32_t t;
    int64_t begin, end;
  };
  std::vector<Chunk> chunks;
  for (int32_t t = 0; t < a->num_inputs; ++t) {
    const TsrTensorDesc& d = a->inputs[t];
    check_float(d, "every tensor");
    any_double |= d.dtype == TSR_FLOAT64;
    const int64_t n = elem_count(d);
    for (int64_t b = 0; b < n; b += kNormChunk) chunks.push_back({t, b, std::min(n, b + kNormChunk)});
  }
  const TsrTensorDesc& out = a->outputs[0];
  if (elem_count(out) != 1 || out.dtype != (any_double ? TSR_FLOAT64 : TSR_FLOAT32))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "the result must be one %s element, got %s %s",
                any_double ? "float64" : "float32", dtype_name(out.dtype), ShapeStr(out).c_str());
  std::vector<double> partial(chunks.size());
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
  state_of(a).pool.parallel_for(nchunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const TsrTensorDesc& d = a->inputs[chunks[c].t];
      switch (kind) {
        case NormKind::Two:
          partial[c] = norm_part<NormKind::Two>(d, chunks[c].begin, chunks[c].end, p);
          break;
        case NormKind::Inf:
          partial[c] = norm_part<NormKind::Inf>(d, chunks[c].begin, chunks[c].end, p);
          break;
        case NormKind::One:
          partial[c] = norm_part<NormKind::One>(d, chunks[c].begin, chunks[c].end, p);
          break;
        default:
          partial[c] = norm_part<NormKind::P>(d, chunks[c].begin, chunks[c].end, p);
          break;
      }
    }
  });
  double total = 0;
  for (const double v : partial) {  // in chunk order
    if (kind != NormKind::Inf)
      total += v;
    else if (v != v || total != total)
      total = std::numeric_limits<double>::quiet_NaN();
    else if (v > total)
      total = v;
  }
  const double norm = kind == NormKind::Two ? std::sqrt(total)
                      : kind == NormKind::P ? std::pow(total, 1.0 / p)
                                            : total;
  store_double(out.dtype, out.data, norm);
}

template <class S>
struct ScaleK {
  static TSR_INLINE void run(S* x, int64_t n, StatOf<S> coef) {
    for (int64_t i = 0; i < n; ++i) x[i] = cast<S>(cast<StatOf<S>>(x[i]) * coef);
  }
};

void clip_grad_scale_body(const TsrKernelArgs* a) {
  if (a->num_inputs < 1) raise_error(TSR_ERR_INVALID_ARGUMENT, "expects total_norm");
  const TsrTensorDesc& total = a->inputs[0];
  if (elem_count(total) != 1 || (total.dtype != TSR_FLOAT32 && total.dtype != TSR_FLOAT64))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "total_norm must be one float32/float64 element, got %s %s",
                dtype_name(total.dtype), ShapeStr(total).c_str());
  const double max_norm = a->attrs->hp[0];
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6) in total's dtype, at most
  // 1 (a NaN total gives a NaN coef)
  double coef;
  if (total.dtype == TSR_FLOAT32) {
    const float c = static_cast<float>(max_norm) / (*static_cast<const float*>(total.data) + 1e-6f);
    coef = c > 1.0f ? 1.0 : static_cast<double>(c);
  } else {
    const double c = max_norm / (*static_cast<const double*>(total.data) + 1e-6);
    coef = c > 1.0 ? 1.0 : c;
  }
  for (int32_t t = 0; t < a->num_outputs; ++t) check_float(a->outputs[t], "every tensor");
  if (coef == 1.0) return;  // x * 1 == x bit for bit
  for (int32_t t = 0; t < a->num_outputs; ++t) {
    const TsrTensorDesc& d = a->outputs[t];
    const int64_t n = elem_count(d);
    dispatch_float_storage(d.dtype, [&](auto s) {
      using S = decltype(s);
      S* x = static_cast<S*>(d.data);
      const auto c = static_cast<StatOf<S>>(coef);
      state_of(a).pool.parallel_for(n, kGrain,
                                    [&](int64_t b, int64_t e) { isa_run<ScaleK<S>>(x + b, e - b, c); });
    });
  }
}

}  // namespace

int32_t kernel_layer_norm(const TsrKernelArgs* a) {
  return run_kernel(a, &layer_norm_body);
}
int32_t kernel_layer_norm_backward(const TsrKernelArgs* a) {
  return run_kernel(a, &layer_norm_backward_body);
}
int32_t kernel_cross_entropy(const TsrKernelArgs* a) {
  return run_kernel(a, &cross_entropy_body);
}
int32_t kernel_cross_entropy_backward(const TsrKernelArgs* a) {
  return run_kernel(a, &cross_entropy_backward_body);
}
int32_t kernel_grad_norm(const TsrKernelArgs* a) {
  return run_kernel(a, &grad_norm_body);
}
int32_t kernel_clip_grad_scale(const TsrKernelArgs* a) {
  return run_kernel(a, &clip_grad_scale_body);
}

}  // namespace tessera_cpu
