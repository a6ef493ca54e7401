// Indexing kernels of the CPU plugin (ops.def kind INDEX): index_select and gather with their
// scatter-add backwards, triu/tril and topk. Operands are contiguous, index tensors int64;
// every index is checked before any parallel work (an out-of-range one fails with
// TSR_ERR_INDEX naming it and the size). Copies move raw elements (any dtype). The backwards
// are deterministic whatever the thread count: index_select_backward sums each output slice's
// gradients in index order (a counting sort groups them), gather_backward gives each line
// along dim to one task, which adds in order.
#include <atomic>
#include <limits>
#include <vector>

#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kGrainBytes = 65536;  // bytes copied per task

// The unsigned integer of an element's size: copies move bits, whatever the dtype.
template <class F>
void dispatch_bits(int32_t dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 1:
      return f(uint8_t{});
    case 2:
      return f(uint16_t{});
    case 4:
      return f(uint32_t{});
    default:
      return f(uint64_t{});
  }
}

// x seen as (outer, size, inner) around dim; a 0-d tensor is 1-D of one element.
struct Split3 {
  int64_t outer = 1, size = 1, inner = 1;
};

Split3 split_at(const TsrTensorDesc& d, int64_t dim) {
  Split3 s;
  if (d.ndim == 0) return s;
  for (int i = 0; i < d.ndim; ++i) {
    if (i < dim)
      s.outer *= d.sizes[i];
    else if (i == dim)
      s.size = d.sizes[i];
    else
      s.inner *= d.sizes[i];
  }
  return s;
}

int64_t checked_dim(const TsrKernelArgs* a, const TsrTensorDesc& x) {
  const int64_t dim = a->attrs->dim;
  if (dim < 0 || dim >= std::max(x.ndim, 1))
    raise_error(TSR_ERR_INDEX, "dim %lld is out of range for a %d-D tensor", static_cast<long long>(dim),
                x.ndim);
  return dim;
}

void check_index_tensor(const TsrTensorDesc& index) {
  if (index.dtype != TSR_INT64)
    raise_error(TSR_ERR_TYPE, "index must be int64, got %s", dtype_name(index.dtype));
}

// Every idx[0..n) in [0, size).
void check_range(const int64_t* idx, int64_t n, int64_t size, int64_t dim) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= size)
      raise_error(TSR_ERR_INDEX, "index %lld is out of bounds for dim %lld with size %lld",
                  static_cast<long long>(idx[i]), static_cast<long long>(dim), static_cast<long long>(size));
}

// ---------------------------------------------------------------------------------------
// index_select: out (outer, n, inner) = x (outer, size, inner) at index[n] along dim

void index_select_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &x = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const int64_t dim = checked_dim(a, x);
  check_index_tensor(index);
  if (index.ndim > 1)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "index must be 1-D, got %s", ShapeStr(index).c_str());
  const Split3 s = split_at(x, dim);
  const int64_t n = elem_count(index);
  if (out.dtype != x.dtype || elem_count(out) != s.outer * n * s.inner)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "out %s %s does not fit x %s %s with %lld indices",
                dtype_name(out.dtype), ShapeStr(out).c_str(), dtype_name(x.dtype), ShapeStr(x).c_str(),
                static_cast<long long>(n));
  const int64_t* idx = static_cast<const int64_t*>(index.data);
  check_range(idx, n, s.size, dim);
  const int64_t bytes = s.inner * dtype_size(x.dtype);
  const char* src = static_cast<const char*>(x.data);
  char* dst = static_cast<char*>(out.data);
  state_of(a).pool.parallel_for(s.outer * n, std::max<int64_t>(1, kGrainBytes / bytes),
                                [&](int64_t b, int64_t e) {
                                  for (int64_t u = b; u < e; ++u) {
                                    const int64_t o = u / n, t = u % n;
                                    std::memcpy(dst + u * bytes, src + (o * s.size + idx[t]) * bytes, bytes);
                                  }
                                });
}

