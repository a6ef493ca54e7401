// Conformance cases of the elementwise kinds (UNARY, BINARY, COMPARE, WHERE, CLAMP) and of
// the copies and factories (COPY, FILL, ARANGE), each against a float64 reference here.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "harness.h"

namespace conf {
namespace {

// ---- shared -------------------------------------------------------------------------

// The layouts every elementwise op is checked on: contiguous, permuted, sliced with a
// step, 0-dim, empty, and one large enough to cross a kernel's threading threshold.
const Input kInputs[] = {{{3, 4, 5}, Layout::Contiguous}, {{4, 6}, Layout::Transposed},
                         {{3, 7}, Layout::Strided},      {{}, Layout::Contiguous},
                         {{0, 3}, Layout::Contiguous},   {{64, 600}, Layout::Contiguous}};

// A NUM op must refuse bool inputs with a type error (checked in its uint8 cell).
template <class Call>
void check_bool_rejected(Ctx& ctx, Call call) {
  if (ctx.op.types != Types::NUM || ctx.dtype != TSR_UINT8) return;
  Tensor x = ctx.upload(HostTensor{TSR_BOOL, {2}, {1, 0}});
  Tensor out;
  if (x) ctx.expect_error(call(x.get(), out.out()), "bool input (not NUM)", TSR_ERR_TYPE);
}

// Another dtype to promote with: a mixed pair for every dtype, never bool.
int32_t partner(int32_t dtype) {
  static const int32_t p[TSR_NUM_DTYPES] = {TSR_INT32, TSR_INT32, TSR_INT64, TSR_FLOAT32,
                                            TSR_BFLOAT16, TSR_FLOAT16, TSR_FLOAT64, TSR_INT32};
  return p[dtype];
}

// Python scalars of the tensor's category and of the next one up (promotion).
std::vector<TsrScalar> scalars_for(int32_t dtype, double int_value, double float_value) {
  auto i = tsr_scalar_int(static_cast<int64_t>(int_value));
  auto f = tsr_scalar_float(float_value);
  if (dtype == TSR_BOOL) return {tsr_scalar_bool(1), i, f};
  if (!is_float(dtype)) return {i, f};
  return {f, i};
}

std::string scalar_str(const TsrScalar& s) {
  static const char* kinds[] = {"bool ", "int ", "float "};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", scalar_value(s));
  return std::string("scalar ") + kinds[s.kind] + buf;
}

HostTensor scalar_tensor(const TsrScalar& s) { return HostTensor{scalar_dtype(s), {}, {scalar_value(s)}}; }

// ---- UNARY --------------------------------------------------------------------------

struct UnaryRef {
  double (*f)(double);
  Domain dom;
  double (*approximate)(double) = nullptr;  // gelu's tanh form (attrs.approximate = 1)
};

double sigmoid_ref(double x) { return 1 / (1 + std::exp(-x)); }

const std::map<std::string, UnaryRef> kUnary = {
    {"neg", {[](double x) { return -x; }, {-5, 5}}},
    {"abs", {[](double x) { return std::fabs(x); }, {-5, 5}}},
    {"exp", {[](double x) { return std::exp(x); }, {-3, 3}}},
    {"log", {[](double x) { return std::log(x); }, {0.1, 5}}},
    {"sqrt", {[](double x) { return std::sqrt(x); }, {0.1, 5}}},
    {"rsqrt", {[](double x) { return 1 / std::sqrt(x); }, {0.1, 5}}},
    {"sin", {[](double x) { return std::sin(x); }, {-4, 4}}},
    {"cos", {[](double x) { return std::cos(x); }, {-4, 4}}},
    {"tanh", {[](double x) { return std::tanh(x); }, {-3, 3}}},
    {"sigmoid", {sigmoid_ref, {-5, 5}}},
    {"relu", {[](double x) { return x > 0 ? x : 0; }, {-5, 5}}},
    {"gelu",
     {[](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, {-4, 4},
      [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }}},
    {"silu", {[](double x) { return x * sigmoid_ref(x); }, {-5, 5}}},
};

std::vector<double> apply(const HostTensor& x, int32_t compute, double (*f)(double)) {
  std::vector<double> out;
  for (double v : x.values) out.push_back(f(round_to(compute, v)));
  return out;
}

void run_unary(Ctx& ctx) {
  const UnaryRef& ref = kUnary.at(ctx.op.name);
  int32_t rd = float_result(ctx.op.types, ctx.dtype);
  double tol = Ctx::tol(rd);
  for (const Input& in : kInputs) {
    HostTensor x = random_tensor(ctx.rng, ctx.dtype, in.sizes, ref.dom);
    Tensor tx = ctx.upload(x, in.layout), out;
    std::string name = label("x", in.sizes, in.layout);
    if (tx && ctx.ran(ctx.op.fns.unary(tx.get(), out.out()), name))
      ctx.check(name, out.get(), rd, in.sizes, apply(x, rd, ref.f), tol);
  }
  // out=: a preallocated strided output through tsr_call.
  HostTensor x = random_tensor(ctx.rng, ctx.dtype, {4, 5}, ref.dom);
  Tensor tx = ctx.upload(x, Layout::Transposed);
  StridedOut o = ctx.strided_out(rd, {4, 5});
  TsrTensor ins[] = {tx.get()}, outs[] = {o.view.get()};
  if (tx && o.view && ctx.ran(tsr_call(ctx.op.id, ins, 1, nullptr, outs, 1), "out= strided x[4,5]"))
    ctx.check_strided_out("out= strided x[4,5]", o, apply(x, rd, ref.f), tol);
  if (ref.approximate) {
    TsrAttrs attrs = default_attrs();
    attrs.approximate = 1;
    Tensor out;
    if (tx && ctx.ran(tsr_call(ctx.op.id, ins, 1, &attrs, out.out(), 1), "approximate=tanh x[4,5] transposed"))
      ctx.check("approximate=tanh x[4,5] transposed", out.get(), rd, {4, 5}, apply(x, rd, ref.approximate), tol);
  }
  // In place: x.op_() when the result can be stored back into x's dtype.
  outs[0] = tx.get();
  if (tx && rd == ctx.dtype) {
    if (ctx.ran(tsr_call(ctx.op.id, ins, 1, nullptr, outs, 1), "in-place x[4,5] transposed"))
      ctx.check("in-place x[4,5] transposed", tx.get(), rd, {4, 5}, apply(x, rd, ref.f), tol);
  } else if (tx) {
    ctx.expect_error(tsr_call(ctx.op.id, ins, 1, nullptr, outs, 1),
                     std::string("in-place into ") + dtype_str(ctx.dtype) + " (result " + dtype_str(rd) + ")", TSR_ERR_TYPE);
  }
  check_bool_rejected(ctx, ctx.op.fns.unary);
}

// ---- BINARY and COMPARE -----------------------------------------------------------------

struct BinaryRef {
  double (*f)(double, double);
  Domain a, b;                      // float operands
  Domain a_int, b_int;              // bool/int operands
  double int_scalar, float_scalar;  // Python scalar operands (exact in every dtype)
  bool alpha = false;               // add/sub: a + alpha * b
  double (*approximate)(double, double) = nullptr;  // gelu_backward's tanh form (attrs.approximate = 1)
};

const Domain kSmall{-5, 5};
const Domain kHalves{-2, 2, false, true};  // ties for eq/le/...

double cmp(bool v) { return v ? 1 : 0; }

// grad * gelu'(x): erf form, and tanh form u = sqrt(2/pi) (x + 0.044715 x^3).
double gelu_backward_ref(double grad, double x) {
  return grad * (0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI));
}
double gelu_backward_tanh_ref(double grad, double x) {
  const double k = std::sqrt(2 / M_PI), t = std::tanh(k * (x + 0.044715 * x * x * x));
  return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x));
}

