// Conformance cases of the transformer kinds (NN, INDEX, SAMPLE, FOREACH, COMPOSITE) against
// float64 references computed here: layer norm and its backward, attention (causal or not,
// T != S, the Philox dropout mask, the backward called directly and through autograd), cross
// entropy (ignore_index, label smoothing), index_select/gather and their scatter-add
// backwards, triu/tril, topk (ties, NaN), dropout (the exact mask), multinomial (the
// inverse-CDF rule), grad_norm/clip_grad_scale and cat (promotion); plus the bad inputs each
// must refuse with a message naming the op.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>

#include "harness.h"

namespace conf {
namespace {

using Values = std::vector<double>;
const Domain kUnit{-1, 1};
const Layout C = Layout::Contiguous, Tr = Layout::Transposed, St = Layout::Strided;

// ---- shared helpers ------------------------------------------------------------------------

bool on_cpu(const Ctx& ctx) {
  return ctx.device.type == TSR_DEVICE_CPU;
}
bool half_float(int32_t dtype) {
  return dtype == TSR_FLOAT16 || dtype == TSR_BFLOAT16;
}

// NN statistics (mean, rstd, lse): float32, float64 for float64 inputs.
int32_t stat_dtype(int32_t dtype) {
  return dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
}

// Ctx::tol widened by k for float32/float64 and by lp for float16/bfloat16 (fused kernels that
// may round an intermediate, as flash attention rounds P, to the input dtype).
double tol_of(int32_t dtype, double k, double lp = 1) {
  return half_float(dtype) ? Ctx::tol(dtype) * lp : Ctx::tol(dtype, k);
}

uint64_t version_of(TsrTensor t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  tsr_tensor_info(t, &info);
  return info.version;
}

Shape shape_of(TsrTensor t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  if (tsr_tensor_info(t, &info) != TSR_OK) return {};
  return Shape(info.sizes, info.sizes + info.ndim);
}

HostTensor host(Rng& rng, int32_t dtype, const Shape& sizes, const Domain& dom = kUnit) {
  return random_tensor(rng, dtype, sizes, dom);
}

HostTensor index_tensor(const Shape& sizes, const std::vector<int64_t>& v, int32_t dtype = TSR_INT64) {
  return HostTensor{dtype, sizes, Values(v.begin(), v.end())};
}

// tsr_call of `op` (ctx's op by default) with `ins` into `n` fresh outputs.
int32_t call(Ctx& ctx, const std::vector<TsrTensor>& ins, const TsrAttrs& a, std::vector<Tensor>& outs, int n,
             int32_t op = -1) {
  outs.clear();
  outs.resize(n);
  std::vector<TsrTensor> raw(n, nullptr);
  const int32_t st =
      tsr_call(op < 0 ? ctx.op.id : op, ins.data(), static_cast<int32_t>(ins.size()), &a, raw.data(), n);
  if (st == TSR_OK)
    for (int i = 0; i < n; ++i) outs[i] = Tensor(raw[i]);
  return st;
}

// Checks an output whose exact shape the host contract leaves open (layer_norm's mean/rstd,
// attention's lse of a 3-D call) against `sizes`, after viewing it as `sizes`.
bool check_as(Ctx& ctx, const std::string& variant, TsrTensor t, int32_t dtype, const Shape& sizes,
              const Values& want, double tol) {
  const Shape got = shape_of(t);
  if (numel(got) != numel(sizes)) {
    ctx.fail(variant, "result shape " + shape_str(got) + ", expected " + shape_str(sizes) +
                          " (or that many elements)");
    return false;
  }
  Tensor v;
  const int32_t st = tsr_reshape(t, sizes.data(), static_cast<int32_t>(sizes.size()), v.out());
  if (st != TSR_OK) {
    ctx.fail(variant, std::string("tsr_reshape of the result: ") + tsr_last_error());
    return false;
  }
  return ctx.check(variant, v.get(), dtype, sizes, want, tol);
}

// One bad call (float32 cell only; other cells skip it): it must fail, with `status` when
// status >= 0, and the message must name the op. outs_given: the first host tensor is the
// (given) output, as clip_grad_scale takes its tensors.
void expect_bad(Ctx& ctx, const std::string& what, const std::vector<HostTensor>& hosts, const TsrAttrs& a,
                int32_t status, int num_outputs = 1, bool cpu_only = false) {
  if (ctx.dtype != TSR_FLOAT32 || (cpu_only && !on_cpu(ctx))) return;
  std::vector<Tensor> t;
  std::vector<TsrTensor> ins;
  for (const HostTensor& h : hosts) {
    t.push_back(ctx.upload(h));
    if (!t.back()) return;
    ins.push_back(t.back().get());
  }
  std::vector<TsrTensor> outs(num_outputs, nullptr);
  const int32_t st =
      tsr_call(ctx.op.id, ins.data(), static_cast<int32_t>(ins.size()), &a, outs.data(), num_outputs);
  const std::string message = st == TSR_OK ? "" : tsr_last_error();
  if (st == TSR_OK)
    for (TsrTensor o : outs) tsr_release(o);
  const std::string variant = "bad input: " + what;
  ctx.expect_error(st, variant, status);
  if (st != TSR_OK && st != TSR_ERR_NOT_IMPLEMENTED && message.find(ctx.op.name) == std::string::npos)
    ctx.fail(variant, "the message does not name the op: \"" + message + "\"");
}

// ---- Philox (the RANDOM stream of plugin.h) --------------------------------------------------

void philox(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t c[4] = {ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3]}, k[2] = {key_in[0], key_in[1]};
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = 0xD2511F53ull * c[0], p1 = 0xCD9E8D57ull * c[2];
    const uint32_t next[4] = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
                              static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
    std::memcpy(c, next, sizeof c);
    k[0] += 0x9E3779B9u;
    k[1] += 0xBB67AE85u;
  }
  std::memcpy(out, c, sizeof c);
}