// out (outer, size, inner) = 0, then out[o, index[t], :] += grad[o, t, :]: each output slice
// sums its gradient slices in index order.
template <class S>
struct SliceSumK {
  using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
  // dst[0..m) = sum over k of src[pos[k] * stride + 0..m), in k order
  static TSR_INLINE void run(S* dst, C* acc, const S* src, int64_t stride, const int64_t* pos, int64_t count,
                             int64_t m) {
    if constexpr (std::is_same_v<S, C>) {
      for (int64_t i = 0; i < m; ++i) dst[i] = 0;
      for (int64_t k = 0; k < count; ++k) {
        const S* g = src + pos[k] * stride;
        for (int64_t i = 0; i < m; ++i) dst[i] += g[i];
      }
    } else {
      for (int64_t i = 0; i < m; ++i) acc[i] = 0;
      for (int64_t k = 0; k < count; ++k) {
        const S* g = src + pos[k] * stride;
        for (int64_t i = 0; i < m; ++i) acc[i] += cast<C>(g[i]);
      }
      for (int64_t i = 0; i < m; ++i) dst[i] = cast<S>(acc[i]);
    }
  }
};

void index_select_backward_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &grad = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const int64_t dim = checked_dim(a, out);
  check_index_tensor(index);
  if (!is_float_dtype(out.dtype) || grad.dtype != out.dtype)
    raise_error(TSR_ERR_TYPE, "grad and the result must share a float dtype, got %s and %s",
                dtype_name(grad.dtype), dtype_name(out.dtype));
  const Split3 s = split_at(out, dim);
  const int64_t n = elem_count(index);
  if (elem_count(grad) != s.outer * n * s.inner)
    raise_error(TSR_ERR_INVALID_ARGUMENT,
                "grad %s does not fit the result %s with %lld indices along dim %lld", ShapeStr(grad).c_str(),
                ShapeStr(out).c_str(), static_cast<long long>(n), static_cast<long long>(dim));
  const int64_t* idx = static_cast<const int64_t*>(index.data);
  check_range(idx, n, s.size, dim);
  // counting sort: the positions t of each index value r, in order, at pos[start[r] .. start[r+1])
  std::vector<int64_t> start(s.size + 1, 0), pos(n);
  for (int64_t t = 0; t < n; ++t) ++start[idx[t] + 1];
  for (int64_t r = 0; r < s.size; ++r) start[r + 1] += start[r];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t t = 0; t < n; ++t) pos[fill[idx[t]]++] = t;
  }
  std::atomic<bool> failed{false};
  dispatch_float_storage(out.dtype, [&](auto st) {
    using S = decltype(st);
    using C = typename SliceSumK<S>::C;
    const S* g = static_cast<const S*>(grad.data);
    S* o = static_cast<S*>(out.data);
    const int64_t grain = std::max<int64_t>(1, kGrainBytes / static_cast<int64_t>(sizeof(S) * s.inner));
    state_of(a).pool.parallel_for(s.outer * s.size, grain, [&](int64_t b, int64_t e) {
      TaskBuffer<C> acc(std::is_same_v<S, C> ? 0 : s.inner);
      if (acc.data() == nullptr) return void(failed = true);
      for (int64_t u = b; u < e; ++u) {
        const int64_t oo = u / s.size, r = u % s.size;
        isa_run<SliceSumK<S>>(o + u * s.inner, acc.data(), g + oo * n * s.inner, s.inner,
                              pos.data() + start[r], start[r + 1] - start[r], s.inner);
      }
    });
  });
  if (failed)
    raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for a slice of %lld elements",
                static_cast<long long>(s.inner));
}

// ---------------------------------------------------------------------------------------
// gather: out[c] = x[c with c[dim] = index[c]] over index's shape

struct GatherGeom {
  int nd = 1;
  int64_t dim = 0;
  int64_t sizes[TSR_MAX_DIMS];    // index's (and out's) sizes
  int64_t xstride[TSR_MAX_DIMS];  // x's (or the result's, backward) contiguous strides
  int64_t istride[TSR_MAX_DIMS];  // index's contiguous strides
  int64_t xsize_dim = 1;          // x.size(dim)
};

