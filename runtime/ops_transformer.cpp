// Front-ends of the transformer kinds (ops.def, ABI 1.3): NN (layer_norm, attention,
// cross_entropy and their backward kernels), INDEX (index_select, gather, their scatter-add
// backwards, triu/tril, topk), SAMPLE (dropout, multinomial), FOREACH (grad_norm,
// clip_grad_scale) and COMPOSITE (cat). Once for every plugin: ranks, shapes, dtypes, devices
// and attributes are checked, operands made contiguous, outputs allocated, and the kernel
// handed the descriptors plugin.h promises for these kinds.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <vector>

#include "dispatch.h"
#include "ops.h"

namespace tessera {

namespace {

constexpr TsrDevice kCpu{TSR_DEVICE_CPU, 0};

std::atomic<bool> g_deterministic{false};
thread_local DrawnRng t_drawn;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

[[noreturn]] void bad(int32_t status, int32_t op, TensorImpl* const* in, int32_t n, const std::string& what) {
  op_fail(status, op, what, in, n);
}

void require_floating(int32_t op, TensorImpl* const* in, int32_t n, int32_t first, int32_t count) {
  for (int32_t i = first; i < first + count; ++i) {
    if (!is_floating(in[i]->dtype_))
      bad(TSR_ERR_TYPE, op, in, n,
          "operand " + std::to_string(i) + " must be float16, bfloat16, float32 or float64, got " +
              dtype_str(in[i]->dtype_));
    if (in[i]->dtype_ != in[first]->dtype_)
      bad(TSR_ERR_TYPE, op, in, n,
          "expects one dtype, got " + dtype_str(in[first]->dtype_) + " and " + dtype_str(in[i]->dtype_));
  }
}

void require_integer(int32_t op, TensorImpl* const* in, int32_t n, int32_t i, const char* what) {
  if (is_floating(in[i]->dtype_) || in[i]->dtype_ == TSR_BOOL)
    bad(TSR_ERR_TYPE, op, in, n, std::string(what) + " must be an integer tensor, got " + dtype_str(in[i]->dtype_));
}

bool same_shape(const TensorImpl& a, const int64_t* sizes, int32_t ndim) {
  return a.ndim_ == ndim && std::equal(sizes, sizes + ndim, a.sizes_);
}

int64_t prod(const int64_t* s, int32_t n) {
  int64_t p = 1;
  for (int32_t i = 0; i < n; ++i) p *= s[i];
  return p;
}

int32_t stats_dtype(int32_t dtype) { return dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32; }

// The kernel's descriptor of t seen with other sizes (t contiguous, same element count).
TsrTensorDesc desc_as(const TensorImpl& t, std::initializer_list<int64_t> sizes) {
  TsrTensorDesc d = desc(t);
  d.ndim = static_cast<int32_t>(sizes.size());
  int64_t stride = 1;
  int32_t i = d.ndim;
  for (auto it = std::rbegin(sizes); it != std::rend(sizes); ++it) {
    --i;
    d.sizes[i] = *it;
    d.strides[i] = stride;
    stride *= *it;
  }
  return d;
}

// Operand i as a contiguous tensor (itself when it already is), kept alive by keep[i].
TensorImpl* contig(TensorImpl* t, Tensor& keep) {
  if (t->is_contiguous()) return t;
  keep = contiguous(*t);
  return keep.get();
}

// An int64 copy of an integer index tensor (itself when it already is one and contiguous).
TensorImpl* as_index(TensorImpl* t, Tensor& keep) {
  if (t->dtype_ == TSR_INT64) return contig(t, keep);
  keep = cast(*t, TSR_INT64);
  return keep.get();
}

int64_t norm_dim(int32_t op, TensorImpl* const* in, int32_t n, int64_t dim, int32_t ndim) {
  const int32_t nd = std::max(ndim, 1);
  if (dim < -nd || dim >= nd)
    bad(TSR_ERR_INDEX, op, in, n,
        "dimension out of range (expected to be in range of [" + std::to_string(-nd) + ", " +
            std::to_string(nd - 1) + "], but got " + std::to_string(dim) + ")");
  return dim < 0 ? dim + nd : dim;
}

// Calls op's kernel for (dev, dtype) with several outputs.
void run_n(int32_t op, TsrDevice dev, int32_t dtype, TsrTensorDesc* outs, int32_t nout, const TsrTensorDesc* ins,
           int32_t nin, const TsrAttrs& attrs) {
  run(resolve(op, dev, dtype), op, outs, ins, nin, attrs, nout);
}

// Draws `numbers` Philox numbers' worth of counters for op (unless attrs replay a mask:
// hp[replay] == 1 keeps attrs.seed/offset) and remembers them for autograd's node.
TsrAttrs draw(const TsrAttrs& attrs, TsrDevice dev, int64_t numbers, int replay) {
  TsrAttrs k = attrs;
  if (attrs.hp[replay] != 1) {
    generator_take(dev, (static_cast<uint64_t>(numbers) + 3) / 4, &k.seed, &k.offset);
  }
  t_drawn = {k.seed, k.offset, true};
  return k;
}

void give(TensorImpl** outs, int32_t i, Tensor t) { outs[i] = t.release(); }

// ---- NN ------------------------------------------------------------------------------------

// layer_norm(x [, w [, b]]) -> y, mean, rstd over the last attrs.dim dims.
void layer_norm(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin < 1 || nin > 3) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects x [, weight [, bias]]");
  check_devices(op, in0, nin, nullptr);
  require_floating(op, in0, nin, 0, nin);
  const TensorImpl& x0 = *in0[0];
  const int64_t k = attrs.dim;
  if (k < 1 || k > x0.ndim_)
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin,
        "normalized_shape must name 1 to " + std::to_string(x0.ndim_) + " trailing dims, got " + std::to_string(k));
  const int32_t lead = x0.ndim_ - static_cast<int32_t>(k);
  for (int32_t i = 1; i < nin; ++i)
    if (!same_shape(*in0[i], x0.sizes_ + lead, static_cast<int32_t>(k)))
      bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin,
          std::string(i == 1 ? "weight" : "bias") + " must have the normalized shape " +
              shape_str(x0.sizes_ + lead, static_cast<int32_t>(k)));
  const double eps = attrs.hp[0];
  if (!(eps >= 0) || !std::isfinite(eps)) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "eps must be >= 0, got " + num(eps));
  Tensor keep[3];
  TensorImpl* in[3];
  for (int32_t i = 0; i < nin; ++i) in[i] = contig(in0[i], keep[i]);
  const int64_t C = prod(x0.sizes_ + lead, static_cast<int32_t>(k)), R = prod(x0.sizes_, lead);
  Tensor y = empty(x0.sizes_, x0.ndim_, x0.dtype_, x0.device_, "layer_norm");
  Tensor mean = empty(x0.sizes_, lead, stats_dtype(x0.dtype_), x0.device_, "layer_norm");
  Tensor rstd = empty(x0.sizes_, lead, stats_dtype(x0.dtype_), x0.device_, "layer_norm");
  if (R > 0 && C > 0) {
    TsrTensorDesc o[3] = {desc_as(*y, {R, C}), desc_as(*mean, {R}), desc_as(*rstd, {R})};
    TsrTensorDesc d[3] = {desc_as(*in[0], {R, C})};
    for (int32_t i = 1; i < nin; ++i) d[i] = desc_as(*in[i], {C});
    run_n(op, x0.device_, x0.dtype_, o, 3, d, nin, attrs);
  }
  give(outs, 0, std::move(y));
  give(outs, 1, std::move(mean));
  give(outs, 2, std::move(rstd));
}