// The generator after tsr_manual_seed(seed), `offset` counters in: element i takes counter
// offset + i/4, lane i%4, u = (x + 0.5) * 2^-32 (bernoulli_'s rule).
struct Stream {
  uint64_t seed, offset = 0;
  double u(int64_t i) const {
    const uint64_t n = offset + static_cast<uint64_t>(i) / 4;
    uint32_t ctr[4] = {static_cast<uint32_t>(n), static_cast<uint32_t>(n >> 32), 0, 0};
    uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}, x[4];
    philox(ctr, key, x);
    return (x[i % 4] + 0.5) * 0x1p-32;
  }
  bool keep(int64_t i, double p) const { return u(i) < 1 - p; }
};

int64_t counters(int64_t elements) {
  return (elements + 3) / 4;
}

// The first seed from `base` whose first `count` draws are all clear of the threshold 1 - p
// by 1e-6 (a float32 kernel may round u or 1 - p; those elements could go either way).
uint64_t clean_seed(uint64_t base, int64_t count, double p) {
  for (uint64_t seed = base;; ++seed) {
    const Stream s{seed};
    bool clean = true;
    for (int64_t i = 0; i < count && clean; ++i) clean = std::fabs(s.u(i) - (1 - p)) > 1e-6;
    if (clean) return seed;
  }
}

bool philox_known_answer() {
  uint32_t zero[4] = {0, 0, 0, 0}, key[2] = {0, 0}, x[4];
  philox(zero, key, x);
  return x[0] == 0x6627e8d5u && x[1] == 0xe169c58du && x[2] == 0xbc57ac4cu && x[3] == 0x9b00dbd8u;
}

// ---- layer_norm ------------------------------------------------------------------------------

struct LayerNormSpec {
  const char* name;
  Shape x;
  int64_t ndim;  // trailing normalized dims (attrs.dim)
  bool w, b;
  double eps;
  Layout layout;
};

const LayerNormSpec kLayerNormSpecs[] = {
    {"w, b", {4, 8}, 1, true, true, 1e-5, C},
    {"w only", {2, 3, 16}, 1, true, false, 1e-5, C},
    {"normalized [3, 4], w, b", {2, 3, 4}, 2, true, true, 1e-5, C},
    {"no affine, eps 0.1", {5, 7}, 1, false, false, 0.1, C},
    {"x transposed", {6, 5}, 1, true, true, 1e-5, Tr},
    {"one row of one", {1, 1}, 1, true, true, 1e-5, C},
    {"C = 300 (threads)", {16, 300}, 1, true, true, 1e-5, C},
    {"empty rows", {0, 8}, 1, true, true, 1e-5, C},
};

// x is (R, Cn); y (R, Cn), mean and rstd (R).
struct LayerNormRef {
  Values y, mean, rstd;
};
LayerNormRef layer_norm_ref(const Values& x, int64_t R, int64_t Cn, const Values* w, const Values* b,
                            double eps) {
  LayerNormRef r{Values(x.size()), Values(R), Values(R)};
  for (int64_t i = 0; i < R; ++i) {
    const double* row = x.data() + i * Cn;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < Cn; ++c) mean += row[c];
    mean /= static_cast<double>(Cn);
    for (int64_t c = 0; c < Cn; ++c) var += (row[c] - mean) * (row[c] - mean);
    var /= static_cast<double>(Cn);
    const double rstd = 1 / std::sqrt(var + eps);
    r.mean[i] = mean, r.rstd[i] = rstd;
    for (int64_t c = 0; c < Cn; ++c)
      r.y[i * Cn + c] = (row[c] - mean) * rstd * (w ? (*w)[c] : 1) + (b ? (*b)[c] : 0);
  }
  return r;
}

void run_layer_norm_spec(Ctx& ctx, const LayerNormSpec& s) {
  const Shape norm(s.x.end() - s.ndim, s.x.end()), lead(s.x.begin(), s.x.end() - s.ndim);
  const int64_t R = numel(lead), Cn = numel(norm);
  HostTensor x = host(ctx.rng, ctx.dtype, s.x, {-2, 2});
  HostTensor w = host(ctx.rng, ctx.dtype, norm, {0.5, 1.5}), b = host(ctx.rng, ctx.dtype, norm, {-0.5, 0.5});
  const LayerNormRef ref =
      layer_norm_ref(x.values, R, Cn, s.w ? &w.values : nullptr, s.b ? &b.values : nullptr, s.eps);
  Tensor tx = ctx.upload(x, s.layout), tw = ctx.upload(w), tb = ctx.upload(b);
  if (!tx || !tw || !tb) return;
  std::vector<TsrTensor> ins = {tx.get()};
  if (s.w) ins.push_back(tw.get());
  if (s.b) ins.push_back(tb.get());
  TsrAttrs a = default_attrs();
  a.dim = s.ndim;
  a.hp[0] = s.eps;
  const std::string name = std::string(s.name) + ": " + label("x", s.x, s.layout);
  const double tol = tol_of(ctx.dtype, 10);
  std::vector<Tensor> out;
  if (ctx.ran(call(ctx, ins, a, out, 3), name + ", 3 outputs")) {
    ctx.check(name + ": y", out[0].get(), ctx.dtype, s.x, ref.y, tol);
    check_as(ctx, name + ": mean", out[1].get(), stat_dtype(ctx.dtype), lead, ref.mean,
             Ctx::tol(stat_dtype(ctx.dtype), 10));
    check_as(ctx, name + ": rstd", out[2].get(), stat_dtype(ctx.dtype), lead, ref.rstd,
             Ctx::tol(stat_dtype(ctx.dtype), 10));
  }
  if (ctx.ran(call(ctx, ins, a, out, 1), name + ", y only"))
    ctx.check(name + ", y only", out[0].get(), ctx.dtype, s.x, ref.y, tol);
}

