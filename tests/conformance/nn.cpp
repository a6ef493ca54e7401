// Conformance cases of the CONV, POOL and OPTIM kinds against float64 references here: direct
// convolution loops (forward, input and weight gradients), direct max pooling (the first
// maximum of a window takes its gradient) and torch.optim's SGD/Adam/AdamW formulas applied
// elementwise; plus the bad inputs each kind must refuse with the right status.
#include <cmath>
#include <cstdio>
#include <limits>

#include "harness.h"

namespace conf {
namespace {

const Domain kUnit{-1, 1};

std::string pair_str(const int64_t* v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "(%lld, %lld)", static_cast<long long>(v[0]), static_cast<long long>(v[1]));
  return buf;
}

uint64_t version_of(TsrTensor t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  tsr_tensor_info(t, &info);
  return info.version;
}

// The op called through tsr_call with `ins`; out NULL (allocated) or given.
int32_t call(Ctx& ctx, std::initializer_list<TsrTensor> ins, const TsrAttrs& attrs, TsrTensor* out) {
  return tsr_call(ctx.op.id, ins.begin(), static_cast<int32_t>(ins.size()), &attrs, out, 1);
}

// Runs one bad call (in the float32 cell only) and expects `status`.
void expect_bad(Ctx& ctx, const std::string& what, std::initializer_list<HostTensor> hosts, const TsrAttrs& attrs,
                int32_t status, bool out_given = false) {
  if (ctx.dtype != TSR_FLOAT32) return;
  std::vector<Tensor> t;
  std::vector<TsrTensor> ins;
  for (const HostTensor& h : hosts) {
    t.push_back(ctx.upload(h));
    if (!t.back()) return;
    ins.push_back(t.back().get());
  }
  Tensor fresh;
  TsrTensor given = out_given ? ins.front() : nullptr;  // OPTIM: the first tensor is the param
  TsrTensor* out = out_given ? &given : fresh.out();
  const int32_t skip = out_given ? 1 : 0;
  ctx.expect_error(tsr_call(ctx.op.id, ins.data() + skip, static_cast<int32_t>(ins.size()) - skip, &attrs, out, 1),
                   "bad input: " + what, status);
}

// ---- CONV --------------------------------------------------------------------------------

struct ConvSpec {
  const char* name;
  Shape x, w;  // input (3-D unbatched or 4-D) and weight
  bool bias;
  int64_t stride[2], padding[2], dilation[2], groups;  // attrs as given (0 = default)
  Layout layout;                                       // of the op's first input
};

const ConvSpec kConvSpecs[] = {
    {"basic", {2, 3, 7, 6}, {4, 3, 3, 3}, true, {0, 0}, {0, 0}, {0, 0}, 0, Layout::Contiguous},
    {"stride (2, 1) padding (1, 2)", {2, 3, 8, 7}, {5, 3, 3, 2}, false, {2, 1}, {1, 2}, {0, 0}, 0, Layout::Contiguous},
    {"dilation 2 padding 2", {1, 2, 9, 9}, {3, 2, 3, 3}, true, {1, 1}, {2, 2}, {2, 2}, 1, Layout::Contiguous},
    {"groups 2 padding 1", {2, 4, 6, 6}, {6, 2, 3, 3}, true, {0, 0}, {1, 1}, {0, 0}, 2, Layout::Contiguous},
    {"depthwise stride 2 padding 1", {2, 3, 5, 5}, {3, 1, 3, 3}, false, {2, 2}, {1, 1}, {0, 0}, 3, Layout::Contiguous},
    {"pointwise 1x1", {2, 5, 4, 4}, {3, 5, 1, 1}, true, {0, 0}, {0, 0}, {0, 0}, 0, Layout::Contiguous},
    {"1x1 stride 2", {2, 5, 5, 5}, {3, 5, 1, 1}, false, {2, 2}, {0, 0}, {0, 0}, 0, Layout::Contiguous},
    {"unbatched", {3, 6, 6}, {2, 3, 3, 3}, true, {0, 0}, {1, 1}, {0, 0}, 0, Layout::Contiguous},
    {"first input transposed", {2, 3, 6, 5}, {4, 3, 2, 2}, false, {1, 1}, {1, 0}, {1, 1}, 1, Layout::Transposed},
    {"batch 20 (threads)", {20, 3, 10, 10}, {8, 3, 3, 3}, true, {0, 0}, {1, 1}, {0, 0}, 0, Layout::Contiguous},
    {"empty batch", {0, 3, 5, 5}, {4, 3, 3, 3}, true, {0, 0}, {0, 0}, {0, 0}, 0, Layout::Contiguous},
};

struct ConvGeom {
  int64_t N, C, H, W, O, Cg, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, groups;
  bool batched;
  Shape y;  // the output's shape (3-D when unbatched)
};

ConvGeom conv_geom(const ConvSpec& s) {
  ConvGeom g;
  g.batched = s.x.size() == 4;
  const int64_t lead = g.batched ? 0 : 1;
  g.N = g.batched ? s.x[0] : 1, g.C = s.x[1 - lead], g.H = s.x[2 - lead], g.W = s.x[3 - lead];
  g.O = s.w[0], g.Cg = s.w[1], g.kh = s.w[2], g.kw = s.w[3];
  g.sh = s.stride[0] ? s.stride[0] : 1, g.sw = s.stride[1] ? s.stride[1] : 1;
  g.ph = s.padding[0], g.pw = s.padding[1];
  g.dh = s.dilation[0] ? s.dilation[0] : 1, g.dw = s.dilation[1] ? s.dilation[1] : 1;
  g.groups = s.groups ? s.groups : 1;
  g.Ho = (g.H + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.Wo = (g.W + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  g.y = g.batched ? Shape{g.N, g.O, g.Ho, g.Wo} : Shape{g.O, g.Ho, g.Wo};
  return g;
}

// f(x index, w index, y index) for every product of the direct convolution.
template <class F>
void for_each_tap(const ConvGeom& g, F f) {
  const int64_t Og = g.O / g.groups;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ow = 0; ow < g.Wo; ++ow)
          for (int64_t c = 0; c < g.Cg; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                const int64_t ci = (o / Og) * g.Cg + c;
                f(((n * g.C + ci) * g.H + ih) * g.W + iw, ((o * g.Cg + c) * g.kh + i) * g.kw + j,
                  ((n * g.O + o) * g.Ho + oh) * g.Wo + ow);
              }
}

TsrAttrs conv_attrs(const ConvSpec& s) {
  TsrAttrs a = default_attrs();
  for (int i = 0; i < 2; ++i) a.stride2[i] = s.stride[i], a.padding[i] = s.padding[i], a.dilation[i] = s.dilation[i];
  a.groups = s.groups;
  return a;
}

void run_conv_spec(Ctx& ctx, const ConvSpec& s) {
  const ConvGeom g = conv_geom(s);
  const std::string op = ctx.op.name;
  HostTensor x = random_tensor(ctx.rng, ctx.dtype, s.x, kUnit), w = random_tensor(ctx.rng, ctx.dtype, s.w, kUnit);
  HostTensor b = random_tensor(ctx.rng, ctx.dtype, {g.O}, kUnit), gy = random_tensor(ctx.rng, ctx.dtype, g.y, kUnit);
  TsrAttrs attrs = conv_attrs(s);
  std::vector<const HostTensor*> ins;
  Shape result;
  std::vector<double> want;
  if (op == "conv2d") {
    ins = {&x, &w};
    if (s.bias) ins.push_back(&b);
    result = g.y;
    want.assign(numel(g.y), 0);
    for (int64_t n = 0; s.bias && n < g.N; ++n)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t p = 0; p < g.Ho * g.Wo; ++p) want[(n * g.O + o) * g.Ho * g.Wo + p] = b.values[o];
    for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { want[yi] += x.values[xi] * w.values[wi]; });
  } else if (op == "conv2d_backward_input") {
    ins = {&gy, &w};
    result = s.x;
    want.assign(numel(s.x), 0);
    for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { want[xi] += gy.values[yi] * w.values[wi]; });
  } else {
    ins = {&gy, &x};
    result = s.w;
    want.assign(numel(s.w), 0);
    for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { want[wi] += gy.values[yi] * x.values[xi]; });
  }
  if (op != "conv2d") {
    attrs.nshape = static_cast<int32_t>(result.size());
    std::copy(result.begin(), result.end(), attrs.shape);
  }
  std::vector<Tensor> t;
  std::vector<TsrTensor> handles;
  for (const HostTensor* h : ins) {
    t.push_back(ctx.upload(*h, t.empty() ? s.layout : Layout::Contiguous));
    if (!t.back()) return;
    handles.push_back(t.back().get());
  }
  std::string name = std::string(s.name) + ": input " + shape_str(s.x) + ", weight " + shape_str(s.w) +
                     (s.bias && op == "conv2d" ? " + bias" : "");
  Tensor out;
  if (ctx.ran(tsr_call(ctx.op.id, handles.data(), static_cast<int32_t>(handles.size()), &attrs, out.out(), 1), name))
    ctx.check(name, out.get(), ctx.dtype, result, want, Ctx::tol(ctx.dtype, 10));
  if (s.layout != Layout::Contiguous || numel(result) == 0 || result.size() != 4) return;
  name = "out= strided, " + name;  // a given non-contiguous output
  StridedOut o = ctx.strided_out(ctx.dtype, result);
  TsrTensor outs[] = {o.view.get()};
  if (o.view && ctx.ran(tsr_call(ctx.op.id, handles.data(), static_cast<int32_t>(handles.size()), &attrs, outs, 1), name))
    ctx.check_strided_out(name, o, want, Ctx::tol(ctx.dtype, 10));
}