// layer_norm_backward(grad, x, mean, rstd [, w]) -> dx [, dw, db].
void layer_norm_backward(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin != 4 && nin != 5) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects grad, x, mean, rstd [, weight]");
  check_devices(op, in0, nin, nullptr);
  require_floating(op, in0, nin, 0, 2);
  require_floating(op, in0, nin, 2, 2);
  const TensorImpl& x0 = *in0[1];
  const int64_t k = attrs.dim;
  if (k < 1 || k > x0.ndim_) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "bad normalized dims " + std::to_string(k));
  const int32_t lead = x0.ndim_ - static_cast<int32_t>(k);
  if (!same_shape(*in0[0], x0.sizes_, x0.ndim_)) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "grad must have x's shape");
  const int64_t C = prod(x0.sizes_ + lead, static_cast<int32_t>(k)), R = prod(x0.sizes_, lead);
  for (int32_t i = 2; i < 4; ++i)
    if (in0[i]->numel() != R || in0[i]->dtype_ != stats_dtype(x0.dtype_))
      bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "mean and rstd must be layer_norm's statistics of x");
  if (nin == 5) {
    require_floating(op, in0, nin, 4, 1);
    if (in0[4]->numel() != C) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "weight must have the normalized shape");
  }
  Tensor keep[5];
  TensorImpl* in[5];
  for (int32_t i = 0; i < nin; ++i) in[i] = contig(in0[i], keep[i]);
  Tensor dx = empty(x0.sizes_, x0.ndim_, x0.dtype_, x0.device_, "layer_norm_backward");
  Tensor dw, db;
  if (nin == 5) {
    dw = empty(in0[4]->sizes_, in0[4]->ndim_, in0[4]->dtype_, x0.device_, "layer_norm_backward");
    db = empty(in0[4]->sizes_, in0[4]->ndim_, in0[4]->dtype_, x0.device_, "layer_norm_backward");
  }
  if (R > 0 && C > 0) {
    TsrTensorDesc o[3] = {desc_as(*dx, {R, C})};
    if (nin == 5) {
      o[1] = desc_as(*dw, {C});
      o[2] = desc_as(*db, {C});
    }
    TsrTensorDesc d[5] = {desc_as(*in[0], {R, C}), desc_as(*in[1], {R, C}), desc_as(*in[2], {R}),
                          desc_as(*in[3], {R})};
    if (nin == 5) d[4] = desc_as(*in[4], {C});
    run_n(op, x0.device_, x0.dtype_, o, nin == 5 ? 3 : 1, d, nin, attrs);
  } else if (nin == 5) {
    fill_kernel(*dw, tsr_scalar_float(0));
    fill_kernel(*db, tsr_scalar_float(0));
  }
  give(outs, 0, std::move(dx));
  if (nin == 5) {
    give(outs, 1, std::move(dw));
    give(outs, 2, std::move(db));
  }
}