void run_layer_norm(Ctx& ctx) {
  for (const LayerNormSpec& s : kLayerNormSpecs) run_layer_norm_spec(ctx, s);
  TsrAttrs a = default_attrs();
  a.dim = 1;
  a.hp[0] = 1e-5;
  Rng& r = ctx.rng;
  expect_bad(ctx, "int64 x", {host(r, TSR_INT64, {3, 4}, {-3, 3})}, a, -1);
  expect_bad(ctx, "w [5] for a normalized shape [4]",
             {host(r, TSR_FLOAT32, {3, 4}), host(r, TSR_FLOAT32, {5})}, a, TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "b [3] for a normalized shape [4]",
             {host(r, TSR_FLOAT32, {3, 4}), host(r, TSR_FLOAT32, {4}), host(r, TSR_FLOAT32, {3})}, a,
             TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "float64 w for a float32 x", {host(r, TSR_FLOAT32, {3, 4}), host(r, TSR_FLOAT64, {4})}, a,
             -1);
  TsrAttrs d = a;
  d.dim = 0;
  expect_bad(ctx, "attrs.dim 0 (no normalized dims)", {host(r, TSR_FLOAT32, {3, 4})}, d, -1);
  d.dim = 3;
  expect_bad(ctx, "attrs.dim 3 for a 2-D x", {host(r, TSR_FLOAT32, {3, 4})}, d, -1);
  d = a;
  d.hp[0] = -1;
  expect_bad(ctx, "eps -1", {host(r, TSR_FLOAT32, {3, 4})}, d, TSR_ERR_INVALID_ARGUMENT);
}

// ---- layer_norm_backward (called directly) ---------------------------------------------------

struct LayerNormBackwardSpec {
  int64_t R, Cn;
  bool w;
};
const LayerNormBackwardSpec kLayerNormBackwardSpecs[] = {
    {4, 8, true}, {3, 20, false}, {1, 1, true}, {9, 300, true}};

void run_layer_norm_backward_spec(Ctx& ctx, const LayerNormBackwardSpec& s) {
  const int64_t R = s.R, Cn = s.Cn;
  const int32_t sd = stat_dtype(ctx.dtype);
  HostTensor x = host(ctx.rng, ctx.dtype, {R, Cn}, {-2, 2}), g = host(ctx.rng, ctx.dtype, {R, Cn});
  HostTensor w = host(ctx.rng, ctx.dtype, {Cn}, {0.5, 1.5});
  const LayerNormRef fwd = layer_norm_ref(x.values, R, Cn, nullptr, nullptr, 1e-5);
  HostTensor mean{sd, {R}, fwd.mean}, rstd{sd, {R}, fwd.rstd};
  for (double& v : mean.values) v = round_to(sd, v);  // the kernel sees the stored statistics
  for (double& v : rstd.values) v = round_to(sd, v);
  Values dx(R * Cn), dw(Cn, 0), db(Cn, 0);
  for (int64_t i = 0; i < R; ++i) {
    Values xhat(Cn), gw(Cn);
    double mg = 0, mgx = 0;
    for (int64_t c = 0; c < Cn; ++c) {
      xhat[c] = (x.values[i * Cn + c] - mean.values[i]) * rstd.values[i];
      gw[c] = g.values[i * Cn + c] * (s.w ? w.values[c] : 1);
      mg += gw[c], mgx += gw[c] * xhat[c];
      dw[c] += g.values[i * Cn + c] * xhat[c];
      db[c] += g.values[i * Cn + c];
    }
    mg /= static_cast<double>(Cn), mgx /= static_cast<double>(Cn);
    for (int64_t c = 0; c < Cn; ++c) dx[i * Cn + c] = rstd.values[i] * (gw[c] - mg - xhat[c] * mgx);
  }
  Tensor tg = ctx.upload(g), tx = ctx.upload(x), tm = ctx.upload(mean), tr = ctx.upload(rstd),
         tw = ctx.upload(w);
  if (!tg || !tx || !tm || !tr || !tw) return;
  std::vector<TsrTensor> ins = {tg.get(), tx.get(), tm.get(), tr.get()};
  if (s.w) ins.push_back(tw.get());
  TsrAttrs a = default_attrs();
  a.dim = 1;
  a.hp[0] = 1e-5;
  const std::string name = "x " + shape_str({R, Cn}) + (s.w ? ", w" : ", no w");
  std::vector<Tensor> out;
  if (!ctx.ran(call(ctx, ins, a, out, s.w ? 3 : 1), name)) return;
  const double tol = tol_of(ctx.dtype, 10, 2);
  ctx.check(name + ": dx", out[0].get(), ctx.dtype, {R, Cn}, dx, tol);
  if (!s.w) return;
  ctx.check(name + ": dw", out[1].get(), ctx.dtype, {Cn}, dw, tol_of(ctx.dtype, 10 + R, 2));
  ctx.check(name + ": db", out[2].get(), ctx.dtype, {Cn}, db, tol_of(ctx.dtype, 10 + R, 2));
}

