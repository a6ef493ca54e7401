// The backward rules, one <op>_backward per differentiable op of ops.def (DESIGN §4), and
// which tensors each keeps (saved_mask). Rules are ops called through the dispatcher, never
// loops over data, so every plugin that has the forward kernels gets gradients. `g` is the
// gradient of the op's output; rules return the inputs' gradients in gi[] (the engine casts
// them to each input's dtype and device).
#include <algorithm>
#include <cmath>

#include "autograd.h"
#include "error.h"
#include "ops.h"

namespace tessera::autograd {

namespace {

// ---- calling ops ------------------------------------------------------------------------

// A tensor or scalar operand of an elementwise op.
struct Operand {
  TensorImpl* t = nullptr;
  TsrScalar s{};
};
Operand T(TensorImpl& t) {
  return {&t, {}};
}
Operand T(const Tensor& t) {
  return {t.get(), {}};
}
Operand S(double v) {
  return {nullptr, tsr_scalar_float(v)};
}

Tensor op1(int32_t op, TensorImpl& x, const TsrAttrs& a = default_attrs()) {
  TensorImpl* in[1] = {&x};
  return call1(op, in, 1, a);
}

// A BINARY or COMPARE op; at most one operand may be a scalar.
Tensor bin(int32_t op, Operand a, Operand b) {
  TsrAttrs at = default_attrs();
  if (a.t && b.t) {
    TensorImpl* in[2] = {a.t, b.t};
    return call1(op, in, 2, at);
  }
  at.scalar_arg = a.t ? 1 : 0;
  at.scalar = a.t ? b.s : a.s;
  return op1(op, a.t ? *a.t : *b.t, at);
}
Tensor add(Operand a, Operand b) {
  return bin(kOp_add, a, b);
}
Tensor sub(Operand a, Operand b) {
  return bin(kOp_sub, a, b);
}
Tensor mul(Operand a, Operand b) {
  return bin(kOp_mul, a, b);
}
Tensor div(Operand a, Operand b) {
  return bin(kOp_div, a, b);
}
Tensor neg(const Tensor& x) {
  return op1(kOp_neg, *x);
}

// where(cond, a, b) with a or b possibly a scalar.
Tensor where(const Tensor& cond, Operand a, Operand b) {
  TsrAttrs at = default_attrs();
  TensorImpl* in[3] = {cond.get(), a.t ? a.t : b.t, b.t};
  if (!a.t || !b.t) {
    at.scalar_arg = a.t ? 2 : 1;
    at.scalar = a.t ? b.s : a.s;
  }
  return call1(kOp_where, in, a.t && b.t ? 3 : 2, at);
}

Tensor cast(const Tensor& x, int32_t dtype) {
  TsrAttrs at = default_attrs();
  at.dtype = dtype;
  return op1(kOp_copy, *x, at);
}

Tensor zeros(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device) {
  return full(sizes, ndim, dtype, device, tsr_scalar_float(0));
}

// ---- shapes -------------------------------------------------------------------------------

// g summed over the dims it was broadcast along, viewed as `sizes`.
Tensor sum_to(const Tensor& g, const int64_t* sizes, int32_t ndim) {
  if (g->ndim_ == ndim && std::equal(sizes, sizes + ndim, g->sizes_)) return g;
  TsrAttrs at = default_attrs();
  at.keepdim = 1;
  const int32_t lead = g->ndim_ - ndim;
  for (int32_t i = 0; i < g->ndim_; ++i)
    if (i < lead || (sizes[i - lead] == 1 && g->sizes_[i] != 1)) at.dims[at.ndims++] = i;
  Tensor s = at.ndims ? op1(kOp_sum, *g, at) : g;
  return reshape(*s, sizes, ndim);
}
Tensor sum_to(const Tensor& g, const InputMeta& in) {
  return sum_to(g, in.sizes_, in.ndim_);
}

// The dims a REDUCE node reduced (attrs.dims, all when ndims == 0), their element count,
// and the attrs that reduce the same dims with keepdim.
struct Reduced {
  bool dim[TSR_MAX_DIMS] = {};
  int64_t count = 1;
  int64_t keep_sizes[TSR_MAX_DIMS] = {};  // the input's sizes with reduced dims set to 1
  TsrAttrs keep_attrs;
};
Reduced reduced_dims(const Node& n) {
  const InputMeta& in = n.in_[0];
  const TsrAttrs& at = n.attrs_;
  Reduced r;
  r.keep_attrs = default_attrs();
  r.keep_attrs.keepdim = 1;
  r.keep_attrs.correction = at.correction;
  for (int32_t i = 0; i < at.ndims; ++i)
    r.dim[at.dims[i] < 0 ? at.dims[i] + std::max(in.ndim_, 1) : at.dims[i]] = true;
  for (int32_t i = 0; i < in.ndim_; ++i) {
    if (at.ndims == 0) r.dim[i] = true;
    r.keep_sizes[i] = r.dim[i] ? 1 : in.sizes_[i];
    if (!r.dim[i]) continue;
    r.count *= in.sizes_[i];
    r.keep_attrs.dims[r.keep_attrs.ndims++] = i;
  }
  return r;
}

// A reduced tensor (either keepdim form) broadcast back to the input's shape.
Tensor expand_back(const Tensor& y, const Node& n, const Reduced& r) {
  const InputMeta& in = n.in_[0];
  Tensor k = reshape(*y, r.keep_sizes, in.ndim_);
  return expand(*k, in.sizes_, in.ndim_);
}

Tensor reduce_keep(int32_t op, const Tensor& x, const Reduced& r) {
  return op1(op, *x, r.keep_attrs);
}

Tensor softmax_sum(const Tensor& x, const TsrAttrs& fwd) {
  TsrAttrs at = default_attrs();
  at.ndims = 1;
  at.dims[0] = fwd.dim;
  at.keepdim = 1;
  return op1(kOp_sum, *x, at);
}

// ---- operands of a node ------------------------------------------------------------------

// Input indices of a BINARY op's operands a and b; -1 where attrs.scalar stands in.
struct Pair {
  int a, b;
};
Pair binary_inputs(const TsrAttrs& at) {
  return at.scalar_arg == 0 ? Pair{-1, 0} : at.scalar_arg == 1 ? Pair{0, -1} : Pair{0, 1};
}
// WHERE's a and b (cond is input 0).
Pair where_inputs(const TsrAttrs& at) {
  return at.scalar_arg == 1 ? Pair{-1, 1} : at.scalar_arg == 2 ? Pair{1, -1} : Pair{1, 2};
}
uint32_t bit(int i) {
  return i < 0 ? 0u : 1u << i;
}

// Operand i of the forward call as saved: its tensor, or attrs.scalar when i < 0.
Operand saved_operand(const Node& n, int i) {
  return i < 0 ? Operand{nullptr, n.attrs_.scalar} : T(n.saved(i));
}

bool needs(const Node& n, int i) {
  return i >= 0 && n.needs(i);
}

// ---- as_strided -------------------------------------------------------------------------------

// Splits dims (sizes > 1) into a set that addresses distinct elements and the rest (loop[d]):
// taken in increasing stride order, a dim joins the set when its stride clears the extent of
// the dims already in it. Returns whether any dim is left to loop over (the geometry overlaps).
bool split_overlap(const int64_t* sizes, const int64_t* strides, int32_t ndim, bool* loop) {
  int32_t order[TSR_MAX_DIMS], n = 0;
  for (int32_t d = 0; d < ndim; ++d) {
    loop[d] = false;
    if (sizes[d] > 1) order[n++] = d;
  }
  for (int32_t k = 1; k < n; ++k)  // insertion sort by stride (at most TSR_MAX_DIMS dims)
    for (int32_t j = k; j > 0 && strides[order[j]] < strides[order[j - 1]]; --j)
      std::swap(order[j], order[j - 1]);
  int64_t extent = 1;
  bool any = false;
  for (int32_t k = 0; k < n; ++k) {
    int32_t d = order[k];
    if (strides[d] >= extent) {
      extent += (sizes[d] - 1) * strides[d];
    } else {
      loop[d] = any = true;
    }
  }
  return any;
}

// flat[geometry] += src, summing where the geometry addresses an element more than once: the
// non-overlapping dims go in one add through an as_strided view, the others are looped over.
void add_strided(TensorImpl& flat, const Tensor& src, const int64_t* sizes, const int64_t* strides,
                 int32_t ndim, int64_t offset) {
  bool loop[TSR_MAX_DIMS];
  split_overlap(sizes, strides, ndim, loop);
  Tensor s = contiguous(*src);
  int64_t cs[TSR_MAX_DIMS], ks[TSR_MAX_DIMS], kst[TSR_MAX_DIMS], kcs[TSR_MAX_DIMS], idx[TSR_MAX_DIMS] = {};
  contiguous_strides(sizes, ndim, cs);
  int32_t kn = 0;
  for (int32_t d = 0; d < ndim; ++d)
    if (!loop[d]) ks[kn] = sizes[d], kst[kn] = strides[d], kcs[kn++] = cs[d];
  for (;;) {
    int64_t off = offset, soff = s->offset_;
    for (int32_t d = 0; d < ndim; ++d)
      if (loop[d]) off += idx[d] * strides[d], soff += idx[d] * cs[d];
    Tensor dst = as_strided(flat, ks, kst, kn, off), part = as_strided(*s, ks, kcs, kn, soff);
    TensorImpl* in[2] = {dst.get(), part.get()};
    call_into(kOp_add, in, 2, default_attrs(), dst.get());
    int32_t d = ndim - 1;
    for (; d >= 0; --d) {
      if (!loop[d]) continue;
      if (++idx[d] < sizes[d]) break;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

int64_t last_index(const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t offset) {
  for (int32_t d = 0; d < ndim; ++d) offset += (sizes[d] - 1) * strides[d];
  return offset;
}

// ---- the pieces shared by several rules ----------------------------------------------------

// Gradient of the input of a slice-like view: zeros with g written through the same view.
Tensor scatter_view(const Node& n, const Tensor& g) {
  const InputMeta& in = n.in_[0];
  Tensor z = zeros(in.sizes_, in.ndim_, g->dtype_, g->device_);
  Tensor v = view_op(n.op_, *z, n.attrs_);
  copy_(*v, *g);
  return z;
}

Tensor reshape_back(const Node& n, const Tensor& g) {
  return reshape(*g, n.in_[0].sizes_, n.in_[0].ndim_);
}

// max/min: the gradient split evenly among the elements equal to the result (PyTorch's amax,
// and max() over all dims).
void extremum_backward(Node& n, const Tensor& g, Tensor* gi) {
  Reduced r = reduced_dims(n);
  Tensor x = Tensor::retain(&n.saved(0));
  Tensor hit = bin(kOp_eq, T(x), T(expand_back(Tensor::retain(&n.saved(kSavedOutput)), n, r)));
  Tensor count = reduce_keep(kOp_sum, cast(hit, g->dtype_), r);
  gi[0] = where(hit, T(div(T(expand_back(g, n, r)), T(count))), S(0));
}

// maximum/minimum: ties split the gradient in half between the operands (as PyTorch).
void pairwise_extremum_backward(Node& n, const Tensor& g, Tensor* gi, int32_t wins) {
  auto [ia, ib] = binary_inputs(n.attrs_);
  Operand a = saved_operand(n, ia), b = saved_operand(n, ib);
  Tensor tie = bin(kOp_eq, a, b), half = mul(T(g), S(0.5));
  const int32_t loses = wins == kOp_gt ? kOp_lt : kOp_gt;
  if (needs(n, ia)) gi[ia] = sum_to(where(tie, T(half), T(where(bin(wins, a, b), T(g), S(0)))), n.in_[ia]);
  if (needs(n, ib)) gi[ib] = sum_to(where(tie, T(half), T(where(bin(loses, a, b), T(g), S(0)))), n.in_[ib]);
}

}  // namespace

// ---- what each rule keeps ---------------------------------------------------------------------

uint32_t saved_mask(int32_t op, const TsrAttrs& at, uint32_t needs) {
  constexpr uint32_t X = 1, OUT = kSaveOut;
  auto [a, b] = binary_inputs(at);
  switch (op) {
    case kOp_abs:
    case kOp_log:
    case kOp_sin:
    case kOp_cos:
    case kOp_gelu:
    case kOp_silu:
    case kOp_clamp:
    case kOp_var:
    case kOp_max_pool2d:
      return X;
    case kOp_exp:
    case kOp_sqrt:
    case kOp_rsqrt:
    case kOp_tanh:
    case kOp_sigmoid:
    case kOp_relu:
    case kOp_softmax:
    case kOp_log_softmax:
      return OUT;
    case kOp_max:
    case kOp_min:
    case kOp_prod:
    case kOp_std:
      return X | OUT;
    case kOp_where:
      return X;  // the condition
    case kOp_matmul:
    case kOp_conv2d:
      a = 0, b = 1;
      [[fallthrough]];
    case kOp_mul:
      return (needs & bit(a) ? bit(b) : 0) | (needs & bit(b) ? bit(a) : 0);
    case kOp_div:
      return (needs & bit(a) ? bit(b) : 0) | (needs & bit(b) ? bit(a) | bit(b) : 0);
    case kOp_pow:
      return bit(a) | bit(b) | (b >= 0 && (needs & bit(b)) ? OUT : 0);
    case kOp_maximum:
    case kOp_minimum:
      return bit(a) | bit(b);
    case kOp_layer_norm:  // x, the weight, mean and rstd
      return X | bit(1) | kSaveAux1 | kSaveAux2;
    case kOp_scaled_dot_product_attention:  // q, k, v, out, lse
      return X | bit(1) | bit(2) | OUT | kSaveAux1;
    case kOp_cross_entropy:  // logits, target, lse
      return X | bit(1) | kSaveAux1;
    case kOp_index_select:
    case kOp_gather:
      return bit(1);  // the index
    case kOp_topk:
      return kSaveAux1;  // the indices
    default:
      return 0;
  }
}

// ---- unary --------------------------------------------------------------------------------------

void neg_backward(Node&, const Tensor& g, Tensor* gi) {
  gi[0] = neg(g);
}

void abs_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl& x = n.saved(0);  // d|x| = sign(x), 0 at 0
  gi[0] = where(bin(kOp_gt, T(x), S(0)), T(g), T(where(bin(kOp_lt, T(x), S(0)), T(neg(g)), S(0))));
}

void exp_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = mul(T(g), T(n.saved(kSavedOutput)));
}

void log_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = div(T(g), T(n.saved(0)));
}

void sqrt_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = div(T(g), T(mul(T(n.saved(kSavedOutput)), S(2))));
}