void run_conv(Ctx& ctx) {
  for (const ConvSpec& s : kConvSpecs) run_conv_spec(ctx, s);
  const std::string op = ctx.op.name;
  auto host = [&](const Shape& sizes, int32_t dtype = TSR_FLOAT32) { return random_tensor(ctx.rng, dtype, sizes, kUnit); };
  TsrAttrs a = default_attrs();
  const int32_t kInvalid = TSR_ERR_INVALID_ARGUMENT;
  if (op == "conv2d") {
    expect_bad(ctx, "3 input channels, weight expects 2", {host({1, 3, 5, 5}), host({4, 2, 3, 3})}, a, kInvalid);
    expect_bad(ctx, "kernel larger than the input", {host({1, 1, 2, 2}), host({1, 1, 3, 3})}, a, kInvalid);
    expect_bad(ctx, "bias of 3 for 4 out channels", {host({1, 1, 5, 5}), host({4, 1, 3, 3}), host({3})}, a, kInvalid);
    expect_bad(ctx, "2-D input", {host({5, 5}), host({4, 1, 3, 3})}, a, kInvalid);
    expect_bad(ctx, "one input", {host({1, 1, 5, 5})}, a, kInvalid);
    expect_bad(ctx, "int64 operands", {host({1, 1, 5, 5}, TSR_INT64), host({1, 1, 3, 3}, TSR_INT64)}, a, TSR_ERR_TYPE);
    expect_bad(ctx, "float32 input, float64 weight", {host({1, 1, 5, 5}), host({1, 1, 3, 3}, TSR_FLOAT64)}, a,
               TSR_ERR_TYPE);
    TsrAttrs g2 = a;
    g2.groups = 2;
    expect_bad(ctx, "groups 2, 3 out channels", {host({1, 2, 5, 5}), host({3, 1, 3, 3})}, g2, kInvalid);
    TsrAttrs neg = a;
    neg.padding[0] = -1;
    expect_bad(ctx, "padding -1", {host({1, 1, 5, 5}), host({1, 1, 3, 3})}, neg, kInvalid);
    neg = a;
    neg.stride2[1] = -2;
    expect_bad(ctx, "stride -2", {host({1, 1, 5, 5}), host({1, 1, 3, 3})}, neg, kInvalid);
  } else {
    TsrAttrs shaped = a;
    const Shape target = op == "conv2d_backward_input" ? Shape{1, 2, 5, 5} : Shape{3, 2, 3, 3};
    shaped.nshape = 4;
    std::copy(target.begin(), target.end(), shaped.shape);
    const HostTensor other = op == "conv2d_backward_input" ? host({3, 2, 3, 3}) : host({1, 2, 5, 5});
    expect_bad(ctx, "grad_output [1, 3, 4, 4] for a [1, 3, 3, 3] result", {host({1, 3, 4, 4}), other}, shaped, kInvalid);
    expect_bad(ctx, "attrs.shape not given", {host({1, 3, 3, 3}), other}, a, kInvalid);
  }
}