void run_layer_norm_backward(Ctx& ctx) {
  for (const LayerNormBackwardSpec& s : kLayerNormBackwardSpecs) run_layer_norm_backward_spec(ctx, s);
  TsrAttrs a = default_attrs();
  a.dim = 1;
  a.hp[0] = 1e-5;
  Rng& r = ctx.rng;
  expect_bad(ctx, "mean [4] for x [3, 5]",
             {host(r, TSR_FLOAT32, {3, 5}), host(r, TSR_FLOAT32, {3, 5}), host(r, TSR_FLOAT32, {4}),
              host(r, TSR_FLOAT32, {3})},
             a, TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "grad [3, 4] for x [3, 5]",
             {host(r, TSR_FLOAT32, {3, 4}), host(r, TSR_FLOAT32, {3, 5}), host(r, TSR_FLOAT32, {3}),
              host(r, TSR_FLOAT32, {3})},
             a, TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "three inputs",
             {host(r, TSR_FLOAT32, {3, 5}), host(r, TSR_FLOAT32, {3, 5}), host(r, TSR_FLOAT32, {3})}, a, -1);
}

// ---- scaled_dot_product_attention ------------------------------------------------------------

struct AttnSpec {
  const char* name;
  int64_t B, H, T, S, D;
  bool causal;
  double scale;  // 0: 1/sqrt(D)
  double p;      // dropout
  bool three_d;  // q [B, T, D] (H = 1)
  bool bthd;     // q/k/v are [B, T, H, D] tensors permuted to [B, H, T, D] (stride 1 on D only)
};

const AttnSpec kAttnSpecs[] = {
    {"D 16", 2, 2, 5, 5, 16, false, 0, 0, false, false},
    {"D 32, T 4 != S 7", 1, 3, 4, 7, 32, false, 0, 0, false, false},
    {"D 64, causal, T 7 > S 4", 2, 1, 7, 4, 64, true, 0, 0, false, false},
    {"D 16, causal, T 6 < S 9", 1, 2, 6, 9, 16, true, 0, 0, false, false},
    {"D 32, causal, scale 0.3", 2, 2, 5, 5, 32, true, 0.3, 0, false, false},
    {"3-D, D 16, T 6 != S 8", 3, 1, 6, 8, 16, false, 0, 0, true, false},
    {"D 32, [B, T, H, D] permuted", 2, 3, 5, 6, 32, true, 0, 0, false, true},
    {"D 64, causal, T 33, S 70 (blocks)", 1, 2, 33, 70, 64, true, 0, 0, false, false},
    {"D 16, dropout 0.1", 2, 2, 6, 7, 16, false, 0, 0.1, false, false},
    {"D 32, causal, dropout 0.5", 1, 2, 8, 8, 32, true, 0, 0.5, false, false},
    {"D 64, dropout 0.5, T 5 != S 9", 1, 1, 5, 9, 64, false, 0.2, 0.5, false, false},
};

Shape attn_shape(const AttnSpec& s, int64_t L, int64_t D) {
  return s.three_d ? Shape{s.B, L, D} : Shape{s.B, s.H, L, D};
}

// q (BH, T, D), k and v (BH, S, D); out (BH, T, D), lse (BH, T).
struct AttnRef {
  Values out, lse;
};

double attn_scale(const AttnSpec& s) {
  return s.scale > 0 ? s.scale : 1 / std::sqrt(static_cast<double>(s.D));
}

// Dropout keeps element e = (bh*T + i)*S + j of the attention matrix iff u(e) < 1 - p.
double attn_keep(const AttnSpec& s, const Stream& rs, int64_t bh, int64_t i, int64_t j) {
  if (s.p == 0) return 1;
  return rs.keep((bh * s.T + i) * s.S + j, s.p) ? 1 / (1 - s.p) : 0;
}

AttnRef attention_ref(const AttnSpec& s, const Values& q, const Values& k, const Values& v,
                      const Stream& rs) {
  const int64_t BH = s.B * s.H, T = s.T, S = s.S, D = s.D;
  const double scale = attn_scale(s);
  AttnRef r{Values(BH * T * D, 0), Values(BH * T)};
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t i = 0; i < T; ++i) {
      Values sc(S, -INFINITY);
      double mx = -INFINITY;
      for (int64_t j = 0; j < S; ++j) {
        if (s.causal && j > i) continue;
        double d = 0;
        for (int64_t c = 0; c < D; ++c) d += q[(bh * T + i) * D + c] * k[(bh * S + j) * D + c];
        sc[j] = scale * d, mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < S; ++j) sum += sc[j] == -INFINITY ? 0 : std::exp(sc[j] - mx);
      const double lse = mx + std::log(sum);
      r.lse[bh * T + i] = lse;
      for (int64_t j = 0; j < S; ++j) {
        if (sc[j] == -INFINITY) continue;
        const double pd = std::exp(sc[j] - lse) * attn_keep(s, rs, bh, i, j);
        for (int64_t c = 0; c < D; ++c) r.out[(bh * T + i) * D + c] += pd * v[(bh * S + j) * D + c];
      }
    }
  return r;
}