void rsqrt_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl& y = n.saved(kSavedOutput);  // d x^-1/2 = -y^3 / 2
  gi[0] = mul(T(g), T(mul(T(bin(kOp_pow, T(y), S(3))), S(-0.5))));
}

void sin_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = mul(T(g), T(op1(kOp_cos, n.saved(0))));
}

void cos_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = mul(T(g), T(neg(op1(kOp_sin, n.saved(0)))));
}

void tanh_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl& y = n.saved(kSavedOutput);
  gi[0] = mul(T(g), T(sub(S(1), T(mul(T(y), T(y))))));
}

void sigmoid_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl& y = n.saved(kSavedOutput);
  gi[0] = mul(T(g), T(mul(T(y), T(sub(S(1), T(y))))));
}

void relu_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = where(bin(kOp_gt, T(n.saved(kSavedOutput)), S(0)), T(g), S(0));
}

void gelu_backward(Node& n, const Tensor& g, Tensor* gi) {
  TsrAttrs at = default_attrs();
  at.approximate = n.attrs_.approximate;
  TensorImpl* in[2] = {g.get(), &n.saved(0)};
  gi[0] = call1(kOp_gelu_backward, in, 2, at);
}

void silu_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl& x = n.saved(0);  // d x*s(x) = s * (1 + x * (1 - s))
  Tensor s = op1(kOp_sigmoid, x);
  gi[0] = mul(T(g), T(mul(T(s), T(add(T(mul(T(x), T(sub(S(1), T(s))))), S(1))))));
}

