// Helpers shared by the transformer conformance cases (transformer_nn.cpp, transformer_index.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"

namespace conf {

using Values = std::vector<double>;
inline const Domain kUnit{-1, 1};
inline constexpr Layout C = Layout::Contiguous, Tr = Layout::Transposed, St = Layout::Strided;

// ---- shared helpers ------------------------------------------------------------------------

inline bool on_cpu(const Ctx& ctx) {
  return ctx.device.type == TSR_DEVICE_CPU;
}
inline bool half_float(int32_t dtype) {
  return dtype == TSR_FLOAT16 || dtype == TSR_BFLOAT16;
}

// NN statistics (mean, rstd, lse): float32, float64 for float64 inputs.
inline int32_t stat_dtype(int32_t dtype) {
  return dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
}

// Ctx::tol widened by k for float32/float64 and by lp for float16/bfloat16 (fused kernels that
// may round an intermediate, as flash attention rounds P, to the input dtype).
inline double tol_of(int32_t dtype, double k, double lp = 1) {
  return half_float(dtype) ? Ctx::tol(dtype) * lp : Ctx::tol(dtype, k);
}

inline uint64_t version_of(TsrTensor t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  tsr_tensor_info(t, &info);
  return info.version;
}

inline Shape shape_of(TsrTensor t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  if (tsr_tensor_info(t, &info) != TSR_OK) return {};
  return Shape(info.sizes, info.sizes + info.ndim);
}

inline HostTensor host(Rng& rng, int32_t dtype, const Shape& sizes, const Domain& dom = kUnit) {
  return random_tensor(rng, dtype, sizes, dom);
}

inline HostTensor index_tensor(const Shape& sizes, const std::vector<int64_t>& v, int32_t dtype = TSR_INT64) {
  return HostTensor{dtype, sizes, Values(v.begin(), v.end())};
}

// tsr_call of `op` (ctx's op by default) with `ins` into `n` fresh outputs.
inline int32_t call(Ctx& ctx, const std::vector<TsrTensor>& ins, const TsrAttrs& a, std::vector<Tensor>& outs,
                    int n, int32_t op = -1) {
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
inline bool check_as(Ctx& ctx, const std::string& variant, TsrTensor t, int32_t dtype, const Shape& sizes,
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
inline void expect_bad(Ctx& ctx, const std::string& what, const std::vector<HostTensor>& hosts,
                       const TsrAttrs& a, int32_t status, int num_outputs = 1, bool cpu_only = false) {
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

// ---- the RANDOM stream of plugin.h (conf::philox_u) ----------------------------------------

// The generator after tsr_manual_seed(seed), `offset` counters in: element i takes counter
// offset + i/4, lane i%4, u = (x + 0.5) * 2^-32 (bernoulli_'s rule).
struct Stream {
  uint64_t seed, offset = 0;
  double u(int64_t i) const {
    return philox_u(seed, offset + static_cast<uint64_t>(i) / 4, static_cast<int>(i % 4));
  }
  bool keep(int64_t i, double p) const { return u(i) < 1 - p; }
};

inline int64_t counters(int64_t elements) {
  return (elements + 3) / 4;
}

// The first seed from `base` whose first `count` draws are all clear of the threshold 1 - p
// by 1e-6 (a float32 kernel may round u or 1 - p; those elements could go either way).
inline uint64_t clean_seed(uint64_t base, int64_t count, double p) {
  for (uint64_t seed = base;; ++seed) {
    const Stream s{seed};
    bool clean = true;
    for (int64_t i = 0; i < count && clean; ++i) clean = std::fabs(s.u(i) - (1 - p)) > 1e-6;
    if (clean) return seed;
  }
}

// NN, INDEX, SAMPLE, FOREACH and COMPOSITE: the kinds the transformer cases register under.
inline bool transformer_kind(Kind kind) {
  switch (kind) {
    case Kind::NN:
    case Kind::INDEX:
    case Kind::SAMPLE:
    case Kind::FOREACH:
    case Kind::COMPOSITE:
      return true;
    default:
      return false;
  }
}

}  // namespace conf