// The gradients of sum(out * g) given the stored out and lse (as the kernel sees them).
struct AttnGrads {
  Values dq, dk, dv;
};
AttnGrads attention_backward_ref(const AttnSpec& s, const Values& q, const Values& k, const Values& v,
                                 const Values& out, const Values& lse, const Values& g, const Stream& rs) {
  const int64_t BH = s.B * s.H, T = s.T, S = s.S, D = s.D;
  const double scale = attn_scale(s);
  AttnGrads r{Values(q.size(), 0), Values(k.size(), 0), Values(v.size(), 0)};
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t i = 0; i < T; ++i) {
      const double* gi = &g[(bh * T + i) * D];
      double delta = 0;
      for (int64_t c = 0; c < D; ++c) delta += gi[c] * out[(bh * T + i) * D + c];
      for (int64_t j = 0; j < S; ++j) {
        if (s.causal && j > i) continue;
        const double* qi = &q[(bh * T + i) * D];
        const double *kj = &k[(bh * S + j) * D], *vj = &v[(bh * S + j) * D];
        double d = 0, gv = 0;
        for (int64_t c = 0; c < D; ++c) d += qi[c] * kj[c], gv += gi[c] * vj[c];
        const double p = std::exp(scale * d - lse[bh * T + i]), keep = attn_keep(s, rs, bh, i, j);
        const double ds = p * (keep * gv - delta);
        for (int64_t c = 0; c < D; ++c) {
          r.dv[(bh * S + j) * D + c] += p * keep * gi[c];
          r.dq[(bh * T + i) * D + c] += scale * ds * kj[c];
          r.dk[(bh * S + j) * D + c] += scale * ds * qi[c];
        }
      }
    }
  return r;
}

// Uploads (BH, L, D) values as the spec's q/k/v: contiguous, or a [B, L, H, D] tensor permuted.
Tensor upload_qkv(Ctx& ctx, const AttnSpec& s, const HostTensor& h) {
  if (!s.bthd) return ctx.upload(h);
  const int64_t L = h.sizes[2], D = s.D;
  HostTensor t{h.dtype, {s.B, L, s.H, D}, Values(h.values.size())};
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t hh = 0; hh < s.H; ++hh)
      for (int64_t l = 0; l < L; ++l)
        for (int64_t c = 0; c < D; ++c)
          t.values[((b * L + l) * s.H + hh) * D + c] = h.values[((b * s.H + hh) * L + l) * D + c];
  Tensor base = ctx.upload(t), view;
  if (!base) return Tensor();
  const int64_t perm[4] = {0, 2, 1, 3};
  if (tsr_permute(base.get(), perm, 4, view.out()) != TSR_OK) {
    ctx.fail("setup", std::string("tsr_permute: ") + tsr_last_error());
    return Tensor();
  }
  return view;
}

TsrAttrs attn_attrs(const AttnSpec& s) {
  TsrAttrs a = default_attrs();
  a.hp[0] = s.scale, a.hp[1] = s.p, a.hp[2] = s.causal ? 1 : 0;
  return a;
}

struct AttnInputs {
  HostTensor q, k, v;
  uint64_t seed;
};
AttnInputs attn_inputs(Ctx& ctx, const AttnSpec& s) {
  const Shape qs = attn_shape(s, s.T, s.D), ks = attn_shape(s, s.S, s.D);
  AttnInputs in{host(ctx.rng, ctx.dtype, qs), host(ctx.rng, ctx.dtype, ks), host(ctx.rng, ctx.dtype, ks), 0};
  in.seed = s.p > 0 ? clean_seed(0xa77e + 7 * ctx.dtype, s.B * s.H * s.T * s.S, s.p) : 1;
  return in;
}

std::string attn_name(const AttnSpec& s) {
  return std::string(s.name) + ": q " + shape_str(attn_shape(s, s.T, s.D)) + ", k " +
         shape_str(attn_shape(s, s.S, s.D)) + (s.causal ? ", causal" : "");
}

void run_attention_spec(Ctx& ctx, const AttnSpec& s) {
  const AttnInputs in = attn_inputs(ctx, s);
  const Stream rs{in.seed};
  const AttnRef ref = attention_ref(s, in.q.values, in.k.values, in.v.values, rs);
  Tensor tq = upload_qkv(ctx, s, in.q), tk = upload_qkv(ctx, s, in.k), tv = upload_qkv(ctx, s, in.v);
  if (!tq || !tk || !tv) return;
  const std::string name = attn_name(s);
  const Shape lse_shape = s.three_d ? Shape{s.B, s.T} : Shape{s.B, s.H, s.T};
  std::vector<Tensor> out;
  if (!ctx.ran(tsr_manual_seed(in.seed), name) ||
      !ctx.ran(call(ctx, {tq.get(), tk.get(), tv.get()}, attn_attrs(s), out, 2), name))
    return;
  ctx.check(name + ": out", out[0].get(), ctx.dtype, attn_shape(s, s.T, s.D), ref.out,
            tol_of(ctx.dtype, 10, 2));
  check_as(ctx, name + ": lse", out[1].get(), stat_dtype(ctx.dtype), lse_shape, ref.lse,
           Ctx::tol(stat_dtype(ctx.dtype), 10));
  if (s.p == 0) return;
  // The same seed, the same mask; one output.
  if (ctx.ran(tsr_manual_seed(in.seed), name) &&
      ctx.ran(call(ctx, {tq.get(), tk.get(), tv.get()}, attn_attrs(s), out, 1), name + ", out only"))
    ctx.check(name + ", out only, same seed", out[0].get(), ctx.dtype, attn_shape(s, s.T, s.D), ref.out,
              tol_of(ctx.dtype, 10, 2));
  // hp[3] = 1: the mask of attrs.seed/offset instead of the generator's (autograd's replay).
  TsrAttrs replay = attn_attrs(s);
  replay.hp[3] = 1, replay.seed = in.seed, replay.offset = 0;
  if (ctx.ran(tsr_manual_seed(in.seed + 1), name) &&
      ctx.ran(call(ctx, {tq.get(), tk.get(), tv.get()}, replay, out, 1), name + ", replay"))
    ctx.check(name + ", replaying attrs.seed/offset", out[0].get(), ctx.dtype, attn_shape(s, s.T, s.D),
              ref.out, tol_of(ctx.dtype, 10, 2));
}