const std::map<std::string, BinaryRef> kBinary = {
    {"add", {[](double a, double b) { return a + b; }, kSmall, kSmall, kSmall, kSmall, 3, 2.5, true}},
    {"sub", {[](double a, double b) { return a - b; }, kSmall, kSmall, kSmall, kSmall, 3, 2.5, true}},
    {"mul", {[](double a, double b) { return a * b; }, kSmall, kSmall, kSmall, kSmall, 3, 1.5}},
    {"div", {[](double a, double b) { return a / b; }, {-3, 3}, {-3, 3, true}, {-3, 3}, {-3, 3, true}, 2, 2.5}},
    {"pow", {[](double a, double b) { return std::pow(a, b); }, {0.5, 2}, {-2, 2}, {-3, 3}, {0, 3}, 2, 0.5}},
    {"maximum", {[](double a, double b) { return std::max(a, b); }, kSmall, kSmall, kSmall, kSmall, 1, 0.5}},
    {"minimum", {[](double a, double b) { return std::min(a, b); }, kSmall, kSmall, kSmall, kSmall, 1, 0.5}},
    {"eq", {[](double a, double b) { return cmp(a == b); }, kHalves, kHalves, {-2, 2}, {-2, 2}, 1, 0.5}},
    {"ne", {[](double a, double b) { return cmp(a != b); }, kHalves, kHalves, {-2, 2}, {-2, 2}, 1, 0.5}},
    {"lt", {[](double a, double b) { return cmp(a < b); }, kHalves, kHalves, {-2, 2}, {-2, 2}, 1, 0.5}},
    {"le", {[](double a, double b) { return cmp(a <= b); }, kHalves, kHalves, {-2, 2}, {-2, 2}, 1, 0.5}},
    {"gt", {[](double a, double b) { return cmp(a > b); }, kHalves, kHalves, {-2, 2}, {-2, 2}, 1, 0.5}},
    {"ge", {[](double a, double b) { return cmp(a >= b); }, kHalves, kHalves, {-2, 2}, {-2, 2}, 1, 0.5}},
    {"gelu_backward", {gelu_backward_ref, kSmall, {-4, 4}, kSmall, {-3, 3}, 2, 1.5, false, gelu_backward_tanh_ref}},
};