// ---- binary ------------------------------------------------------------------------------------

void add_backward(Node& n, const Tensor& g, Tensor* gi) {
  auto [a, b] = binary_inputs(n.attrs_);
  const TsrScalar& alpha = n.attrs_.alpha;
  if (needs(n, a)) gi[a] = sum_to(g, n.in_[a]);
  if (needs(n, b))
    gi[b] = sum_to(scalar_as_double(alpha) == 1 ? g : mul(T(g), Operand{nullptr, alpha}), n.in_[b]);
}

void sub_backward(Node& n, const Tensor& g, Tensor* gi) {
  auto [a, b] = binary_inputs(n.attrs_);
  if (needs(n, a)) gi[a] = sum_to(g, n.in_[a]);
  if (needs(n, b)) gi[b] = sum_to(mul(T(g), S(-scalar_as_double(n.attrs_.alpha))), n.in_[b]);
}

void mul_backward(Node& n, const Tensor& g, Tensor* gi) {
  auto [a, b] = binary_inputs(n.attrs_);
  if (needs(n, a)) gi[a] = sum_to(mul(T(g), saved_operand(n, b)), n.in_[a]);
  if (needs(n, b)) gi[b] = sum_to(mul(T(g), saved_operand(n, a)), n.in_[b]);
}