// ---- POOL --------------------------------------------------------------------------------

struct PoolSpec {
  const char* name;
  Shape x;  // 3-D unbatched or 4-D
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  bool ceil_mode;
  bool ties;  // values from {-1, -0.5, 0, 0.5, 1}: many equal maxima
  bool nan;   // one NaN in the input
  Layout layout;
};

const PoolSpec kPoolSpecs[] = {
    {"k2", {2, 3, 8, 8}, {2, 2}, {0, 0}, {0, 0}, {0, 0}, false, false, false, Layout::Contiguous},
    {"k3 s2 p1", {2, 2, 7, 7}, {3, 3}, {2, 2}, {1, 1}, {0, 0}, false, false, false, Layout::Contiguous},
    {"k3 s2 ceil_mode (one more window)", {1, 2, 8, 8}, {3, 3}, {2, 2}, {0, 0}, {0, 0}, true, false, false, Layout::Contiguous},
    {"k2 s2 p1 ceil_mode (window in the padding dropped)", {1, 2, 5, 5}, {2, 2}, {2, 2}, {1, 1}, {0, 0}, true, false,
     false, Layout::Contiguous},
    {"k3 s1 overlapping windows", {2, 2, 6, 5}, {3, 3}, {1, 1}, {0, 0}, {0, 0}, false, false, false, Layout::Contiguous},
    {"k(2, 3) s(1, 2) p(1, 1)", {1, 3, 5, 7}, {2, 3}, {1, 2}, {1, 1}, {0, 0}, false, false, false, Layout::Contiguous},
    {"k3 dilation 2 p1", {1, 2, 9, 9}, {3, 3}, {1, 1}, {1, 1}, {2, 2}, false, false, false, Layout::Contiguous},
    {"unbatched", {3, 6, 6}, {2, 2}, {0, 0}, {0, 0}, {0, 0}, false, false, false, Layout::Contiguous},
    {"ties, k3 s1", {2, 2, 6, 6}, {3, 3}, {1, 1}, {1, 1}, {0, 0}, false, true, false, Layout::Contiguous},
    {"NaN", {1, 1, 4, 4}, {2, 2}, {0, 0}, {0, 0}, {0, 0}, false, false, true, Layout::Contiguous},
    {"first input transposed", {2, 3, 6, 6}, {2, 2}, {0, 0}, {0, 0}, {0, 0}, false, false, false, Layout::Transposed},
    {"8 x 16 x 20 x 20 (threads)", {8, 16, 20, 20}, {2, 2}, {0, 0}, {0, 0}, {0, 0}, false, false, false, Layout::Contiguous},
    {"empty batch", {0, 2, 4, 4}, {2, 2}, {0, 0}, {0, 0}, {0, 0}, false, false, false, Layout::Contiguous},
};

