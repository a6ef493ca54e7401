// Conformance cases of RANDOM (statistics, determinism, range, and the exact Philox4x32-10
// stream plugin.h specifies) and VIEW ops (sizes, element addresses and values against the
// reference indexing, storage shared with the base).
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "harness.h"

namespace conf {
namespace {

// ---- RANDOM -------------------------------------------------------------------------

struct RandomRef {
  double p0, p1;  // the op's two scalars
  double mean, var;
  double mean_tol, var_tol;
  double lo, hi;  // range of values
};

const std::map<std::string, RandomRef> kRandom = {
    {"uniform", {-2, 3, 0.5, 25.0 / 12, 0.025, 0.03, -2, 3}},
    {"normal", {1.5, 2, 1.5, 4, 0.04, 0.1, -INFINITY, INFINITY}},
    {"bernoulli", {0.3, 0, 0.3, 0.21, 0.0075, 0.01, 0, 1}},
};

class RandomCase {
 public:
  explicit RandomCase(Ctx& ctx) : ctx_(ctx), ref_(kRandom.at(ctx.op.name)), name_(ctx.op.name) {}

  void run() {
    if (!philox_known_answer()) return ctx_.fail("self-test", "the suite's own Philox4x32-10 fails its known answer");
    exact_stream({1001}, Layout::Contiguous);
    exact_stream({50, 40}, Layout::Strided);
    exact_stream({}, Layout::Contiguous);
    exact_stream({0, 3}, Layout::Contiguous);
    determinism();
    statistics();
  }

 private:
  // Element i of the stream after tsr_manual_seed(seed), before rounding to the dtype.
  double expected(uint64_t seed, int64_t i) const {
    auto n = static_cast<uint64_t>(i);
    if (name_ == "normal") {
      double u1 = philox_u(seed, n / 2, 2 * (i % 2)), u2 = philox_u(seed, n / 2, 2 * (i % 2) + 1);
      return ref_.p0 + ref_.p1 * std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    }
    double u = philox_u(seed, n / 4, static_cast<int>(i % 4));
    return name_ == "uniform" ? ref_.p0 + u * (ref_.p1 - ref_.p0) : u < ref_.p0 ? 1 : 0;
  }

  // Bernoulli elements whose u lies within float rounding of p may go either way.
  bool borderline(uint64_t seed, int64_t i) const {
    return name_ == "bernoulli" && std::fabs(philox_u(seed, static_cast<uint64_t>(i) / 4, static_cast<int>(i % 4)) - ref_.p0) < 1e-6;
  }

  int32_t fill(TsrTensor t) { return ctx_.op.fns.random(t, scalar(ref_.p0), scalar(ref_.p1)); }
  TsrScalar scalar(double v) const { return tsr_scalar_float(v); }

  Tensor zeros(const Shape& sizes) { return ctx_.upload(HostTensor{ctx_.dtype, sizes, std::vector<double>(numel(sizes), 0)}); }

  // The first draw after tsr_manual_seed is Philox(key = seed, counter = i / lanes) in the
  // row-major order of the (possibly strided) tensor; gaps stay untouched.
  void exact_stream(const Shape& sizes, Layout layout) {
    const uint64_t seed = 0x1234abcd5678ull;
    std::string name = label("t", sizes, layout) + " after tsr_manual_seed: Philox4x32-10 stream";
    std::vector<double> want(numel(sizes));
    for (int64_t i = 0; i < numel(sizes); ++i) want[i] = expected(seed, i);
    StridedOut o;
    Tensor t;
    if (layout == Layout::Strided) o = ctx_.strided_out(ctx_.dtype, sizes);
    else t = zeros(sizes);
    TsrTensor target = layout == Layout::Strided ? o.view.get() : t.get();
    if (!target || !ctx_.ran(tsr_manual_seed(seed), name) || !ctx_.ran(fill(target), name)) return;
    std::optional<HostTensor> got = ctx_.download(target, name);
    if (!got) return;
    for (size_t i = 0; i < want.size(); ++i)
      if (borderline(seed, static_cast<int64_t>(i))) want[i] = got->values[i];
    double tol = name_ == "normal" ? std::max(Ctx::tol(ctx_.dtype), 1e-4) : Ctx::tol(ctx_.dtype, 4);
    if (layout == Layout::Strided) ctx_.check_strided_out(name, o, want, tol);
    else ctx_.check(name, target, ctx_.dtype, sizes, want, tol);
  }