void div_backward(Node& n, const Tensor& g, Tensor* gi) {
  auto [a, b] = binary_inputs(n.attrs_);
  if (needs(n, a)) gi[a] = sum_to(div(T(g), saved_operand(n, b)), n.in_[a]);
  if (needs(n, b)) {  // d(a/b)/db = -(a/b)/b
    Operand bv = saved_operand(n, b);
    gi[b] = sum_to(mul(T(neg(g)), T(div(T(div(saved_operand(n, a), bv)), bv))), n.in_[b]);
  }
}

// PyTorch's pow_backward_self / pow_backward_exponent: exponent 0 gives 0 (not 0 * x^-1), and
// a 0 base with a non-negative exponent gives 0 (not g * 0 * log 0). Tensor operands are first
// cast to the result's dtype (g's): an int32 exponent minus 1.0 would be float32, which
// outranks a 0-dim float64 base.
void pow_backward(Node& n, const Tensor& g, Tensor* gi) {
  auto [a, b] = binary_inputs(n.attrs_);
  Tensor keep[2];
  auto in_result_dtype = [&](int i) {
    Operand o = saved_operand(n, i);
    if (o.t && o.t->dtype_ != g->dtype_) o.t = (keep[i] = cast(Tensor::retain(o.t), g->dtype_)).get();
    return o;
  };
  Operand base = in_result_dtype(a), e = in_result_dtype(b);
  if (needs(n, a)) {
    const InputMeta& in = n.in_[a];
    if (!e.t && scalar_as_double(e.s) == 0) {
      gi[a] = zeros(in.sizes_, in.ndim_, g->dtype_, g->device_);
    } else {
      Tensor e1 = e.t ? sub(e, S(1)) : Tensor();
      Tensor d = mul(T(g), T(mul(e, T(bin(kOp_pow, base, e.t ? T(e1) : S(scalar_as_double(e.s) - 1))))));
      gi[a] = sum_to(e.t ? where(bin(kOp_eq, e, S(0)), S(0), T(d)) : d, in);
    }
  }
  if (needs(n, b)) {
    Tensor logb = base.t ? op1(kOp_log, *base.t) : Tensor();
    Tensor d =
        mul(T(g), T(mul(T(n.saved(kSavedOutput)), base.t ? T(logb) : S(std::log(scalar_as_double(base.s))))));
    Tensor zero_base = base.t ? bin(kOp_eq, base, S(0)) : Tensor();
    if (base.t)
      d = where(zero_base, T(where(bin(kOp_ge, e, S(0)), S(0), T(d))), T(d));
    else if (scalar_as_double(base.s) == 0)
      d = where(bin(kOp_ge, e, S(0)), S(0), T(d));
    gi[b] = sum_to(d, n.in_[b]);
  }
}