class BinaryCase {
 public:
  explicit BinaryCase(Ctx& ctx) : ctx_(ctx), ref_(kBinary.at(ctx.op.name)), compare_(ctx.op.kind == Kind::COMPARE) {}

  void run() {
    int32_t d = ctx_.dtype;
    struct Pair {
      Input a, b;
    };
    const Pair pairs[] = {{{{3, 4, 5}, Layout::Contiguous}, {{3, 4, 5}, Layout::Contiguous}},
                          {{{4, 6}, Layout::Transposed}, {{4, 6}, Layout::Strided}},
                          {{{4, 1, 3}, Layout::Contiguous}, {{5, 3}, Layout::Contiguous}},
                          {{{}, Layout::Contiguous}, {{}, Layout::Contiguous}},
                          {{{2, 3}, Layout::Strided}, {{}, Layout::Contiguous}},
                          {{{0, 3}, Layout::Contiguous}, {{3}, Layout::Contiguous}},
                          {{{256, 130}, Layout::Contiguous}, {{130}, Layout::Transposed}}};
    for (const Pair& p : pairs) tensors(gen_a(d, p.a.sizes), p.a.layout, gen_b(d, p.b.sizes), p.b.layout, false);
    // Promotion: a second dtype as a tensor and as a 0-dim tensor (which only counts when
    // it is of a higher category).
    tensors(gen_a(d, {3, 4}), Layout::Contiguous, gen_b(partner(d), {3, 4}), Layout::Contiguous, false);
    tensors(gen_a(d, {2, 3}), Layout::Contiguous, gen_b(is_float(d) ? TSR_INT64 : TSR_FLOAT64, {}), Layout::Contiguous, true);
    for (const TsrScalar& s : scalars_for(d, ref_.int_scalar, ref_.float_scalar)) {
      scalar_right(gen_a(d, {3, 4}), s);
      scalar_left(s, gen_b(d, {3, 4}));
    }
    out_variants(gen_a(d, {4, 5}), gen_b(d, {5}));
    if (ref_.alpha && d != TSR_BOOL) alpha_variant(gen_a(d, {3, 4}), gen_b(d, {3, 4}));
    if (ref_.approximate) approximate_variant(gen_a(d, {3, 4}), gen_b(d, {4}));
    check_bool_rejected(ctx_, [&](TsrTensor x, TsrTensor* out) { return ctx_.op.fns.binary(x, x, out); });
  }

 private:
  HostTensor gen_a(int32_t dt, const Shape& s) { return random_tensor(ctx_.rng, dt, s, is_float(dt) ? ref_.a : ref_.a_int); }
  HostTensor gen_b(int32_t dt, const Shape& s) { return random_tensor(ctx_.rng, dt, s, is_float(dt) ? ref_.b : ref_.b_int); }

  int32_t result_of(int32_t promoted) const { return compare_ ? TSR_BOOL : float_result(ctx_.op.types, promoted); }
  int32_t compute_of(int32_t promoted) const { return compare_ ? promoted : float_result(ctx_.op.types, promoted); }

  // f(a, alpha * b) elementwise over the broadcast shape, operands cast to `compute`.
  std::vector<double> reference(const HostTensor& a, const HostTensor& b, const Shape& out, int32_t compute,
                                double alpha = 1) const {
    std::vector<int64_t> ma = broadcast_map(a.sizes, out), mb = broadcast_map(b.sizes, out);
    std::vector<double> r(ma.size());
    for (size_t i = 0; i < r.size(); ++i)
      r[i] = ref_.f(round_to(compute, a.values[ma[i]]), alpha * round_to(compute, b.values[mb[i]]));
    return r;
  }