// The gradients through autograd (forward after tsr_manual_seed, then tsr_autograd_grad):
// with dropout, the backward must rebuild the forward's mask.
void run_attention_autograd(Ctx& ctx, const AttnSpec& s) {
  const AttnInputs in = attn_inputs(ctx, s);
  const Stream rs{in.seed};
  AttnRef ref = attention_ref(s, in.q.values, in.k.values, in.v.values, rs);
  HostTensor g = host(ctx.rng, ctx.dtype, attn_shape(s, s.T, s.D));
  for (double& v : ref.out) v = round_to(ctx.dtype, v);
  for (double& v : ref.lse) v = round_to(stat_dtype(ctx.dtype), v);
  const AttnGrads want =
      attention_backward_ref(s, in.q.values, in.k.values, in.v.values, ref.out, ref.lse, g.values, rs);
  Tensor tq = ctx.upload(in.q), tk = ctx.upload(in.k), tv = ctx.upload(in.v), tg = ctx.upload(g);
  if (!tq || !tk || !tv || !tg) return;
  const std::string name = attn_name(s) + ", through autograd";
  for (TsrTensor t : {tq.get(), tk.get(), tv.get()})
    if (!ctx.ran(tsr_set_requires_grad(t, 1), name)) return;
  std::vector<Tensor> out;
  if (!ctx.ran(tsr_manual_seed(in.seed), name) ||
      !ctx.ran(call(ctx, {tq.get(), tk.get(), tv.get()}, attn_attrs(s), out, 1), name))
    return;
  TsrTensor root = out[0].get(), seed = tg.get(), wrt[3] = {tq.get(), tk.get(), tv.get()}, grads[3] = {};
  if (!ctx.ran(tsr_autograd_grad(&root, &seed, 1, wrt, 3, 0, 0, grads), name)) return;
  Tensor dq(grads[0]), dk(grads[1]), dv(grads[2]);
  const double tol = tol_of(ctx.dtype, 10, 4);
  ctx.check(name + ": dq", dq.get(), ctx.dtype, in.q.sizes, want.dq, tol);
  ctx.check(name + ": dk", dk.get(), ctx.dtype, in.k.sizes, want.dk, tol);
  ctx.check(name + ": dv", dv.get(), ctx.dtype, in.v.sizes, want.dv, tol);
}

void run_attention(Ctx& ctx) {
  if (!philox_known_answer())
    return ctx.fail("self-test", "the suite's own Philox4x32-10 fails its known answer");
  for (const AttnSpec& s : kAttnSpecs) run_attention_spec(ctx, s);
  for (const AttnSpec& s : kAttnSpecs)
    if (s.p > 0 || s.causal) run_attention_autograd(ctx, s);
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  auto f32 = [&](const Shape& sizes) { return host(r, TSR_FLOAT32, sizes); };
  expect_bad(ctx, "2-D q, k, v", {f32({4, 16}), f32({5, 16}), f32({5, 16})}, a, -1);
  expect_bad(ctx, "k's D 8 for q's 16", {f32({1, 2, 4, 16}), f32({1, 2, 5, 8}), f32({1, 2, 5, 16})}, a,
             TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "v's S 6 for k's 5", {f32({1, 2, 4, 16}), f32({1, 2, 5, 16}), f32({1, 2, 6, 16})}, a,
             TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "k's H 3 for q's 2", {f32({1, 2, 4, 16}), f32({1, 3, 5, 16}), f32({1, 3, 5, 16})}, a,
             TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "int64 q, k, v",
             {host(r, TSR_INT64, {1, 1, 2, 4}, {-2, 2}), host(r, TSR_INT64, {1, 1, 2, 4}, {-2, 2}),
              host(r, TSR_INT64, {1, 1, 2, 4}, {-2, 2})},
             a, -1);
  expect_bad(ctx, "float64 k for float32 q",
             {f32({1, 1, 2, 4}), host(r, TSR_FLOAT64, {1, 1, 2, 4}), f32({1, 1, 2, 4})}, a, -1);
  TsrAttrs p = a;
  p.hp[1] = 1.5;
  expect_bad(ctx, "dropout p 1.5", {f32({1, 1, 2, 4}), f32({1, 1, 2, 4}), f32({1, 1, 2, 4})}, p,
             TSR_ERR_INVALID_ARGUMENT);
  p.hp[1] = -0.1;
  expect_bad(ctx, "dropout p -0.1", {f32({1, 1, 2, 4}), f32({1, 1, 2, 4}), f32({1, 1, 2, 4})}, p,
             TSR_ERR_INVALID_ARGUMENT);
}

// scaled_dot_product_attention_backward called directly with the stored out and lse; with
// dropout it replays the mask of attrs.seed/offset (hp[3] = 1, as autograd's node does).
void run_attention_backward_spec(Ctx& ctx, const AttnSpec& s) {
  const AttnInputs in = attn_inputs(ctx, s);
  const Stream rs{in.seed};  // offset 0: attn_inputs' seed is clean from there
  AttnRef ref = attention_ref(s, in.q.values, in.k.values, in.v.values, rs);
  const int32_t sd = stat_dtype(ctx.dtype);
  for (double& v : ref.out) v = round_to(ctx.dtype, v);
  for (double& v : ref.lse) v = round_to(sd, v);
  HostTensor g = host(ctx.rng, ctx.dtype, attn_shape(s, s.T, s.D));
  const AttnGrads want =
      attention_backward_ref(s, in.q.values, in.k.values, in.v.values, ref.out, ref.lse, g.values, rs);
  HostTensor out{ctx.dtype, in.q.sizes, ref.out},
      lse{sd, s.three_d ? Shape{s.B, s.T} : Shape{s.B, s.H, s.T}, ref.lse};
  Tensor tg = upload_qkv(ctx, s, g), tq = upload_qkv(ctx, s, in.q), tk = upload_qkv(ctx, s, in.k),
         tv = upload_qkv(ctx, s, in.v);
  Tensor to = ctx.upload(out), tl = ctx.upload(lse);
  if (!tg || !tq || !tk || !tv || !to || !tl) return;
  TsrAttrs a = attn_attrs(s);
  a.seed = in.seed, a.offset = 0, a.hp[3] = s.p > 0 ? 1 : 0;
  const std::string name = attn_name(s) + (s.p > 0 ? ", replaying attrs.seed/offset" : "");
  std::vector<Tensor> o;
  if (!ctx.ran(call(ctx, {tg.get(), tq.get(), tk.get(), tv.get(), to.get(), tl.get()}, a, o, 3), name))
    return;
  const double tol = tol_of(ctx.dtype, 10, 4);
  ctx.check(name + ": dq", o[0].get(), ctx.dtype, in.q.sizes, want.dq, tol);
  ctx.check(name + ": dk", o[1].get(), ctx.dtype, in.k.sizes, want.dk, tol);
  ctx.check(name + ": dv", o[2].get(), ctx.dtype, in.v.sizes, want.dv, tol);
}