  std::vector<uint8_t> bytes(TsrTensor t, size_t n) {
    std::vector<uint8_t> b(n * itemsize(ctx_.dtype));
    tsr_copy_to_host(t, b.data(), b.size());
    return b;
  }

  void determinism() {
    const char* name = "t[1000]: same seed, same bits; next draw differs";
    Tensor a = zeros({1000}), b = zeros({1000});
    if (!a || !b) return;
    if (!ctx_.ran(tsr_manual_seed(99), name) || !ctx_.ran(fill(a.get()), name) || !ctx_.ran(tsr_manual_seed(99), name) ||
        !ctx_.ran(fill(b.get()), name))
      return;
    std::vector<uint8_t> first = bytes(a.get(), 1000), second = bytes(b.get(), 1000);
    if (first != second) return ctx_.fail(name, "two draws after tsr_manual_seed(99) differ");
    if (!ctx_.ran(fill(b.get()), name)) return;
    if (bytes(b.get(), 1000) == first) return ctx_.fail(name, "the draw after them repeats the first (offset not advanced)");
    ctx_.pass();
  }

  void statistics() {
    const int64_t n = 100000;
    std::string name = "t[100000] statistics";
    Tensor t = zeros({n});
    if (!t || !ctx_.ran(tsr_manual_seed(7), name) || !ctx_.ran(fill(t.get()), name)) return;
    std::optional<HostTensor> got = ctx_.download(t.get(), name);
    if (!got) return;
    double sum = 0, sq = 0;
    for (double v : got->values) {
      bool in_range = std::isfinite(v) && v >= ref_.lo && v <= ref_.hi;
      if (name_ == "bernoulli") in_range = v == 0 || v == 1;
      if (name_ == "uniform" && ctx_.dtype == TSR_FLOAT64) in_range = in_range && v < ref_.hi;
      if (!in_range) return ctx_.fail(name, "value " + std::to_string(v) + " out of range");
      sum += v;
    }
    double mean = sum / n;
    for (double v : got->values) sq += (v - mean) * (v - mean);
    double var = sq / (n - 1);
    if (std::fabs(mean - ref_.mean) > ref_.mean_tol || std::fabs(var - ref_.var) > ref_.var_tol)
      return ctx_.fail(name, "mean " + std::to_string(mean) + " (want " + std::to_string(ref_.mean) + "), variance " +
                                 std::to_string(var) + " (want " + std::to_string(ref_.var) + ")");
    ctx_.pass();
  }