void maximum_backward(Node& n, const Tensor& g, Tensor* gi) {
  pairwise_extremum_backward(n, g, gi, kOp_gt);
}

void minimum_backward(Node& n, const Tensor& g, Tensor* gi) {
  pairwise_extremum_backward(n, g, gi, kOp_lt);
}

// ---- selection, copies --------------------------------------------------------------------------

void where_backward(Node& n, const Tensor& g, Tensor* gi) {
  auto [a, b] = where_inputs(n.attrs_);
  Tensor cond = Tensor::retain(&n.saved(0));
  if (needs(n, a)) gi[a] = sum_to(where(cond, T(g), S(0)), n.in_[a]);
  if (needs(n, b)) gi[b] = sum_to(where(cond, S(0), T(g)), n.in_[b]);
}

// PyTorch's clamp_backward: the gradient passes where min <= x <= max.
void clamp_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl& x = n.saved(0);
  const TsrAttrs& at = n.attrs_;
  Tensor r = g;
  if (at.has_scalar2) r = where(bin(kOp_le, T(x), Operand{nullptr, at.scalar2}), T(r), S(0));
  if (at.has_scalar) r = where(bin(kOp_ge, T(x), Operand{nullptr, at.scalar}), T(r), S(0));
  gi[0] = r;
}

// The cast (copy with attrs.dtype), copy_ (broadcast source) and tsr_to across devices.
void copy_backward(Node& n, const Tensor& g, Tensor* gi) {
  const InputMeta& in = n.in_[0];
  gi[0] = to(*sum_to(g, in), in.device_, in.dtype_);
}

// ---- reductions ---------------------------------------------------------------------------------

void sum_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = expand_back(g, n, reduced_dims(n));
}

void mean_backward(Node& n, const Tensor& g, Tensor* gi) {
  Reduced r = reduced_dims(n);
  gi[0] = div(T(expand_back(g, n, r)), S(static_cast<double>(r.count)));
}

void max_backward(Node& n, const Tensor& g, Tensor* gi) {
  extremum_backward(n, g, gi);
}

void min_backward(Node& n, const Tensor& g, Tensor* gi) {
  extremum_backward(n, g, gi);
}

