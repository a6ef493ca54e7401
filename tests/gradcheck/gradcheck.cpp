// Finite-difference gradient check, in float64, of every differentiable op of ops.def (DESIGN
// §4), through the host C ABI only. For each variant (shapes with broadcasting, scalar
// operands, keepdim, non-contiguous inputs, in-place forms) the analytic vector-Jacobian
// product of a random cotangent R (tsr_autograd_grad, and tsr_backward into .grad) is compared
// with central differences of sum(f(x) * R). An op of ops.def with diff = 1 and no case here
// fails the suite; an op whose kernels are missing (TSR_ERR_NOT_IMPLEMENTED) is reported.
//
// Usage: gradcheck [--op NAME]...
#include <tessera/tessera.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr TsrDevice kCpu{TSR_DEVICE_CPU, 0};
constexpr double kEps = 1e-6, kAtol = 1e-5, kRtol = 1e-3;  // torch.autograd.gradcheck's

using Shape = std::vector<int64_t>;

// An owned tensor handle.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(TsrTensor t) : t_(t) {}
  Tensor(Tensor&& o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
  Tensor& operator=(Tensor&& o) noexcept {
    std::swap(t_, o.t_);
    return *this;
  }
  ~Tensor() { tsr_release(t_); }
  TsrTensor get() const { return t_; }
  TsrTensor* out() {
    tsr_release(std::exchange(t_, nullptr));
    return &t_;
  }
  TsrTensor release() { return std::exchange(t_, nullptr); }
  explicit operator bool() const { return t_ != nullptr; }

 private:
  TsrTensor t_ = nullptr;
};

// A failed C ABI call inside a case: its status and message.
struct Failure {
  int32_t status;
  std::string message;
};
void ok(int32_t status) {
  if (status != TSR_OK) throw Failure{status, tsr_last_error()};
}

TsrTensorInfo info(TsrTensor t) {
  TsrTensorInfo i{};
  i.struct_size = sizeof i;
  ok(tsr_tensor_info(t, &i));
  return i;
}
Shape sizes(TsrTensor t) {
  TsrTensorInfo i = info(t);
  return Shape(i.sizes, i.sizes + i.ndim);
}
int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
std::vector<double> read(TsrTensor t) {
  std::vector<double> v(static_cast<size_t>(info(t).numel));
  ok(tsr_copy_to_host(t, v.data(), v.size() * sizeof(double)));
  return v;
}

// ---- inputs ---------------------------------------------------------------------------------

enum class Layout { Contiguous, Transposed, Strided };

struct InputSpec {
  explicit InputSpec(Shape s, Layout l = Layout::Contiguous) : shape(std::move(s)), layout(l) {}
  Shape shape;
  Layout layout = Layout::Contiguous;
  double lo = -2, hi = 2;
  std::vector<double> kinks;  // values kept at least 0.05 away from (|x|, max, ...)
  std::vector<double> fixed;  // given values instead of random ones
  bool diff = true;           // requires grad (false: a bool condition, an integer index...)
  bool boolean = false;       // a bool tensor (> 0)
};

InputSpec in(Shape s, Layout l = Layout::Contiguous) {
  return InputSpec(std::move(s), l);
}
InputSpec positive(Shape s, Layout l = Layout::Contiguous) {
  InputSpec r{std::move(s), l};
  r.lo = 0.5;
  return r;
}
InputSpec away_from(Shape s, std::vector<double> kinks, Layout l = Layout::Contiguous) {
  InputSpec r{std::move(s), l};
  r.kinks = std::move(kinks);
  return r;
}
InputSpec fixed(Shape s, std::vector<double> v) {
  InputSpec r{std::move(s)};
  r.fixed = std::move(v);
  return r;
}
InputSpec condition(Shape s) {
  InputSpec r{std::move(s)};
  r.diff = false;
  r.boolean = true;
  return r;
}

// A tensor with logical (row-major) values v in the given memory layout.
Tensor upload(const std::vector<double>& v, const Shape& shape, Layout layout, bool boolean) {
  const int32_t nd = static_cast<int32_t>(shape.size());
  Tensor t;
  if (boolean) {
    std::vector<uint8_t> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) b[i] = v[i] > 0;
    ok(tsr_from_buffer(b.data(), shape.data(), nd, TSR_BOOL, kCpu, t.out()));
    return t;
  }
  if (layout == Layout::Contiguous || nd == 0) {
    ok(tsr_from_buffer(v.data(), shape.data(), nd, TSR_FLOAT64, kCpu, t.out()));
    return t;
  }
  Shape base_shape = shape;
  std::vector<double> base;
  std::vector<int64_t> perm(static_cast<size_t>(nd));
  if (layout == Layout::Transposed) {  // base has the reversed shape; a permute view reads it
    for (int32_t d = 0; d < nd; ++d) base_shape[d] = shape[nd - 1 - d], perm[d] = nd - 1 - d;
    base.resize(v.size());
    std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
    for (size_t i = 0; i < v.size(); ++i) {
      int64_t off = 0;  // offset of logical idx in the reversed-shape base
      for (int32_t d = 0; d < nd; ++d) off = off * base_shape[d] + idx[nd - 1 - d];
      base[static_cast<size_t>(off)] = v[i];
      for (int32_t d = nd - 1; d >= 0 && ++idx[d] == shape[d]; --d) idx[d] = 0;
    }
  } else {  // every other element of a last dim twice as long
    base_shape[nd - 1] *= 2;
    base.assign(v.size() * 2, 1e300);
    for (size_t i = 0; i < v.size(); ++i) base[2 * i] = v[i];
  }
  Tensor b;
  ok(tsr_from_buffer(base.data(), base_shape.data(), nd, TSR_FLOAT64, kCpu, b.out()));
  if (layout == Layout::Transposed)
    ok(tsr_permute(b.get(), perm.data(), nd, t.out()));
  else
    ok(tsr_slice(b.get(), nd - 1, 0, base_shape[nd - 1], 2, t.out()));
  return t;
}