// The geometry of x (the data side) and index; index.size(d) <= x.size(d) for d != dim.
GatherGeom gather_geom(const TsrKernelArgs* a, const TsrTensorDesc& x, const TsrTensorDesc& index) {
  GatherGeom g;
  g.dim = checked_dim(a, x);
  check_index_tensor(index);
  if (std::max(index.ndim, 1) != std::max(x.ndim, 1))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "index %s must have as many dims as the data %s",
                ShapeStr(index).c_str(), ShapeStr(x).c_str());
  g.nd = std::max(x.ndim, 1);
  int64_t xs = 1, is = 1;
  for (int d = g.nd - 1; d >= 0; --d) {
    const int64_t xsz = x.ndim ? x.sizes[d] : 1, isz = index.ndim ? index.sizes[d] : 1;
    if (d != g.dim && isz > xsz)
      raise_error(TSR_ERR_INVALID_ARGUMENT, "index %s is larger than the data %s in dim %d",
                  ShapeStr(index).c_str(), ShapeStr(x).c_str(), d);
    g.sizes[d] = isz;
    g.xstride[d] = xs;
    g.istride[d] = is;
    xs *= xsz;
    is *= isz;
  }
  g.xsize_dim = x.ndim ? x.sizes[g.dim] : 1;
  check_range(static_cast<const int64_t*>(index.data), elem_count(index), g.xsize_dim, g.dim);
  return g;
}

// Elements [e0, e1) of index's row-major order: out[e] = x[offset of e with index[e] on dim].
template <class B>
void gather_range(const GatherGeom& g, const B* x, const int64_t* idx, B* out, int64_t e0, int64_t e1) {
  const int last = g.nd - 1;
  int64_t c[TSR_MAX_DIMS];
  int64_t rem = e0;
  for (int d = last; d >= 0; --d) {
    c[d] = rem % g.sizes[d];
    rem /= g.sizes[d];
  }
  const int64_t step = last == g.dim ? 0 : g.xstride[last];  // along the last dim
  for (int64_t e = e0; e < e1;) {
    int64_t base = 0;  // x offset of the run's first element, dim excluded
    for (int d = 0; d < last; ++d)
      if (d != g.dim) base += c[d] * g.xstride[d];
    if (last != g.dim) base += c[last] * g.xstride[last];
    const int64_t run = std::min(g.sizes[last] - c[last], e1 - e);
    for (int64_t t = 0; t < run; ++t) out[e + t] = x[base + t * step + idx[e + t] * g.xstride[g.dim]];
    e += run;
    c[last] = 0;
    for (int d = last - 1; d >= 0; --d) {
      if (++c[d] < g.sizes[d]) break;
      c[d] = 0;
    }
  }
}

void gather_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &x = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const GatherGeom g = gather_geom(a, x, index);
  const int64_t n = elem_count(index);
  if (out.dtype != x.dtype || elem_count(out) != n)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "out %s %s must be x's dtype %s with index's shape %s",
                dtype_name(out.dtype), ShapeStr(out).c_str(), dtype_name(x.dtype), ShapeStr(index).c_str());
  dispatch_bits(x.dtype, [&](auto bits) {
    using B = decltype(bits);
    state_of(a).pool.parallel_for(n, kGrainBytes / 16, [&](int64_t b, int64_t e) {
      gather_range(g, static_cast<const B*>(x.data), static_cast<const int64_t*>(index.data),
                   static_cast<B*>(out.data), b, e);
    });
  });
}

// Lines [l0, l1) (index's elements sharing every coordinate but dim, row-major): each adds
// its gradients along dim, in order, at result[line with index on dim]. Lines write disjoint
// elements, so lines run in parallel.
template <class S, class C>
void scatter_lines(const GatherGeom& g, const S* grad, const int64_t* idx, C* res, int64_t l0, int64_t l1) {
  int64_t c[TSR_MAX_DIMS] = {};
  int64_t rem = l0;
  for (int d = g.nd - 1; d >= 0; --d) {
    if (d == g.dim) continue;
    c[d] = rem % g.sizes[d];
    rem /= g.sizes[d];
  }
  const int64_t n = g.sizes[g.dim], gs = g.istride[g.dim], rs = g.xstride[g.dim];
  for (int64_t l = l0; l < l1; ++l) {
    int64_t gbase = 0, rbase = 0;
    for (int d = 0; d < g.nd; ++d) {
      gbase += c[d] * g.istride[d];
      rbase += c[d] * g.xstride[d];
    }
    for (int64_t t = 0; t < n; ++t) res[rbase + idx[gbase + t * gs] * rs] += cast<C>(grad[gbase + t * gs]);
    for (int d = g.nd - 1; d >= 0; --d) {
      if (d == g.dim) continue;
      if (++c[d] < g.sizes[d]) break;
      c[d] = 0;
    }
  }
}