// d prod / d x_i = product of the others: y / x_i where x_i != 0; where x_i == 0, the product
// of the non-zero elements when x_i is the slice's only zero, else 0.
void prod_backward(Node& n, const Tensor& g, Tensor* gi) {
  Reduced r = reduced_dims(n);
  Tensor x = Tensor::retain(&n.saved(0));
  Tensor y = expand_back(Tensor::retain(&n.saved(kSavedOutput)), n, r);
  Tensor zero = bin(kOp_eq, T(x), S(0));
  Tensor zeros_per_slice = reduce_keep(kOp_sum, cast(zero, g->dtype_), r);
  Tensor prod_nonzero = reduce_keep(kOp_prod, where(zero, S(1), T(x)), r);
  Tensor at_zero = where(bin(kOp_eq, T(zeros_per_slice), S(1)), T(prod_nonzero), S(0));
  gi[0] = mul(T(expand_back(g, n, r)), T(where(zero, T(at_zero), T(div(T(y), T(x))))));
}

// PyTorch's var_backward: g * 2 (x - mean) / (N - correction), N - correction <= 0 included.
Tensor var_grad(Node& n, const Tensor& g) {
  Reduced r = reduced_dims(n);
  Tensor x = Tensor::retain(&n.saved(0));
  Tensor centered = sub(T(x), T(reduce_keep(kOp_mean, x, r)));
  double dof = static_cast<double>(r.count - n.attrs_.correction);
  return mul(T(expand_back(g, n, r)), T(mul(T(centered), S(2 / dof))));
}

void var_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = var_grad(n, g);
}

// PyTorch's std_backward: var's rule for g / (2 std), masked to 0 where std is 0 (all values
// equal), so the slice gets 0 rather than 0 / 0.
void std_backward(Node& n, const Tensor& g, Tensor* gi) {
  Tensor y = Tensor::retain(&n.saved(kSavedOutput));
  gi[0] = var_grad(n, where(bin(kOp_eq, T(y), S(0)), S(0), T(div(T(g), T(mul(T(y), S(2)))))));
}

void softmax_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl& y = n.saved(kSavedOutput);  // y * (g - sum(g * y))
  gi[0] = mul(T(y), T(sub(T(g), T(softmax_sum(mul(T(g), T(y)), n.attrs_)))));
}

void log_softmax_backward(Node& n, const Tensor& g, Tensor* gi) {
  Tensor p = op1(kOp_exp, n.saved(kSavedOutput));  // g - softmax * sum(g)
  gi[0] = sub(T(g), T(mul(T(p), T(softmax_sum(g, n.attrs_)))));
}

// ---- matmul -------------------------------------------------------------------------------------

// 1-D operands are made 2-D (a: [1, k], b: [k, 1]) and g given back the dims matmul dropped;
// then ga = g @ b^T and gb = a^T @ g, summed over broadcast batch dims.
void matmul_backward(Node& n, const Tensor& g, Tensor* gi) {
  const InputMeta &ia = n.in_[0], &ib = n.in_[1];
  if (ia.ndim_ == 1 && ib.ndim_ == 1) {
    if (n.needs(0)) gi[0] = mul(T(g), T(n.saved(1)));
    if (n.needs(1)) gi[1] = mul(T(g), T(n.saved(0)));
    return;
  }
  if (ia.ndim_ >= 3 && ib.ndim_ == 2) {
    // (..., M, K) @ (K, N), as Linear: fold the batch into M, one GEMM per gradient (not a
    // batched product and a sum over the batch for b's).
    const int64_t K = ib.sizes_[0], N = ib.sizes_[1];
    const int64_t g_rows[2] = {-1, N}, a_rows[2] = {-1, K};
    Tensor g2 = reshape(*g, g_rows, 2);  // g2 is (B*M, N)
    if (n.needs(0)) {
      Tensor bt = transpose(n.saved(1), 0, 1);
      TensorImpl* in[2] = {g2.get(), bt.get()};
      gi[0] = reshape(*call1(kOp_matmul, in, 2, default_attrs()), ia.sizes_, ia.ndim_);
    }
    if (n.needs(1)) {
      Tensor at = transpose(*reshape(n.saved(0), a_rows, 2), 0, 1);  // at is (K, B*M)
      TensorImpl* in[2] = {at.get(), g2.get()};
      gi[1] = call1(kOp_matmul, in, 2, default_attrs());
    }
    return;
  }
  Tensor g2 = g;
  if (ia.ndim_ == 1) g2 = unsqueeze(*g2, -2);
  if (ib.ndim_ == 1) g2 = unsqueeze(*g2, -1);
  auto as_2d = [](TensorImpl& t, bool is_a) {
    return t.ndim_ == 1 ? unsqueeze(t, is_a ? 0 : 1) : Tensor::retain(&t);
  };
  auto shape_2d = [](const InputMeta& m, bool is_a, int64_t* s) {
    if (m.ndim_ > 1) return std::copy_n(m.sizes_, m.ndim_, s), m.ndim_;
    s[0] = is_a ? 1 : m.sizes_[0], s[1] = is_a ? m.sizes_[0] : 1;
    return 2;
  };
  int64_t s[TSR_MAX_DIMS];
  if (n.needs(0)) {
    Tensor bt = transpose(*as_2d(n.saved(1), false), -1, -2);
    TensorImpl* in[2] = {g2.get(), bt.get()};
    Tensor ga = sum_to(call1(kOp_matmul, in, 2, default_attrs()), s, shape_2d(ia, true, s));
    gi[0] = reshape(*ga, ia.sizes_, ia.ndim_);
  }
  if (n.needs(1)) {
    Tensor at = transpose(*as_2d(n.saved(0), true), -1, -2);
    TensorImpl* in[2] = {at.get(), g2.get()};
    Tensor gb = sum_to(call1(kOp_matmul, in, 2, default_attrs()), s, shape_2d(ib, false, s));
    gi[1] = reshape(*gb, ib.sizes_, ib.ndim_);
  }
}