const char* layout_str(Layout l) {
  return l == Layout::Transposed ? " transposed" : l == Layout::Strided ? " strided" : "";
}

// ---- variants -------------------------------------------------------------------------------

using Fn = std::function<void(const std::vector<TsrTensor>& x, TsrTensor* out)>;

struct Variant {
  std::string label;
  std::vector<InputSpec> inputs;
  Fn fn;
};

using Cases = std::vector<Variant>;

std::string label(const std::string& what, const std::vector<InputSpec>& specs) {
  std::string s = what + "(";
  for (size_t i = 0; i < specs.size(); ++i)
    s += (i ? ", " : "") + shape_str(specs[i].shape) + layout_str(specs[i].layout);
  return s + ")";
}

int32_t op_id(const char* name) {
  int32_t id = -1;
  ok(tsr_op_lookup(name, &id));
  return id;
}

TsrAttrs attrs() {
  TsrAttrs a;
  tsr_attrs_init(&a);
  return a;
}

// tsr_call of op on x with attrs a into a new tensor.
void call(const char* op, const std::vector<TsrTensor>& x, const TsrAttrs& a, TsrTensor* out) {
  *out = nullptr;
  ok(tsr_call(op_id(op), x.data(), static_cast<int32_t>(x.size()), &a, out, 1));
}

// The in-place form: c = clone(x[0]); op(c, x[1..]) written into c (a non-leaf's history rebased).
void call_in_place(const char* op, const std::vector<TsrTensor>& x, const TsrAttrs& a, TsrTensor* out) {
  Tensor c;
  ok(tsr_clone(x[0], c.out()));
  std::vector<TsrTensor> in = x;
  in[0] = c.get();
  TsrTensor dst = c.get();
  ok(tsr_call(op_id(op), in.data(), static_cast<int32_t>(in.size()), &a, &dst, 1));
  *out = c.release();
}

// ---- the check --------------------------------------------------------------------------------

struct Stats {
  int variants = 0, failed = 0, unsupported = 0;
  std::vector<std::string> messages;
};

std::mt19937_64 g_rng(20240607);

std::vector<double> values(const InputSpec& s) {
  if (!s.fixed.empty()) return s.fixed;
  std::uniform_real_distribution<double> u(s.lo, s.hi);
  std::vector<double> v(static_cast<size_t>(numel(s.shape)));
  for (double& x : v) {
    for (;;) {
      x = u(g_rng);
      bool near = false;
      for (double k : s.kinks) near |= std::fabs(x - k) < 0.05;
      if (!near) break;
    }
  }
  return v;
}