// PyTorch's pooling_output_shape.
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t num = in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) --o;
  return o;
}

void run_pool_spec(Ctx& ctx, const PoolSpec& s) {
  const bool batched = s.x.size() == 4;
  const int64_t lead = batched ? 0 : 1, planes = (batched ? s.x[0] : 1) * s.x[1 - lead];
  const int64_t H = s.x[2 - lead], W = s.x[3 - lead];
  const int64_t sh = s.stride[0] ? s.stride[0] : s.kernel[0], sw = s.stride[1] ? s.stride[1] : s.kernel[1];
  const int64_t dh = s.dilation[0] ? s.dilation[0] : 1, dw = s.dilation[1] ? s.dilation[1] : 1;
  const int64_t Ho = pool_out(H, s.kernel[0], sh, s.padding[0], dh, s.ceil_mode);
  const int64_t Wo = pool_out(W, s.kernel[1], sw, s.padding[1], dw, s.ceil_mode);
  Shape ysizes = s.x;
  ysizes[2 - lead] = Ho, ysizes[3 - lead] = Wo;
  HostTensor x = random_tensor(ctx.rng, ctx.dtype, s.x, s.ties ? Domain{-1, 1, false, true} : kUnit);
  if (s.nan) x.values[5] = std::numeric_limits<double>::quiet_NaN();
  HostTensor gy = random_tensor(ctx.rng, ctx.dtype, ysizes, kUnit);

  // Forward and backward at once: each window's maximum (a NaN wins) and where it is.
  std::vector<double> y(numel(ysizes)), dx(numel(s.x), 0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        double best = -INFINITY;
        int64_t at = -1;
        for (int64_t i = 0; i < s.kernel[0]; ++i)
          for (int64_t j = 0; j < s.kernel[1]; ++j) {
            const int64_t ih = oh * sh - s.padding[0] + i * dh, iw = ow * sw - s.padding[1] + j * dw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const double v = x.values[(p * H + ih) * W + iw];
            if (at < 0 || v > best || std::isnan(v)) best = v, at = (p * H + ih) * W + iw;
          }
        const int64_t yi = (p * Ho + oh) * Wo + ow;
        y[yi] = best;
        if (at >= 0) dx[at] += gy.values[yi];
      }

  TsrAttrs attrs = default_attrs();
  for (int i = 0; i < 2; ++i)
    attrs.kernel[i] = s.kernel[i], attrs.stride2[i] = s.stride[i], attrs.padding[i] = s.padding[i],
    attrs.dilation[i] = s.dilation[i];
  attrs.ceil_mode = s.ceil_mode;
  const bool forward = ctx.op.name == std::string("max_pool2d");
  Tensor tx = ctx.upload(x, forward ? s.layout : Layout::Contiguous);
  Tensor tg = ctx.upload(gy, forward ? Layout::Contiguous : s.layout);
  if (!tx || !tg) return;
  const std::string name = std::string(s.name) + ": input " + shape_str(s.x) + ", kernel " + pair_str(s.kernel);
  Tensor out;
  const int32_t st = forward ? call(ctx, {tx.get()}, attrs, out.out()) : call(ctx, {tg.get(), tx.get()}, attrs, out.out());
  if (ctx.ran(st, name)) ctx.check(name, out.get(), ctx.dtype, forward ? ysizes : s.x, forward ? y : dx, Ctx::tol(ctx.dtype));
}