  void tensors(const HostTensor& a, Layout la, const HostTensor& b, Layout lb, bool b_zero_dim) {
    Shape out_sizes;
    broadcast_shapes(a.sizes, b.sizes, &out_sizes);
    Rank ra = a.sizes.empty() ? Rank::ZeroDim : Rank::Tensor;
    Rank rb = b_zero_dim || b.sizes.empty() ? Rank::ZeroDim : Rank::Tensor;
    int32_t promoted = result_type({{a.dtype, ra}, {b.dtype, rb}});
    std::string name = label("a", a.sizes, la) + " " + dtype_str(a.dtype) + ", " + label("b", b.sizes, lb) + " " + dtype_str(b.dtype);
    Tensor ta = ctx_.upload(a, la), tb = ctx_.upload(b, lb), out;
    if (ta && tb && ctx_.ran(ctx_.op.fns.binary(ta.get(), tb.get(), out.out()), name))
      ctx_.check(name, out.get(), result_of(promoted), out_sizes, reference(a, b, out_sizes, compute_of(promoted)),
                 Ctx::tol(result_of(promoted)));
  }

  void scalar_right(const HostTensor& a, const TsrScalar& s) {
    int32_t promoted = result_type({{a.dtype, Rank::Tensor}, {scalar_dtype(s), Rank::Scalar}});
    std::string name = label("a", a.sizes, Layout::Transposed) + " op " + scalar_str(s);
    Tensor ta = ctx_.upload(a, Layout::Transposed), out;
    if (ta && ctx_.ran(ctx_.op.fns.binary_scalar(ta.get(), s, out.out()), name))
      ctx_.check(name, out.get(), result_of(promoted), a.sizes, reference(a, scalar_tensor(s), a.sizes, compute_of(promoted)),
                 Ctx::tol(result_of(promoted)));
  }

  void scalar_left(const TsrScalar& s, const HostTensor& b) {
    int32_t promoted = result_type({{b.dtype, Rank::Tensor}, {scalar_dtype(s), Rank::Scalar}});
    std::string name = scalar_str(s) + " op " + label("b", b.sizes, Layout::Strided) + " (tsr_call, scalar_arg 0)";
    Tensor tb = ctx_.upload(b, Layout::Strided), out;
    TsrAttrs attrs = default_attrs();
    attrs.scalar = s;
    attrs.scalar_arg = 0;
    TsrTensor ins[] = {tb.get()};
    if (tb && ctx_.ran(tsr_call(ctx_.op.id, ins, 1, &attrs, out.out(), 1), name))
      ctx_.check(name, out.get(), result_of(promoted), b.sizes, reference(scalar_tensor(s), b, b.sizes, compute_of(promoted)),
                 Ctx::tol(result_of(promoted)));
  }

  // out= into a strided output (of the result dtype and of float64), and a.op_(b).
  void out_variants(const HostTensor& a, const HostTensor& b) {
    int32_t rd = result_of(a.dtype);
    std::vector<double> want = reference(a, b, a.sizes, compute_of(a.dtype));
    for (double& v : want) v = round_to(rd, v);
    Tensor ta = ctx_.upload(a, Layout::Transposed), tb = ctx_.upload(b);
    if (!ta || !tb) return;
    TsrTensor ins[] = {ta.get(), tb.get()};
    for (int32_t od : {rd, static_cast<int32_t>(TSR_FLOAT64)}) {
      if (od == TSR_FLOAT64 && (rd == TSR_FLOAT64 || compare_)) continue;
      std::string name = std::string("out= strided ") + dtype_str(od) + " a[4,5] b[5]";
      StridedOut o = ctx_.strided_out(od, a.sizes);
      TsrTensor outs[] = {o.view.get()};
      if (o.view && ctx_.ran(tsr_call(ctx_.op.id, ins, 2, nullptr, outs, 1), name))
        ctx_.check_strided_out(name, o, want, Ctx::tol(rd));
    }
    Tensor small = ctx_.upload(HostTensor{rd, {5}, std::vector<double>(5, 0)});
    TsrTensor wrong[] = {small.get()};
    if (small) ctx_.expect_error(tsr_call(ctx_.op.id, ins, 2, nullptr, wrong, 1), "out= of shape [5] for a result [4,5]");
    TsrTensor outs[] = {ta.get()};
    std::string name = "in-place a[4,5] transposed, b[5]";
    if (!can_cast(rd, a.dtype)) {
      ctx_.expect_error(tsr_call(ctx_.op.id, ins, 2, nullptr, outs, 1), name + " (result " + dtype_str(rd) + ")", TSR_ERR_TYPE);
    } else if (ctx_.ran(tsr_call(ctx_.op.id, ins, 2, nullptr, outs, 1), name)) {
      ctx_.check(name, ta.get(), a.dtype, a.sizes, want, Ctx::tol(rd));
    }
  }