void run_attention_backward(Ctx& ctx) {
  for (const AttnSpec& s : kAttnSpecs) run_attention_backward_spec(ctx, s);
  Rng& r = ctx.rng;
  auto f32 = [&](const Shape& sizes) { return host(r, TSR_FLOAT32, sizes); };
  const Shape q{1, 2, 4, 16}, k{1, 2, 5, 16};
  expect_bad(ctx, "five inputs (no lse)", {f32(q), f32(q), f32(k), f32(k), f32(q)}, default_attrs(), -1, 3);
  expect_bad(ctx, "grad [1, 2, 3, 16] for q [1, 2, 4, 16]",
             {f32({1, 2, 3, 16}), f32(q), f32(k), f32(k), f32(q), f32({1, 2, 4})}, default_attrs(),
             TSR_ERR_INVALID_ARGUMENT, 3);
}

// ---- cross_entropy ---------------------------------------------------------------------------

struct CrossEntropySpec {
  const char* name;
  int64_t N, Cn;
  int64_t ignore;  // ignore_index
  double eps;      // label smoothing
  int n_ignored;   // rows whose target is ignore_index
  int32_t target_dtype;
  double range;  // logits in [-range, range]
  Layout layout;
};

const CrossEntropySpec kCrossEntropySpecs[] = {
    {"plain", 6, 5, -100, 0, 0, TSR_INT64, 3, C},
    {"ignore_index 3", 8, 10, 3, 0, 2, TSR_INT64, 3, C},
    {"ignore_index -100 on 2 rows", 7, 4, -100, 0, 2, TSR_INT64, 3, C},
    {"label smoothing 0.1", 7, 4, -100, 0.1, 0, TSR_INT64, 3, C},
    {"label smoothing 0.2, ignore_index 2", 5, 6, 2, 0.2, 1, TSR_INT64, 3, C},
    {"int32 targets", 6, 5, -100, 0, 1, TSR_INT32, 3, C},
    {"logits in [-40, 40]", 6, 7, -100, 0.05, 0, TSR_INT64, 40, C},
    {"logits transposed", 5, 6, -100, 0, 0, TSR_INT64, 3, Tr},
    {"C 1000", 3, 1000, -100, 0.1, 0, TSR_INT64, 3, C},
    {"every row ignored", 3, 4, -100, 0, 3, TSR_INT64, 3, C},
};

// logits (N, C); targets (N); loss and lse (N); dlogits (N, C) for the loss gradient grad (N).
struct CrossEntropyRef {
  Values loss, lse;
};
CrossEntropyRef cross_entropy_ref(const CrossEntropySpec& s, const Values& x, const Values& t) {
  CrossEntropyRef r{Values(s.N, 0), Values(s.N)};
  for (int64_t i = 0; i < s.N; ++i) {
    const double* row = &x[i * s.Cn];
    const double mx = *std::max_element(row, row + s.Cn);
    double sum = 0, mean = 0;
    for (int64_t c = 0; c < s.Cn; ++c) sum += std::exp(row[c] - mx), mean += row[c];
    mean /= static_cast<double>(s.Cn);
    const double lse = mx + std::log(sum);
    r.lse[i] = lse;
    const auto ti = static_cast<int64_t>(t[i]);
    if (ti != s.ignore) r.loss[i] = (1 - s.eps) * (lse - row[ti]) + s.eps * (lse - mean);
  }
  return r;
}

std::vector<int64_t> ce_targets(Ctx& ctx, const CrossEntropySpec& s) {
  std::vector<int64_t> t(s.N);
  for (int64_t& v : t) do
      v = ctx.rng.integer(0, s.Cn - 1);
    while (v == s.ignore);
  for (int i = 0; i < s.n_ignored; ++i) t[(i * s.N) / s.n_ignored] = s.ignore;
  return t;
}

void run_cross_entropy_spec(Ctx& ctx, const CrossEntropySpec& s) {
  HostTensor x = host(ctx.rng, ctx.dtype, {s.N, s.Cn}, {-s.range, s.range});
  const std::vector<int64_t> t = ce_targets(ctx, s);
  const HostTensor target = index_tensor({s.N}, t, s.target_dtype);
  const CrossEntropyRef ref = cross_entropy_ref(s, x.values, target.values);
  Tensor tx = ctx.upload(x, s.layout), tt = ctx.upload(target);
  if (!tx || !tt) return;
  TsrAttrs a = default_attrs();
  a.hp[0] = static_cast<double>(s.ignore), a.hp[1] = s.eps;
  const std::string name = std::string(s.name) + ": " + label("logits", {s.N, s.Cn}, s.layout) + ", " +
                           dtype_str(s.target_dtype) + " target";
  std::vector<Tensor> out;
  if (ctx.ran(call(ctx, {tx.get(), tt.get()}, a, out, 1), name))
    ctx.check(name + ": loss", out[0].get(), ctx.dtype, {s.N}, ref.loss, tol_of(ctx.dtype, 10 + s.Cn / 50.0));
}