// f(x) with the given values; requires_grad on the differentiable inputs when `grad`.
Tensor evaluate(const Variant& v, const std::vector<std::vector<double>>& data, std::vector<Tensor>& inputs,
                bool grad) {
  inputs.clear();
  std::vector<TsrTensor> x;
  for (size_t i = 0; i < v.inputs.size(); ++i) {
    const InputSpec& s = v.inputs[i];
    inputs.push_back(upload(data[i], s.shape, s.layout, s.boolean));
    if (grad && s.diff) ok(tsr_set_requires_grad(inputs.back().get(), 1));
    x.push_back(inputs.back().get());
  }
  Tensor out;
  v.fn(x, out.out());
  return out;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void check(const Variant& v, Stats& st) {
  ++st.variants;
  std::vector<std::vector<double>> data;
  for (const InputSpec& s : v.inputs) data.push_back(values(s));
  std::vector<Tensor> inputs;
  Tensor out = evaluate(v, data, inputs, true);
  const Shape out_shape = sizes(out.get());
  std::normal_distribution<double> n01;
  std::vector<double> r(static_cast<size_t>(numel(out_shape)));
  for (double& x : r) x = n01(g_rng);
  Tensor cot;
  ok(tsr_from_buffer(r.data(), out_shape.data(), static_cast<int32_t>(out_shape.size()), TSR_FLOAT64, kCpu,
                     cot.out()));

  std::vector<TsrTensor> diff;
  std::vector<size_t> which;
  for (size_t i = 0; i < v.inputs.size(); ++i)
    if (v.inputs[i].diff) diff.push_back(inputs[i].get()), which.push_back(i);
  std::vector<TsrTensor> grads(diff.size(), nullptr);
  TsrTensor root = out.get(), seed = cot.get();
  ok(tsr_autograd_grad(&root, &seed, 1, diff.data(), static_cast<int32_t>(diff.size()), 1, 0, grads.data()));
  std::vector<Tensor> owned;
  for (TsrTensor g : grads) owned.emplace_back(g);
  ok(tsr_backward(&root, &seed, 1, 0));  // into .grad: the same numbers

  std::string fails;
  int32_t prev = tsr_set_grad_enabled(0);
  for (size_t k = 0; k < diff.size(); ++k) {
    const size_t i = which[k];
    TsrTensorInfo gi = info(owned[k].get());
    if (gi.dtype != TSR_FLOAT64 || sizes(owned[k].get()) != v.inputs[i].shape) {
      fails += " input " + std::to_string(i) + ": gradient " + shape_str(sizes(owned[k].get())) + " " +
               tsr_dtype_name(gi.dtype) + ", expected " + shape_str(v.inputs[i].shape) + " float64;";
      continue;
    }
    std::vector<double> analytic = read(owned[k].get());
    Tensor dot_grad;
    ok(tsr_grad(diff[k], dot_grad.out()));
    if (!dot_grad || read(dot_grad.get()) != analytic)
      fails += " input " + std::to_string(i) + ": .grad differs;";
    double worst = 0;
    std::string worst_msg;
    for (size_t e = 0; e < data[i].size(); ++e) {
      const double x0 = data[i][e];
      std::vector<Tensor> tmp;
      data[i][e] = x0 + kEps;
      double up = dot(read(evaluate(v, data, tmp, false).get()), r);
      data[i][e] = x0 - kEps;
      double down = dot(read(evaluate(v, data, tmp, false).get()), r);
      data[i][e] = x0;
      double numeric = (up - down) / (2 * kEps), err = std::fabs(analytic[e] - numeric);
      double excess = err - (kAtol + kRtol * std::fabs(numeric));
      if (excess > worst) {
        worst = excess;
        char buf[160];
        std::snprintf(buf, sizeof buf, " input %zu element %zu: analytic %.9g, numeric %.9g;", i, e,
                      analytic[e], numeric);
        worst_msg = buf;
      }
    }
    fails += worst_msg;
  }
  tsr_set_grad_enabled(prev);
  if (!fails.empty()) {
    ++st.failed;
    st.messages.push_back(v.label + ":" + fails);
  }
}

// ---- cases, by op --------------------------------------------------------------------------------

const Layout C = Layout::Contiguous, Tr = Layout::Transposed, St = Layout::Strided;

Variant typed(const std::string& what, std::vector<InputSpec> specs, Fn fn) {
  return {label(what, specs), std::move(specs), std::move(fn)};
}

Cases unary(const char* op, InputSpec (*make)(Shape, Layout), int32_t (*fn)(TsrTensor, TsrTensor*)) {
  Fn f = [fn](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(fn(x[0], out)); };
  return {
      typed(op, {make({3, 4}, C)}, f), typed(op, {make({2, 3, 2}, Tr)}, f), typed(op, {make({4, 3}, St)}, f),
      typed(op, {make({}, C)}, f),
      typed(std::string(op) + "_ in place", {make({2, 3}, C)},
            [op](const std::vector<TsrTensor>& x, TsrTensor* out) { call_in_place(op, x, attrs(), out); })};
}
InputSpec any_value(Shape s, Layout l) {
  return in(std::move(s), l);
}
InputSpec positive_value(Shape s, Layout l) {
  return positive(std::move(s), l);
}
InputSpec nonzero_value(Shape s, Layout l) {
  return away_from(std::move(s), {0}, l);
}

Cases gelu_cases() {
  Cases c = unary("gelu", any_value, tsr_gelu);
  TsrAttrs a = attrs();
  a.approximate = 1;
  c.push_back(typed("gelu approximate=tanh", {in({3, 4}, Tr)},
                    [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("gelu", x, a, out); }));
  return c;
}

// Binary ops: broadcasting, scalars on either side, 0-d operands, layouts, in place, alpha.
Cases binary(const char* op, InputSpec (*ma)(Shape, Layout), InputSpec (*mb)(Shape, Layout),
             int32_t (*fn)(TsrTensor, TsrTensor, TsrTensor*), double scalar) {
  Fn f = [fn](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(fn(x[0], x[1], out)); };
  auto with_scalar = [op, scalar](int32_t side) {
    TsrAttrs a = attrs();
    a.scalar_arg = side;
    a.scalar = tsr_scalar_float(scalar);
    return [op, a](const std::vector<TsrTensor>& x, TsrTensor* out) { call(op, x, a, out); };
  };
  std::string s = std::to_string(scalar);
  Cases c = {
      typed(op, {ma({2, 3}, C), mb({2, 3}, C)}, f),
      typed(op, {ma({2, 3}, C), mb({3}, C)}, f),
      typed(op, {ma({2, 1, 3}, Tr), mb({4, 1}, St)}, f),
      typed(op, {ma({}, C), mb({2, 3}, St)}, f),
      typed(op, {ma({3, 1}, C), mb({1, 4}, Tr)}, f),
      typed(std::string(op) + " tensor, scalar " + s, {ma({2, 3}, Tr)}, with_scalar(1)),
      typed(std::string(op) + " scalar " + s + ", tensor", {mb({3, 2}, St)}, with_scalar(0)),
      typed(std::string(op) + "_ in place", {ma({2, 3}, C), mb({3}, C)},
            [op](const std::vector<TsrTensor>& x, TsrTensor* out) { call_in_place(op, x, attrs(), out); }),
      typed(std::string(op) + "_ in place, self as other", {ma({2, 3}, C)},
            [op](const std::vector<TsrTensor>& x, TsrTensor* out) {
              Tensor c;
              ok(tsr_clone(x[0], c.out()));
              TsrTensor in[2] = {c.get(), c.get()}, dst = c.get();
              ok(tsr_call(op_id(op), in, 2, nullptr, &dst, 1));
              *out = c.release();
            }),
  };
  if (!std::strcmp(op, "add") || !std::strcmp(op, "sub")) {
    TsrAttrs a = attrs();
    a.alpha = tsr_scalar_float(2.5);
    c.push_back(typed(std::string(op) + " alpha=2.5", {ma({2, 3}, C), mb({3}, C)},
                      [op, a](const std::vector<TsrTensor>& x, TsrTensor* out) { call(op, x, a, out); }));
    a.scalar_arg = 0;
    a.scalar = tsr_scalar_float(1.5);
    c.push_back(typed(std::string(op) + " scalar, tensor, alpha=2.5", {mb({3}, C)},
                      [op, a](const std::vector<TsrTensor>& x, TsrTensor* out) { call(op, x, a, out); }));
  }
  return c;
}

Cases pow_cases() {
  Cases c = binary("pow", positive_value, any_value, tsr_pow, 1.7);
  TsrAttrs a = attrs();
  a.scalar_arg = 1;
  a.scalar = tsr_scalar_int(3);  // an integer exponent: negative bases are fine
  c.push_back(typed("pow tensor, int scalar 3", {in({2, 3}, C)},
                    [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("pow", x, a, out); }));
  a.scalar = tsr_scalar_float(0);
  c.push_back(typed("pow tensor, scalar 0", {in({2, 3}, C)},
                    [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("pow", x, a, out); }));
  return c;
}

Cases where_cases() {
  Fn f = [](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(tsr_where(x[0], x[1], x[2], out)); };
  auto scalar = [](int32_t side) {
    TsrAttrs a = attrs();
    a.scalar_arg = side;
    a.scalar = tsr_scalar_float(0.25);
    return [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("where", x, a, out); };
  };
  return {typed("where", {condition({2, 3}), in({2, 3}), in({2, 3}, Tr)}, f),
          typed("where", {condition({2, 3}), in({3}), in({2, 1}, St)}, f),
          typed("where", {condition({3}), in({2, 3}, St), in({})}, f),
          typed("where cond, scalar, tensor", {condition({2, 3}), in({3})}, scalar(1)),
          typed("where cond, tensor, scalar", {condition({2, 3}), in({2, 3}, Tr)}, scalar(2))};
}

Cases clamp_cases() {
  auto make = [](const TsrScalar* lo, const TsrScalar* hi) {
    TsrScalar l = lo ? *lo : TsrScalar{}, h = hi ? *hi : TsrScalar{};
    bool has_l = lo, has_h = hi;
    return [l, h, has_l, has_h](const std::vector<TsrTensor>& x, TsrTensor* out) {
      ok(tsr_clamp(x[0], has_l ? &l : nullptr, has_h ? &h : nullptr, out));
    };
  };
  TsrScalar lo = tsr_scalar_float(-0.5), hi = tsr_scalar_int(1);
  return {typed("clamp min -0.5 max 1", {away_from({3, 4}, {-0.5, 1})}, make(&lo, &hi)),
          typed("clamp min -0.5", {away_from({2, 3, 2}, {-0.5}, Tr)}, make(&lo, nullptr)),
          typed("clamp max 1", {away_from({4, 3}, {1}, St)}, make(nullptr, &hi))};
}

Cases copy_cases() {
  auto into_fresh = [](const Shape& dst_shape) {
    return [dst_shape](const std::vector<TsrTensor>& x, TsrTensor* out) {
      Tensor d;
      ok(tsr_full(dst_shape.data(), static_cast<int32_t>(dst_shape.size()), TSR_FLOAT64, kCpu,
                  tsr_scalar_float(0), d.out()));
      ok(tsr_copy_(d.get(), x[0]));
      *out = d.release();
    };
  };
  TsrAttrs a = attrs();
  a.dtype = TSR_FLOAT64;
  return {typed("clone", {in({2, 3}, Tr)},
                [](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(tsr_clone(x[0], out)); }),
          typed("contiguous", {in({3, 4}, St)},
                [](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(tsr_contiguous(x[0], out)); }),
          typed("copy dtype=float64", {in({3, 2})},
                [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("copy", x, a, out); }),
          typed("copy_ broadcast into [2, 3]", {in({3}, St)}, into_fresh({2, 3})),
          typed("copy_ into [2, 3]", {in({2, 3}, Tr)}, into_fresh({2, 3}))};
}

// Reductions: every dim, listed dims (negative ones too) with and without keepdim, 0-d, layouts.
Cases reduce(const char* op, int32_t (*fn)(TsrTensor, const int64_t*, int32_t, int32_t, TsrTensor*),
             InputSpec (*make)(Shape, Layout)) {
  auto r = [fn](Shape dims, int32_t keepdim) {
    return [fn, dims, keepdim](const std::vector<TsrTensor>& x, TsrTensor* out) {
      ok(fn(x[0], dims.data(), static_cast<int32_t>(dims.size()), keepdim, out));
    };
  };
  std::string o = op;
  return {typed(o + " all", {make({3, 4}, C)}, r({}, 0)),
          typed(o + " all keepdim", {make({2, 3}, Tr)}, r({}, 1)),
          typed(o + " dim 1", {make({3, 4}, St)}, r({1}, 0)),
          typed(o + " dims 0, 2 keepdim", {make({2, 3, 2}, Tr)}, r({0, 2}, 1)),
          typed(o + " dim -1", {make({2, 3, 4}, C)}, r({-1}, 0)),
          typed(o + " 0-d", {make({}, C)}, r({}, 0))};
}

Cases var_std(const char* op, int32_t (*fn)(TsrTensor, const int64_t*, int32_t, int32_t, TsrTensor*)) {
  Cases c = reduce(op, fn, any_value);
  c.pop_back();  // the 0-d case divides by N - 1 = 0
  for (int64_t correction : {0, 2}) {
    TsrAttrs a = attrs();
    a.correction = correction;
    a.ndims = 1;
    a.dims[0] = 1;
    c.push_back(typed(std::string(op) + " dim 1 correction " + std::to_string(correction), {in({3, 4}, Tr)},
                      [op, a](const std::vector<TsrTensor>& x, TsrTensor* out) { call(op, x, a, out); }));
  }
  return c;
}

Cases prod_cases() {
  Cases c = reduce("prod", tsr_prod, any_value);
  auto all = [](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(tsr_prod(x[0], nullptr, 0, 0, out)); };
  int64_t dim = 1;
  auto rows = [dim](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(tsr_prod(x[0], &dim, 1, 0, out)); };
  c.push_back(typed("prod all, one zero", {fixed({2, 3}, {1.5, -2, 0, 0.5, 3, -1})}, all));
  c.push_back(typed("prod all, two zeros", {fixed({2, 3}, {1.5, 0, 0, 0.5, 3, -1})}, all));
  c.push_back(typed("prod dim 1, zeros", {fixed({3, 3}, {0, 2, 3, 0, 0, 1.5, 4, -1, 0.5})}, rows));
  return c;
}
Cases softmax_like(const char* op, int32_t (*fn)(TsrTensor, int64_t, TsrTensor*)) {
  auto f = [fn](int64_t dim) {
    return [fn, dim](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(fn(x[0], dim, out)); };
  };
  std::string o = op;
  return {typed(o + " dim 1", {in({3, 4})}, f(1)), typed(o + " dim -1", {in({2, 3, 4}, Tr)}, f(-1)),
          typed(o + " dim 0", {in({4, 3}, St)}, f(0)), typed(o + " 0-d", {in({})}, f(0))};
}

Cases matmul_cases() {
  Fn f = [](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(tsr_matmul(x[0], x[1], out)); };
  return {typed("matmul", {in({3, 4}), in({4, 2})}, f),
          typed("matmul", {in({4}), in({4})}, f),
          typed("matmul", {in({4}), in({4, 3}, Tr)}, f),
          typed("matmul", {in({3, 4}, St), in({4})}, f),
          typed("matmul", {in({2, 3, 4}), in({4, 2})}, f),
          typed("matmul", {in({2, 1, 3, 4}, Tr), in({3, 4, 2})}, f),
          typed("matmul", {in({4}), in({2, 4, 3})}, f),
          typed("matmul", {in({2, 3, 4}, St), in({4})}, f),
          typed("matmul", {in({3, 2, 4}), in({3, 4, 2}, Tr)}, f)};
}

// View ops through their entry points, and through tsr_call (the attrs form) once each.
Cases view_cases(const std::string& op) {
  auto v = [](std::function<int32_t(TsrTensor, TsrTensor*)> g) {
    return [g](const std::vector<TsrTensor>& x, TsrTensor* out) { ok(g(x[0], out)); };
  };
  Cases c;
  auto add = [&](std::vector<InputSpec> specs, std::function<int32_t(TsrTensor, TsrTensor*)> g,
                 const std::string& what) {
    c.push_back(typed(op + " " + what, std::move(specs), v(std::move(g))));
  };
  if (op == "view") {
    add(
        {in({2, 6})},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {3, -1};
          return tsr_view(t, s, 2, o);
        },
        "[3, -1]");
    add(
        {in({2, 3}, St)},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {2, 3, 1};
          return tsr_view(t, s, 3, o);
        },
        "[2, 3, 1]");
  } else if (op == "reshape") {
    add(
        {in({2, 6})},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {4, 3};
          return tsr_reshape(t, s, 2, o);
        },
        "[4, 3]");
    add(
        {in({3, 4}, Tr)},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {12};
          return tsr_reshape(t, s, 1, o);
        },
        "copying");
  } else if (op == "permute") {
    add(
        {in({2, 3, 4})},
        [](TsrTensor t, TsrTensor* o) {
          int64_t d[] = {2, 0, 1};
          return tsr_permute(t, d, 3, o);
        },
        "2, 0, 1");
    add(
        {in({2, 3, 4}, St)},
        [](TsrTensor t, TsrTensor* o) {
          int64_t d[] = {-1, 1, 0};
          return tsr_permute(t, d, 3, o);
        },
        "-1, 1, 0");
  } else if (op == "transpose") {
    add(
        {in({2, 3, 4})}, [](TsrTensor t, TsrTensor* o) { return tsr_transpose(t, 0, -1, o); }, "0, -1");
    add(
        {in({3, 4}, Tr)}, [](TsrTensor t, TsrTensor* o) { return tsr_t(t, o); }, "t()");
  } else if (op == "slice") {
    add(
        {in({5, 3})}, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, 0, 1, 5, 2, o); }, "1:5:2");
    add(
        {in({3, 7}, St)}, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, -1, -4, 100, 1, o); }, "-4:");
  } else if (op == "narrow") {
    add(
        {in({4, 3}, Tr)}, [](TsrTensor t, TsrTensor* o) { return tsr_narrow(t, 0, 1, 2, o); }, "1, 2");
  } else if (op == "select") {
    add(
        {in({3, 4})}, [](TsrTensor t, TsrTensor* o) { return tsr_select(t, 1, -1, o); }, "dim 1, -1");
    add(
        {in({3, 2, 2}, St)}, [](TsrTensor t, TsrTensor* o) { return tsr_select(t, 0, 1, o); }, "dim 0, 1");
  } else if (op == "expand") {
    add(
        {in({3, 1})},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {2, 3, 4};
          return tsr_expand(t, s, 3, o);
        },
        "[2, 3, 4]");
    add(
        {in({1, 3}, St)},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {4, -1};
          return tsr_expand(t, s, 2, o);
        },
        "[4, -1]");
  } else if (op == "squeeze") {
    add(
        {in({3, 1, 2, 1})}, [](TsrTensor t, TsrTensor* o) { return tsr_squeeze(t, nullptr, 0, o); }, "all");
    add(
        {in({1, 3, 1}, Tr)},
        [](TsrTensor t, TsrTensor* o) {
          int64_t d[] = {-1};
          return tsr_squeeze(t, d, 1, o);
        },
        "-1");
  } else if (op == "unsqueeze") {
    add(
        {in({3, 2})}, [](TsrTensor t, TsrTensor* o) { return tsr_unsqueeze(t, 1, o); }, "1");
    add(
        {in({3, 2}, St)}, [](TsrTensor t, TsrTensor* o) { return tsr_unsqueeze(t, -1, o); }, "-1");
  } else if (op == "flatten") {
    add(
        {in({2, 3, 2})}, [](TsrTensor t, TsrTensor* o) { return tsr_flatten(t, 0, -1, o); }, "all");
    add(
        {in({2, 3, 2}, Tr)}, [](TsrTensor t, TsrTensor* o) { return tsr_flatten(t, 1, 2, o); },
        "1, 2 (copying)");
  } else if (op == "as_strided") {
    add(
        {in({3, 4})},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {2, 2}, st[] = {4, 2};
          return tsr_as_strided(t, s, st, 2, 1, o);
        },
        "distinct elements");
    add(
        {in({3, 4})},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {3, 3, 2}, st[] = {2, 1, 0};  // overlapping windows and a repeated dim
          return tsr_as_strided(t, s, st, 3, 2, o);
        },
        "overlapping");
    add(
        {in({4, 3}, Tr)},
        [](TsrTensor t, TsrTensor* o) {
          int64_t s[] = {2, 3}, st[] = {1, 2};  // over a permuted input's storage
          return tsr_as_strided(t, s, st, 2, 0, o);
        },
        "of a transposed input");
  }
  // Through tsr_call: the attrs form of the same op, on a [2, 3, 4] input.
  TsrAttrs a = attrs();
  Shape shape = {2, 3, 4};
  Layout layout = Tr;
  if (op == "view" || op == "reshape") {
    a.nshape = 3, a.shape[0] = 4, a.shape[1] = 3, a.shape[2] = 2;
    layout = C;  // a permuted input cannot be viewed as [4, 3, 2]
  } else if (op == "expand") {
    a.nshape = 3, a.shape[0] = 4, a.shape[1] = 2, a.shape[2] = 3;
    shape = {2, 1};
  } else if (op == "permute") {
    a.ndims = 3, a.dims[0] = 1, a.dims[1] = 2, a.dims[2] = 0;
  } else if (op == "transpose" || op == "flatten") {
    a.dim = 0, a.dim2 = 1;
  } else if (op == "slice") {
    a.dim = 2, a.start = 1, a.end = 4, a.step = 2;
  } else if (op == "narrow") {
    a.dim = 1, a.start = 1, a.end = 2;
  } else if (op == "select") {
    a.dim = 1, a.index = 2;
  } else if (op == "squeeze") {
    a.has_dim = 1, a.dim = 1;
    shape = {2, 1, 4};
  } else if (op == "unsqueeze") {
    a.dim = 3;
  } else if (op == "as_strided") {
    a.nshape = 2, a.shape[0] = 3, a.shape[1] = 4, a.strides[0] = 5, a.strides[1] = 1, a.index = 3;
  }
  c.push_back(
      typed(op + " through tsr_call", {in(shape, layout)},
            [op, a](const std::vector<TsrTensor>& x, TsrTensor* out) { call(op.c_str(), x, a, out); }));
  return c;
}