void gather_backward_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &grad = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const GatherGeom g = gather_geom(a, out, index);
  if (!is_float_dtype(out.dtype) || grad.dtype != out.dtype || elem_count(grad) != elem_count(index))
    raise_error(
        TSR_ERR_INVALID_ARGUMENT, "grad %s %s must have index's shape %s and the result's float dtype %s",
        dtype_name(grad.dtype), ShapeStr(grad).c_str(), ShapeStr(index).c_str(), dtype_name(out.dtype));
  const int64_t total = elem_count(out);
  const int64_t lines = elem_count(index) / std::max<int64_t>(g.sizes[g.dim], 1);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(g.sizes[g.dim], 1));
  dispatch_float_storage(out.dtype, [&](auto st) {
    using S = decltype(st);
    using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
    const S* gp = static_cast<const S*>(grad.data);
    const int64_t* idx = static_cast<const int64_t*>(index.data);
    if constexpr (std::is_same_v<S, C>) {
      C* res = static_cast<C*>(out.data);
      std::memset(static_cast<void*>(res), 0, sizeof(C) * total);
      state_of(a).pool.parallel_for(lines, grain,
                                    [&](int64_t b, int64_t e) { scatter_lines(g, gp, idx, res, b, e); });
    } else {  // float16/bfloat16: sums in float32, rounded once
      std::vector<float> res(total, 0.0f);
      state_of(a).pool.parallel_for(
          lines, grain, [&](int64_t b, int64_t e) { scatter_lines(g, gp, idx, res.data(), b, e); });
      store_run(TSR_FLOAT32, out.dtype, res.data(), total, static_cast<char*>(out.data), sizeof(S));
    }
  });
}

// ---------------------------------------------------------------------------------------
// triu / tril over the last two dims: keep j - i >= diagonal (triu) or <= diagonal (tril)

template <bool kUpper>
void tri_body(const TsrKernelArgs* a) {
  const TsrTensorDesc &x = a->inputs[0], &out = a->outputs[0];
  if (x.ndim < 2)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "input must have at least 2 dims, got %s", ShapeStr(x).c_str());
  if (out.dtype != x.dtype || elem_count(out) != elem_count(x))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "out %s %s must match x %s %s", dtype_name(out.dtype),
                ShapeStr(out).c_str(), dtype_name(x.dtype), ShapeStr(x).c_str());
  const int64_t M = x.sizes[x.ndim - 2], N = x.sizes[x.ndim - 1], rows = elem_count(x) / N;
  const int64_t diag = a->attrs->index, es = dtype_size(x.dtype);
  const char* src = static_cast<const char*>(x.data);
  char* dst = static_cast<char*>(out.data);
  state_of(a).pool.parallel_for(rows, std::max<int64_t>(1, kGrainBytes / (N * es)),
                                [&](int64_t b, int64_t e) {
                                  for (int64_t r = b; r < e; ++r) {
                                    const int64_t i = r % M;
                                    // kept columns [lo, hi)
                                    const int64_t lo = kUpper ? std::clamp<int64_t>(i + diag, 0, N) : 0;
                                    const int64_t hi = kUpper ? N : std::clamp<int64_t>(i + diag + 1, 0, N);
                                    char* d = dst + r * N * es;
                                    const char* s = src + r * N * es;
                                    std::memset(d, 0, lo * es);
                                    std::memcpy(d + lo * es, s + lo * es, (hi - lo) * es);
                                    std::memset(d + hi * es, 0, (N - hi) * es);
                                  }
                                });
}

// ---------------------------------------------------------------------------------------
// topk along dim: the k largest (smallest) values, sorted, NaN largest, ties in index order

template <class V>
struct Ranked {
  V v;
  int64_t i;
};

// a comes before b: larger (or smaller) first, NaN the largest, equal values by index.
template <class V, bool kLargest>
struct RankBefore {
  bool operator()(const Ranked<V>& a, const Ranked<V>& b) const {
    if constexpr (std::is_floating_point_v<V>) {
      const bool an = a.v != a.v, bn = b.v != b.v;
      if (an || bn) {
        if (an && bn) return a.i < b.i;
        return kLargest ? an : bn;
      }
    }
    if (a.v != b.v) return kLargest ? a.v > b.v : a.v < b.v;
    return a.i < b.i;
  }
};

