// 2-D convolution and max pooling of the CPU plugin (NCHW, contiguous operands; plugin.h).
// conv2d: per sample, im2col then one OpenBLAS GEMM per group; its input gradient: GEMM then
// col2im; its weight gradient: im2col then GEMM, summed over fixed chunks of the batch and then
// across chunks in order, so results do not depend on the thread count. Samples run in
// parallel on the plugin's pool with BLAS single-threaded meanwhile (OpenBLAS's own threads
// would oversubscribe the cores). float16/bfloat16 compute in float32 through converted copies.
// max_pool2d and its gradient: direct loops over the planes.
#include <cblas.h>

#include <limits>
#include <mutex>
#include <vector>

#include "cpu.h"

namespace tessera_cpu {
namespace {

// ---- BLAS -----------------------------------------------------------------------------

// Row-major C = op(A) @ op(B) + beta * C for T = float/double.
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
          T beta, T* c, int64_t ldc) {
  const CBLAS_TRANSPOSE ta_ = ta ? CblasTrans : CblasNoTrans, tb_ = tb ? CblasTrans : CblasNoTrans;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta_, tb_, mi, ni, ki, 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
                c, static_cast<int>(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta_, tb_, mi, ni, ki, 1.0, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
                static_cast<int>(ldc));
}

// OpenBLAS single-threaded while a sample-parallel region runs. The thread count is
// process-wide (a BLAS call on another host thread meanwhile runs single-threaded too): the
// first region in saves it, the last one out restores it.
class BlasSerial {
 public:
  BlasSerial() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_++ == 0) {
      saved_ = openblas_get_num_threads();
      openblas_set_num_threads(1);
    }
  }
  ~BlasSerial() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--depth_ == 0) openblas_set_num_threads(saved_);
  }
  BlasSerial(const BlasSerial&) = delete;
  BlasSerial& operator=(const BlasSerial&) = delete;

 private:
  static inline std::mutex mutex_;
  static inline int depth_ = 0;
  static inline int saved_ = 1;
};

// Runs fn(part, n_begin, n_end) for `parts` contiguous chunks of [0, n) on the pool, BLAS
// single-threaded when more than one chunk may run at once.
template <class F>
void for_parts(ThreadPool& pool, int64_t n, int64_t parts, const F& fn) {
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) fn(p, n * p / parts, n * (p + 1) / parts);
  };
  if (parts > 1 && pool.num_threads() > 1) {
    BlasSerial serial;
    pool.parallel_for(parts, 1, body);
  } else {
    body(0, parts);
  }
}

// ---- geometry, im2col, col2im ------------------------------------------------------------

struct Geom {
  int64_t N, C, H, W;     // input
  int64_t O, kh, kw;      // weight [O, C / groups, kh, kw]
  int64_t Ho, Wo;         // output
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int64_t Cg, Og, K, P;   // per group: input and output channels, col rows (Cg*kh*kw) and columns (Ho*Wo)
  bool pointwise;         // 1x1, stride 1, no padding: a group's col matrix is its input itself
};

Geom make_geom(const TsrTensorDesc& x, const TsrTensorDesc& w, const TsrTensorDesc& y, const TsrAttrs& a) {
  Geom g;
  g.N = x.sizes[0], g.C = x.sizes[1], g.H = x.sizes[2], g.W = x.sizes[3];
  g.O = w.sizes[0], g.kh = w.sizes[2], g.kw = w.sizes[3];
  g.Ho = y.sizes[2], g.Wo = y.sizes[3];
  g.sh = a.stride2[0], g.sw = a.stride2[1], g.ph = a.padding[0], g.pw = a.padding[1];
  g.dh = a.dilation[0], g.dw = a.dilation[1], g.groups = a.groups;
  g.Cg = g.C / g.groups, g.Og = g.O / g.groups, g.K = g.Cg * g.kh * g.kw, g.P = g.Ho * g.Wo;
  g.pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
  if (x.ndim != 4 || w.ndim != 4 || y.ndim != 4 || g.groups < 1 || g.C != g.Cg * g.groups || w.sizes[1] != g.Cg ||
      g.O % g.groups != 0 || y.sizes[0] != g.N || y.sizes[1] != g.O || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "operands do not form a convolution");
  if (g.K * g.P > INT32_MAX || g.O * g.K > INT32_MAX)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "a group's im2col matrix exceeds the BLAS int range");
  return g;
}