Cases conv2d_cases() {
  auto conv = [](int64_t stride, int64_t pad, int64_t dil, int64_t groups) {
    TsrAttrs a = attrs();
    a.stride2[0] = a.stride2[1] = stride;
    a.padding[0] = a.padding[1] = pad;
    a.dilation[0] = a.dilation[1] = dil;
    a.groups = groups;
    return [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("conv2d", x, a, out); };
  };
  return {typed("conv2d", {in({2, 2, 5, 5}), in({3, 2, 3, 3}), in({3})}, conv(1, 0, 1, 1)),
          typed("conv2d stride 2 padding 1", {in({1, 2, 6, 5}, Tr), in({2, 2, 3, 2})}, conv(2, 1, 1, 1)),
          typed("conv2d dilation 2", {in({1, 1, 6, 6}), in({2, 1, 2, 2}, St), in({2})}, conv(1, 0, 2, 1)),
          typed("conv2d groups 2", {in({1, 4, 4, 4}), in({4, 2, 3, 3}), in({4})}, conv(1, 1, 1, 2))};
}

Cases max_pool2d_cases() {
  auto pool = [](int64_t k, int64_t stride, int64_t pad, int64_t dil, int32_t ceil) {
    TsrAttrs a = attrs();
    a.kernel[0] = a.kernel[1] = k;
    a.stride2[0] = a.stride2[1] = stride;
    a.padding[0] = a.padding[1] = pad;
    a.dilation[0] = a.dilation[1] = dil;
    a.ceil_mode = ceil;
    return [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("max_pool2d", x, a, out); };
  };
  return {typed("max_pool2d 2x2", {in({2, 2, 4, 4})}, pool(2, 0, 0, 1, 0)),
          typed("max_pool2d 3x3 stride 1 padding 1", {in({1, 2, 5, 5}, Tr)}, pool(3, 1, 1, 1, 0)),
          typed("max_pool2d 2x2 ceil_mode", {in({1, 1, 5, 5}, St)}, pool(2, 2, 0, 1, 1)),
          typed("max_pool2d 2x2 dilation 2", {in({1, 1, 6, 6})}, pool(2, 1, 0, 2, 0))};
}