  Ctx& ctx_;
  const RandomRef& ref_;
  std::string name_;
};

void run_random(Ctx& ctx) { RandomCase(ctx).run(); }

// ---- VIEW ---------------------------------------------------------------------------

// One view call on a contiguous base (or on its all-dims-reversed permutation), and what
// it must give: the expected sizes and, for element idx, the base element
// offset + sum(idx * strides). A copy (reshape/flatten that cannot view) only has to hold
// those values; an error variant only has to fail.
struct ViewVariant {
  std::string name;
  Shape base;
  bool transposed_src;
  std::function<int32_t(TsrTensor, TsrTensor*)> call;
  Shape sizes, strides;
  int64_t offset = 0;
  bool copy = false;     // values only (may own new storage)
  bool overlap = false;  // elements share addresses: no write-through check
  bool error = false;
};

ViewVariant expect_error(std::string name, Shape base, bool transposed, std::function<int32_t(TsrTensor, TsrTensor*)> call) {
  ViewVariant v{std::move(name), std::move(base), transposed, std::move(call), {}, {}};
  v.error = true;
  return v;
}

using Dims = std::vector<int64_t>;
const Shape kB{2, 3, 4};  // base sizes; contiguous strides (12, 4, 1)

std::vector<ViewVariant> view_variants(const std::string& op) {
  using V = ViewVariant;
  if (op == "view")
    return {V{"view [6,4]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims s{6, 4}; return tsr_view(t, s.data(), 2, o); }, {6, 4}, {4, 1}},
            V{"view [-1]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims s{-1}; return tsr_view(t, s.data(), 1, o); }, {24}, {1}},
            V{"view [4,-1,2]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims s{4, -1, 2}; return tsr_view(t, s.data(), 3, o); }, {4, 3, 2}, {6, 2, 1}},
            V{"view [1] as []", {1}, false, [](TsrTensor t, TsrTensor* o) { int64_t none = 0; return tsr_view(t, &none, 0, o); }, {}, {}},
            expect_error("view of a transposed [4,3,2] as [24]", kB, true, [](TsrTensor t, TsrTensor* o) { Dims s{24}; return tsr_view(t, s.data(), 1, o); }),
            expect_error("view [5,5]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims s{5, 5}; return tsr_view(t, s.data(), 2, o); })};
  if (op == "reshape") {
    V copy{"reshape transposed [4,3,2] to [24] (copies)", kB, true, [](TsrTensor t, TsrTensor* o) { Dims s{24}; return tsr_reshape(t, s.data(), 1, o); }, {24}, {}};
    copy.copy = true;
    return {V{"reshape [4,6]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims s{4, 6}; return tsr_reshape(t, s.data(), 2, o); }, {4, 6}, {6, 1}},
            V{"reshape [-1,8]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims s{-1, 8}; return tsr_reshape(t, s.data(), 2, o); }, {3, 8}, {8, 1}},
            copy,
            expect_error("reshape [-1,-1]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims s{-1, -1}; return tsr_reshape(t, s.data(), 2, o); })};
  }
  if (op == "permute")
    return {V{"permute [2,0,1]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims d{2, 0, 1}; return tsr_permute(t, d.data(), 3, o); }, {4, 2, 3}, {1, 12, 4}},
            V{"permute [-1,0,1]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims d{-1, 0, 1}; return tsr_permute(t, d.data(), 3, o); }, {4, 2, 3}, {1, 12, 4}},
            V{"permute [1,0,2] of transposed [4,3,2]", kB, true, [](TsrTensor t, TsrTensor* o) { Dims d{1, 0, 2}; return tsr_permute(t, d.data(), 3, o); }, {3, 4, 2}, {4, 1, 12}},
            expect_error("permute [0,0,1]", kB, false, [](TsrTensor t, TsrTensor* o) { Dims d{0, 0, 1}; return tsr_permute(t, d.data(), 3, o); })};
  if (op == "transpose")
    return {V{"transpose 0,2", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_transpose(t, 0, 2, o); }, {4, 3, 2}, {1, 4, 12}},
            V{"transpose -1,1", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_transpose(t, -1, 1, o); }, {2, 4, 3}, {12, 1, 4}},
            V{"transpose 1,1", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_transpose(t, 1, 1, o); }, {2, 3, 4}, {12, 4, 1}},
            V{"t() of [3,4]", {3, 4}, false, [](TsrTensor t, TsrTensor* o) { return tsr_t(t, o); }, {4, 3}, {1, 4}},
            expect_error("transpose 0,3", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_transpose(t, 0, 3, o); })};
  if (op == "slice")
    return {V{"slice dim 2 [1:4:2]", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, 2, 1, 4, 2, o); }, {2, 3, 2}, {12, 4, 2}, 1},
            V{"slice dim 0 [-1:100]", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, 0, -1, 100, 1, o); }, {1, 3, 4}, {12, 4, 1}, 12},
            V{"slice dim 1 [0:3:2]", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, 1, 0, 3, 2, o); }, {2, 2, 4}, {12, 8, 1}},
            V{"slice dim -1 [3:1] (empty)", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, -1, 3, 1, 1, o); }, {2, 3, 0}, {12, 4, 1}},
            V{"slice dim 1 [-100:-1:1]", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, 1, -100, -1, 1, o); }, {2, 2, 4}, {12, 4, 1}},
            V{"slice dim 0 [1:3] of transposed [4,3,2]", kB, true, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, 0, 1, 3, 1, o); }, {2, 3, 2}, {1, 4, 12}, 1},
            expect_error("slice step 0", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_slice(t, 0, 0, 2, 0, o); })};
  if (op == "narrow")
    return {V{"narrow dim 1 start 1 length 2", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_narrow(t, 1, 1, 2, o); }, {2, 2, 4}, {12, 4, 1}, 4},
            V{"narrow dim 2 start -2 length 2", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_narrow(t, 2, -2, 2, o); }, {2, 3, 2}, {12, 4, 1}, 2},
            V{"narrow dim 0 start 0 length 0", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_narrow(t, 0, 0, 0, o); }, {0, 3, 4}, {12, 4, 1}},
            expect_error("narrow dim 1 start 2 length 5", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_narrow(t, 1, 2, 5, o); })};
  if (op == "select")
    return {V{"select dim 0 index 1", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_select(t, 0, 1, o); }, {3, 4}, {4, 1}, 12},
            V{"select dim 2 index -1", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_select(t, 2, -1, o); }, {2, 3}, {12, 4}, 3},
            V{"select dim 0 index 2 of [3] (0-dim)", {3}, false, [](TsrTensor t, TsrTensor* o) { return tsr_select(t, 0, 2, o); }, {}, {}, 2},
            expect_error("select dim 1 index 3", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_select(t, 1, 3, o); })};
  if (op == "expand") {
    V a{"expand [3,1] to [2,-1,4]", {3, 1}, false, [](TsrTensor t, TsrTensor* o) { Dims s{2, -1, 4}; return tsr_expand(t, s.data(), 3, o); }, {2, 3, 4}, {0, 1, 0}};
    V b{"expand [] to [2,3]", {}, false, [](TsrTensor t, TsrTensor* o) { Dims s{2, 3}; return tsr_expand(t, s.data(), 2, o); }, {2, 3}, {0, 0}};
    a.overlap = b.overlap = true;
    return {a, b,
            V{"expand [3,1] to [3,1]", {3, 1}, false, [](TsrTensor t, TsrTensor* o) { Dims s{3, 1}; return tsr_expand(t, s.data(), 2, o); }, {3, 1}, {1, 1}},
            expect_error("expand [3,1] to [4,4]", {3, 1}, false, [](TsrTensor t, TsrTensor* o) { Dims s{4, 4}; return tsr_expand(t, s.data(), 2, o); })};
  }
  if (op == "squeeze")
    return {V{"squeeze all of [2,1,4]", {2, 1, 4}, false, [](TsrTensor t, TsrTensor* o) { return tsr_squeeze(t, nullptr, 0, o); }, {2, 4}, {4, 1}},
            V{"squeeze [1] of [2,1,4]", {2, 1, 4}, false, [](TsrTensor t, TsrTensor* o) { Dims d{1}; return tsr_squeeze(t, d.data(), 1, o); }, {2, 4}, {4, 1}},
            V{"squeeze [-2] of [2,1,4]", {2, 1, 4}, false, [](TsrTensor t, TsrTensor* o) { Dims d{-2}; return tsr_squeeze(t, d.data(), 1, o); }, {2, 4}, {4, 1}},
            V{"squeeze [0] of [2,1,4] (not 1: no-op)", {2, 1, 4}, false, [](TsrTensor t, TsrTensor* o) { Dims d{0}; return tsr_squeeze(t, d.data(), 1, o); }, {2, 1, 4}, {4, 4, 1}},
            V{"squeeze all of [1,1]", {1, 1}, false, [](TsrTensor t, TsrTensor* o) { return tsr_squeeze(t, nullptr, 0, o); }, {}, {}}};
  if (op == "unsqueeze")
    return {V{"unsqueeze 0", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_unsqueeze(t, 0, o); }, {1, 2, 3, 4}, {0, 12, 4, 1}},
            V{"unsqueeze -1", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_unsqueeze(t, -1, o); }, {2, 3, 4, 1}, {12, 4, 1, 0}},
            V{"unsqueeze 2", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_unsqueeze(t, 2, o); }, {2, 3, 1, 4}, {12, 4, 0, 1}},
            V{"unsqueeze 0 of []", {}, false, [](TsrTensor t, TsrTensor* o) { return tsr_unsqueeze(t, 0, o); }, {1}, {0}},
            expect_error("unsqueeze 4", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_unsqueeze(t, 4, o); })};
  if (op == "flatten") {
    V copy{"flatten 0,1 of transposed [4,3,2] (copies)", kB, true, [](TsrTensor t, TsrTensor* o) { return tsr_flatten(t, 0, 1, o); }, {12, 2}, {}};
    copy.copy = true;
    return {V{"flatten 0,-1", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_flatten(t, 0, -1, o); }, {24}, {1}},
            V{"flatten 1,2", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_flatten(t, 1, 2, o); }, {2, 12}, {12, 1}},
            V{"flatten 0,1", kB, false, [](TsrTensor t, TsrTensor* o) { return tsr_flatten(t, 0, 1, o); }, {6, 4}, {4, 1}},
            V{"flatten 0,-1 of []", {}, false, [](TsrTensor t, TsrTensor* o) { return tsr_flatten(t, 0, -1, o); }, {1}, {0}},
            copy};
  }
  if (op == "as_strided") {
    V a{"as_strided [3,3] strides [1,2] offset 2", kB, false,
        [](TsrTensor t, TsrTensor* o) { Dims s{3, 3}, st{1, 2}; return tsr_as_strided(t, s.data(), st.data(), 2, 2, o); }, {3, 3}, {1, 2}, 2};
    a.overlap = true;
    return {a,
            V{"as_strided [2,2] strides [12,1] offset 5", kB, false,
              [](TsrTensor t, TsrTensor* o) { Dims s{2, 2}, st{12, 1}; return tsr_as_strided(t, s.data(), st.data(), 2, 5, o); }, {2, 2}, {12, 1}, 5},
            expect_error("as_strided past the storage", kB, false,
                         [](TsrTensor t, TsrTensor* o) { Dims s{3, 3}, st{12, 1}; return tsr_as_strided(t, s.data(), st.data(), 2, 0, o); })};
  }
  return {};
}