// The output positions [lo, hi) whose tap at offset `off` (= k*d - p) lands inside [0, n).
TSR_INLINE void valid_range(int64_t off, int64_t stride, int64_t n, int64_t out, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = n - 1 - off < 0 ? 0 : std::min(out, (n - 1 - off) / stride + 1);
  lo = std::min(lo, out);
  hi = std::max(hi, lo);
}

// col [K, P] of one group's input x [Cg, H, W]: col[(c, i, j), (oh, ow)] = x[c, oh*sh - ph +
// i*dh, ow*sw - pw + j*dw], 0 in the padding.
template <class T>
void im2col(const Geom& g, const T* x, T* col) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * g.P;
        const int64_t offw = j * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(offw, g.sw, g.W, g.Wo, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          T* r = row + oh * g.Wo;
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.Wo, T(0));
            continue;
          }
          const T* xr = x + (c * g.H + ih) * g.W + offw;
          std::fill(r, r + lo, T(0));
          if (g.sw == 1)
            std::copy(xr + lo, xr + hi, r + lo);
          else
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw];
          std::fill(r + hi, r + g.Wo, T(0));
        }
      }
}

// x [Cg, H, W] += the scatter of col [K, P] (im2col's adjoint).
template <class T>
void col2im(const Geom& g, const T* col, T* x) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * g.P;
        const int64_t offw = j * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(offw, g.sw, g.W, g.Wo, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + oh * g.Wo;
          T* xr = x + (c * g.H + ih) * g.W + offw;
          if (g.sw == 1)
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow] += r[ow];
          else
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw] += r[ow];
        }
      }
}

// ---- dtype plumbing ----------------------------------------------------------------------

// An operand in compute type T: its own memory when its dtype is T, else a converted copy.
template <class T>
struct Operand {
  const char* raw;
  int32_t dtype;
  bool native;

  static constexpr int32_t kCdt = std::is_same_v<T, float> ? TSR_FLOAT32 : TSR_FLOAT64;

  explicit Operand(const TsrTensorDesc& d) : raw(static_cast<const char*>(d.data)), dtype(d.dtype), native(d.dtype == kCdt) {}
  // Elements [off, off + n) in T, converted into scratch when needed.
  const T* get(int64_t off, int64_t n, T* scratch) const {
    if (native) return reinterpret_cast<const T*>(raw) + off;
    load_run(kCdt, dtype, raw + off * dtype_size(dtype), dtype_size(dtype), n, scratch);
    return scratch;
  }
};

// Where elements [off, off + n) of an output are computed: the output itself, or scratch that
// put() converts into it.
template <class T>
struct Result {
  char* raw;
  int32_t dtype;
  bool native;

  explicit Result(const TsrTensorDesc& d) : raw(static_cast<char*>(d.data)), dtype(d.dtype), native(d.dtype == Operand<T>::kCdt) {}
  T* at(int64_t off, T* scratch) const { return native ? reinterpret_cast<T*>(raw) + off : scratch; }
  void put(int64_t off, int64_t n, const T* scratch) const {
    if (!native) store_run(Operand<T>::kCdt, dtype, scratch, n, raw + off * dtype_size(dtype), dtype_size(dtype));
  }
};

// Scratch of `per` elements for each of `parts` chunks.
template <class T>
struct Scratch {
  std::vector<T> buf;
  int64_t per;
  Scratch(int64_t parts, int64_t per_) : buf(parts * per_), per(per_) {}
  T* operator[](int64_t part) { return buf.data() + part * per; }
};

// Chunks for the sample-parallel loops: enough for the pool to balance, at most one a sample.
int64_t sample_parts(ThreadPool& pool, int64_t n) { return std::min<int64_t>(n, 4 * pool.num_threads()); }