// q/k/v [.., T|S, D] as the kernel's 4-D [B, H, T, D] with stride 1 on D.
TsrTensorDesc desc4(const TensorImpl& t) {
  TsrTensorDesc d = desc(t);
  if (t.ndim_ == 3) {  // [N, T, D] -> [N, 1, T, D]
    d.ndim = 4;
    d.sizes[3] = t.sizes_[2];
    d.strides[3] = t.strides_[2];
    d.sizes[2] = t.sizes_[1];
    d.strides[2] = t.strides_[1];
    d.sizes[1] = 1;
    d.strides[1] = t.sizes_[1] * t.strides_[1];
  }
  return d;
}

struct AttnShape {
  int32_t nd;
  int64_t T, S, D, BH;
};

AttnShape check_attention(int32_t op, TensorImpl* const* in, int32_t n, const TsrAttrs& attrs, int32_t first) {
  const TensorImpl &q = *in[first], &k = *in[first + 1], &v = *in[first + 2];
  if (q.ndim_ < 3 || q.ndim_ > 4 || k.ndim_ != q.ndim_ || v.ndim_ != q.ndim_)
    bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "query, key and value must all be 3-D or 4-D ([B, H, T, D])");
  const int32_t nd = q.ndim_;
  for (int32_t i = 0; i < nd - 2; ++i)
    if (k.sizes_[i] != q.sizes_[i] || v.sizes_[i] != q.sizes_[i])
      bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "query, key and value must share their batch and head dims");
  if (k.sizes_[nd - 1] != q.sizes_[nd - 1])
    bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "key's head dim must equal query's");
  if (v.sizes_[nd - 1] != q.sizes_[nd - 1])
    bad(TSR_ERR_NOT_IMPLEMENTED, op, in, n, "a value head dim different from query's is not supported");
  if (v.sizes_[nd - 2] != k.sizes_[nd - 2]) bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "key and value must have one length");
  const double scale = attrs.hp[0], p = attrs.hp[1], causal = attrs.hp[2];
  if (!(scale >= 0) || !std::isfinite(scale)) bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "scale must be > 0, got " + num(scale));
  if (!(p >= 0 && p < 1)) bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "dropout_p must be in [0, 1), got " + num(p));
  if (causal != 0 && causal != 1) bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "causal (hp[2]) must be 0 or 1");
  AttnShape s{nd, q.sizes_[nd - 2], k.sizes_[nd - 2], q.sizes_[nd - 1], prod(q.sizes_, nd - 2)};
  if (s.S == 0 && s.T > 0) bad(TSR_ERR_INVALID_ARGUMENT, op, in, n, "key/value sequence length must be > 0");
  return s;
}

// Stride 1 on the last dim, else a contiguous copy.
TensorImpl* unit_last(TensorImpl* t, Tensor& keep) {
  if (t->strides_[t->ndim_ - 1] == 1 || t->sizes_[t->ndim_ - 1] == 1) return t;
  keep = contiguous(*t);
  return keep.get();
}

TsrAttrs attention_attrs(const TsrAttrs& attrs, int64_t D) {
  TsrAttrs a = attrs;
  if (a.hp[0] == 0) a.hp[0] = 1.0 / std::sqrt(static_cast<double>(D));
  return a;
}

// scaled_dot_product_attention(q, k, v) -> out, lse.
void attention(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin != 3) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects query, key, value");
  check_devices(op, in0, nin, nullptr);
  require_floating(op, in0, nin, 0, 3);
  const AttnShape s = check_attention(op, in0, nin, attrs, 0);
  const TensorImpl& q0 = *in0[0];
  Tensor keep[3];
  TensorImpl* in[3];
  for (int32_t i = 0; i < 3; ++i) in[i] = unit_last(in0[i], keep[i]);
  TsrAttrs a = attention_attrs(attrs, s.D);
  if (a.hp[1] > 0) a = draw(a, q0.device_, s.BH * s.T * s.S, 3);
  Tensor out = empty(q0.sizes_, q0.ndim_, q0.dtype_, q0.device_, "scaled_dot_product_attention");
  Tensor lse = empty(q0.sizes_, q0.ndim_ - 1, stats_dtype(q0.dtype_), q0.device_, "scaled_dot_product_attention");
  if (s.BH * s.T > 0) {
    TsrTensorDesc o[2] = {desc4(*out), desc_as(*lse, {s.BH / (s.nd == 4 ? q0.sizes_[1] : 1),
                                                      s.nd == 4 ? q0.sizes_[1] : 1, s.T})};
    TsrTensorDesc d[3] = {desc4(*in[0]), desc4(*in[1]), desc4(*in[2])};
    run_n(op, q0.device_, q0.dtype_, o, 2, d, 3, a);
  }
  give(outs, 0, std::move(out));
  give(outs, 1, std::move(lse));
}

