// Conformance cases of REDUCE, SOFTMAX and MATMUL against float64 references computed here.
#include <algorithm>
#include <cmath>
#include <map>

#include "harness.h"

namespace conf {
namespace {

using Values = std::vector<double>;

// Flat indices of x's elements grouped by the element of the keepdim-form result they
// reduce into (dims: non-negative; empty means every dim), each group in row-major order.
std::vector<std::vector<int64_t>> group_indices(const Shape& sizes, const std::vector<int64_t>& dims) {
  Shape keep = sizes;
  for (size_t d = 0; d < sizes.size(); ++d)
    if (dims.empty() || std::count(dims.begin(), dims.end(), static_cast<int64_t>(d))) keep[d] = 1;
  Shape keep_strides = contiguous_strides(keep);
  std::vector<std::vector<int64_t>> groups(numel(keep));
  for (int64_t flat = 0; flat < numel(sizes); ++flat) {
    Shape idx = unravel(flat, sizes);
    int64_t g = 0;
    for (size_t d = 0; d < sizes.size(); ++d) g += (keep[d] == 1 ? 0 : idx[d]) * keep_strides[d];
    groups[g].push_back(flat);
  }
  return groups;
}

std::vector<int64_t> normalized(std::vector<int64_t> dims, size_t ndim) {
  for (int64_t& d : dims) d = d < 0 ? d + static_cast<int64_t>(ndim) : d;
  std::sort(dims.begin(), dims.end());
  return dims;
}

// ---- REDUCE -------------------------------------------------------------------------

double sum_of(const Values& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

double var_of(const Values& v, int64_t correction) {
  double mean = sum_of(v) / static_cast<double>(v.size()), sq = 0;
  for (double x : v) sq += (x - mean) * (x - mean);
  return sq / std::max(0.0, static_cast<double>(v.size()) - static_cast<double>(correction));
}

struct ReduceRef {
  double (*f)(const Values& v, int64_t correction);
  Domain dom, dom_int;
  bool arg = false;        // argmax/argmin: one dim or all, int64 index (first on ties)
  bool widen = false;      // sum/prod: bool and int inputs give int64
  bool nonempty = false;   // reducing nothing is an error
  bool correction = false; // var/std
};

const Domain kReduceFloat{-2, 2}, kReduceInt{-5, 5};

const std::map<std::string, ReduceRef> kReduce = {
    {"sum", {[](const Values& v, int64_t) { return sum_of(v); }, kReduceFloat, kReduceInt, false, true}},
    {"mean", {[](const Values& v, int64_t) { return sum_of(v) / static_cast<double>(v.size()); }, kReduceFloat, kReduceInt}},
    {"max", {[](const Values& v, int64_t) { return *std::max_element(v.begin(), v.end()); }, kReduceFloat, kReduceInt, false, false, true}},
    {"min", {[](const Values& v, int64_t) { return *std::min_element(v.begin(), v.end()); }, kReduceFloat, kReduceInt, false, false, true}},
    {"argmax",
     {[](const Values& v, int64_t) { return static_cast<double>(std::max_element(v.begin(), v.end()) - v.begin()); },
      kReduceFloat, {-3, 3}, true, false, true}},
    {"argmin",
     {[](const Values& v, int64_t) { return static_cast<double>(std::min_element(v.begin(), v.end()) - v.begin()); },
      kReduceFloat, {-3, 3}, true, false, true}},
    {"prod",
     {[](const Values& v, int64_t) {
        double p = 1;
        for (double x : v) p *= x;
        return p;
      },
      {0.5, 1.5}, {-2, 2}, false, true}},
    {"var", {var_of, kReduceFloat, kReduceInt, false, false, false, true}},
    {"std", {[](const Values& v, int64_t c) { return std::sqrt(var_of(v, c)); }, kReduceFloat, kReduceInt, false, false, false, true}},
};

struct ReduceVariant {
  Shape sizes;
  Layout layout;
  std::vector<int64_t> dims;  // as passed (may be negative); empty: all
  bool keepdim;
};

class ReduceCase {
 public:
  explicit ReduceCase(Ctx& ctx) : ctx_(ctx), ref_(kReduce.at(ctx.op.name)) {
    rd_ = ref_.arg ? TSR_INT64 : ref_.widen && !is_float(ctx.dtype) ? TSR_INT64 : float_result(ctx.op.types, ctx.dtype);
  }

  void run() {
    using L = Layout;
    const ReduceVariant variants[] = {
        {{3, 4, 5}, L::Contiguous, {1}, false}, {{3, 4, 5}, L::Contiguous, {1}, true},
        {{3, 4, 5}, L::Contiguous, {-1}, false}, {{3, 4, 5}, L::Contiguous, {0, 2}, false},
        {{3, 4, 5}, L::Contiguous, {2, 0}, true}, {{3, 4, 5}, L::Contiguous, {}, false},
        {{3, 4, 5}, L::Contiguous, {}, true},    {{4, 6}, L::Transposed, {0}, false},
        {{3, 7}, L::Strided, {1}, true},         {{}, L::Contiguous, {}, false},
        {{0, 4}, L::Contiguous, {1}, false},     {{0, 4}, L::Contiguous, {0}, false},
        {{64, 513}, L::Contiguous, {1}, false},  {{64, 513}, L::Contiguous, {0}, false},
        {{64, 513}, L::Contiguous, {}, false}};
    for (const ReduceVariant& v : variants) {
      if (ref_.arg && (v.dims.size() > 1 || (v.dims.empty() && v.keepdim))) continue;  // one dim or all
      if (ctx_.op.name == std::string("prod") && v.sizes == Shape{64, 513}) continue;     // under/overflows
      typed(v);
    }
    if (ref_.correction) {
      for (int64_t c : {0, 1, 2}) with_attrs({{3, 4, 5}, Layout::Transposed, {1}, false}, c, false);
    }
    if (!ref_.arg) with_attrs({{3, 4, 5}, Layout::Contiguous, {1}, false}, 1, true);
  }

 private:
  HostTensor gen(const Shape& s) {
    return random_tensor(ctx_.rng, ctx_.dtype, s, is_float(ctx_.dtype) ? ref_.dom : ref_.dom_int);
  }

  // The reduced result (sizes, values) of x over dims.
  std::pair<Shape, Values> reference(const HostTensor& x, const std::vector<int64_t>& dims, bool keepdim, int64_t correction) {
    Values out;
    for (const auto& g : group_indices(x.sizes, dims)) {
      Values v;
      for (int64_t i : g) v.push_back(x.values[i]);
      out.push_back(ref_.f(v, correction));
    }
    Shape sizes;
    for (size_t d = 0; d < x.sizes.size(); ++d) {
      bool reduced = dims.empty() || std::count(dims.begin(), dims.end(), static_cast<int64_t>(d));
      if (!reduced) sizes.push_back(x.sizes[d]);
      else if (keepdim) sizes.push_back(1);
    }
    return {sizes, out};
  }

  double tol(const HostTensor& x, const std::vector<int64_t>& dims) const {
    int64_t count = 1;
    for (size_t d = 0; d < x.sizes.size(); ++d)
      if (dims.empty() || std::count(dims.begin(), dims.end(), static_cast<int64_t>(d))) count *= x.sizes[d];
    return Ctx::tol(rd_, 1 + static_cast<double>(count) / 64);
  }

  std::string name(const ReduceVariant& v) const {
    return label("x", v.sizes, v.layout) + " dims " + (v.dims.empty() ? "all" : shape_str(v.dims)) +
           (v.keepdim ? " keepdim" : "");
  }

  void typed(const ReduceVariant& v) {
    HostTensor x = gen(v.sizes);
    std::vector<int64_t> dims = normalized(v.dims, v.sizes.size());
    bool empty_reduction = numel(v.sizes) == 0 && (dims.empty() || v.sizes[dims[0]] == 0);
    Tensor tx = ctx_.upload(x, v.layout), out;
    if (!tx) return;
    int32_t st = ctx_.op.fns.reduce(tx.get(), v.dims.data(), static_cast<int32_t>(v.dims.size()), v.keepdim, out.out());
    if (empty_reduction && ref_.nonempty) return ctx_.expect_error(st, name(v) + " (reduces nothing)");
    if (!ctx_.ran(st, name(v))) return;
    auto [sizes, want] = reference(x, dims, v.keepdim, 1);
    ctx_.check(name(v), out.get(), rd_, sizes, want, tol(x, dims));
  }

  // Through tsr_call: var/std with a correction, or out= into a strided output.
  void with_attrs(const ReduceVariant& v, int64_t correction, bool strided_out) {
    HostTensor x = gen(v.sizes);
    std::vector<int64_t> dims = normalized(v.dims, v.sizes.size());
    TsrAttrs attrs = default_attrs();
    attrs.ndims = static_cast<int32_t>(v.dims.size());
    std::copy(v.dims.begin(), v.dims.end(), attrs.dims);
    attrs.keepdim = v.keepdim;
    attrs.correction = correction;
    auto [sizes, want] = reference(x, dims, v.keepdim, correction);
    std::string n = name(v) + (strided_out ? " out= strided" : " correction " + std::to_string(correction));
    Tensor tx = ctx_.upload(x, v.layout), out;
    TsrTensor ins[] = {tx.get()};
    if (!tx) return;
    if (strided_out) {
      StridedOut o = ctx_.strided_out(rd_, sizes);
      TsrTensor outs[] = {o.view.get()};
      if (o.view && ctx_.ran(tsr_call(ctx_.op.id, ins, 1, &attrs, outs, 1), n)) ctx_.check_strided_out(n, o, want, tol(x, dims));
    } else if (ctx_.ran(tsr_call(ctx_.op.id, ins, 1, &attrs, out.out(), 1), n)) {
      ctx_.check(n, out.get(), rd_, sizes, want, tol(x, dims));
    }
  }

  Ctx& ctx_;
  const ReduceRef& ref_;
  int32_t rd_;
};

void run_reduce(Ctx& ctx) { ReduceCase(ctx).run(); }

// ---- SOFTMAX ------------------------------------------------------------------------

Values softmax_ref(const HostTensor& x, int64_t dim, bool log) {
  Values out(x.values.size());
  std::vector<int64_t> dims;
  if (!x.sizes.empty()) dims.push_back(dim);
  for (const auto& g : group_indices(x.sizes, dims)) {
    double m = -INFINITY, s = 0;
    for (int64_t i : g) m = std::max(m, x.values[i]);
    for (int64_t i : g) s += std::exp(x.values[i] - m);
    for (int64_t i : g) out[i] = log ? x.values[i] - m - std::log(s) : std::exp(x.values[i] - m) / s;
  }
  return out;
}

void run_softmax(Ctx& ctx) {
  bool log = ctx.op.name == std::string("log_softmax");
  int32_t rd = float_result(ctx.op.types, ctx.dtype);
  struct Variant {
    Shape sizes;
    Layout layout;
    int64_t dim;
  };
  const Variant variants[] = {{{3, 4, 5}, Layout::Contiguous, 0}, {{3, 4, 5}, Layout::Contiguous, 1},
                              {{3, 4, 5}, Layout::Contiguous, 2}, {{3, 4, 5}, Layout::Contiguous, -1},
                              {{4, 6}, Layout::Transposed, 1},    {{3, 7}, Layout::Strided, 0},
                              {{}, Layout::Contiguous, 0},        {{0, 4}, Layout::Contiguous, 1},
                              {{64, 513}, Layout::Contiguous, 1}, {{64, 513}, Layout::Contiguous, 0}};
  for (const Variant& v : variants) {
    HostTensor x = random_tensor(ctx.rng, ctx.dtype, v.sizes, {-4, 4});
    int64_t dim = v.dim < 0 ? v.dim + static_cast<int64_t>(v.sizes.size()) : v.dim;
    double k = 1 + (v.sizes.empty() ? 1.0 : static_cast<double>(v.sizes[dim])) / 64;
    std::string name = label("x", v.sizes, v.layout) + " dim " + std::to_string(v.dim);
    Tensor tx = ctx.upload(x, v.layout), out;
    if (tx && ctx.ran(ctx.op.fns.softmax(tx.get(), v.dim, out.out()), name))
      ctx.check(name, out.get(), rd, v.sizes, softmax_ref(x, dim, log), Ctx::tol(rd, k));
  }
  HostTensor x = random_tensor(ctx.rng, ctx.dtype, {4, 5}, {-4, 4});
  Tensor tx = ctx.upload(x, Layout::Transposed);
  StridedOut o = ctx.strided_out(rd, {4, 5});
  TsrAttrs attrs = default_attrs();
  attrs.dim = 1;
  TsrTensor ins[] = {tx.get()}, outs[] = {o.view.get()};
  if (tx && o.view && ctx.ran(tsr_call(ctx.op.id, ins, 1, &attrs, outs, 1), "out= strided x[4,5] dim 1"))
    ctx.check_strided_out("out= strided x[4,5] dim 1", o, softmax_ref(x, 1, log), Ctx::tol(rd));
  Tensor out;
  if (tx) ctx.expect_error(ctx.op.fns.softmax(tx.get(), 2, out.out()), "x[4,5] dim 2 (out of range)", TSR_ERR_INDEX);
}

// ---- MATMUL -------------------------------------------------------------------------

// a @ b with numpy rules: 1-D operands gain a dim that is then dropped; batch dims broadcast.
std::pair<Shape, Values> matmul_ref(const HostTensor& a, const HostTensor& b) {
  Shape as = a.sizes, bs = b.sizes;
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  Shape ba(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2), batch;
  broadcast_shapes(ba, bb, &batch);
  std::vector<int64_t> mapa = broadcast_map(ba, batch), mapb = broadcast_map(bb, batch);
  Values out;
  for (size_t bi = 0; bi < mapa.size(); ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += a.values[(mapa[bi] * m + i) * k + p] * b.values[(mapb[bi] * k + p) * n + j];
        out.push_back(s);
      }
  Shape sizes = batch;
  if (a.sizes.size() > 1) sizes.push_back(m);
  if (b.sizes.size() > 1) sizes.push_back(n);
  return {sizes, out};
}

void run_matmul(Ctx& ctx) {
  int32_t d = ctx.dtype;
  Domain dom = is_float(d) ? Domain{-1, 1} : Domain{-3, 3};
  using L = Layout;
  struct Variant {
    Input a, b;
  };
  const Variant variants[] = {
      {{{4}, L::Contiguous}, {{4}, L::Strided}},
      {{{4}, L::Contiguous}, {{4, 3}, L::Contiguous}},
      {{{3, 4}, L::Contiguous}, {{4}, L::Strided}},
      {{{3, 4}, L::Contiguous}, {{4, 5}, L::Contiguous}},
      {{{3, 4}, L::Transposed}, {{4, 5}, L::Transposed}},
      {{{3, 4}, L::Strided}, {{4, 5}, L::Transposed}},
      {{{2, 1, 3, 4}, L::Contiguous}, {{5, 4, 2}, L::Contiguous}},
      {{{2, 3, 4}, L::Transposed}, {{4}, L::Contiguous}},
      {{{4}, L::Contiguous}, {{2, 4, 3}, L::Contiguous}},
      {{{17, 40}, L::Contiguous}, {{40, 9}, L::Transposed}},
      {{{64, 96}, L::Contiguous}, {{96, 48}, L::Contiguous}},
      {{{0, 3}, L::Contiguous}, {{3, 4}, L::Contiguous}},
      {{{2, 0}, L::Contiguous}, {{0, 3}, L::Contiguous}},
  };
  for (const Variant& v : variants) {
    HostTensor a = random_tensor(ctx.rng, d, v.a.sizes, dom), b = random_tensor(ctx.rng, d, v.b.sizes, dom);
    auto [sizes, want] = matmul_ref(a, b);
    double k = 1 + static_cast<double>(a.sizes.back()) / 16;
    std::string name = label("a", a.sizes, v.a.layout) + " @ " + label("b", b.sizes, v.b.layout);
    Tensor ta = ctx.upload(a, v.a.layout), tb = ctx.upload(b, v.b.layout), out;
    if (ta && tb && ctx.ran(ctx.op.fns.matmul(ta.get(), tb.get(), out.out()), name))
      ctx.check(name, out.get(), d, sizes, want, Ctx::tol(d, k));
  }
  HostTensor a = random_tensor(ctx.rng, d, {3, 4}, dom), b = random_tensor(ctx.rng, d, {4, 5}, dom);
  Tensor ta = ctx.upload(a), tb = ctx.upload(b);
  StridedOut o = ctx.strided_out(d, {3, 5});
  TsrTensor ins[] = {ta.get(), tb.get()}, outs[] = {o.view.get()};
  if (ta && tb && o.view && ctx.ran(tsr_call(ctx.op.id, ins, 2, nullptr, outs, 1), "out= strided a[3,4] @ b[4,5]"))
    ctx.check_strided_out("out= strided a[3,4] @ b[4,5]", o, matmul_ref(a, b).second, Ctx::tol(d));
  Tensor out;
  if (ta) ctx.expect_error(ctx.op.fns.matmul(ta.get(), ta.get(), out.out()), "a[3,4] @ a[3,4] (K mismatch)", TSR_ERR_INVALID_ARGUMENT);
  Tensor s = ctx.upload_scalar(d, 1);
  if (s && tb) ctx.expect_error(ctx.op.fns.matmul(s.get(), tb.get(), out.out()), "0-dim @ b[4,5]");
  if (d == TSR_UINT8) {
    Tensor x = ctx.upload(HostTensor{TSR_BOOL, {2, 2}, {1, 0, 0, 1}});
    if (x) ctx.expect_error(ctx.op.fns.matmul(x.get(), x.get(), out.out()), "bool operands (not NUM)", TSR_ERR_TYPE);
  }
}

}  // namespace

std::optional<Case> find_reduction_case(const OpEntry& op) {
  uint32_t mask = allowed_dtypes(op.types);
  if (op.kind == Kind::REDUCE && kReduce.count(op.name)) return Case{run_reduce, mask};
  if (op.kind == Kind::SOFTMAX && (op.name == std::string("softmax") || op.name == std::string("log_softmax")))
    return Case{run_softmax, mask};
  if (op.kind == Kind::MATMUL && op.name == std::string("matmul")) return Case{run_matmul, mask};
  return std::nullopt;
}

}  // namespace conf