// ---- conv2d ------------------------------------------------------------------------------

template <class T>
void conv_forward(ThreadPool& pool, const Geom& g, const TsrTensorDesc& xd, const TsrTensorDesc& wd,
                  const TsrTensorDesc* bd, const TsrTensorDesc& yd) {
  const int64_t chw = g.C * g.H * g.W, op = g.O * g.P;
  const Operand<T> x(xd), w(wd);
  const Result<T> y(yd);
  std::vector<T> wbuf(w.native ? 0 : g.O * g.K), bbuf(w.native ? 0 : g.O);
  const T* wt = w.get(0, g.O * g.K, wbuf.data());
  const T* bias = bd ? Operand<T>(*bd).get(0, g.O, bbuf.data()) : nullptr;
  const int64_t parts = sample_parts(pool, g.N);
  Scratch<T> col(parts, g.pointwise ? 0 : g.K * g.P), xs(parts, x.native ? 0 : chw), ys(parts, y.native ? 0 : op);
  for_parts(pool, g.N, parts, [&](int64_t part, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = x.get(n * chw, chw, xs[part]);
      T* yn = y.at(n * op, ys[part]);
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const T* xg = xn + gi * g.Cg * g.H * g.W;
        const T* cols = xg;
        if (!g.pointwise) {
          im2col(g, xg, col[part]);
          cols = col[part];
        }
        T* yg = yn + gi * g.Og * g.P;
        if (bd)
          for (int64_t o = 0; o < g.Og; ++o) std::fill(yg + o * g.P, yg + (o + 1) * g.P, bias[gi * g.Og + o]);
        gemm<T>(false, false, g.Og, g.P, g.K, wt + gi * g.Og * g.K, g.K, cols, g.P, bd ? T(1) : T(0), yg, g.P);
      }
      y.put(n * op, op, yn);
    }
  });
}

template <class T>
void conv_backward_input(ThreadPool& pool, const Geom& g, const TsrTensorDesc& gd, const TsrTensorDesc& wd,
                         const TsrTensorDesc& dxd) {
  const int64_t chw = g.C * g.H * g.W, op = g.O * g.P;
  const Operand<T> gy(gd), w(wd);
  const Result<T> dx(dxd);
  std::vector<T> wbuf(w.native ? 0 : g.O * g.K);
  const T* wt = w.get(0, g.O * g.K, wbuf.data());
  const int64_t parts = sample_parts(pool, g.N);
  Scratch<T> col(parts, g.pointwise ? 0 : g.K * g.P), gs(parts, gy.native ? 0 : op), xs(parts, dx.native ? 0 : chw);
  for_parts(pool, g.N, parts, [&](int64_t part, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* gn = gy.get(n * op, op, gs[part]);
      T* xn = dx.at(n * chw, xs[part]);
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const T* wg = wt + gi * g.Og * g.K;  // [Og, K]
        const T* gg = gn + gi * g.Og * g.P;  // [Og, P]
        T* xg = xn + gi * g.Cg * g.H * g.W;  // [Cg, H, W]
        if (g.pointwise) {
          gemm<T>(true, false, g.K, g.P, g.Og, wg, g.K, gg, g.P, T(0), xg, g.P);
          continue;
        }
        gemm<T>(true, false, g.K, g.P, g.Og, wg, g.K, gg, g.P, T(0), col[part], g.P);
        std::fill(xg, xg + g.Cg * g.H * g.W, T(0));
        col2im(g, col[part], xg);
      }
      dx.put(n * chw, chw, xn);
    }
  });
}

// Samples summed into one partial weight gradient: fixed, so that the sum's order (and the
// result's bits) does not depend on the thread count.
constexpr int64_t kSamplesPerPartial = 8;