// ---- transformer ops (ABI 1.3) ---------------------------------------------------------------

// An int64 tensor on the CPU: an index or target held fixed across the evaluations.
Tensor int64_tensor(const Shape& shape, const std::vector<int64_t>& v) {
  Tensor t;
  ok(tsr_from_buffer(v.data(), shape.data(), static_cast<int32_t>(shape.size()), TSR_INT64, kCpu, t.out()));
  return t;
}

// op(x..., index) with a fixed int64 index of the given shape.
Fn with_index(const char* op, TsrAttrs a, Shape shape, std::vector<int64_t> index) {
  return [op, a, shape, index](const std::vector<TsrTensor>& x, TsrTensor* out) {
    Tensor t = int64_tensor(shape, index);
    std::vector<TsrTensor> args = x;
    args.push_back(t.get());
    call(op, args, a, out);
  };
}

Cases layer_norm_cases() {
  auto ln = [](int64_t ndim, double eps) {
    TsrAttrs a = attrs();
    a.dim = ndim;
    a.hp[0] = eps;
    return [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("layer_norm", x, a, out); };
  };
  return {typed("layer_norm x, w, b", {in({3, 4}), in({4}), in({4})}, ln(1, 1e-5)),
          typed("layer_norm normalized [3, 2]", {in({2, 3, 2}, Tr), in({3, 2}), in({3, 2}, St)}, ln(2, 1e-5)),
          typed("layer_norm w only", {in({3, 5}), in({5})}, ln(1, 1e-5)),
          typed("layer_norm no affine, eps 0.1", {in({2, 6}, St)}, ln(1, 0.1))};
}