void run_cross_entropy(Ctx& ctx) {
  for (const CrossEntropySpec& s : kCrossEntropySpecs) run_cross_entropy_spec(ctx, s);
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.hp[0] = -100;
  const HostTensor x = host(r, TSR_FLOAT32, {3, 5});
  expect_bad(ctx, "target 5 for 5 classes", {x, index_tensor({3}, {0, 5, 1})}, a, TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "target -1 (ignore_index -100)", {x, index_tensor({3}, {0, -1, 1})}, a, TSR_ERR_INDEX, 1,
             true);
  expect_bad(ctx, "float32 target", {x, host(r, TSR_FLOAT32, {3}, {0, 2})}, a, -1);
  expect_bad(ctx, "1-D logits", {host(r, TSR_FLOAT32, {5}), index_tensor({1}, {0})}, a, -1);
  expect_bad(ctx, "target [4] for logits [3, 5]", {x, index_tensor({4}, {0, 1, 2, 3})}, a,
             TSR_ERR_INVALID_ARGUMENT);
  expect_bad(ctx, "int64 logits", {host(r, TSR_INT64, {3, 5}, {-2, 2}), index_tensor({3}, {0, 1, 2})}, a, -1);
}

// cross_entropy_backward called directly with the stored lse.
void run_cross_entropy_backward(Ctx& ctx) {
  for (const CrossEntropySpec& s : kCrossEntropySpecs) {
    if (s.layout != C || s.target_dtype != TSR_INT64) continue;
    HostTensor x = host(ctx.rng, ctx.dtype, {s.N, s.Cn}, {-s.range, s.range}),
               g = host(ctx.rng, ctx.dtype, {s.N});
    const std::vector<int64_t> t = ce_targets(ctx, s);
    const int32_t sd = stat_dtype(ctx.dtype);
    HostTensor lse{sd, {s.N}, cross_entropy_ref(s, x.values, Values(t.begin(), t.end())).lse};
    for (double& v : lse.values) v = round_to(sd, v);
    Values dx(s.N * s.Cn, 0);
    for (int64_t i = 0; i < s.N; ++i) {
      if (t[i] == s.ignore) continue;
      for (int64_t c = 0; c < s.Cn; ++c)
        dx[i * s.Cn + c] = g.values[i] * (std::exp(x.values[i * s.Cn + c] - lse.values[i]) -
                                          (1 - s.eps) * (c == t[i]) - s.eps / static_cast<double>(s.Cn));
    }
    Tensor tg = ctx.upload(g), tx = ctx.upload(x), tt = ctx.upload(index_tensor({s.N}, t)),
           tl = ctx.upload(lse);
    if (!tg || !tx || !tt || !tl) return;
    TsrAttrs a = default_attrs();
    a.hp[0] = static_cast<double>(s.ignore), a.hp[1] = s.eps;
    const std::string name = std::string(s.name) + ": logits " + shape_str({s.N, s.Cn});
    std::vector<Tensor> out;
    if (ctx.ran(call(ctx, {tg.get(), tx.get(), tt.get(), tl.get()}, a, out, 1), name))
      ctx.check(name + ": dlogits", out[0].get(), ctx.dtype, {s.N, s.Cn}, dx, tol_of(ctx.dtype, 10));
  }
  Rng& r = ctx.rng;
  TsrAttrs a = default_attrs();
  a.hp[0] = -100;
  expect_bad(ctx, "target 7 for 5 classes",
             {host(r, TSR_FLOAT32, {3}), host(r, TSR_FLOAT32, {3, 5}), index_tensor({3}, {0, 7, 1}),
              host(r, TSR_FLOAT32, {3})},
             a, TSR_ERR_INDEX, 1, true);
  expect_bad(ctx, "lse [2] for logits [3, 5]",
             {host(r, TSR_FLOAT32, {3}), host(r, TSR_FLOAT32, {3, 5}), index_tensor({3}, {0, 1, 1}),
              host(r, TSR_FLOAT32, {2})},
             a, TSR_ERR_INVALID_ARGUMENT);
}

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

std::optional<Case> find_transformer_case(const OpEntry& op) {
  static const std::map<std::string, Case> kCases = {
      {"layer_norm", {run_layer_norm, TSR_DTYPES_FLOAT}},
      {"layer_norm_backward", {run_layer_norm_backward, TSR_DTYPES_FLOAT}},
      {"scaled_dot_product_attention", {run_attention, TSR_DTYPES_FLOAT}},
      {"scaled_dot_product_attention_backward", {run_attention_backward, TSR_DTYPES_FLOAT}},
      {"cross_entropy", {run_cross_entropy, TSR_DTYPES_FLOAT}},
      {"cross_entropy_backward", {run_cross_entropy_backward, TSR_DTYPES_FLOAT}},
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
  switch (op.kind) {
    case Kind::NN:
    case Kind::INDEX:
    case Kind::SAMPLE:
    case Kind::FOREACH:
    case Kind::COMPOSITE:
      break;
    default:
      return std::nullopt;
  }
  auto it = kCases.find(op.name);
  return it == kCases.end() ? std::nullopt : std::optional<Case>(it->second);
}

}  // namespace conf