template <class T>
void conv_backward_weight(ThreadPool& pool, const Geom& g, const TsrTensorDesc& gd, const TsrTensorDesc& xd,
                          const TsrTensorDesc& dwd) {
  const int64_t chw = g.C * g.H * g.W, op = g.O * g.P, wsize = g.O * g.K;
  const Operand<T> gy(gd), x(xd);
  const Result<T> dw(dwd);
  const int64_t parts = (g.N + kSamplesPerPartial - 1) / kSamplesPerPartial;
  Scratch<T> partial(parts, wsize), col(parts, g.pointwise ? 0 : g.K * g.P), xs(parts, x.native ? 0 : chw),
      gs(parts, gy.native ? 0 : op);
  for_parts(pool, g.N, parts, [&](int64_t part, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = x.get(n * chw, chw, xs[part]);
      const T* gn = gy.get(n * op, op, gs[part]);
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const T* xg = xn + gi * g.Cg * g.H * g.W;
        const T* cols = xg;
        if (!g.pointwise) {
          im2col(g, xg, col[part]);
          cols = col[part];
        }
        gemm<T>(false, true, g.Og, g.K, g.P, gn + gi * g.Og * g.P, g.P, cols, g.P, n == n0 ? T(0) : T(1),
                partial[part] + gi * g.Og * g.K, g.K);
      }
    }
  });
  T* sum = partial[0];
  for (int64_t p = 1; p < parts; ++p) {
    const T* q = partial[p];
    for (int64_t i = 0; i < wsize; ++i) sum[i] += q[i];
  }
  if (dw.native)
    std::copy(sum, sum + wsize, dw.at(0, nullptr));
  else
    dw.put(0, wsize, sum);
}

// Calls f(T{}) with T the compute type of a float dtype.
template <class F>
void dispatch_float(int32_t dt, F&& f) {
  if (!is_float_dtype(dt)) raise_error(TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", dt);
  if (dt == TSR_FLOAT64)
    f(double{});
  else
    f(float{});
}

void conv2d_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &x = a->inputs[0], &w = a->inputs[1], &y = a->outputs[0];
  const Geom g = make_geom(x, w, y, *a->attrs);
  const TsrTensorDesc* bias = a->num_inputs > 2 ? &a->inputs[2] : nullptr;
  dispatch_float(y.dtype, [&](auto t) { conv_forward<decltype(t)>(state_of(a).pool, g, x, w, bias, y); });
}

void conv2d_backward_input_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &gy = a->inputs[0], &w = a->inputs[1], &dx = a->outputs[0];
  const Geom g = make_geom(dx, w, gy, *a->attrs);
  dispatch_float(dx.dtype, [&](auto t) { conv_backward_input<decltype(t)>(state_of(a).pool, g, gy, w, dx); });
}

void conv2d_backward_weight_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &gy = a->inputs[0], &x = a->inputs[1], &dw = a->outputs[0];
  const Geom g = make_geom(x, dw, gy, *a->attrs);
  dispatch_float(dw.dtype, [&](auto t) { conv_backward_weight<decltype(t)>(state_of(a).pool, g, gy, x, dw); });
}

// ---- max_pool2d ----------------------------------------------------------------------------