// ---- views ----------------------------------------------------------------------------------------

void view_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = reshape_back(n, g);
}
void reshape_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = reshape_back(n, g);
}
void flatten_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = reshape_back(n, g);
}
void squeeze_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = reshape_back(n, g);
}
void unsqueeze_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = reshape_back(n, g);
}

void permute_backward(Node& n, const Tensor& g, Tensor* gi) {
  int64_t inverse[TSR_MAX_DIMS];
  const int32_t nd = n.in_[0].ndim_;
  for (int32_t i = 0; i < nd; ++i)
    inverse[n.attrs_.dims[i] < 0 ? n.attrs_.dims[i] + nd : n.attrs_.dims[i]] = i;
  gi[0] = permute(*g, inverse, nd);
}

void transpose_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = transpose(*g, n.attrs_.dim, n.attrs_.dim2);
}

void slice_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = scatter_view(n, g);
}
void narrow_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = scatter_view(n, g);
}
void select_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = scatter_view(n, g);
}

void expand_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = sum_to(g, n.in_[0]);
}

// Over the storage span both geometries touch: g is added into a zero buffer through the
// output's geometry (overlapping elements summed, see add_strided), and the input's geometry
// reads the gradient back. Where the input's own geometry overlaps, each element gets the
// storage gradient divided by how many of the input's elements share it (as PyTorch).
void as_strided_backward(Node& n, const Tensor& g, Tensor* gi) {
  const InputMeta& in = n.in_[0];
  const TsrAttrs& at = n.attrs_;
  int64_t in_numel = 1;
  for (int32_t d = 0; d < in.ndim_; ++d) in_numel *= in.sizes_[d];
  if (in_numel == 0 || g->numel() == 0) {
    gi[0] = zeros(in.sizes_, in.ndim_, g->dtype_, g->device_);
    return;
  }
  const int64_t lo = std::min(n.in_offset_, at.index);
  const int64_t hi = std::max(last_index(in.sizes_, n.in_strides_, in.ndim_, n.in_offset_),
                              last_index(at.shape, at.strides, at.nshape, at.index));
  const int64_t span = hi - lo + 1;
  Tensor flat = zeros(&span, 1, g->dtype_, g->device_);
  add_strided(*flat, g, at.shape, at.strides, at.nshape, at.index - lo);
  Tensor r = as_strided(*flat, in.sizes_, n.in_strides_, in.ndim_, n.in_offset_ - lo);
  bool loop[TSR_MAX_DIMS];
  if (split_overlap(in.sizes_, n.in_strides_, in.ndim_, loop)) {
    Tensor count = zeros(&span, 1, g->dtype_, g->device_);
    Tensor ones = full(in.sizes_, in.ndim_, g->dtype_, g->device_, tsr_scalar_float(1));
    add_strided(*count, ones, in.sizes_, n.in_strides_, in.ndim_, n.in_offset_ - lo);
    r = div(T(r), T(as_strided(*count, in.sizes_, n.in_strides_, in.ndim_, n.in_offset_ - lo)));
  }
  gi[0] = r;
}

// ---- convolution and pooling ------------------------------------------------------------------

void conv2d_backward(Node& n, const Tensor& g, Tensor* gi) {
  TsrAttrs at = n.attrs_;
  at.nshape = 4;
  if (n.needs(0)) {
    std::copy_n(n.in_[0].sizes_, 4, at.shape);
    TensorImpl* in[2] = {g.get(), &n.saved(1)};
    gi[0] = call1(kOp_conv2d_backward_input, in, 2, at);
  }
  if (n.needs(1)) {
    std::copy_n(n.in_[1].sizes_, 4, at.shape);
    TensorImpl* in[2] = {g.get(), &n.saved(0)};
    gi[1] = call1(kOp_conv2d_backward_weight, in, 2, at);
  }
  if (n.num_inputs_ > 2 && n.needs(2)) {
    TsrAttrs s = default_attrs();
    s.ndims = 3;
    s.dims[0] = 0, s.dims[1] = 2, s.dims[2] = 3;
    gi[2] = op1(kOp_sum, *g, s);
  }
}