// Attention; with dropout every evaluation re-seeds the generator, so the mask is the same.
Cases attention_cases() {
  auto sdpa = [](double scale, double p, bool causal, uint64_t seed) {
    TsrAttrs a = attrs();
    a.hp[0] = scale, a.hp[1] = p, a.hp[2] = causal ? 1 : 0;
    return [a, p, seed](const std::vector<TsrTensor>& x, TsrTensor* out) {
      if (p > 0) ok(tsr_manual_seed(seed));
      call("scaled_dot_product_attention", x, a, out);
    };
  };
  const char* op = "scaled_dot_product_attention";
  return {typed(op, {in({1, 2, 3, 4}), in({1, 2, 5, 4}), in({1, 2, 5, 4})}, sdpa(0, 0, false, 0)),
          typed(std::string(op) + " causal, T 4 > S 3",
                {in({2, 1, 4, 3}), in({2, 1, 3, 3}), in({2, 1, 3, 3})}, sdpa(0, 0, true, 0)),
          typed(std::string(op) + " causal, T 3 < S 5",
                {in({1, 2, 3, 4}), in({1, 2, 5, 4}, St), in({1, 2, 5, 4})}, sdpa(0, 0, true, 0)),
          typed(std::string(op) + " 3-D, scale 0.7", {in({2, 3, 4}), in({2, 4, 4}, Tr), in({2, 4, 4})},
                sdpa(0.7, 0, false, 0)),
          typed(std::string(op) + " dropout 0.3 (re-seeded)",
                {in({1, 2, 3, 4}), in({1, 2, 4, 4}), in({1, 2, 4, 4})}, sdpa(0, 0.3, false, 77)),
          typed(std::string(op) + " causal, dropout 0.5 (re-seeded)",
                {in({1, 1, 4, 4}), in({1, 1, 4, 4}), in({1, 1, 4, 4})}, sdpa(0, 0.5, true, 78))};
}