struct PoolGeom {
  int64_t planes, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

PoolGeom make_pool_geom(const TsrTensorDesc& x, const TsrTensorDesc& y, const TsrAttrs& a) {
  if (x.ndim != 4 || y.ndim != 4 || x.sizes[0] != y.sizes[0] || x.sizes[1] != y.sizes[1])
    raise_error(TSR_ERR_INVALID_ARGUMENT, "operands do not form a pooling");
  return {x.sizes[0] * x.sizes[1], x.sizes[2], x.sizes[3], y.sizes[2], y.sizes[3], a.kernel[0], a.kernel[1],
          a.stride2[0], a.stride2[1], a.padding[0], a.padding[1], a.dilation[0], a.dilation[1]};
}

// Index (in the plane) of window (oh, ow)'s maximum: the first one in row-major window order,
// the last NaN if there is one (PyTorch's CPU kernel); the window's first element if all are -inf;
// -1 when no tap lies inside the input.
template <class S, class C>
TSR_INLINE int64_t window_argmax(const PoolGeom& g, const S* x, int64_t oh, int64_t ow, C& best) {
  const int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  int64_t ilo, ihi, jlo, jhi;  // taps inside the input
  valid_range(h0, g.dh, g.H, g.kh, ilo, ihi);
  valid_range(w0, g.dw, g.W, g.kw, jlo, jhi);
  best = -std::numeric_limits<C>::infinity();
  if (ilo == ihi || jlo == jhi) return -1;  // every tap in the padding (possible with dilation)
  int64_t idx = (h0 + ilo * g.dh) * g.W + w0 + jlo * g.dw;
  for (int64_t i = ilo; i < ihi; ++i) {
    const S* row = x + (h0 + i * g.dh) * g.W + w0;
    for (int64_t j = jlo; j < jhi; ++j) {
      const C v = cast<C>(row[j * g.dw]);
      if (v > best || v != v) {
        best = v;
        idx = (h0 + i * g.dh) * g.W + w0 + j * g.dw;
      }
    }
  }
  return idx;
}

template <class S>
void pool_forward(ThreadPool& pool, const PoolGeom& g, const S* x, S* y) {
  using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
  const int64_t hw = g.H * g.W, out = g.Ho * g.Wo;
  pool.parallel_for(g.planes, std::max<int64_t>(1, 16384 / out), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ow = 0; ow < g.Wo; ++ow) {
          C best;
          window_argmax(g, x + p * hw, oh, ow, best);
          y[p * out + oh * g.Wo + ow] = cast<S>(best);
        }
  });
}

template <class S>
void pool_backward(ThreadPool& pool, const PoolGeom& g, const S* gy, const S* x, S* dx) {
  using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
  const int64_t hw = g.H * g.W, out = g.Ho * g.Wo;
  // float16/bfloat16 gradients add up in float32, rounded once at the end
  std::vector<C> acc(std::is_same_v<S, C> ? 0 : g.planes * hw);
  pool.parallel_for(g.planes, std::max<int64_t>(1, 16384 / out), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      C* d;
      if constexpr (std::is_same_v<S, C>)
        d = dx + p * hw;
      else
        d = acc.data() + p * hw;
      std::fill(d, d + hw, C(0));
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ow = 0; ow < g.Wo; ++ow) {
          C best;
          const int64_t i = window_argmax(g, x + p * hw, oh, ow, best);
          if (i >= 0) d[i] += cast<C>(gy[p * out + oh * g.Wo + ow]);
        }
      if constexpr (!std::is_same_v<S, C>)
        for (int64_t i = 0; i < hw; ++i) dx[p * hw + i] = cast<S>(d[i]);
    }
  });
}

void max_pool2d_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &x = a->inputs[0], &y = a->outputs[0];
  const PoolGeom g = make_pool_geom(x, y, *a->attrs);
  dispatch_float_storage(y.dtype, [&](auto s) {
    using S = decltype(s);
    pool_forward<S>(state_of(a).pool, g, static_cast<const S*>(x.data), static_cast<S*>(y.data));
  });
}

void max_pool2d_backward_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &gy = a->inputs[0], &x = a->inputs[1], &dx = a->outputs[0];
  const PoolGeom g = make_pool_geom(x, gy, *a->attrs);
  dispatch_float_storage(dx.dtype, [&](auto s) {
    using S = decltype(s);
    pool_backward<S>(state_of(a).pool, g, static_cast<const S*>(gy.data), static_cast<const S*>(x.data),
                     static_cast<S*>(dx.data));
  });
}

}  // namespace

int32_t kernel_conv2d(const TsrKernelArgs* a) { return run_kernel(a, &conv2d_body); }
int32_t kernel_conv2d_backward_input(const TsrKernelArgs* a) { return run_kernel(a, &conv2d_backward_input_body); }
int32_t kernel_conv2d_backward_weight(const TsrKernelArgs* a) { return run_kernel(a, &conv2d_backward_weight_body); }
int32_t kernel_max_pool2d(const TsrKernelArgs* a) { return run_kernel(a, &max_pool2d_body); }
int32_t kernel_max_pool2d_backward(const TsrKernelArgs* a) { return run_kernel(a, &max_pool2d_backward_body); }

}  // namespace tessera_cpu