void run_pool(Ctx& ctx) {
  for (const PoolSpec& s : kPoolSpecs) run_pool_spec(ctx, s);
  auto host = [&](const Shape& sizes, int32_t dtype = TSR_FLOAT32) { return random_tensor(ctx.rng, dtype, sizes, kUnit); };
  TsrAttrs a = default_attrs();
  a.kernel[0] = a.kernel[1] = 3;
  const bool forward = ctx.op.name == std::string("max_pool2d");
  // The bad input x, with a matching grad_output for the backward op.
  auto bad = [&](const std::string& what, const HostTensor& x, const TsrAttrs& attrs, int32_t status) {
    if (forward) return expect_bad(ctx, what, {x}, attrs, status);
    expect_bad(ctx, what, {host({1, 1, 1, 1}, x.dtype), x}, attrs, status);
  };
  const int32_t kInvalid = TSR_ERR_INVALID_ARGUMENT;
  TsrAttrs t = a;
  t.padding[0] = 2;
  bad("padding 2 for kernel 3", host({1, 1, 6, 6}), t, kInvalid);
  t = a;
  t.kernel[1] = 0;
  bad("kernel (3, 0)", host({1, 1, 6, 6}), t, kInvalid);
  t = a;
  t.stride2[0] = -1;
  bad("stride -1", host({1, 1, 6, 6}), t, kInvalid);
  bad("kernel 3 on a 2 x 2 input", host({1, 1, 2, 2}), a, kInvalid);
  bad("2-D input", host({6, 6}), a, kInvalid);
  bad("int64 input", host({1, 1, 6, 6}, TSR_INT64), a, TSR_ERR_TYPE);
  if (!forward)
    expect_bad(ctx, "grad_output [1, 1, 3, 3] for a [1, 1, 2, 2] result", {host({1, 1, 3, 3}), host({1, 1, 6, 6})}, a,
               kInvalid);
}

// ---- OPTIM -------------------------------------------------------------------------------

struct OptimSpec {
  const char* name;
  Shape sizes;
  double hp[8];  // ops.def's order for the op
  Layout grad_layout;
};