// scaled_dot_product_attention_backward(grad, q, k, v, out, lse) -> dq, dk, dv.
void attention_backward(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin != 6) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects grad, query, key, value, out, lse");
  check_devices(op, in0, nin, nullptr);
  require_floating(op, in0, nin, 0, 5);
  const AttnShape s = check_attention(op, in0, nin, attrs, 1);
  const TensorImpl& q0 = *in0[1];
  if (!same_shape(*in0[0], q0.sizes_, q0.ndim_) || !same_shape(*in0[4], q0.sizes_, q0.ndim_) ||
      !same_shape(*in0[5], q0.sizes_, q0.ndim_ - 1) || in0[5]->dtype_ != stats_dtype(q0.dtype_))
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "grad and out must have query's shape, lse its rows");
  if (attrs.hp[1] > 0 && attrs.hp[3] != 1)
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "with dropout the backward must replay the forward's mask (hp[3] = 1)");
  Tensor keep[6];
  TensorImpl* in[6];
  for (int32_t i = 0; i < 6; ++i) in[i] = i == 1 || i == 2 || i == 3 ? unit_last(in0[i], keep[i]) : contig(in0[i], keep[i]);
  TsrAttrs a = attention_attrs(attrs, s.D);
  Tensor g[3];
  for (int32_t i = 0; i < 3; ++i)
    g[i] = empty(in0[i + 1]->sizes_, in0[i + 1]->ndim_, q0.dtype_, q0.device_, "scaled_dot_product_attention_backward");
  if (s.BH * s.T > 0) {
    const int64_t H = s.nd == 4 ? q0.sizes_[1] : 1;
    TsrTensorDesc o[3] = {desc4(*g[0]), desc4(*g[1]), desc4(*g[2])};
    TsrTensorDesc d[6] = {desc4(*in[0]), desc4(*in[1]), desc4(*in[2]),
                          desc4(*in[3]), desc4(*in[4]), desc_as(*in[5], {s.BH / H, H, s.T})};
    run_n(op, q0.device_, q0.dtype_, o, 3, d, 6, a);
  } else {
    for (Tensor& t : g) fill_kernel(*t, tsr_scalar_float(0));
  }
  for (int32_t i = 0; i < 3; ++i) give(outs, i, std::move(g[i]));
}

// cross_entropy(logits [N, C] or [C], target [N] or []) -> loss [N] or [], lse.
void cross_entropy(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  const bool bw = op == kOp_cross_entropy_backward;
  const int32_t L = bw ? 1 : 0;  // logits' position
  if (nin != (bw ? 4 : 2))
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + (bw ? "expects grad, logits, target, lse" : "expects logits, target"));
  check_devices(op, in0, nin, nullptr);
  require_floating(op, in0, nin, L, 1);
  require_integer(op, in0, nin, L + 1, "target");
  const TensorImpl &x0 = *in0[L], &t0 = *in0[L + 1];
  if (x0.ndim_ != 1 && x0.ndim_ != 2)
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "expects logits [N, C] or [C] (classes last)");
  const int64_t C = x0.sizes_[x0.ndim_ - 1], N = x0.ndim_ == 2 ? x0.sizes_[0] : 1;
  if (!same_shape(t0, x0.sizes_, x0.ndim_ - 1))
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "expected target of shape " + shape_str(x0.sizes_, x0.ndim_ - 1));
  if (C < 1) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "needs at least one class");
  const double ignore = attrs.hp[0], eps = attrs.hp[1];
  if (ignore != std::floor(ignore)) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "ignore_index must be an integer");
  if (!(eps >= 0 && eps <= 1)) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "label_smoothing must be in [0, 1], got " + num(eps));
  if (bw) {
    require_floating(op, in0, nin, 0, 1);
    if (!same_shape(*in0[0], x0.sizes_, x0.ndim_ - 1) || in0[3]->numel() != N || in0[3]->dtype_ != stats_dtype(x0.dtype_))
      bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "grad must have target's shape and lse be cross_entropy's");
  }
  Tensor keep[4];
  TensorImpl* in[4];
  for (int32_t i = 0; i < nin; ++i) in[i] = i == L + 1 ? as_index(in0[i], keep[i]) : contig(in0[i], keep[i]);
  if (bw) {
    Tensor dx = empty(x0.sizes_, x0.ndim_, x0.dtype_, x0.device_, "cross_entropy_backward");
    if (N > 0) {
      TsrTensorDesc o = desc_as(*dx, {N, C});
      TsrTensorDesc d[4] = {desc_as(*in[0], {N}), desc_as(*in[1], {N, C}), desc_as(*in[2], {N}), desc_as(*in[3], {N})};
      if (in[0]->dtype_ != x0.dtype_) {  // grad in the logits' dtype
        keep[0] = cast(*in[0], x0.dtype_);
        d[0] = desc_as(*keep[0], {N});
      }
      run_n(op, x0.device_, x0.dtype_, &o, 1, d, 4, attrs);
    }
    return give(outs, 0, std::move(dx));
  }
  Tensor loss = empty(x0.sizes_, x0.ndim_ - 1, x0.dtype_, x0.device_, "cross_entropy");
  Tensor lse = empty(x0.sizes_, x0.ndim_ - 1, stats_dtype(x0.dtype_), x0.device_, "cross_entropy");
  if (N > 0) {
    TsrTensorDesc o[2] = {desc_as(*loss, {N}), desc_as(*lse, {N})};
    TsrTensorDesc d[2] = {desc_as(*in[0], {N, C}), desc_as(*in[1], {N})};
    run_n(op, x0.device_, x0.dtype_, o, 2, d, 2, attrs);
  }
  give(outs, 0, std::move(loss));
  give(outs, 1, std::move(lse));
}