// Base element index of every element of a view, row-major; for a copy, of the source.
std::vector<int64_t> expected_index(const ViewVariant& v) {
  std::vector<int64_t> idx;
  if (v.copy) {  // the source is the reversed-dims view of the base: row-major over it
    Shape src(v.base.rbegin(), v.base.rend()), strides = contiguous_strides(v.base);
    std::reverse(strides.begin(), strides.end());
    for (int64_t flat = 0; flat < numel(src); ++flat) {
      Shape i = unravel(flat, src);
      int64_t b = 0;
      for (size_t d = 0; d < i.size(); ++d) b += i[d] * strides[d];
      idx.push_back(b);
    }
    return idx;
  }
  for (int64_t flat = 0; flat < numel(v.sizes); ++flat) {
    Shape i = unravel(flat, v.sizes);
    int64_t b = v.offset;
    for (size_t d = 0; d < i.size(); ++d) b += i[d] * v.strides[d];
    idx.push_back(b);
  }
  return idx;
}

TsrTensorInfo info_of(TsrTensor t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  tsr_tensor_info(t, &info);
  return info;
}

void check_view(Ctx& ctx, const ViewVariant& v) {
  int32_t d = ctx.dtype;
  HostTensor base{d, v.base, {}};
  for (int64_t i = 0; i < numel(v.base); ++i)
    base.values.push_back(round_to(d, d == TSR_BOOL ? i % 3 == 0 : d == TSR_UINT8 ? i + 1 : is_float(d) ? 0.5 * i - 5 : i - 10));
  Tensor tb = ctx.upload(base), src, out;
  if (!tb) return;
  if (v.transposed_src) {
    Dims rev(v.base.size());
    for (size_t i = 0; i < rev.size(); ++i) rev[i] = static_cast<int64_t>(rev.size() - 1 - i);
    if (!ctx.ran(tsr_permute(tb.get(), rev.data(), static_cast<int32_t>(rev.size()), src.out()), v.name + " (permute)")) return;
  }
  int32_t st = v.call(v.transposed_src ? src.get() : tb.get(), out.out());
  if (v.error) return ctx.expect_error(st, v.name);
  if (!ctx.ran(st, v.name)) return;
  std::vector<int64_t> want = expected_index(v);
  std::vector<double> values;
  for (int64_t i : want) values.push_back(base.values[i]);
  if (!ctx.check(v.name, out.get(), d, v.sizes, values, 0) || v.copy) return;
  // Addresses: a view's element idx is base element offset + sum(idx * strides).
  TsrTensorInfo bi = info_of(tb.get()), vi = info_of(out.get());
  int64_t start = (reinterpret_cast<intptr_t>(vi.data) - reinterpret_cast<intptr_t>(bi.data)) / static_cast<int64_t>(itemsize(d));
  for (int64_t flat = 0; flat < numel(v.sizes); ++flat) {
    Shape i = unravel(flat, v.sizes);
    int64_t addr = start;
    for (size_t k = 0; k < i.size(); ++k) addr += i[k] * vi.strides[k];
    if (addr != want[flat])
      return ctx.fail(v.name, "element " + shape_str(i) + " is base element " + std::to_string(addr) + ", expected " +
                                  std::to_string(want[flat]) + " (not a view of the base?)");
  }
  if (v.overlap || numel(v.sizes) == 0) return;
  // Writes through the view land in the base and bump the shared version counter.
  uint64_t version = bi.version;
  TsrScalar seven = d == TSR_BOOL ? tsr_scalar_bool(1) : tsr_scalar_int(7);
  std::string name = v.name + ", then fill_ through it";
  if (!ctx.ran(tsr_fill_(out.get(), seven), name)) return;
  for (int64_t i : want) base.values[i] = round_to(d, 7);
  if (ctx.check(name, tb.get(), d, v.base, base.values, 0) && info_of(tb.get()).version <= version)
    ctx.fail(name, "the base's version counter did not move");
}

void run_view(Ctx& ctx) {
  for (const ViewVariant& v : view_variants(ctx.op.name)) check_view(ctx, v);
}

}  // namespace

std::optional<Case> find_random_case(const OpEntry& op) {
  if (op.kind != Kind::RANDOM || !kRandom.count(op.name)) return std::nullopt;
  // uniform/normal fill floating tensors; bernoulli any dtype.
  return Case{run_random, op.types == Types::FLOAT ? TSR_DTYPES_FLOAT : TSR_DTYPES_ALL};
}

std::optional<Case> find_view_case(const OpEntry& op) {
  if (op.kind != Kind::VIEW || view_variants(op.name).empty()) return std::nullopt;
  return Case{run_view, TSR_DTYPES_ALL};
}

}  // namespace conf