// hp = {lr, momentum, dampening, weight_decay, nesterov, maximize, buffer_is_new}
const OptimSpec kSgdSpecs[] = {
    {"plain", {5, 7}, {0.1, 0, 0, 0, 0, 0, 0}, Layout::Contiguous},
    {"weight decay 0.01", {5, 7}, {0.1, 0, 0, 0.01, 0, 0, 0}, Layout::Contiguous},
    {"momentum 0.9 dampening 0.1 weight decay 0.01", {5, 7}, {0.05, 0.9, 0.1, 0.01, 0, 0, 0}, Layout::Contiguous},
    {"momentum 0.9, new buffer", {5, 7}, {0.05, 0.9, 0.3, 0.01, 0, 0, 1}, Layout::Contiguous},
    {"nesterov momentum 0.9", {6, 4}, {0.05, 0.9, 0, 0.001, 1, 0, 0}, Layout::Contiguous},
    {"maximize momentum 0.5", {3, 5}, {0.1, 0.5, 0, 0.01, 0, 1, 0}, Layout::Contiguous},
    {"transposed grad", {5, 6}, {0.1, 0.9, 0, 0, 0, 0, 0}, Layout::Transposed},
    {"0-dim", {}, {0.1, 0.9, 0, 0.01, 0, 0, 0}, Layout::Contiguous},
    {"70000 elements (threads)", {70000}, {0.01, 0.9, 0, 0.01, 1, 0, 0}, Layout::Contiguous},
    {"empty", {0, 3}, {0.01, 0.9, 0, 0, 0, 0, 0}, Layout::Contiguous},
};

// hp = {lr, beta1, beta2, eps, weight_decay, step, decoupled, maximize}
const OptimSpec kAdamSpecs[] = {
    {"adam step 1", {5, 7}, {1e-3, 0.9, 0.999, 1e-8, 0, 1, 0, 0}, Layout::Contiguous},
    {"adam weight decay 0.1 step 3", {5, 7}, {1e-2, 0.9, 0.99, 1e-6, 0.1, 3, 0, 0}, Layout::Contiguous},
    {"adamw weight decay 0.1 step 5", {5, 7}, {1e-2, 0.8, 0.95, 1e-8, 0.1, 5, 1, 0}, Layout::Contiguous},
    {"adamw maximize step 2", {4, 4}, {1e-2, 0.9, 0.999, 1e-8, 0.01, 2, 1, 1}, Layout::Contiguous},
    {"transposed grad", {5, 6}, {1e-2, 0.9, 0.999, 1e-8, 0, 7, 0, 0}, Layout::Transposed},
    {"70000 elements (threads)", {70000}, {1e-3, 0.9, 0.999, 1e-8, 0.01, 10, 1, 0}, Layout::Contiguous},
    {"empty", {0, 3}, {1e-3, 0.9, 0.999, 1e-8, 0, 1, 0, 0}, Layout::Contiguous},
};

// torch.optim.SGD's update of one element: p, and the buffer in *buf.
double sgd_ref(const double* hp, double p, double g, double* buf) {
  const double lr = hp[0], momentum = hp[1], dampening = hp[2], wd = hp[3];
  double d = hp[5] != 0 ? -g : g;
  if (wd != 0) d += wd * p;
  if (momentum != 0) {
    *buf = hp[6] != 0 ? d : momentum * *buf + (1 - dampening) * d;
    d = hp[4] != 0 ? d + momentum * *buf : *buf;
  }
  return p - lr * d;
}

// torch.optim.Adam / AdamW's update of one element: p, and m, v in place.
double adam_ref(const double* hp, double p, double g, double* m, double* v) {
  const double lr = hp[0], b1 = hp[1], b2 = hp[2], eps = hp[3], wd = hp[4], step = hp[5];
  if (hp[7] != 0) g = -g;
  if (hp[6] != 0)
    p *= 1 - lr * wd;
  else if (wd != 0)
    g += wd * p;
  *m = b1 * *m + (1 - b1) * g;
  *v = b2 * *v + (1 - b2) * g * g;
  const double denom = std::sqrt(*v) / std::sqrt(1 - std::pow(b2, step)) + eps;
  return p - lr / (1 - std::pow(b1, step)) * *m / denom;
}