  void alpha_variant(const HostTensor& a, const HostTensor& b) {
    TsrAttrs attrs = default_attrs();
    attrs.alpha = is_float(a.dtype) ? tsr_scalar_float(2) : tsr_scalar_int(2);
    Tensor ta = ctx_.upload(a), tb = ctx_.upload(b), out;
    TsrTensor ins[] = {ta.get(), tb.get()};
    if (ta && tb && ctx_.ran(tsr_call(ctx_.op.id, ins, 2, &attrs, out.out(), 1), "alpha=2 a[3,4] b[3,4]"))
      ctx_.check("alpha=2 a[3,4] b[3,4]", out.get(), a.dtype, a.sizes, reference(a, b, a.sizes, a.dtype, 2), Ctx::tol(a.dtype));
  }

  void approximate_variant(const HostTensor& a, const HostTensor& b) {
    TsrAttrs attrs = default_attrs();
    attrs.approximate = 1;
    const int32_t rd = result_of(result_type({{a.dtype, Rank::Tensor}, {b.dtype, Rank::Tensor}}));
    Tensor ta = ctx_.upload(a, Layout::Transposed), tb = ctx_.upload(b), out;
    TsrTensor ins[] = {ta.get(), tb.get()};
    std::vector<int64_t> mb = broadcast_map(b.sizes, a.sizes);
    std::vector<double> want(a.values.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = ref_.approximate(round_to(rd, a.values[i]), round_to(rd, b.values[mb[i]]));
    const std::string name = "approximate=tanh a[3,4] transposed, b[4]";
    if (ta && tb && ctx_.ran(tsr_call(ctx_.op.id, ins, 2, &attrs, out.out(), 1), name))
      ctx_.check(name, out.get(), rd, a.sizes, want, Ctx::tol(rd));
  }

  Ctx& ctx_;
  const BinaryRef& ref_;
  bool compare_;
};

void run_binary(Ctx& ctx) { BinaryCase(ctx).run(); }

// ---- WHERE --------------------------------------------------------------------------

void run_where(Ctx& ctx) {
  int32_t d = ctx.dtype;
  auto gen = [&](int32_t dt, const Shape& s) { return random_tensor(ctx.rng, dt, s, kSmall); };
  auto reference = [](const HostTensor& c, const HostTensor& a, const HostTensor& b, const Shape& out) {
    std::vector<int64_t> mc = broadcast_map(c.sizes, out), ma = broadcast_map(a.sizes, out), mb = broadcast_map(b.sizes, out);
    std::vector<double> r(mc.size());
    for (size_t i = 0; i < r.size(); ++i) r[i] = c.values[mc[i]] != 0 ? a.values[ma[i]] : b.values[mb[i]];
    return r;
  };
  struct Triple {
    Input c, a, b;
    int32_t b_dtype;
  };
  const Triple triples[] = {
      {{{4, 1, 3}, Layout::Contiguous}, {{5, 3}, Layout::Contiguous}, {{}, Layout::Contiguous}, d},
      {{{3, 4}, Layout::Strided}, {{3, 4}, Layout::Transposed}, {{3, 4}, Layout::Contiguous}, d},
      {{{0, 3}, Layout::Contiguous}, {{0, 3}, Layout::Contiguous}, {{3}, Layout::Contiguous}, d},
      {{{}, Layout::Contiguous}, {{}, Layout::Contiguous}, {{}, Layout::Contiguous}, d},
      {{{3, 4}, Layout::Contiguous}, {{3, 4}, Layout::Contiguous}, {{3, 4}, Layout::Contiguous}, partner(d)},
  };
  for (const Triple& t : triples) {
    HostTensor c = gen(TSR_BOOL, t.c.sizes), a = gen(d, t.a.sizes), b = gen(t.b_dtype, t.b.sizes);
    Shape ab, out_sizes;
    broadcast_shapes(a.sizes, b.sizes, &ab);
    broadcast_shapes(c.sizes, ab, &out_sizes);
    Rank rb = b.sizes.empty() && !a.sizes.empty() ? Rank::ZeroDim : Rank::Tensor;
    int32_t rd = result_type({{a.dtype, Rank::Tensor}, {b.dtype, rb}});
    std::string name = label("cond", c.sizes, t.c.layout) + ", " + label("a", a.sizes, t.a.layout) + ", " +
                       label("b", b.sizes, t.b.layout) + " " + dtype_str(b.dtype);
    Tensor tc = ctx.upload(c, t.c.layout), ta = ctx.upload(a, t.a.layout), tb = ctx.upload(b, t.b.layout), out;
    if (tc && ta && tb && ctx.ran(ctx.op.fns.where(tc.get(), ta.get(), tb.get(), out.out()), name))
      ctx.check(name, out.get(), rd, out_sizes, reference(c, a, b, out_sizes), Ctx::tol(rd));
  }
  // A Python scalar as a (scalar_arg 1) or b (scalar_arg 2).
  HostTensor c = gen(TSR_BOOL, {3, 4}), x = gen(d, {3, 4});
  Tensor tc = ctx.upload(c), tx = ctx.upload(x, Layout::Transposed);
  for (const TsrScalar& s : scalars_for(d, 3, 2.5)) {
    int32_t rd = result_type({{d, Rank::Tensor}, {scalar_dtype(s), Rank::Scalar}});
    for (int32_t arg : {1, 2}) {
      TsrAttrs attrs = default_attrs();
      attrs.scalar = s;
      attrs.scalar_arg = arg;
      TsrTensor ins[] = {tc.get(), tx.get()};
      std::string name = std::string(arg == 1 ? "a = " : "b = ") + scalar_str(s) + " (tsr_call), cond[3,4], x[3,4] transposed";
      Tensor out;
      if (tc && tx && ctx.ran(tsr_call(ctx.op.id, ins, 2, &attrs, out.out(), 1), name))
        ctx.check(name, out.get(), rd, {3, 4},
                  arg == 1 ? reference(c, scalar_tensor(s), x, {3, 4}) : reference(c, x, scalar_tensor(s), {3, 4}),
                  Ctx::tol(rd));
    }
  }
  // out= into a strided output.
  HostTensor b = gen(d, {4});
  Tensor tb = ctx.upload(b);
  StridedOut o = ctx.strided_out(d, {3, 4});
  TsrTensor ins[] = {tc.get(), tx.get(), tb.get()}, outs[] = {o.view.get()};
  if (tc && tx && tb && o.view && ctx.ran(tsr_call(ctx.op.id, ins, 3, nullptr, outs, 1), "out= strided cond[3,4] a[3,4] b[4]"))
    ctx.check_strided_out("out= strided cond[3,4] a[3,4] b[4]", o, reference(c, x, b, {3, 4}), Ctx::tol(d));
}

// ---- CLAMP --------------------------------------------------------------------------

void run_clamp(Ctx& ctx) {
  int32_t d = ctx.dtype;
  auto bound = [&](double v) { return is_float(d) ? tsr_scalar_float(v) : tsr_scalar_int(static_cast<int64_t>(v)); };
  double lo = is_float(d) ? -0.5 : d == TSR_UINT8 ? 1 : -1, hi = is_float(d) ? 1.25 : d == TSR_UINT8 ? 3 : 2;
  struct Bounds {
    const char* name;
    bool has_min, has_max;
    double min, max;
  };
  const Bounds bounds[] = {{"min and max", true, true, lo, hi}, {"min only", true, false, lo, 0},
                           {"max only", false, true, 0, hi}, {"min > max", true, true, hi, lo}};
  auto reference = [](const HostTensor& x, const Bounds& b) {
    std::vector<double> r;
    for (double v : x.values) {
      if (b.has_min) v = std::max(v, b.min);
      if (b.has_max) v = std::min(v, b.max);
      r.push_back(v);
    }
    return r;
  };
  for (const Input& in : kInputs) {
    for (const Bounds& b : bounds) {
      if (&b != &bounds[0] && in.sizes != Shape{3, 4, 5}) continue;
      HostTensor x = random_tensor(ctx.rng, d, in.sizes, kSmall);
      TsrScalar smin = bound(b.min), smax = bound(b.max);
      std::string name = label("x", in.sizes, in.layout) + " " + b.name;
      Tensor tx = ctx.upload(x, in.layout), out;
      if (tx && ctx.ran(ctx.op.fns.clamp(tx.get(), b.has_min ? &smin : nullptr, b.has_max ? &smax : nullptr, out.out()), name))
        ctx.check(name, out.get(), d, in.sizes, reference(x, b), Ctx::tol(d));
    }
  }
  // out= strided and in place, through tsr_call's attrs.
  HostTensor x = random_tensor(ctx.rng, d, {4, 5}, kSmall);
  Tensor tx = ctx.upload(x, Layout::Transposed);
  TsrAttrs attrs = default_attrs();
  attrs.has_scalar = attrs.has_scalar2 = 1;
  attrs.scalar = bound(lo);
  attrs.scalar2 = bound(hi);
  StridedOut o = ctx.strided_out(d, {4, 5});
  TsrTensor ins[] = {tx.get()}, outs[] = {o.view.get()};
  if (tx && o.view && ctx.ran(tsr_call(ctx.op.id, ins, 1, &attrs, outs, 1), "out= strided x[4,5]"))
    ctx.check_strided_out("out= strided x[4,5]", o, reference(x, bounds[0]), Ctx::tol(d));
  outs[0] = tx.get();
  if (tx && ctx.ran(tsr_call(ctx.op.id, ins, 1, &attrs, outs, 1), "in-place x[4,5] transposed"))
    ctx.check("in-place x[4,5] transposed", tx.get(), d, {4, 5}, reference(x, bounds[0]), Ctx::tol(d));
  check_bool_rejected(ctx, [&](TsrTensor t, TsrTensor* out) {
    TsrScalar m = tsr_scalar_bool(0);  // an int bound would promote to int64
    return ctx.op.fns.clamp(t, &m, nullptr, out);
  });
}

// ---- COPY, FILL, ARANGE -------------------------------------------------------------------

// copy_ from the cell's dtype into every dtype: float -> int truncates, -> bool is != 0,
// ints wrap into uint8; the source is broadcast to the destination.
void run_copy(Ctx& ctx) {
  int32_t src_dt = ctx.dtype;
  for (int32_t dst_dt = 0; dst_dt < TSR_NUM_DTYPES; ++dst_dt) {
    Domain dom = !is_float(src_dt) ? kSmall : dst_dt == TSR_UINT8 ? Domain{0, 5} : Domain{-3, 3};
    struct Variant {
      Shape src, dst;
      Layout src_layout;
      bool strided_dst;
    };
    const Variant variants[] = {{{3, 4}, {3, 4}, Layout::Contiguous, false}, {{3, 4}, {3, 4}, Layout::Transposed, true},
                                {{1, 4}, {3, 4}, Layout::Contiguous, false}, {{}, {2, 3}, Layout::Contiguous, true},
                                {{0, 4}, {0, 4}, Layout::Contiguous, false}};
    for (const Variant& v : variants) {
      HostTensor src = random_tensor(ctx.rng, src_dt, v.src, dom);
      std::vector<double> want;
      for (int64_t i : broadcast_map(v.src, v.dst)) want.push_back(src.values[i]);
      std::string name = label("src", v.src, v.src_layout) + " -> " + (v.strided_dst ? "strided " : "") + dtype_str(dst_dt) +
                         shape_str(v.dst);
      Tensor ts = ctx.upload(src, v.src_layout);
      if (!ts) continue;
      if (v.strided_dst) {
        StridedOut o = ctx.strided_out(dst_dt, v.dst);
        if (o.view && ctx.ran(ctx.op.fns.copy(o.view.get(), ts.get()), name))
          ctx.check_strided_out(name, o, want, Ctx::tol(dst_dt));
      } else {
        Tensor dst = ctx.upload(HostTensor{dst_dt, v.dst, std::vector<double>(numel(v.dst), 0)});
        if (dst && ctx.ran(ctx.op.fns.copy(dst.get(), ts.get()), name))
          ctx.check(name, dst.get(), dst_dt, v.dst, want, Ctx::tol(dst_dt));
      }
    }
  }
  if (ctx.device.type == TSR_DEVICE_CPU) return;
  // Across devices, both ways, with a conversion.
  TsrDevice cpu{TSR_DEVICE_CPU, 0};
  int32_t dst_dt = partner(src_dt);
  HostTensor src = random_tensor(ctx.rng, src_dt, {3, 4}, is_float(src_dt) ? Domain{-3, 3} : kSmall);
  std::vector<uint8_t> bytes = encode(src_dt, src.values), zeros(12 * itemsize(dst_dt));
  for (bool to_cpu : {false, true}) {
    TsrDevice from = to_cpu ? ctx.device : cpu, to = to_cpu ? cpu : ctx.device;
    Tensor ts, td;
    std::string name = std::string("cross-device copy ") + (to_cpu ? "to cpu" : "from cpu") + " into " + dtype_str(dst_dt);
    int64_t sizes[] = {3, 4};
    if (ctx.ran(tsr_from_buffer(bytes.data(), sizes, 2, src_dt, from, ts.out()), name) &&
        ctx.ran(tsr_from_buffer(zeros.data(), sizes, 2, dst_dt, to, td.out()), name) &&
        ctx.ran(ctx.op.fns.copy(td.get(), ts.get()), name)) {
      std::optional<HostTensor> got = ctx.download(td.get(), name);
      bool same = got && got->values.size() == src.values.size();
      for (size_t i = 0; same && i < src.values.size(); ++i)
        same = std::fabs(got->values[i] - round_to(dst_dt, src.values[i])) <= Ctx::tol(dst_dt) * std::max(1.0, std::fabs(src.values[i]));
      same ? ctx.pass() : ctx.fail(name, "values differ from the source");
    }
  }
}

void run_fill(Ctx& ctx) {
  int32_t d = ctx.dtype;
  std::vector<TsrScalar> values = {tsr_scalar_bool(1), tsr_scalar_int(7), tsr_scalar_float(-2.5)};
  if (d == TSR_UINT8) values.back() = tsr_scalar_float(2.5);  // truncates to 2
  for (const TsrScalar& s : values) {
    double want = round_to(d, scalar_value(s));
    for (const Shape& sizes : {Shape{3, 4}, Shape{}, Shape{0, 4}}) {
      std::string name = label("t", sizes) + " = " + scalar_str(s);
      Tensor t = ctx.upload(HostTensor{d, sizes, std::vector<double>(numel(sizes), 0)});
      if (t && ctx.ran(ctx.op.fns.fill(t.get(), s), name))
        ctx.check(name, t.get(), d, sizes, std::vector<double>(numel(sizes), want), 0);
    }
    std::string name = "strided t[3,5] = " + scalar_str(s);
    StridedOut o = ctx.strided_out(d, {3, 5});
    if (o.view && ctx.ran(ctx.op.fns.fill(o.view.get(), s), name))
      ctx.check_strided_out(name, o, std::vector<double>(15, want), 0);
  }
}

void run_arange(Ctx& ctx) {
  int32_t d = ctx.dtype;
  struct Range {
    double start, end, step;
    bool floats;  // float scalars, else int scalars
  };
  std::vector<Range> ranges = {{-3, 7, 2, false}, {5, -4, -3, false}, {3, 3, 1, false}};
  if (d == TSR_UINT8) ranges = {{1, 9, 3, false}, {9, 0, -2, false}, {3, 3, 1, false}};
  if (is_float(d)) {
    ranges.push_back({0.5, 3.0, 0.25, true});
    ranges.push_back({2.0, -1.0, -0.75, true});
  }
  auto scalar = [](double v, bool f) { return f ? tsr_scalar_float(v) : tsr_scalar_int(static_cast<int64_t>(v)); };
  auto run = [&](const Range& r, int32_t dtype_arg, int32_t want_dtype) {
    auto n = static_cast<int64_t>(std::max(0.0, std::ceil((r.end - r.start) / r.step)));
    std::vector<double> want;
    for (int64_t i = 0; i < n; ++i) want.push_back(r.start + static_cast<double>(i) * r.step);
    char name[96];
    std::snprintf(name, sizeof name, "arange(%g, %g, %g) %s, dtype %s", r.start, r.end, r.step, r.floats ? "floats" : "ints",
                  dtype_arg < 0 ? "default" : dtype_str(dtype_arg));
    Tensor out;
    if (ctx.ran(ctx.op.fns.arange(scalar(r.start, r.floats), scalar(r.end, r.floats), scalar(r.step, r.floats), dtype_arg,
                                  ctx.device, out.out()),
                name))
      ctx.check(name, out.get(), want_dtype, {n}, want, Ctx::tol(want_dtype));
  };
  for (const Range& r : ranges) run(r, d, d);
  // The default dtype: int64 for int scalars, float32 when any is a float.
  if (d == TSR_INT64) run(ranges[0], -1, TSR_INT64);
  if (d == TSR_FLOAT32) run(ranges[3], -1, TSR_FLOAT32);
  Tensor out;
  ctx.expect_error(ctx.op.fns.arange(tsr_scalar_int(0), tsr_scalar_int(5), tsr_scalar_int(0), d, ctx.device, out.out()),
                   "arange step 0", TSR_ERR_INVALID_ARGUMENT);
}

}  // namespace

std::optional<Case> find_elementwise_case(const OpEntry& op) {
  uint32_t mask = allowed_dtypes(op.types);
  switch (op.kind) {
    case Kind::UNARY:
      if (kUnary.count(op.name)) return Case{run_unary, mask};
      break;
    case Kind::BINARY:
    case Kind::COMPARE:
      if (kBinary.count(op.name)) return Case{run_binary, mask};
      break;
    case Kind::WHERE:
      if (op.name == std::string("where")) return Case{run_where, mask};
      break;
    case Kind::CLAMP:
      if (op.name == std::string("clamp")) return Case{run_clamp, mask};
      break;
    case Kind::COPY:
      if (op.name == std::string("copy")) return Case{run_copy, mask};
      break;
    case Kind::FILL:
      if (op.name == std::string("fill")) return Case{run_fill, mask};
      break;
    case Kind::ARANGE:
      if (op.name == std::string("arange")) return Case{run_arange, TSR_DTYPES_ALL & ~TSR_DTYPE_BIT(TSR_BOOL)};
      break;
    default: break;
  }
  return std::nullopt;
}

}  // namespace conf