Cases cross_entropy_cases() {
  auto ce = [](std::vector<int64_t> target, double ignore, double eps) {
    TsrAttrs a = attrs();
    a.hp[0] = ignore, a.hp[1] = eps;
    const Shape shape = {static_cast<int64_t>(target.size())};
    return with_index("cross_entropy", a, shape, std::move(target));
  };
  return {typed("cross_entropy", {in({4, 5})}, ce({1, 0, 4, 2}, -100, 0)),
          typed("cross_entropy ignore_index 2", {in({5, 3}, Tr)}, ce({2, 0, 1, 2, 1}, 2, 0)),
          typed("cross_entropy label smoothing 0.1", {in({3, 4})}, ce({3, 3, 0}, -100, 0.1)),
          typed("cross_entropy label smoothing 0.2, a row ignored", {in({4, 6}, St)},
                ce({5, -100, 0, 1}, -100, 0.2))};
}

Cases index_select_cases() {
  auto is = [](int64_t dim, std::vector<int64_t> index) {
    TsrAttrs a = attrs();
    a.dim = dim;
    const Shape shape = {static_cast<int64_t>(index.size())};
    return with_index("index_select", a, shape, std::move(index));
  };
  return {typed("index_select dim 0, repeated", {in({5, 3})}, is(0, {4, 0, 4, 2})),
          typed("index_select dim 1", {in({2, 4, 3}, Tr)}, is(1, {3, 3, 1})),
          typed("index_select dim -1", {in({3, 4}, St)}, is(-1, {0, 2}))};
}

Cases gather_cases() {
  auto g = [](int64_t dim, Shape shape, std::vector<int64_t> index) {
    TsrAttrs a = attrs();
    a.dim = dim;
    return with_index("gather", a, std::move(shape), std::move(index));
  };
  return {
      typed("gather dim 1, repeated", {in({3, 4})}, g(1, {3, 2}, {0, 3, 3, 3, 2, 0})),
      typed("gather dim 0", {in({3, 4}, Tr)}, g(0, {2, 4}, {0, 2, 1, 1, 2, 2, 0, 1})),
      typed("gather dim -1, index longer", {in({2, 3}, St)}, g(-1, {2, 5}, {0, 1, 2, 2, 1, 1, 1, 0, 0, 2}))};
}

Cases tri_cases(const char* op) {
  auto tri = [op](int64_t diagonal) {
    TsrAttrs a = attrs();
    a.index = diagonal;
    return [op, a](const std::vector<TsrTensor>& x, TsrTensor* out) { call(op, x, a, out); };
  };
  std::string o = op;
  return {typed(o + " diagonal 0", {in({3, 4})}, tri(0)), typed(o + " diagonal 1", {in({4, 3}, Tr)}, tri(1)),
          typed(o + " diagonal -1, batched", {in({2, 3, 3}, St)}, tri(-1))};
}

// topk's values (its indices output released).
Cases topk_cases() {
  auto tk = [](int64_t dim, int64_t k, bool largest) {
    TsrAttrs a = attrs();
    a.dim = dim, a.index = k, a.hp[0] = largest ? 1 : 0;
    return [a](const std::vector<TsrTensor>& x, TsrTensor* out) {
      TsrTensor o[2] = {nullptr, nullptr};
      ok(tsr_call(op_id("topk"), x.data(), 1, &a, o, 2));
      tsr_release(o[1]);
      *out = o[0];
    };
  };
  return {typed("topk largest k 2, dim 1", {in({3, 5})}, tk(1, 2, true)),
          typed("topk smallest k 3, dim 0", {in({4, 3}, Tr)}, tk(0, 3, false)),
          typed("topk k = size", {in({6}, St)}, tk(0, 6, true))};
}

// dropout re-seeded before every evaluation: the same mask each time.
Cases dropout_cases() {
  auto dr = [](double p, uint64_t seed) {
    TsrAttrs a = attrs();
    a.hp[0] = p;
    return [a, seed](const std::vector<TsrTensor>& x, TsrTensor* out) {
      ok(tsr_manual_seed(seed));
      call("dropout", x, a, out);
    };
  };
  return {typed("dropout p 0.4 (re-seeded)", {in({4, 5})}, dr(0.4, 11)),
          typed("dropout p 0.5 (re-seeded)", {in({3, 4}, St)}, dr(0.5, 12)),
          typed("dropout p 0", {in({6})}, dr(0, 13))};
}

Cases cat_cases() {
  auto ct = [](int64_t dim) {
    TsrAttrs a = attrs();
    a.dim = dim;
    return [a](const std::vector<TsrTensor>& x, TsrTensor* out) { call("cat", x, a, out); };
  };
  return {typed("cat dim 0", {in({2, 3}), in({1, 3})}, ct(0)),
          typed("cat dim -1", {in({2, 2}, Tr), in({2, 3}, St)}, ct(-1)),
          typed("cat three, dim 1", {in({2, 1, 2}), in({2, 3, 2}), in({2, 2, 2}, Tr)}, ct(1))};
}