// step_input: adam_step gets the step as a float32 scalar tensor (capturable Adam), hp[5] NaN.
void run_optim_spec(Ctx& ctx, const OptimSpec& s, bool sgd, bool step_input = false) {
  const bool buffer = sgd ? s.hp[1] != 0 : true;
  HostTensor p = random_tensor(ctx.rng, ctx.dtype, s.sizes, kUnit), g = random_tensor(ctx.rng, ctx.dtype, s.sizes, kUnit);
  std::vector<HostTensor> states;
  if (sgd && buffer) states.push_back(random_tensor(ctx.rng, ctx.dtype, s.sizes, kUnit));
  if (!sgd) {
    states.push_back(random_tensor(ctx.rng, ctx.dtype, s.sizes, {-0.1, 0.1}));
    states.push_back(random_tensor(ctx.rng, ctx.dtype, s.sizes, {0, 0.01}));
  }
  std::vector<double> want_p(p.values.size());
  std::vector<std::vector<double>> want_s;
  for (const HostTensor& h : states) want_s.push_back(h.values);
  for (size_t i = 0; i < want_p.size(); ++i)
    want_p[i] = sgd ? sgd_ref(s.hp, p.values[i], g.values[i], buffer ? &want_s[0][i] : nullptr)
                    : adam_ref(s.hp, p.values[i], g.values[i], &want_s[0][i], &want_s[1][i]);

  Tensor tp = ctx.upload(p), tg = ctx.upload(g, s.grad_layout), ts[2];
  std::vector<TsrTensor> ins = {tg.get()};
  for (size_t i = 0; i < states.size(); ++i) ts[i] = ctx.upload(states[i]), ins.push_back(ts[i].get());
  Tensor tstep = step_input ? ctx.upload_scalar(TSR_FLOAT32, s.hp[5]) : Tensor();
  if (step_input) ins.push_back(tstep.get());
  for (TsrTensor t : ins)
    if (!t || !tp) return;
  std::vector<uint64_t> before;
  for (TsrTensor t : ins) before.push_back(version_of(t));
  const uint64_t p_before = version_of(tp.get());
  TsrAttrs attrs = default_attrs();
  std::copy(s.hp, s.hp + 8, attrs.hp);
  if (step_input) attrs.hp[5] = NAN;  // not read
  TsrTensor outs[] = {tp.get()};
  const std::string name = std::string(s.name) + ", param " + shape_str(s.sizes) + (step_input ? ", step input" : "");
  if (!ctx.ran(tsr_call(ctx.op.id, ins.data(), static_cast<int32_t>(ins.size()), &attrs, outs, 1), name)) return;
  const double tol = Ctx::tol(ctx.dtype, 10);
  ctx.check(name + ": param", tp.get(), ctx.dtype, s.sizes, want_p, tol);
  static const char* const kStateNames[2][2] = {{"momentum_buffer", ""}, {"exp_avg", "exp_avg_sq"}};
  for (size_t i = 0; i < states.size(); ++i)
    ctx.check(name + ": " + kStateNames[sgd ? 0 : 1][i], ts[i].get(), ctx.dtype, s.sizes, want_s[i], tol);
  const bool moved = numel(s.sizes) == 0 || (version_of(tp.get()) > p_before &&
                                              (states.empty() || version_of(ts[0].get()) > before[1]) &&
                                              (states.size() < 2 || version_of(ts[1].get()) > before[2]));
  if (!moved) return ctx.fail(name, "the version counter of the param or a state did not move");
  if (step_input && version_of(tstep.get()) != before.back())
    return ctx.fail(name, "the version counter of the read-only step input moved");
  ctx.pass();
}