// ---- INDEX ---------------------------------------------------------------------------------

void index_select(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  const bool bw = op == kOp_index_select_backward;
  if (nin != 2) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + (bw ? "expects grad, index" : "expects input, index"));
  check_devices(op, in0, nin, nullptr);
  require_integer(op, in0, nin, 1, "index");
  if (in0[1]->ndim_ > 1) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "index must be 0-D or 1-D");
  if (bw) require_floating(op, in0, nin, 0, 1);
  const TensorImpl& x0 = *in0[0];
  const int64_t n = in0[1]->numel();
  // src is the indexed tensor's shape: x for the forward, attrs.shape for the backward
  int64_t src[TSR_MAX_DIMS];
  const int32_t nd = bw ? attrs.nshape : x0.ndim_;
  std::copy_n(bw ? attrs.shape : x0.sizes_, nd, src);
  if (nd < 1) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "expects a tensor of at least one dim");
  const int64_t dim = norm_dim(op, in0, nin, attrs.dim, nd);
  int64_t dst[TSR_MAX_DIMS];  // the selected shape
  std::copy_n(src, nd, dst);
  dst[dim] = n;
  if (bw && !same_shape(x0, dst, nd))
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "grad must have shape " + shape_str(dst, nd));
  Tensor keep[2];
  TensorImpl* in[2] = {contig(in0[0], keep[0]), as_index(in0[1], keep[1])};
  TsrAttrs a = attrs;
  a.dim = dim;
  if (bw) {
    a.hp[0] = a.hp[0] != 0 || g_deterministic.load(std::memory_order_relaxed) ? 1 : 0;
    Tensor out = empty(src, nd, x0.dtype_, x0.device_, "index_select_backward");
    if (out->numel() > 0) {
      if (n == 0 || x0.numel() == 0) {
        fill_kernel(*out, tsr_scalar_float(0));
      } else {
        TsrTensorDesc o = desc(*out), d[2] = {desc(*in[0]), desc_as(*in[1], {n})};
        run_n(op, x0.device_, x0.dtype_, &o, 1, d, 2, a);
      }
    }
    return give(outs, 0, std::move(out));
  }
  Tensor out = empty(dst, nd, x0.dtype_, x0.device_, "index_select");
  if (out->numel() > 0) {
    if (src[dim] == 0) bad(TSR_ERR_INDEX, op, in0, nin, "index out of range in self (dim " + std::to_string(dim) + " has size 0)");
    TsrTensorDesc o = desc(*out), d[2] = {desc(*in[0]), desc_as(*in[1], {n})};
    run_n(op, x0.device_, x0.dtype_, &o, 1, d, 2, a);
  }
  give(outs, 0, std::move(out));
}

void gather(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  const bool bw = op == kOp_gather_backward;
  if (nin != 2) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + (bw ? "expects grad, index" : "expects input, index"));
  check_devices(op, in0, nin, nullptr);
  require_integer(op, in0, nin, 1, "index");
  if (bw) require_floating(op, in0, nin, 0, 1);
  const TensorImpl &x0 = *in0[0], &i0 = *in0[1];
  const int32_t nd = bw ? attrs.nshape : x0.ndim_;
  const int64_t* src = bw ? attrs.shape : x0.sizes_;
  if (i0.ndim_ != nd)
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "index must have as many dims as the input (" + std::to_string(nd) + ")");
  const int64_t dim = norm_dim(op, in0, nin, attrs.dim, nd);
  for (int32_t d = 0; d < nd; ++d)
    if (d != dim && i0.sizes_[d] > src[d])
      bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin,
          "size of index in dim " + std::to_string(d) + " must not exceed the input's " + shape_str(src, nd));
  if (bw && !same_shape(x0, i0.sizes_, i0.ndim_)) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "grad must have index's shape");
  Tensor keep[2];
  TensorImpl* in[2] = {contig(in0[0], keep[0]), as_index(in0[1], keep[1])};
  TsrAttrs a = attrs;
  a.dim = dim;
  if (bw) a.hp[0] = a.hp[0] != 0 || g_deterministic.load(std::memory_order_relaxed) ? 1 : 0;
  Tensor out = bw ? empty(src, nd, x0.dtype_, x0.device_, "gather_backward")
                  : empty(i0.sizes_, i0.ndim_, x0.dtype_, x0.device_, "gather");
  if (out->numel() > 0) {
    if (i0.numel() == 0) {
      fill_kernel(*out, tsr_scalar_float(0));
    } else {
      if (!bw && src[dim] == 0) bad(TSR_ERR_INDEX, op, in0, nin, "index out of range (dim has size 0)");
      TsrTensorDesc o = desc(*out), d[2] = {desc(*in[0]), desc(*in[1])};
      if (nd == 0) {
        o = desc_as(*out, {1});
        d[0] = desc_as(*in[0], {1});
        d[1] = desc_as(*in[1], {1});
      }
      run_n(op, x0.device_, x0.dtype_, &o, 1, d, 2, a);
    }
  }
  give(outs, 0, std::move(out));
}

