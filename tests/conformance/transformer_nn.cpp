// Conformance cases of layer_norm, attention and cross_entropy (forward, backward, autograd).
#include <algorithm>
#include <cmath>
#include <map>

#include "transformer_common.h"

namespace conf {
namespace {

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

}  // namespace

std::optional<Case> find_transformer_nn_case(const OpEntry& op) {
  static const std::map<std::string, Case> kCases = {
      {"layer_norm", {run_layer_norm, TSR_DTYPES_FLOAT}},
      {"layer_norm_backward", {run_layer_norm_backward, TSR_DTYPES_FLOAT}},
      {"scaled_dot_product_attention", {run_attention, TSR_DTYPES_FLOAT}},
      {"scaled_dot_product_attention_backward", {run_attention_backward, TSR_DTYPES_FLOAT}},
      {"cross_entropy", {run_cross_entropy, TSR_DTYPES_FLOAT}},
      {"cross_entropy_backward", {run_cross_entropy_backward, TSR_DTYPES_FLOAT}},
  };
  if (!transformer_kind(op.kind)) return std::nullopt;
  auto it = kCases.find(op.name);
  return it == kCases.end() ? std::nullopt : std::optional<Case>(it->second);
}

}  // namespace conf