void run_optim(Ctx& ctx) {
  const bool sgd = ctx.op.name == std::string("sgd_step");
  if (sgd)
    for (const OptimSpec& s : kSgdSpecs) run_optim_spec(ctx, s, true);
  else
    for (const OptimSpec& s : kAdamSpecs) run_optim_spec(ctx, s, false), run_optim_spec(ctx, s, false, true);

  auto host = [&](const Shape& sizes, int32_t dtype = TSR_FLOAT32) { return random_tensor(ctx.rng, dtype, sizes, kUnit); };
  const double sgd_hp[8] = {0.1, 0.9, 0, 0, 0, 0, 0, 0}, adam_hp[8] = {1e-3, 0.9, 0.999, 1e-8, 0, 1, 0, 0};
  TsrAttrs a = default_attrs();
  std::copy(sgd ? sgd_hp : adam_hp, (sgd ? sgd_hp : adam_hp) + 8, a.hp);
  const int32_t kInvalid = TSR_ERR_INVALID_ARGUMENT;
  // param, grad and the states this op takes with `a`, of the given sizes and dtype
  auto tensors = [&](const Shape& sizes, int32_t dtype = TSR_FLOAT32) {
    std::vector<HostTensor> t = {host(sizes, dtype), host(sizes, dtype), host(sizes, dtype)};
    if (!sgd) t.push_back(host(sizes, dtype));
    return t;
  };
  auto bad = [&](const std::string& what, const std::vector<HostTensor>& t, const TsrAttrs& attrs, int32_t status) {
    if (t.size() == 2) return expect_bad(ctx, what, {t[0], t[1]}, attrs, status, true);
    if (t.size() == 3) return expect_bad(ctx, what, {t[0], t[1], t[2]}, attrs, status, true);
    expect_bad(ctx, what, {t[0], t[1], t[2], t[3]}, attrs, status, true);
  };
  auto with = [&](int i, double v) {
    TsrAttrs b = a;
    b.hp[i] = v;
    return b;
  };
  std::vector<HostTensor> ok = tensors({4, 3}), mixed = ok;
  bad("learning rate -1", ok, with(0, -1), kInvalid);
  bad("learning rate NaN", ok, with(0, NAN), kInvalid);
  bad("int64 tensors", tensors({4, 3}, TSR_INT64), a, TSR_ERR_TYPE);
  mixed[1] = host({4, 3}, TSR_FLOAT64);
  bad("float64 grad for a float32 param", mixed, a, TSR_ERR_TYPE);
  mixed = ok;
  mixed[1] = host({3, 4});
  bad("grad [3, 4] for a param [4, 3]", mixed, a, kInvalid);
  if (sgd) {
    bad("momentum -0.5", ok, with(1, -0.5), kInvalid);
    TsrAttrs n = with(4, 1);
    n.hp[2] = 0.1;
    bad("nesterov with dampening 0.1", ok, n, kInvalid);
    bad("momentum 0.9 without a buffer", {ok[0], ok[1]}, a, kInvalid);
    bad("momentum 0 with a buffer", ok, with(1, 0), kInvalid);
  } else {
    bad("beta1 1.0", ok, with(1, 1.0), kInvalid);
    bad("beta2 -0.1", ok, with(2, -0.1), kInvalid);
    bad("eps -1e-8", ok, with(3, -1e-8), kInvalid);
    bad("weight decay -0.1", ok, with(4, -0.1), kInvalid);
    bad("step 0", ok, with(5, 0), kInvalid);
    bad("two inputs", {ok[0], ok[1], ok[2]}, a, kInvalid);
    expect_bad(ctx, "float64 step input", {ok[0], ok[1], ok[2], ok[3], host({}, TSR_FLOAT64)}, a, TSR_ERR_TYPE, true);
    expect_bad(ctx, "step input of 2 elements", {ok[0], ok[1], ok[2], ok[3], host({2})}, a, kInvalid, true);
  }
  if (ctx.dtype != TSR_FLOAT32) return;
  // A NULL param, a non-contiguous param, and grad being the param itself.
  Tensor p = ctx.upload(ok[0]), g = ctx.upload(ok[1]), s1 = ctx.upload(ok[2]), s2 = ctx.upload(ok.back());
  Tensor pt = ctx.upload(ok[0], Layout::Transposed);
  if (!p || !g || !s1 || !s2 || !pt) return;
  std::vector<TsrTensor> ins = {g.get(), s1.get()};
  if (!sgd) ins.push_back(s2.get());
  TsrTensor null_out[] = {nullptr};
  ctx.expect_error(tsr_call(ctx.op.id, ins.data(), static_cast<int32_t>(ins.size()), &a, null_out, 1),
                   "bad input: NULL param", TSR_ERR_NULL_POINTER);
  TsrTensor transposed[] = {pt.get()};
  ctx.expect_error(tsr_call(ctx.op.id, ins.data(), static_cast<int32_t>(ins.size()), &a, transposed, 1),
                   "bad input: transposed (non-contiguous) param", kInvalid);
  ins[0] = p.get();
  TsrTensor outs[] = {p.get()};
  ctx.expect_error(tsr_call(ctx.op.id, ins.data(), static_cast<int32_t>(ins.size()), &a, outs, 1),
                   "bad input: grad is the param itself", kInvalid);
}

}  // namespace

std::optional<Case> find_nn_case(const OpEntry& op) {
  switch (op.kind) {
    case Kind::CONV: return Case{run_conv, TSR_DTYPES_FLOAT};
    case Kind::POOL: return Case{run_pool, TSR_DTYPES_FLOAT};
    case Kind::OPTIM: return Case{run_optim, TSR_DTYPES_FLOAT};
    default: return std::nullopt;
  }
}

}  // namespace conf
