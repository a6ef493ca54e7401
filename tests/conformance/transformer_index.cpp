// Conformance cases of index_select, gather, triu/tril, topk, dropout, multinomial, grad_norm, cat.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>

#include "transformer_common.h"

namespace conf {
namespace {

// ---- index_select and its backward -----------------------------------------------------------

// A value in every dtype: [-5, 5] (uint8 [0, 5], bool 0/1).
const Domain kValues{-5, 5};

// The flat index of x read (gather: index's element) for each element of the output.
Shape with_dim(Shape idx, int64_t dim, int64_t v) {
  idx[dim] = v;
  return idx;
}
int64_t flat_of(const Shape& idx, const Shape& sizes) {
  int64_t f = 0;
  for (size_t d = 0; d < sizes.size(); ++d) f = f * sizes[d] + idx[d];
  return f;
}
int64_t wrap(int64_t dim, size_t ndim) {
  return dim < 0 ? dim + static_cast<int64_t>(ndim) : dim;
}

// A scatter-add backward (index_select_backward, gather_backward) into zeros(x): with hp[0] = 0
// (atomics allowed) and 1 (deterministic: two calls bitwise the same).
void check_scatter_add(Ctx& ctx, const std::string& name, TsrTensor grad, TsrTensor index, int64_t dim,
                       const Shape& x, const Values& want) {
  for (int deterministic : {0, 1}) {
    TsrAttrs a = default_attrs();
    a.dim = dim;
    a.nshape = static_cast<int32_t>(x.size());
    std::copy(x.begin(), x.end(), a.shape);
    a.hp[0] = deterministic;
    const std::string v = name + (deterministic ? ", deterministic" : "");
    std::vector<Tensor> out, again;
    if (!ctx.ran(call(ctx, {grad, index}, a, out, 1), v)) continue;
    if (!ctx.check(v, out[0].get(), ctx.dtype, x, want, tol_of(ctx.dtype, 4, 3)) || !deterministic) continue;
    if (!ctx.ran(call(ctx, {grad, index}, a, again, 1), v)) continue;
    std::optional<HostTensor> first = ctx.download(out[0].get(), v), second = ctx.download(again[0].get(), v);
    if (first && second && first->values != second->values) ctx.fail(v, "two deterministic calls differ");
  }
}

struct IndexSelectSpec {
  const char* name;
  Shape x;
  int64_t dim;
  std::vector<int64_t> index;
  int32_t index_dtype;
  Layout layout;
};

// n indices cycling over [0, size) in a scattered order (many repeats).
std::vector<int64_t> scattered(int64_t n, int64_t size) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (i * 7 + i / size) % size;
  return v;
}

const IndexSelectSpec kIndexSelectSpecs[] = {
    {"dim 0, repeated", {5, 4}, 0, {3, 0, 3, 1}, TSR_INT64, C},
    {"dim 1 of 3-D", {3, 6, 2}, 1, {5, 0, 2, 2, 5}, TSR_INT64, C},
    {"dim -1", {4, 5}, -1, {4, 4, 0}, TSR_INT64, C},
    {"1-D, int32 index", {7}, 0, {6, 0, 1}, TSR_INT32, C},
    {"empty index", {4, 3}, 0, {}, TSR_INT64, C},
    {"dim 2 of transposed", {3, 4, 5}, 2, {1, 4, 1, 0}, TSR_INT64, Tr},
    {"embedding rows",
     {50, 16},
     0,
     {7, 49, 0, 7, 7, 13, 22, 49, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 40, 41, 42},
     TSR_INT64,
     C},
    {"2000 indices into 10 rows", {10, 64}, 0, scattered(2000, 10), TSR_INT64, C},
};

Shape select_shape(const Shape& x, int64_t dim, int64_t n) {
  return with_dim(x, dim, n);
}

// out[...i...] = x[...index[i]...] along dim.
Values index_select_ref(const Values& x, const Shape& xs, int64_t dim, const std::vector<int64_t>& index) {
  const Shape os = select_shape(xs, dim, static_cast<int64_t>(index.size()));
  Values out(numel(os));
  for (int64_t f = 0; f < numel(os); ++f) {
    const Shape i = unravel(f, os);
    out[f] = x[flat_of(with_dim(i, dim, index[i[dim]]), xs)];
  }
  return out;
}

void run_index_select(Ctx& ctx) {
  for (const IndexSelectSpec& s : kIndexSelectSpecs) {
    const int64_t dim = wrap(s.dim, s.x.size());
    HostTensor x = host(ctx.rng, ctx.dtype, s.x, kValues);
    Tensor tx = ctx.upload(x, s.layout),
           ti = ctx.upload(index_tensor({static_cast<int64_t>(s.index.size())}, s.index, s.index_dtype));
    if (!tx || !ti) return;
    TsrAttrs a = default_attrs();
    a.dim = s.dim;
    const std::string name =
        std::string(s.name) + ": " + label("x", s.x, s.layout) + " dim " + std::to_string(s.dim);
    std::vector<Tensor> out;
    if (ctx.ran(call(ctx, {tx.get(), ti.get()}, a, out, 1), name))
      ctx.check(name, out[0].get(), ctx.dtype, select_shape(s.x, dim, static_cast<int64_t>(s.index.size())),
                index_select_ref(x.values, s.x, dim, s.index), 0);
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  const HostTensor x = host(r, TSR_FLOAT32, {5, 3});
  expect_bad(ctx, "index 5 for size 5", {x, index_tensor({3}, {0, 5, 1})}, a, TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "index -1", {x, index_tensor({2}, {-1, 1})}, a, TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "2-D index", {x, index_tensor({2, 1}, {0, 1})}, a, -1);
  expect_bad(ctx, "float32 index", {x, host(r, TSR_FLOAT32, {2}, {0, 2})}, a, -1);
  TsrAttrs d = a;
  d.dim = 2;
  expect_bad(ctx, "dim 2 of a 2-D x", {x, index_tensor({2}, {0, 1})}, d, TSR_ERR_INDEX);
}

// index_select_backward(grad, index), attrs.shape = x's: each grad slice added at its index.
void run_index_select_backward(Ctx& ctx) {
  for (const IndexSelectSpec& s : kIndexSelectSpecs) {
    if (s.layout != C) continue;
    const int64_t dim = wrap(s.dim, s.x.size()), n = static_cast<int64_t>(s.index.size());
    const Shape gs = select_shape(s.x, dim, n);
    HostTensor g = host(ctx.rng, ctx.dtype, gs);
    Values dx(numel(s.x), 0);
    for (int64_t f = 0; f < numel(gs); ++f) {
      const Shape i = unravel(f, gs);
      dx[flat_of(with_dim(i, dim, s.index[i[dim]]), s.x)] += g.values[f];
    }
    Tensor tg = ctx.upload(g), ti = ctx.upload(index_tensor({n}, s.index, s.index_dtype));
    if (!tg || !ti) return;
    check_scatter_add(ctx, std::string(s.name) + ": x " + shape_str(s.x) + " dim " + std::to_string(s.dim),
                      tg.get(), ti.get(), s.dim, s.x, dx);
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.nshape = 2, a.shape[0] = 5, a.shape[1] = 3;
  expect_bad(ctx, "index 5 for size 5", {host(r, TSR_FLOAT32, {3, 3}), index_tensor({3}, {0, 5, 1})}, a,
             TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "grad [3, 4] for x [5, 3] and 3 indices",
             {host(r, TSR_FLOAT32, {3, 4}), index_tensor({3}, {0, 1, 1})}, a, TSR_ERR_INVALID_ARGUMENT);
}

// ---- gather and its backward -----------------------------------------------------------------

struct GatherSpec {
  const char* name;
  Shape x;
  int64_t dim;
  Shape index;
  Layout layout;
};

const GatherSpec kGatherSpecs[] = {
    {"dim 1", {4, 5}, 1, {4, 3}, C},
    {"dim 0, index longer than x", {4, 5}, 0, {6, 5}, C},
    {"dim 1, index smaller on dim 0", {4, 5}, 1, {2, 7}, C},
    {"dim -1 of transposed 3-D", {2, 3, 4}, -1, {2, 3, 6}, Tr},
    {"dim 1 of 3-D", {2, 3, 4}, 1, {1, 2, 2}, C},
    {"1-D", {6}, 0, {10}, C},
    {"empty index", {3, 4}, 1, {3, 0}, C},
};

std::vector<int64_t> gather_index(Ctx& ctx, const GatherSpec& s) {
  const int64_t dim = wrap(s.dim, s.x.size());
  std::vector<int64_t> idx(numel(s.index));
  for (int64_t& v : idx) v = ctx.rng.integer(0, s.x[dim] - 1);
  return idx;
}

void run_gather(Ctx& ctx) {
  for (const GatherSpec& s : kGatherSpecs) {
    const int64_t dim = wrap(s.dim, s.x.size());
    HostTensor x = host(ctx.rng, ctx.dtype, s.x, kValues);
    const std::vector<int64_t> idx = gather_index(ctx, s);
    Values want(idx.size());
    for (int64_t f = 0; f < numel(s.index); ++f)
      want[f] = x.values[flat_of(with_dim(unravel(f, s.index), dim, idx[f]), s.x)];
    Tensor tx = ctx.upload(x, s.layout), ti = ctx.upload(index_tensor(s.index, idx));
    if (!tx || !ti) return;
    TsrAttrs a = default_attrs();
    a.dim = s.dim;
    const std::string name =
        std::string(s.name) + ": " + label("x", s.x, s.layout) + ", index " + shape_str(s.index);
    std::vector<Tensor> out;
    if (ctx.ran(call(ctx, {tx.get(), ti.get()}, a, out, 1), name))
      ctx.check(name, out[0].get(), ctx.dtype, s.index, want, 0);
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.dim = 1;
  const HostTensor x = host(r, TSR_FLOAT32, {3, 4});
  expect_bad(ctx, "index 4 for size 4", {x, index_tensor({3, 1}, {0, 4, 1})}, a, TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "index -1", {x, index_tensor({3, 1}, {0, -1, 1})}, a, TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "1-D index for a 2-D x", {x, index_tensor({2}, {0, 1})}, a, TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "index [4, 1] for x [3, 4] on dim 1", {x, index_tensor({4, 1}, {0, 1, 2, 3})}, a,
             TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "float32 index", {x, host(r, TSR_FLOAT32, {3, 1}, {0, 2})}, a, -1);
}

void run_gather_backward(Ctx& ctx) {
  for (const GatherSpec& s : kGatherSpecs) {
    if (s.layout != C) continue;
    const int64_t dim = wrap(s.dim, s.x.size());
    const std::vector<int64_t> idx = gather_index(ctx, s);
    HostTensor g = host(ctx.rng, ctx.dtype, s.index);
    Values dx(numel(s.x), 0);
    for (int64_t f = 0; f < numel(s.index); ++f)
      dx[flat_of(with_dim(unravel(f, s.index), dim, idx[f]), s.x)] += g.values[f];
    Tensor tg = ctx.upload(g), ti = ctx.upload(index_tensor(s.index, idx));
    if (!tg || !ti) return;
    check_scatter_add(ctx, std::string(s.name) + ": x " + shape_str(s.x) + ", index " + shape_str(s.index),
                      tg.get(), ti.get(), s.dim, s.x, dx);
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.dim = 1;
  a.nshape = 2, a.shape[0] = 3, a.shape[1] = 4;
  expect_bad(ctx, "index 4 for size 4", {host(r, TSR_FLOAT32, {3, 1}), index_tensor({3, 1}, {0, 4, 1})}, a,
             TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "grad [3, 2] for index [3, 1]",
             {host(r, TSR_FLOAT32, {3, 2}), index_tensor({3, 1}, {0, 1, 1})}, a, TSR_ERR_INVALID_ARGUMENT);
}

// ---- triu / tril -----------------------------------------------------------------------------

struct TriSpec {
  Shape x;
  int64_t diagonal;
  Layout layout;
};

const TriSpec kTriSpecs[] = {
    {{4, 5}, 0, C}, {{4, 5}, 1, C},  {{4, 5}, -1, C},  {{4, 5}, 3, C},     {{4, 5}, -6, C},
    {{5, 3}, 0, C}, {{5, 3}, -2, C}, {{5, 3}, 2, C},   {{2, 3, 4}, 1, Tr}, {{2, 2, 3, 3}, -1, St},
    {{0, 3}, 0, C}, {{1, 1}, 0, C},  {{3, 70}, 10, C},
};

void run_tri(Ctx& ctx) {
  const bool upper = ctx.op.name == std::string("triu");
  for (const TriSpec& s : kTriSpecs) {
    HostTensor x = host(ctx.rng, ctx.dtype, s.x, {-5, 5, true});
    const int64_t rows = s.x[s.x.size() - 2], cols = s.x.back();
    Values want(x.values.size());
    for (int64_t f = 0; f < numel(s.x); ++f) {
      const int64_t i = (f / cols) % rows, j = f % cols;
      const bool keep = upper ? j - i >= s.diagonal : j - i <= s.diagonal;
      want[f] = keep ? x.values[f] : 0;
    }
    Tensor tx = ctx.upload(x, s.layout);
    if (!tx) return;
    TsrAttrs a = default_attrs();
    a.index = s.diagonal;
    const std::string name = label("x", s.x, s.layout) + " diagonal " + std::to_string(s.diagonal);
    std::vector<Tensor> out;
    if (ctx.ran(call(ctx, {tx.get()}, a, out, 1), name))
      ctx.check(name, out[0].get(), ctx.dtype, s.x, want, 0);
  }
  expect_bad(ctx, "1-D x", {host(ctx.rng, TSR_FLOAT32, {5})}, default_attrs(), -1);
  expect_bad(ctx, "0-dim x", {host(ctx.rng, TSR_FLOAT32, {})}, default_attrs(), -1);
}

// ---- topk ------------------------------------------------------------------------------------

struct TopkSpec {
  const char* name;
  Shape x;
  int64_t dim, k;
  bool largest;
  bool ties;  // few distinct values
  bool nan;   // NaNs at positions 1 and 4 of each slice (float dtypes)
  Layout layout;
};

const TopkSpec kTopkSpecs[] = {
    {"largest", {3, 8}, 1, 3, true, false, false, C},
    {"smallest", {3, 8}, 1, 3, false, false, false, C},
    {"largest dim 0, transposed", {5, 4}, 0, 2, true, false, false, Tr},
    {"smallest, k = size, dim -1", {2, 3, 6}, -1, 6, false, false, false, C},
    {"largest, ties", {10}, 0, 4, true, true, false, C},
    {"smallest, ties", {2, 10}, 1, 7, false, true, false, C},
    {"k 0", {4, 9}, 1, 0, true, false, false, C},
    {"largest, NaN", {2, 7}, 1, 3, true, false, true, C},
    {"smallest, NaN", {2, 7}, 1, 7, false, false, true, C},
    {"largest of 200, strided", {3, 200}, 1, 5, true, true, false, St},
};

// NaN is the largest value; equal values (and NaNs) keep index order (stable sort).
bool before_largest(double a, double b) {
  if (std::isnan(a)) return !std::isnan(b);
  return !std::isnan(b) && a > b;
}
bool before_smallest(double a, double b) {
  if (std::isnan(b)) return !std::isnan(a);
  return !std::isnan(a) && a < b;
}

void run_topk(Ctx& ctx) {
  for (const TopkSpec& s : kTopkSpecs) {
    if (s.nan && !is_float(ctx.dtype)) continue;
    const int64_t dim = wrap(s.dim, s.x.size()), n = s.x[dim];
    const Domain dom = s.ties ? Domain{-2, 2, false, true} : Domain{-100, 100};
    HostTensor x = host(ctx.rng, ctx.dtype, s.x, dom);
    const Shape os = with_dim(s.x, dim, s.k);
    Values values(numel(os)), indices(numel(os));
    for (int64_t f = 0; f < numel(s.x); ++f) {
      const Shape i = unravel(f, s.x);
      if (i[dim] != 0) continue;  // one slice per element with index 0 along dim
      if (s.nan)
        for (int64_t p : {1, 4}) x.values[flat_of(with_dim(i, dim, p), s.x)] = NAN;
      std::vector<int64_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      auto at = [&](int64_t j) { return x.values[flat_of(with_dim(i, dim, j), s.x)]; };
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return s.largest ? before_largest(at(a), at(b)) : before_smallest(at(a), at(b));
      });
      for (int64_t j = 0; j < s.k; ++j) {
        const int64_t o = flat_of(with_dim(i, dim, j), os);
        values[o] = at(order[j]), indices[o] = static_cast<double>(order[j]);
      }
    }
    Tensor tx = ctx.upload(x, s.layout);
    if (!tx) return;
    TsrAttrs a = default_attrs();
    a.dim = s.dim, a.index = s.k, a.hp[0] = s.largest ? 1 : 0;
    const std::string name = std::string(s.name) + ": " + label("x", s.x, s.layout) + " dim " +
                             std::to_string(s.dim) + " k " + std::to_string(s.k);
    std::vector<Tensor> out;
    if (!ctx.ran(call(ctx, {tx.get()}, a, out, 2), name)) continue;
    ctx.check(name + ": values", out[0].get(), ctx.dtype, os, values, 0);
    ctx.check(name + ": indices", out[1].get(), TSR_INT64, os, indices, 0);
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.dim = 1, a.index = 6, a.hp[0] = 1;
  const HostTensor x = host(r, TSR_FLOAT32, {3, 5});
  expect_bad(ctx, "k 6 of 5", {x}, a, -1, 2);
  a.index = -1;
  expect_bad(ctx, "k -1", {x}, a, -1, 2);
  a.index = 2;
  expect_bad(ctx, "bool x", {host(r, TSR_BOOL, {3, 5})}, a, -1, 2);
  a.dim = 2;
  expect_bad(ctx, "dim 2 of a 2-D x", {x}, a, TSR_ERR_INDEX, 2);
}

// ---- dropout ---------------------------------------------------------------------------------

struct DropoutSpec {
  Shape x;
  double p;
  Layout layout;
};

const DropoutSpec kDropoutSpecs[] = {
    {{1001}, 0.1, C}, {{40, 50}, 0.5, St}, {{7, 3}, 0.5, Tr}, {{}, 0.5, C},      {{0, 4}, 0.5, C},
    {{6, 5}, 0, C},   {{6, 5}, 1, C},      {{3, 9}, 0.3, C},  {{70000}, 0.1, C},
};

// y = x / (1 - p) where element i (row-major) is kept (u(i) < 1 - p), else 0.
Values dropout_ref(const Values& x, double p, const Stream& rs) {
  Values y(x.size(), 0);
  for (size_t i = 0; i < x.size(); ++i)
    if (p < 1 && (p == 0 || rs.keep(static_cast<int64_t>(i), p))) y[i] = x[i] / (1 - p);
  return y;
}

void run_dropout(Ctx& ctx) {
  if (!philox_known_answer())
    return ctx.fail("self-test", "the suite's own Philox4x32-10 fails its known answer");
  for (const DropoutSpec& s : kDropoutSpecs) {
    HostTensor x = host(ctx.rng, ctx.dtype, s.x, {-2, 2});
    const int64_t n = numel(s.x);
    const uint64_t seed = clean_seed(0xd0 + 31 * ctx.dtype + n, n, s.p);
    Tensor tx = ctx.upload(x, s.layout);
    if (!tx) return;
    TsrAttrs a = default_attrs();
    a.hp[0] = s.p;
    char p[16];
    std::snprintf(p, sizeof p, "%g", s.p);
    const std::string name = label("x", s.x, s.layout) + " p " + p + " after tsr_manual_seed";
    std::vector<Tensor> out;
    if (!ctx.ran(tsr_manual_seed(seed), name) || !ctx.ran(call(ctx, {tx.get()}, a, out, 1), name)) continue;
    ctx.check(name, out[0].get(), ctx.dtype, s.x, dropout_ref(x.values, s.p, Stream{seed}),
              tol_of(ctx.dtype, 4));
  }
  // Two calls in a row: the second starts ceil(n / 4) counters in; the same seed repeats both.
  const int64_t n1 = 1001, n2 = 37;
  const double p = 0.5;
  HostTensor x1 = host(ctx.rng, ctx.dtype, {n1}), x2 = host(ctx.rng, ctx.dtype, {n2});
  uint64_t seed = 0x5eed;
  for (;; ++seed) {  // clean for both calls
    if (clean_seed(seed, n1, p) != seed) continue;
    const Stream s2{seed, static_cast<uint64_t>(counters(n1))};
    bool clean = true;
    for (int64_t i = 0; i < n2; ++i) clean &= std::fabs(s2.u(i) - (1 - p)) > 1e-6;
    if (clean) break;
  }
  Tensor t1 = ctx.upload(x1), t2 = ctx.upload(x2);
  if (!t1 || !t2) return;
  TsrAttrs a = default_attrs();
  a.hp[0] = p;
  const std::string name = "x[1001] then x[37], p 0.5: the second mask starts 251 counters in";
  std::vector<Tensor> o1, o2;
  if (!ctx.ran(tsr_manual_seed(seed), name) || !ctx.ran(call(ctx, {t1.get()}, a, o1, 1), name) ||
      !ctx.ran(call(ctx, {t2.get()}, a, o2, 1), name))
    return;
  ctx.check(name + ": first", o1[0].get(), ctx.dtype, {n1}, dropout_ref(x1.values, p, Stream{seed}),
            tol_of(ctx.dtype, 4));
  ctx.check(name + ": second", o2[0].get(), ctx.dtype, {n2},
            dropout_ref(x2.values, p, Stream{seed, static_cast<uint64_t>(counters(n1))}),
            tol_of(ctx.dtype, 4));

  // hp[1] = 1: the mask of attrs.seed/offset (autograd's replay), whatever the generator holds.
  TsrAttrs replay = a;
  replay.hp[1] = 1, replay.seed = seed, replay.offset = static_cast<uint64_t>(counters(n1));
  const std::string rname = "x[37], p 0.5, replaying attrs.seed/offset 251";
  if (ctx.ran(tsr_manual_seed(seed + 1), rname) && ctx.ran(call(ctx, {t2.get()}, replay, o2, 1), rname))
    ctx.check(rname, o2[0].get(), ctx.dtype, {n2},
              dropout_ref(x2.values, p, Stream{seed, static_cast<uint64_t>(counters(n1))}),
              tol_of(ctx.dtype, 4));

  Rng& r = ctx.rng;
  TsrAttrs bad = default_attrs();
  bad.hp[0] = -0.1;
  expect_bad(ctx, "p -0.1", {host(r, TSR_FLOAT32, {4})}, bad, TSR_ERR_INVALID_ARGUMENT);
  bad.hp[0] = 1.5;
  expect_bad(ctx, "p 1.5", {host(r, TSR_FLOAT32, {4})}, bad, TSR_ERR_INVALID_ARGUMENT);
}

// ---- multinomial -----------------------------------------------------------------------------

struct MultinomialSpec {
  const char* name;
  Shape probs;
  int64_t n;
  bool replacement;
  int zeros;  // categories of weight 0 in each row (the first `zeros` odd ones)
};

const MultinomialSpec kMultinomialSpecs[] = {
    {"1-D, with replacement", {5}, 20, true, 0},
    {"without replacement", {3, 6}, 4, false, 0},
    {"without replacement, every category", {4, 5}, 5, false, 0},
    {"with replacement, zero weights", {2, 8}, 30, true, 3},
    {"without replacement, every nonzero category", {3, 8}, 5, false, 3},
    {"1000 categories, without replacement", {2, 1000}, 3, false, 0},
    {"1000 categories, with replacement", {3, 1000}, 50, true, 100},
};

// Checks the samples of one row against the inverse-CDF rule, sample by sample: sample s takes
// u = u(row * n + s) and the first (remaining) category whose cumulative weight (sequential
// float64 sum) exceeds u * total; without replacement a chosen category leaves the sum. A
// sample within 1e-9 of a boundary may take either neighbour. Returns "" or what differs.
std::string check_multinomial_row(const Values& w, const Values& got, int64_t row, int64_t n,
                                  bool replacement, const Stream& rs) {
  std::vector<bool> left(w.size(), true);
  for (int64_t s = 0; s < n; ++s) {
    double total = 0;
    for (size_t c = 0; c < w.size(); ++c) total += left[c] ? w[c] : 0;
    const double target = rs.u(row * n + s) * total;
    double cum = 0;
    int64_t want = -1;
    std::vector<int64_t> near;  // categories whose boundary sits next to the target
    for (size_t c = 0; c < w.size(); ++c) {
      if (!left[c] || w[c] == 0) continue;
      const double lo = cum;
      cum += w[c];
      if (want < 0 && cum > target) want = static_cast<int64_t>(c);
      if (std::fabs(lo - target) <= 1e-9 * total || std::fabs(cum - target) <= 1e-9 * total)
        near.push_back(static_cast<int64_t>(c));
    }
    const auto g = static_cast<int64_t>(got[s]);
    const bool ok = g == want || (std::count(near.begin(), near.end(), g) && g >= 0 &&
                                  g < static_cast<int64_t>(w.size()) && left[g] && w[g] > 0);
    if (!ok)
      return "row " + std::to_string(row) + " sample " + std::to_string(s) + ": got category " +
             std::to_string(g) + ", expected " + std::to_string(want) + " (u " +
             std::to_string(rs.u(row * n + s)) + ")";
    if (!replacement) left[g] = false;
  }
  return "";
}

void run_multinomial_spec(Ctx& ctx, const MultinomialSpec& s, uint64_t seed) {
  HostTensor probs = host(ctx.rng, ctx.dtype, s.probs, {0.05, 2});
  const int64_t Cn = s.probs.back(), R = numel(s.probs) / Cn;
  for (int64_t r = 0; r < R; ++r)
    for (int z = 0; z < s.zeros; ++z) probs.values[r * Cn + 2 * z + 1] = 0;
  Tensor tp = ctx.upload(probs);
  if (!tp) return;
  TsrAttrs a = default_attrs();
  a.index = s.n, a.hp[0] = s.replacement ? 1 : 0;
  const std::string name =
      std::string(s.name) + ": probs " + shape_str(s.probs) + ", " + std::to_string(s.n) + " samples";
  const Shape os = s.probs.size() == 1 ? Shape{s.n} : Shape{R, s.n};
  // Twice after the same seed (the same samples); then again (the generator moved on by
  // ceil(R * n / 4) counters).
  for (uint64_t offset : {uint64_t{0}, uint64_t{0}, static_cast<uint64_t>(counters(R * s.n))}) {
    std::vector<Tensor> out;
    if (offset == 0 && !ctx.ran(tsr_manual_seed(seed), name)) return;
    if (!ctx.ran(call(ctx, {tp.get()}, a, out, 1), name)) return;
    const std::string v = name + (offset ? ", the next call" : "");
    if (shape_of(out[0].get()) != os)
      return ctx.fail(v, "result shape " + shape_str(shape_of(out[0].get())) + ", expected " + shape_str(os));
    std::optional<HostTensor> got = ctx.download(out[0].get(), v);
    if (!got) return;
    if (got->dtype != TSR_INT64)
      return ctx.fail(v, std::string("result dtype ") + dtype_str(got->dtype) + ", expected int64");
    for (int64_t r = 0; r < R; ++r) {
      const Values w(probs.values.begin() + r * Cn, probs.values.begin() + (r + 1) * Cn);
      const Values g(got->values.begin() + r * s.n, got->values.begin() + (r + 1) * s.n);
      const std::string err = check_multinomial_row(w, g, r, s.n, s.replacement, Stream{seed, offset});
      if (!err.empty()) return ctx.fail(v, err);
    }
    ctx.pass();
  }
}

void run_multinomial(Ctx& ctx) {
  if (!philox_known_answer())
    return ctx.fail("self-test", "the suite's own Philox4x32-10 fails its known answer");
  uint64_t seed = 0x3a17 + ctx.dtype;
  for (const MultinomialSpec& s : kMultinomialSpecs) run_multinomial_spec(ctx, s, seed++);
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.index = 6;
  expect_bad(ctx, "6 samples of 5 without replacement", {host(r, TSR_FLOAT32, {2, 5}, {0.1, 1})}, a, -1);
  a.index = 2, a.hp[0] = 1;
  expect_bad(ctx, "3-D probs", {host(r, TSR_FLOAT32, {2, 2, 5}, {0.1, 1})}, a, -1);
  expect_bad(ctx, "int64 probs", {host(r, TSR_INT64, {2, 5}, {1, 3})}, a, -1);
}

// ---- grad_norm and clip_grad_scale -----------------------------------------------------------

struct NormSpec {
  const char* name;
  std::vector<Shape> shapes;
  double type;  // 2 or inf
  Layout first;
};

const NormSpec kNormSpecs[] = {
    {"one tensor", {{7}}, 2, C},
    {"three sizes", {{3, 4}, {5}, {2, 2, 2}}, 2, C},
    {"three sizes, inf", {{3, 4}, {5}, {2, 2, 2}}, INFINITY, C},
    {"an empty and a 0-dim tensor", {{0, 3}, {}, {6}}, 2, C},
    {"an empty and a 0-dim tensor, inf", {{0, 3}, {}, {6}}, INFINITY, C},
    {"20000 + 3 elements (threads)", {{20000}, {3}}, 2, C},
    {"first transposed", {{4, 3}, {2}}, 2, Tr},
    {"nine tensors", {{1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}}, 2, C},
};

double norm_ref(const std::vector<HostTensor>& ts, double type) {
  double acc = 0;
  for (const HostTensor& t : ts)
    for (double v : t.values) acc = std::isinf(type) ? std::max(acc, std::fabs(v)) : acc + v * v;
  return std::isinf(type) ? acc : std::sqrt(acc);
}

void run_grad_norm_with(Ctx& ctx, const std::string& name, const std::vector<HostTensor>& hs, double type,
                        Layout first) {
  std::vector<Tensor> ts;
  std::vector<TsrTensor> ins;
  int32_t out_dtype = TSR_FLOAT32;
  for (size_t i = 0; i < hs.size(); ++i) {
    ts.push_back(ctx.upload(hs[i], i == 0 ? first : C));
    if (!ts.back()) return;
    ins.push_back(ts.back().get());
    if (hs[i].dtype == TSR_FLOAT64) out_dtype = TSR_FLOAT64;
  }
  TsrAttrs a = default_attrs();
  a.hp[0] = type;
  std::vector<Tensor> out;
  if (ctx.ran(call(ctx, ins, a, out, 1), name))
    ctx.check(name, out[0].get(), out_dtype, {}, {norm_ref(hs, type)}, Ctx::tol(out_dtype, 10));
}

void run_grad_norm(Ctx& ctx) {
  for (const NormSpec& s : kNormSpecs) {
    std::vector<HostTensor> hs;
    std::string shapes;
    for (const Shape& sh : s.shapes)
      hs.push_back(host(ctx.rng, ctx.dtype, sh)), (shapes += " ") += shape_str(sh);
    run_grad_norm_with(ctx, std::string(s.name) + ":" + shapes + (s.first == Tr ? " (first transposed)" : ""),
                       hs, s.type, s.first);
  }
  // Mixed dtypes: float64 anywhere makes the result float64.
  for (int32_t other : {TSR_FLOAT64, TSR_FLOAT32, TSR_FLOAT16}) {
    if (other == ctx.dtype) continue;
    std::vector<HostTensor> hs = {host(ctx.rng, ctx.dtype, {3, 4}), host(ctx.rng, other, {5})};
    for (double type : {2.0, double(INFINITY)})
      run_grad_norm_with(ctx,
                         std::string("mixed ") + dtype_str(ctx.dtype) + " [3, 4] and " + dtype_str(other) +
                             " [5]" + (std::isinf(type) ? ", inf" : ""),
                         hs, type, C);
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.hp[0] = 1;
  expect_bad(ctx, "norm type 1", {host(r, TSR_FLOAT32, {3})}, a, TSR_ERR_INVALID_ARGUMENT);
  a.hp[0] = 2;
  expect_bad(ctx, "no tensors", {}, a, -1);
  expect_bad(ctx, "int64 tensor", {host(r, TSR_INT64, {3}, {-2, 2})}, a, -1);
}

struct ClipSpec {
  std::vector<Shape> shapes;
  double total, max_norm;
};

const ClipSpec kClipSpecs[] = {
    {{{3, 4}, {5}}, 5, 1},          {{{7}}, 0.5, 1}, {{{2, 3}, {0}, {}, {100}}, 2, 1.5}, {{{4}}, 0, 1},
    {{{20000}, {3, 3}}, 300, 0.25},
};

void run_clip_grad_scale(Ctx& ctx) {
  const int32_t sd = stat_dtype(ctx.dtype);
  for (const ClipSpec& s : kClipSpecs) {
    const double coef = std::min(s.max_norm / (s.total + 1e-6), 1.0);
    std::vector<HostTensor> hs;
    std::vector<Tensor> ts;
    std::vector<TsrTensor> outs;
    std::vector<uint64_t> before;
    std::string name = "total " + std::to_string(s.total) + ", max " + std::to_string(s.max_norm) + ":";
    for (const Shape& sh : s.shapes) {
      hs.push_back(host(ctx.rng, ctx.dtype, sh, {-3, 3}));
      ts.push_back(ctx.upload(hs.back()));
      if (!ts.back()) return;
      outs.push_back(ts.back().get());
      before.push_back(version_of(outs.back()));
      (name += " ") += shape_str(sh);
    }
    Tensor total = ctx.upload_scalar(sd, s.total);
    if (!total) return;
    TsrAttrs a = default_attrs();
    a.hp[0] = s.max_norm;
    TsrTensor in = total.get();
    if (!ctx.ran(tsr_call(ctx.op.id, &in, 1, &a, outs.data(), static_cast<int32_t>(outs.size())), name))
      continue;
    for (size_t i = 0; i < hs.size(); ++i) {
      Values want = hs[i].values;
      for (double& v : want) v *= coef;
      ctx.check(name + " tensor " + std::to_string(i), outs[i], ctx.dtype, hs[i].sizes, want,
                tol_of(ctx.dtype, 4));
      if (numel(hs[i].sizes) && version_of(outs[i]) <= before[i])
        ctx.fail(name + " tensor " + std::to_string(i), "its version counter did not move");
    }
  }
  if (ctx.dtype != TSR_FLOAT32) return;
  // A NULL output; no total.
  Tensor t = ctx.upload(host(ctx.rng, TSR_FLOAT32, {4})), total = ctx.upload_scalar(TSR_FLOAT32, 2);
  if (!t || !total) return;
  TsrAttrs a = default_attrs();
  a.hp[0] = 1;
  TsrTensor in = total.get(), null_out[1] = {nullptr}, outs[1] = {t.get()};
  ctx.expect_error(tsr_call(ctx.op.id, &in, 1, &a, null_out, 1), "bad input: NULL output");
  if (null_out[0]) tsr_release(null_out[0]);
  ctx.expect_error(tsr_call(ctx.op.id, &in, 0, &a, outs, 1), "bad input: no total_norm input");
}

// ---- cat -------------------------------------------------------------------------------------

struct CatSpec {
  const char* name;
  std::vector<Shape> shapes;
  int64_t dim;
  std::vector<Layout> layouts;  // per input; missing ones contiguous
};

const CatSpec kCatSpecs[] = {
    {"dim 0", {{2, 3}, {4, 3}, {1, 3}}, 0, {}},
    {"dim 1", {{2, 3}, {2, 5}}, 1, {}},
    {"dim -1", {{2, 3}, {2, 1}}, -1, {}},
    {"with an empty tensor", {{2, 3}, {0, 3}, {1, 3}}, 0, {}},
    {"dim 1 of 3-D, transposed and strided inputs", {{2, 2, 3}, {2, 1, 3}, {2, 4, 3}}, 1, {Tr, St}},
    {"one tensor", {{5}}, 0, {}},
    {"1-D", {{3}, {4}}, 0, {}},
};

// out = cat(hs) along dim in dtype `rd` (each value converted from its own dtype).
Values cat_ref(const std::vector<HostTensor>& hs, int64_t dim, int32_t rd, Shape* out_shape) {
  Shape os = hs[0].sizes;
  os[dim] = 0;
  for (const HostTensor& h : hs) os[dim] += h.sizes[dim];
  Values out(numel(os));
  int64_t start = 0;
  for (const HostTensor& h : hs) {
    for (int64_t f = 0; f < numel(h.sizes); ++f) {
      Shape i = unravel(f, h.sizes);
      i[dim] += start;
      out[flat_of(i, os)] = round_to(rd, h.values[f]);
    }
    start += h.sizes[dim];
  }
  *out_shape = os;
  return out;
}

void run_cat_with(Ctx& ctx, const std::string& name, const std::vector<HostTensor>& hs,
                  const std::vector<Layout>& layouts, int64_t dim) {
  std::vector<Tensor> ts;
  std::vector<TsrTensor> ins;
  int32_t rd = hs[0].dtype;
  for (size_t i = 0; i < hs.size(); ++i) {
    ts.push_back(ctx.upload(hs[i], i < layouts.size() ? layouts[i] : C));
    if (!ts.back()) return;
    ins.push_back(ts.back().get());
    rd = promote_types(rd, hs[i].dtype);
  }
  Shape os;
  const Values want = cat_ref(hs, wrap(dim, hs[0].sizes.size()), rd, &os);
  TsrAttrs a = default_attrs();
  a.dim = dim;
  std::vector<Tensor> out;
  if (ctx.ran(call(ctx, ins, a, out, 1), name)) ctx.check(name, out[0].get(), rd, os, want, 0);
}

void run_cat(Ctx& ctx) {
  for (const CatSpec& s : kCatSpecs) {
    std::vector<HostTensor> hs;
    std::string name = std::string(s.name) + ":";
    for (size_t i = 0; i < s.shapes.size(); ++i) {
      hs.push_back(host(ctx.rng, ctx.dtype, s.shapes[i], kValues));
      (name += " ") += label("t", s.shapes[i], i < s.layouts.size() ? s.layouts[i] : C);
    }
    run_cat_with(ctx, name + " dim " + std::to_string(s.dim), hs, s.layouts, s.dim);
  }
  {  // 64 inputs, the most a call takes
    std::vector<HostTensor> hs;
    for (int i = 0; i < 64; ++i) hs.push_back(host(ctx.rng, ctx.dtype, {1, 2}, kValues));
    run_cat_with(ctx, "64 inputs [1, 2] dim 0", hs, {}, 0);
  }
  // Promotion: this dtype with each other dtype, either side.
  for (int32_t other = 0; other < TSR_NUM_DTYPES; ++other) {
    if (other == ctx.dtype) continue;
    const HostTensor a = host(ctx.rng, ctx.dtype, {2, 3}, kValues), b = host(ctx.rng, other, {1, 3}, kValues);
    const std::string pair =
        std::string(dtype_str(ctx.dtype)) + " [2, 3] and " + dtype_str(other) + " [1, 3]";
    run_cat_with(ctx, "promoted: " + pair + " dim 0", {a, b}, {}, 0);
    run_cat_with(ctx,
                 "promoted: " + std::string(dtype_str(other)) + " [1, 3] and " + dtype_str(ctx.dtype) +
                     " [2, 3] dim 0",
                 {b, a}, {}, 0);
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  auto f32 = [&](const Shape& sizes) { return host(r, TSR_FLOAT32, sizes); };
  expect_bad(ctx, "[2, 3] and [2, 4] on dim 0", {f32({2, 3}), f32({2, 4})}, a, TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "[2, 3] and [3]", {f32({2, 3}), f32({3})}, a, TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "no tensors", {}, a, -1);
  std::vector<HostTensor> many(65, f32({1}));
  expect_bad(ctx, "65 tensors", many, a, -1);
  TsrAttrs d = a;
  d.dim = 2;
  expect_bad(ctx, "dim 2 of 2-D tensors", {f32({2, 3}), f32({2, 3})}, d, TSR_ERR_INDEX);
}

}  // namespace

std::optional<Case> find_transformer_index_case(const OpEntry& op) {
  static const std::map<std::string, Case> kCases = {
      {"index_select", {run_index_select, TSR_DTYPES_ALL}},
      {"index_select_backward", {run_index_select_backward, TSR_DTYPES_FLOAT}},
      {"gather", {run_gather, TSR_DTYPES_ALL}},
      {"gather_backward", {run_gather_backward, TSR_DTYPES_FLOAT}},
      {"triu", {run_tri, TSR_DTYPES_ALL}},
      {"tril", {run_tri, TSR_DTYPES_ALL}},
      {"topk", {run_topk, TSR_DTYPES_FLOAT | TSR_DTYPES_INT}},
      {"dropout", {run_dropout, TSR_DTYPES_FLOAT}},
      {"multinomial", {run_multinomial, TSR_DTYPES_FLOAT}},
      {"grad_norm", {run_grad_norm, TSR_DTYPES_FLOAT}},
      {"clip_grad_scale", {run_clip_grad_scale, TSR_DTYPES_FLOAT}},
      {"cat", {run_cat, TSR_DTYPES_ALL}},
  };
  if (!transformer_kind(op.kind)) return std::nullopt;
  auto it = kCases.find(op.name);
  return it == kCases.end() ? std::nullopt : std::optional<Case>(it->second);
}

}  // namespace conf