void max_pool2d_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl* in[2] = {g.get(), &n.saved(0)};
  gi[0] = call1(kOp_max_pool2d_backward, in, 2, n.attrs_);
}

// ---- transformer ops ----------------------------------------------------------------------------

namespace {

// Calls op with several outputs (all made by the runtime) and returns them.
void call_n(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& at, Tensor* outs, int32_t nout) {
  TensorImpl* o[3] = {};
  call(op, in, nin, at, o, nout);
  for (int32_t i = 0; i < nout; ++i) outs[i] = Tensor(o[i]);
}

}  // namespace

void layer_norm_backward(Node& n, const Tensor& g, Tensor* gi) {
  const bool affine = n.num_inputs_ > 1;
  TensorImpl* in[5] = {g.get(), &n.saved(0), &n.saved(kSavedAux), &n.saved(kSavedAux + 1),
                       affine ? &n.saved(1) : nullptr};
  Tensor r[3];
  call_n(kOp_layer_norm_backward, in, affine ? 5 : 4, n.attrs_, r, affine ? 3 : 1);
  gi[0] = r[0];
  if (affine) gi[1] = r[1];
  if (n.num_inputs_ > 2) gi[2] = r[2];
}

void scaled_dot_product_attention_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl* in[6] = {g.get(), &n.saved(0), &n.saved(1), &n.saved(2), &n.saved(kSavedOutput), &n.saved(kSavedAux)};
  call_n(kOp_scaled_dot_product_attention_backward, in, 6, n.attrs_, gi, 3);
}

void cross_entropy_backward(Node& n, const Tensor& g, Tensor* gi) {
  TensorImpl* in[4] = {g.get(), &n.saved(0), &n.saved(1), &n.saved(kSavedAux)};
  gi[0] = call1(kOp_cross_entropy_backward, in, 4, n.attrs_);
}

namespace {

// The scatter-add backward (index_select_backward, gather_backward) into input 0's shape.
Tensor scatter_back(int32_t op, Node& n, const Tensor& g, TensorImpl& index, const TsrAttrs& base) {
  TsrAttrs at = base;
  at.nshape = n.in_[0].ndim_;
  std::copy_n(n.in_[0].sizes_, at.nshape, at.shape);
  at.hp[0] = 0;  // the runtime turns it on in deterministic mode
  TensorImpl* in[2] = {g.get(), &index};
  return call1(op, in, 2, at);
}

}  // namespace

void index_select_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = scatter_back(kOp_index_select_backward, n, g, n.saved(1), n.attrs_);
}

void gather_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = scatter_back(kOp_gather_backward, n, g, n.saved(1), n.attrs_);
}

void triu_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = op1(kOp_triu, *g, n.attrs_);
}

void tril_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = op1(kOp_tril, *g, n.attrs_);
}

void topk_backward(Node& n, const Tensor& g, Tensor* gi) {
  TsrAttrs at = default_attrs();
  at.dim = n.attrs_.dim;
  if (n.in_[0].ndim_ == 0) {  // a scalar's top-1 is itself
    gi[0] = g;
    return;
  }
  gi[0] = scatter_back(kOp_gather_backward, n, g, n.saved(kSavedAux), at);
}

void dropout_backward(Node& n, const Tensor& g, Tensor* gi) {
  gi[0] = op1(kOp_dropout, *g, n.attrs_);  // the forward's mask, replayed (hp[1] = 1)
}

void cat_backward(Node& n, const Tensor& g, Tensor* gi) {
  const int32_t nd = g->ndim_;
  const int64_t dim = n.attrs_.dim < 0 ? n.attrs_.dim + nd : n.attrs_.dim;
  int64_t start = 0;
  for (int32_t i = 0; i < n.num_inputs_; ++i) {
    const InputMeta& in = n.in_[i];
    if (in.ndim_ == 1 && in.sizes_[0] == 0 && nd != 1) {  // a skipped legacy empty tensor
      if (n.needs(i)) gi[i] = zeros(in.sizes_, 1, g->dtype_, g->device_);
      continue;
    }
    const int64_t len = in.sizes_[dim];
    if (n.needs(i)) gi[i] = narrow(*g, dim, start, len);
    start += len;
  }
}

}  // namespace tessera::autograd