void triangle(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin != 1) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects one input");
  const TensorImpl& x0 = *in0[0];
  if (x0.ndim_ < 2) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "input tensor must have at least 2 dimensions");
  Tensor keep;
  TensorImpl* x = contig(in0[0], keep);
  Tensor out = empty(x0.sizes_, x0.ndim_, x0.dtype_, x0.device_, kOpInfo[op].name);
  if (out->numel() > 0) {
    TsrTensorDesc o = desc(*out), d = desc(*x);
    run_n(op, x0.device_, x0.dtype_, &o, 1, &d, 1, attrs);
  }
  give(outs, 0, std::move(out));
}

void topk(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin != 1) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects one input");
  const TensorImpl& x0 = *in0[0];
  if (x0.dtype_ == TSR_BOOL) bad(TSR_ERR_TYPE, op, in0, nin, "not implemented for bool");
  const int64_t dim = norm_dim(op, in0, nin, attrs.dim, x0.ndim_);
  const int64_t size = x0.ndim_ ? x0.sizes_[dim] : 1, k = attrs.index;
  if (k < 0 || k > size)
    bad(TSR_ERR_INDEX, op, in0, nin, "selected index k (" + std::to_string(k) + ") out of range for a dim of size " +
                                          std::to_string(size));
  if (attrs.hp[0] != 0 && attrs.hp[0] != 1) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "largest (hp[0]) must be 0 or 1");
  Tensor keep;
  TensorImpl* x = contig(in0[0], keep);
  int64_t shape[TSR_MAX_DIMS];
  std::copy_n(x0.sizes_, x0.ndim_, shape);
  if (x0.ndim_) shape[dim] = k;
  Tensor values = empty(shape, x0.ndim_, x0.dtype_, x0.device_, "topk");
  Tensor indices = empty(shape, x0.ndim_, TSR_INT64, x0.device_, "topk");
  if (values->numel() > 0) {
    TsrAttrs a = attrs;
    a.dim = dim;
    TsrTensorDesc o[2] = {desc(*values), desc(*indices)}, d = desc(*x);
    if (x0.ndim_ == 0) {
      o[0] = desc_as(*values, {1});
      o[1] = desc_as(*indices, {1});
      d = desc_as(*x, {1});
    }
    run_n(op, x0.device_, x0.dtype_, o, 2, &d, 1, a);
  }
  give(outs, 0, std::move(values));
  give(outs, 1, std::move(indices));
}

// ---- SAMPLE --------------------------------------------------------------------------------

void dropout(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin != 1) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects one input");
  require_floating(op, in0, nin, 0, 1);
  const TensorImpl& x0 = *in0[0];
  const double p = attrs.hp[0];
  if (!(p >= 0 && p <= 1))
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "dropout probability has to be between 0 and 1, but got " + num(p));
  Tensor keep;
  TensorImpl* x = contig(in0[0], keep);
  Tensor out = empty(x0.sizes_, x0.ndim_, x0.dtype_, x0.device_, "dropout");
  if (p == 1) {
    t_drawn = {attrs.seed, attrs.offset, true};
    if (out->numel() > 0) fill_kernel(*out, tsr_scalar_float(0));
  } else {
    TsrAttrs a = draw(attrs, x0.device_, x0.numel(), 1);
    if (out->numel() > 0) {
      TsrTensorDesc o = desc(*out), d = desc(*x);
      run_n(op, x0.device_, x0.dtype_, &o, 1, &d, 1, a);
    }
  }
  give(outs, 0, std::move(out));
}