template <class S, bool kLargest>
void topk_lines(const Split3& s, int64_t k, const S* x, S* values, int64_t* indices, int64_t l0, int64_t l1,
                Ranked<std::conditional_t<kIsFloat<S>, double, int64_t>>* buf) {
  using V = std::conditional_t<kIsFloat<S>, double, int64_t>;
  for (int64_t l = l0; l < l1; ++l) {
    const int64_t o = l / s.inner, in = l % s.inner;
    const S* line = x + o * s.size * s.inner + in;
    for (int64_t t = 0; t < s.size; ++t) buf[t] = {cast<V>(line[t * s.inner]), t};
    if (k < s.size)
      std::partial_sort(buf, buf + k, buf + s.size, RankBefore<V, kLargest>());
    else
      std::sort(buf, buf + s.size, RankBefore<V, kLargest>());
    const int64_t base = o * k * s.inner + in;
    for (int64_t t = 0; t < k; ++t) {
      values[base + t * s.inner] = line[buf[t].i * s.inner];  // the element itself (-0.0, NaN bits)
      indices[base + t * s.inner] = buf[t].i;
    }
  }
}

void topk_body(const TsrKernelArgs* a) {
  const TsrTensorDesc& x = a->inputs[0];
  if (a->num_outputs < 2) raise_error(TSR_ERR_INVALID_ARGUMENT, "expects two outputs: values, indices");
  const TsrTensorDesc &values = a->outputs[0], &indices = a->outputs[1];
  const int64_t dim = checked_dim(a, x);
  const Split3 s = split_at(x, dim);
  const int64_t k = a->attrs->index;
  if (k < 0 || k > s.size)
    raise_error(TSR_ERR_INDEX, "k = %lld is out of range for dim %lld of size %lld (x %s)",
                static_cast<long long>(k), static_cast<long long>(dim), static_cast<long long>(s.size),
                ShapeStr(x).c_str());
  if (x.dtype == TSR_BOOL) raise_error(TSR_ERR_TYPE, "topk does not support bool");
  if (values.dtype != x.dtype || indices.dtype != TSR_INT64 || elem_count(values) != s.outer * k * s.inner ||
      elem_count(indices) != s.outer * k * s.inner)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "values %s %s / indices %s %s do not fit k = %lld of x %s %s",
                dtype_name(values.dtype), ShapeStr(values).c_str(), dtype_name(indices.dtype),
                ShapeStr(indices).c_str(), static_cast<long long>(k), dtype_name(x.dtype),
                ShapeStr(x).c_str());
  if (k == 0) return;
  const bool largest = a->attrs->hp[0] != 0;
  std::atomic<bool> failed{false};
  dispatch_storage(x.dtype, [&](auto st) {
    using S = decltype(st);
    if constexpr (!std::is_same_v<S, Bool8>) {
      using V = std::conditional_t<kIsFloat<S>, double, int64_t>;
      const S* xp = static_cast<const S*>(x.data);
      S* vp = static_cast<S*>(values.data);
      int64_t* ip = static_cast<int64_t*>(indices.data);
      const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(s.size, 1));
      state_of(a).pool.parallel_for(s.outer * s.inner, grain, [&](int64_t b, int64_t e) {
        TaskBuffer<Ranked<V>> buf(s.size);
        if (buf.data() == nullptr) return void(failed = true);
        if (largest)
          topk_lines<S, true>(s, k, xp, vp, ip, b, e, buf.data());
        else
          topk_lines<S, false>(s, k, xp, vp, ip, b, e, buf.data());
      });
    }
  });
  if (failed)
    raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for a line of %lld elements",
                static_cast<long long>(s.size));
}

}  // namespace

int32_t kernel_index_select(const TsrKernelArgs* a) {
  return run_kernel(a, &index_select_body);
}
int32_t kernel_index_select_backward(const TsrKernelArgs* a) {
  return run_kernel(a, &index_select_backward_body);
}
int32_t kernel_gather(const TsrKernelArgs* a) {
  return run_kernel(a, &gather_body);
}
int32_t kernel_gather_backward(const TsrKernelArgs* a) {
  return run_kernel(a, &gather_backward_body);
}
int32_t kernel_triu(const TsrKernelArgs* a) {
  return run_kernel(a, &tri_body<true>);
}
int32_t kernel_tril(const TsrKernelArgs* a) {
  return run_kernel(a, &tri_body<false>);
}
int32_t kernel_topk(const TsrKernelArgs* a) {
  return run_kernel(a, &topk_body);
}

}  // namespace tessera_cpu