// The case of each differentiable op, by name.
std::map<std::string, std::function<Cases()>> all_cases() {
  using S = InputSpec (*)(Shape, Layout);
  S a = any_value, p = positive_value, nz = nonzero_value;
  return {
      {"neg", [=] { return unary("neg", a, tsr_neg); }},
      {"abs", [=] { return unary("abs", nz, tsr_abs); }},
      {"exp", [=] { return unary("exp", a, tsr_exp); }},
      {"log", [=] { return unary("log", p, tsr_log); }},
      {"sqrt", [=] { return unary("sqrt", p, tsr_sqrt); }},
      {"rsqrt", [=] { return unary("rsqrt", p, tsr_rsqrt); }},
      {"sin", [=] { return unary("sin", a, tsr_sin); }},
      {"cos", [=] { return unary("cos", a, tsr_cos); }},
      {"tanh", [=] { return unary("tanh", a, tsr_tanh); }},
      {"sigmoid", [=] { return unary("sigmoid", a, tsr_sigmoid); }},
      {"relu", [=] { return unary("relu", nz, tsr_relu); }},
      {"gelu", gelu_cases},
      {"silu", [=] { return unary("silu", a, tsr_silu); }},
      {"add", [=] { return binary("add", a, a, tsr_add, 1.5); }},
      {"sub", [=] { return binary("sub", a, a, tsr_sub, 1.5); }},
      {"mul", [=] { return binary("mul", a, a, tsr_mul, -1.5); }},
      {"div", [=] { return binary("div", a, p, tsr_div, 1.5); }},
      {"pow", pow_cases},
      {"maximum", [=] { return binary("maximum", a, a, tsr_maximum, 0.3); }},
      {"minimum", [=] { return binary("minimum", a, a, tsr_minimum, 0.3); }},
      {"where", where_cases},
      {"clamp", clamp_cases},
      {"copy", copy_cases},
      {"sum", [=] { return reduce("sum", tsr_sum, a); }},
      {"mean", [=] { return reduce("mean", tsr_mean, a); }},
      {"max", [=] { return reduce("max", tsr_max, a); }},
      {"min", [=] { return reduce("min", tsr_min, a); }},
      {"prod", prod_cases},
      {"var", [] { return var_std("var", tsr_var); }},
      {"std", [] { return var_std("std", tsr_std); }},
      {"softmax", [] { return softmax_like("softmax", tsr_softmax); }},
      {"log_softmax", [] { return softmax_like("log_softmax", tsr_log_softmax); }},
      {"matmul", matmul_cases},
      {"conv2d", conv2d_cases},
      {"max_pool2d", max_pool2d_cases},
      {"layer_norm", layer_norm_cases},
      {"scaled_dot_product_attention", attention_cases},
      {"cross_entropy", cross_entropy_cases},
      {"index_select", index_select_cases},
      {"gather", gather_cases},
      {"triu", [] { return tri_cases("triu"); }},
      {"tril", [] { return tri_cases("tril"); }},
      {"topk", topk_cases},
      {"dropout", dropout_cases},
      {"cat", cat_cases},
  };
}

struct OpRow {
  const char* name;
  bool diff;
};
const OpRow kOps[] = {
#define TSR_OP(name, kind, types, diff) {#name, diff != 0},
#include "tessera/ops.def"
#undef TSR_OP
};
const char* const kViewOps[] = {"view",   "reshape", "permute", "transpose", "slice",   "narrow",
                                "select", "expand",  "squeeze", "unsqueeze", "flatten", "as_strided"};

}  // namespace

int main(int argc, char** argv) {
  std::set<std::string> only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--op") && i + 1 < argc)
      only.insert(argv[++i]);
    else
      return std::fprintf(stderr, "usage: %s [--op NAME]...\n", argv[0]), 2;
  }
  if (tsr_init(nullptr) != TSR_OK) return std::printf("FAIL tsr_init: %s\n", tsr_last_error()), 1;
  auto cases = all_cases();
  for (const char* v : kViewOps) cases[v] = [v] { return view_cases(v); };

  int failures = 0, ops = 0, variants = 0;
  std::vector<std::string> unsupported;
  for (const OpRow& op : kOps) {
    if (!op.diff || (!only.empty() && !only.count(op.name))) continue;
    ++ops;
    auto it = cases.find(op.name);
    if (it == cases.end()) {
      std::printf("FAIL %-12s no gradcheck case for this differentiable op\n", op.name);
      ++failures;
      continue;
    }
    Stats st;
    for (const Variant& v : it->second()) {
      try {
        check(v, st);
      } catch (const Failure& f) {
        if (f.status == TSR_ERR_NOT_IMPLEMENTED) {
          ++st.unsupported;
          unsupported.push_back(v.label + ": " + f.message);
        } else {
          ++st.failed;
          st.messages.push_back(v.label + ": error " + std::to_string(f.status) + ": " + f.message);
        }
      }
    }
    variants += st.variants;
    failures += st.failed;
    std::printf("%-5s %-12s %2d variants%s\n",
                st.failed        ? "FAIL"
                : st.unsupported ? "unsup"
                                 : "ok",
                op.name, st.variants,
                st.unsupported ? (" (" + std::to_string(st.unsupported) + " not implemented)").c_str() : "");
    for (const std::string& m : st.messages) std::printf("      %s\n", m.c_str());
  }
  for (const auto& [name, fn] : cases) {
    bool known = false;
    for (const OpRow& op : kOps) known |= name == op.name && op.diff;
    if (!known)
      std::printf("FAIL gradcheck has a case for %s, which is not a differentiable op of ops.def\n",
                  name.c_str()),
          ++failures;
  }
  if (!unsupported.empty()) {
    std::printf("\nnot implemented (TSR_ERR_NOT_IMPLEMENTED; reported, not a failure):\n");
    for (const std::string& u : unsupported) std::printf("  %s\n", u.c_str());
  }
  std::printf("\ngradcheck: %d differentiable ops, %d variants, %d failed\n", ops, variants, failures);
  tsr_shutdown();
  return failures ? 1 : 0;
}