void multinomial(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin != 1) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects one input (probabilities)");
  require_floating(op, in0, nin, 0, 1);
  const TensorImpl& p0 = *in0[0];
  if (p0.ndim_ != 1 && p0.ndim_ != 2) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "prob_dist must be 1 or 2 dim");
  const int64_t C = p0.sizes_[p0.ndim_ - 1], R = p0.ndim_ == 2 ? p0.sizes_[0] : 1, ns = attrs.index;
  if (C == 0) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "number of categories cannot be zero");
  if (ns <= 0) bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "cannot sample n_sample <= 0 samples");
  if (attrs.hp[0] == 0 && ns > C)
    bad(TSR_ERR_INVALID_ARGUMENT, op, in0, nin, "cannot sample n_sample > prob_dist.size(-1) samples without replacement");
  Tensor keep;
  TensorImpl* p = contig(in0[0], keep);
  int64_t shape[2] = {R, ns};
  Tensor out = p0.ndim_ == 2 ? empty(shape, 2, TSR_INT64, p0.device_, "multinomial")
                             : empty(shape + 1, 1, TSR_INT64, p0.device_, "multinomial");
  TsrAttrs a = draw(attrs, p0.device_, R * ns, 1);
  if (R > 0) {
    TsrTensorDesc o = desc_as(*out, {R, ns}), d = desc_as(*p, {R, C});
    run_n(op, p0.device_, p0.dtype_, &o, 1, &d, 1, a);
  }
  give(outs, 0, std::move(out));
}

// ---- FOREACH -------------------------------------------------------------------------------

void grad_norm(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin < 1) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects at least one tensor");
  const double p = attrs.hp[0];
  if (p != 2 && !std::isinf(p)) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "norm type must be 2 or inf, got " + num(p));
  bool f64 = false;
  for (int32_t i = 0; i < nin; ++i) {
    if (!is_floating(in0[i]->dtype_))
      fail(TSR_ERR_TYPE, prefix(op) + "tensor " + std::to_string(i) + " (" + describe(*in0[i]) + ") is not floating point");
    if (!(in0[i]->device_ == in0[0]->device_))
      fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects all tensors on one device, got " +
                                         device_str(in0[0]->device_) + " and " + device_str(in0[i]->device_));
    f64 |= in0[i]->dtype_ == TSR_FLOAT64;
  }
  const TsrDevice dev = in0[0]->device_;
  Tensor out = empty(nullptr, 0, f64 ? TSR_FLOAT64 : TSR_FLOAT32, dev, "grad_norm");
  std::vector<Tensor> keep(nin);
  std::vector<TsrTensorDesc> d;
  d.reserve(nin);
  for (int32_t i = 0; i < nin; ++i)
    if (in0[i]->numel() > 0) d.push_back(desc(*contig(in0[i], keep[i])));
  if (d.empty()) {
    fill_kernel(*out, tsr_scalar_float(0));
  } else {
    TsrTensorDesc o = desc(*out);
    run_n(op, dev, out->dtype_, &o, 1, d.data(), static_cast<int32_t>(d.size()), attrs);
  }
  give(outs, 0, std::move(out));
}

void clip_grad_scale(int32_t op, TensorImpl* const* in0, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs,
                     int32_t nout) {
  if (nin != 1) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects one input, the total norm");
  const TensorImpl& norm = *in0[0];
  if (!is_floating(norm.dtype_) || norm.numel() != 1)
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "total norm must be one floating element, got " + describe(norm));
  const double max_norm = attrs.hp[0];
  if (!(max_norm >= 0) || !std::isfinite(max_norm))
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "max_norm must be finite and >= 0, got " + num(max_norm));
  std::vector<Tensor> tmp(nout);
  std::vector<TsrTensorDesc> o;
  o.reserve(nout);
  for (int32_t i = 0; i < nout; ++i) {
    TensorImpl* t = outs[i];
    if (!t) fail(TSR_ERR_NULL_POINTER, prefix(op) + "output " + std::to_string(i) + " must be given (scaled in place)");
    if (!is_floating(t->dtype_) || !(t->device_ == norm.device_))
      fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "tensor " + std::to_string(i) + " (" + describe(*t) +
                                         ") must be floating point on " + device_str(norm.device_));
    if (t->numel() == 0) continue;
    if (!t->is_contiguous()) tmp[i] = clone(*t);  // scaled there, copied back below
    o.push_back(desc(tmp[i] ? *tmp[i] : *t));
  }
  if (!o.empty()) {
    Tensor nkeep;
    TsrTensorDesc d = desc(*contig(in0[0], nkeep));
    run_n(op, norm.device_, o[0].dtype, o.data(), static_cast<int32_t>(o.size()), &d, 1, attrs);
  }
  for (int32_t i = 0; i < nout; ++i) {
    if (tmp[i]) copy_kernel(*outs[i], *tmp[i]);
    outs[i]->storage_->bump_version();
  }
}

// ---- COMPOSITE -----------------------------------------------------------------------------

void cat(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  if (nin < 1) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expected a non-empty list of Tensors");
  // Legacy 1-D empty tensors are skipped, as PyTorch does.
  std::vector<TensorImpl*> t;
  for (int32_t i = 0; i < nin; ++i)
    if (!(in[i]->ndim_ == 1 && in[i]->sizes_[0] == 0)) t.push_back(in[i]);
  if (t.empty()) t.push_back(in[0]);
  const TensorImpl& ref = *t[0];
  if (ref.ndim_ == 0) op_fail(TSR_ERR_INVALID_ARGUMENT, op, "zero-dimensional tensor cannot be concatenated", in, nin);
  const int64_t dim = norm_dim(op, in, nin, attrs.dim, ref.ndim_);
  int32_t dtype = ref.dtype_;
  int64_t total = 0;
  for (TensorImpl* x : t) {
    if (!(x->device_ == ref.device_))
      op_fail(TSR_ERR_INVALID_ARGUMENT, op, "expected all tensors on one device, got " + device_str(ref.device_) +
                                                " and " + device_str(x->device_), in, nin);
    bool ok = x->ndim_ == ref.ndim_;
    for (int32_t d = 0; ok && d < ref.ndim_; ++d) ok = d == dim || x->sizes_[d] == ref.sizes_[d];
    if (!ok)
      op_fail(TSR_ERR_INVALID_ARGUMENT, op, "sizes of tensors must match except in dimension " + std::to_string(dim) +
                                                ": got " + shape_str(ref.sizes_, ref.ndim_) + " and " +
                                                shape_str(x->sizes_, x->ndim_), in, nin);
    dtype = promote_types(dtype, x->dtype_);
    total += x->sizes_[dim];
  }
  int64_t shape[TSR_MAX_DIMS];
  std::copy_n(ref.sizes_, ref.ndim_, shape);
  shape[dim] = total;
  Tensor out;
  if (outs[0]) {
    check_out(op, *outs[0], shape, ref.ndim_, dtype, in, nin);
    if (overlaps(*outs[0], in, nin, false))
      op_fail(TSR_ERR_INVALID_ARGUMENT, op, "the output overlaps an input", in, nin);
    out = Tensor::retain(outs[0]);
  } else {
    out = empty(shape, ref.ndim_, dtype, ref.device_, "cat");
  }
  int64_t start = 0;
  for (TensorImpl* x : t) {
    const int64_t n = x->sizes_[dim];
    if (n > 0 && x->numel() > 0) {
      Tensor part = narrow(*out, dim, start, n);
      copy_kernel(*part, *x);
    }
    start += n;
  }
  if (outs[0]) {
    outs[0]->storage_->bump_version();
  } else {
    give(outs, 0, std::move(out));
  }
}

}  // namespace

// ---- shared with ops.cpp and autograd ----------------------------------------------------------

void set_deterministic(bool on) { g_deterministic.store(on, std::memory_order_relaxed); }
bool deterministic() { return g_deterministic.load(std::memory_order_relaxed); }

DrawnRng take_drawn_rng() { return std::exchange(t_drawn, DrawnRng{}); }

int32_t natural_outputs(int32_t op, int32_t nin, int32_t requested) {
  switch (op) {
    case kOp_layer_norm: return 3;
    case kOp_layer_norm_backward: return nin == 5 ? 3 : 1;
    case kOp_scaled_dot_product_attention: return 2;
    case kOp_scaled_dot_product_attention_backward: return 3;
    case kOp_cross_entropy: return 2;
    case kOp_topk: return 2;
    case kOp_clip_grad_scale: return requested;
    default: return 1;
  }
}

int32_t max_inputs(int32_t op) {
  switch (kOpInfo[op].kind) {
    case OpKind::OPTIM: return 4;  // adam_step's optional step input
    case OpKind::FOREACH: return 1 << 20;
    case OpKind::COMPOSITE: return 64;
    case OpKind::NN: return op == kOp_scaled_dot_product_attention_backward ? 6 : 5;
    default: return 3;
  }
}

void transformer_op(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs,
                    int32_t nout) {
  if (op != kOp_clip_grad_scale && op != kOp_cat)
    for (int32_t i = 0; i < nout; ++i)
      if (outs[i]) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "returns new tensors: its outputs must be NULL");
  switch (op) {
    case kOp_layer_norm: return layer_norm(op, in, nin, attrs, outs);
    case kOp_layer_norm_backward: return layer_norm_backward(op, in, nin, attrs, outs);
    case kOp_scaled_dot_product_attention: return attention(op, in, nin, attrs, outs);
    case kOp_scaled_dot_product_attention_backward: return attention_backward(op, in, nin, attrs, outs);
    case kOp_cross_entropy:
    case kOp_cross_entropy_backward: return cross_entropy(op, in, nin, attrs, outs);
    case kOp_index_select:
    case kOp_index_select_backward: return index_select(op, in, nin, attrs, outs);
    case kOp_gather:
    case kOp_gather_backward: return gather(op, in, nin, attrs, outs);
    case kOp_triu:
    case kOp_tril: return triangle(op, in, nin, attrs, outs);
    case kOp_topk: return topk(op, in, nin, attrs, outs);
    case kOp_dropout: return dropout(op, in, nin, attrs, outs);
    case kOp_multinomial: return multinomial(op, in, nin, attrs, outs);
    case kOp_grad_norm: return grad_norm(op, in, nin, attrs, outs);
    case kOp_clip_grad_scale: return clip_grad_scale(op, in, nin, attrs, outs, nout);
    case kOp_cat: return cat(op, in, nin, attrs, outs);
    default: fail(TSR_ERR_RUNTIME, prefix(op) + "is not a transformer op");
  }
}

}  // namespace tessera
