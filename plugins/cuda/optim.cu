// Fused optimizer updates of the CUDA plugin: sgd_step and adam_step in one elementwise pass
// over contiguous memory (16-byte vector loads when every operand is aligned), torch.optim's
// formulas as in plugins/cpu/optim.cpp: float32 compute for float16/bfloat16/float32, float64
// for float64.
#include <cmath>

#include "cuda_common.cuh"

namespace tcu {
namespace {

template <class C>
struct SgdHp {
  C lr, momentum, one_minus_dampening, weight_decay, sign;  // sign: -1 to maximize
  bool decay, nesterov, new_buffer;
};

template <class C>
struct AdamHp {
  C beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, sign;
  C param_scale;  // AdamW: 1 - lr * weight_decay, else 1
  C step_size;    // lr / (1 - beta1^step)
  C bc2_sqrt;     // sqrt(1 - beta2^step)
  bool l2;        // Adam with weight decay: g += wd p
};

// Capturable Adam: the step is read on the device from a float32 scalar (never by the host, so
// the launch can be captured in a CUDA graph and replayed with the step advanced in place).
struct AdamStep {
  const float* step;  // NULL: step_size and bc2_sqrt were computed on the host from hp[5]
  double lr, beta1, beta2;
};

// step_size and bc2_sqrt from the device step, computed in double and rounded to C as the host
// does from hp[5]: the same values for the same step.
template <class C>
__device__ __forceinline__ void read_step(AdamHp<C>& h, const AdamStep& s) {
  const double step = *s.step;
  h.step_size = C(s.lr / (1 - pow(s.beta1, step)));
  h.bc2_sqrt = C(sqrt(1 - pow(s.beta2, step)));
}

// torch.optim.SGD: d = ±g (+ wd p); buf = d if new else momentum buf + (1 - dampening) d;
// d = d + momentum buf (nesterov) or buf; p -= lr d.
template <class S, class C, bool kBuffer>
__device__ __forceinline__ void sgd_one(S& p, S g, S& buf, const SgdHp<C>& h) {
  const C pv = cast<C>(p);
  C d = cast<C>(g) * h.sign;
  if (h.decay) d = d + h.weight_decay * pv;
  if constexpr (kBuffer) {
    const C b = h.new_buffer ? d : h.momentum * cast<C>(buf) + h.one_minus_dampening * d;
    buf = cast<S>(b);
    d = h.nesterov ? d + h.momentum * b : b;
  }
  p = cast<S>(pv - h.lr * d);
}

// torch.optim.Adam/AdamW: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
// p -= step_size m / (sqrt(v) / bc2_sqrt + eps).
template <class S, class C>
__device__ __forceinline__ void adam_one(S& p, S g, S& m, S& v, const AdamHp<C>& h) {
  C pv = cast<C>(p);
  C gv = cast<C>(g) * h.sign;
  if (h.l2) gv = gv + h.weight_decay * pv;
  pv *= h.param_scale;
  const C mv = h.beta1 * cast<C>(m) + h.one_minus_beta1 * gv;
  const C vv = h.beta2 * cast<C>(v) + h.one_minus_beta2 * (gv * gv);
  const C denom = sqrt(vv) / h.bc2_sqrt + h.eps;
  p = cast<S>(pv - h.step_size * (mv / denom));
  m = cast<S>(mv);
  v = cast<S>(vv);
}

// V elements loaded/stored as one (16-byte when V = 16 / sizeof(S)).
template <class S, int V>
struct alignas(sizeof(S) * V) Pack {
  S v[V];
};

// Grid-stride over n / V packs; the n % V tail elements go to the first threads. I is the
// index type (int32 when n < 2^30).
template <class S, class C, bool kBuffer, int V, class I>
__global__ void sgd_kernel(S* __restrict__ p, const S* __restrict__ g, S* __restrict__ buf, I n, SgdHp<C> h) {
  using P = Pack<S, V>;
  const I nv = n / V;
  const I tid = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x), nthreads = I(gridDim.x) * I(blockDim.x);
  for (I i = tid; i < nv; i += nthreads) {
    P pp = reinterpret_cast<const P*>(p)[i];
    const P gp = reinterpret_cast<const P*>(g)[i];
    P bp;
    if constexpr (kBuffer) bp = reinterpret_cast<const P*>(buf)[i];
#pragma unroll
    for (int j = 0; j < V; ++j) sgd_one<S, C, kBuffer>(pp.v[j], gp.v[j], bp.v[j], h);
    reinterpret_cast<P*>(p)[i] = pp;
    if constexpr (kBuffer) reinterpret_cast<P*>(buf)[i] = bp;
  }
  if constexpr (V > 1) {
    const I t = nv * V + tid;
    if (t < n) {
      S dummy{};
      sgd_one<S, C, kBuffer>(p[t], g[t], kBuffer ? buf[t] : dummy, h);
    }
  }
}

template <class S, class C, int V, class I>
__global__ void adam_kernel(S* __restrict__ p, const S* __restrict__ g, S* __restrict__ m, S* __restrict__ v, I n,
                            AdamHp<C> h, AdamStep st) {
  using P = Pack<S, V>;
  if (st.step) read_step(h, st);
  const I nv = n / V;
  const I tid = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x), nthreads = I(gridDim.x) * I(blockDim.x);
  for (I i = tid; i < nv; i += nthreads) {
    P pp = reinterpret_cast<const P*>(p)[i];
    const P gp = reinterpret_cast<const P*>(g)[i];
    P mp = reinterpret_cast<const P*>(m)[i];
    P vp = reinterpret_cast<const P*>(v)[i];
#pragma unroll
    for (int j = 0; j < V; ++j) adam_one<S, C>(pp.v[j], gp.v[j], mp.v[j], vp.v[j], h);
    reinterpret_cast<P*>(p)[i] = pp;
    reinterpret_cast<P*>(m)[i] = mp;
    reinterpret_cast<P*>(v)[i] = vp;
  }
  if constexpr (V > 1) {
    const I t = nv * V + tid;
    if (t < n) adam_one<S, C>(p[t], g[t], m[t], v[t], h);
  }
}

constexpr int kThreads = 256;

// Blocks for n elements in packs of V: one pack per thread, capped at 16 waves-worth of
// blocks per SM (grid-stride beyond).
unsigned blocks_for(const TsrKernelArgs* a, int64_t n, int V) {
  int64_t b = (n / V + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  const int64_t cap = int64_t(sm_count(device_of(a))) * 16;
  if (cap > 0 && b > cap) b = cap;
  return static_cast<unsigned>(b);
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

template <class S, class C, bool kBuffer, int V>
int32_t launch_sgd(const TsrKernelArgs* a, S* p, const S* g, S* buf, int64_t n, const SgdHp<C>& h) {
  const unsigned blocks = blocks_for(a, n, V);
  if (n < (int64_t(1) << 30))
    sgd_kernel<S, C, kBuffer, V, int32_t><<<blocks, kThreads, 0, stream_of(a)>>>(p, g, buf, int32_t(n), h);
  else
    sgd_kernel<S, C, kBuffer, V, int64_t><<<blocks, kThreads, 0, stream_of(a)>>>(p, g, buf, n, h);
  return check_launch(a, "sgd_kernel");
}

template <class S, class C, int V>
int32_t launch_adam(const TsrKernelArgs* a, S* p, const S* g, S* m, S* v, int64_t n, const AdamHp<C>& h,
                    const AdamStep& st) {
  const unsigned blocks = blocks_for(a, n, V);
  if (n < (int64_t(1) << 30))
    adam_kernel<S, C, V, int32_t><<<blocks, kThreads, 0, stream_of(a)>>>(p, g, m, v, int32_t(n), h, st);
  else
    adam_kernel<S, C, V, int64_t><<<blocks, kThreads, 0, stream_of(a)>>>(p, g, m, v, n, h, st);
  return check_launch(a, "adam_kernel");
}

// The first `like_param` inputs (grad and states) must match the parameter; adam_step's step
// input (after them) is one float32 element.
int32_t check_operands(const TsrKernelArgs* a, int32_t want_inputs_min, int32_t want_inputs_max,
                       int32_t like_param) {
  const TsrTensorDesc& pd = a->outputs[0];
  if (a->num_inputs < want_inputs_min || a->num_inputs > want_inputs_max)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "unexpected number of operands (%d)", a->num_inputs);
  if (!is_contiguous(pd)) return fail(a, TSR_ERR_INVALID_ARGUMENT, "the parameter must be contiguous");
  const int64_t n = numel(pd);
  for (int32_t i = like_param; i < a->num_inputs; ++i)
    if (a->inputs[i].dtype != TSR_FLOAT32 || numel(a->inputs[i]) != 1)
      return fail(a, TSR_ERR_INVALID_ARGUMENT, "the step (operand %d) must be one float32 element", i + 1);
  for (int32_t i = 0; i < a->num_inputs && i < like_param; ++i) {
    const TsrTensorDesc& d = a->inputs[i];
    if (d.dtype != pd.dtype || numel(d) != n || !is_contiguous(d))
      return fail(a, TSR_ERR_INVALID_ARGUMENT, "operand %d does not match the parameter", i + 1);
  }
  return TSR_OK;
}

}  // namespace

int32_t kernel_sgd_step(const TsrKernelArgs* a) {
  if (int32_t st = check_operands(a, 1, 2, 2)) return st;
  const TsrTensorDesc& pd = a->outputs[0];
  const double* hp = a->attrs->hp;  // lr, momentum, dampening, weight_decay, nesterov, maximize, buffer_is_new
  const int64_t n = numel(pd);
  int32_t status = TSR_OK;
  const bool ok = dispatch_float(pd.dtype, [&](auto s) {
    using S = decltype(s);
    using C = compute_t<S>;
    constexpr int V = 16 / sizeof(S);
    const SgdHp<C> h{C(hp[0]),    C(hp[1]),   C(1 - hp[2]), C(hp[3]), C(hp[5] != 0 ? -1 : 1),
                     hp[3] != 0, hp[4] != 0, hp[6] != 0};
    S* p = static_cast<S*>(pd.data);
    const S* g = static_cast<const S*>(a->inputs[0].data);
    S* buf = a->num_inputs > 1 ? static_cast<S*>(a->inputs[1].data) : nullptr;
    const bool vec = aligned16(p) && aligned16(g) && (!buf || aligned16(buf));
    if (buf)
      status = vec ? launch_sgd<S, C, true, V>(a, p, g, buf, n, h) : launch_sgd<S, C, true, 1>(a, p, g, buf, n, h);
    else
      status = vec ? launch_sgd<S, C, false, V>(a, p, g, buf, n, h) : launch_sgd<S, C, false, 1>(a, p, g, buf, n, h);
  });
  if (!ok) return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", pd.dtype);
  return status;
}

int32_t kernel_adam_step(const TsrKernelArgs* a) {
  if (int32_t st = check_operands(a, 3, 4, 3)) return st;
  const TsrTensorDesc& pd = a->outputs[0];
  const double* hp = a->attrs->hp;  // lr, beta1, beta2, eps, weight_decay, step, decoupled, maximize
  const double lr = hp[0], beta1 = hp[1], beta2 = hp[2], wd = hp[4];
  const bool decoupled = hp[6] != 0;
  // capturable Adam: the step from the 4th input, read by the kernel; hp[5] is then unused
  const AdamStep st{a->num_inputs == 4 ? static_cast<const float*>(a->inputs[3].data) : nullptr, lr, beta1, beta2};
  const double step = st.step ? 1 : hp[5];  // placeholder bias corrections, replaced on the device
  const int64_t n = numel(pd);
  int32_t status = TSR_OK;
  const bool ok = dispatch_float(pd.dtype, [&](auto s) {
    using S = decltype(s);
    using C = compute_t<S>;
    constexpr int V = 16 / sizeof(S);
    const AdamHp<C> h{C(beta1),
                      C(1 - beta1),
                      C(beta2),
                      C(1 - beta2),
                      C(hp[3]),
                      C(wd),
                      C(hp[7] != 0 ? -1 : 1),
                      C(decoupled ? 1 - lr * wd : 1),
                      C(lr / (1 - std::pow(beta1, step))),
                      C(std::sqrt(1 - std::pow(beta2, step))),
                      !decoupled && wd != 0};
    S* p = static_cast<S*>(pd.data);
    const S* g = static_cast<const S*>(a->inputs[0].data);
    S* m = static_cast<S*>(a->inputs[1].data);
    S* v = static_cast<S*>(a->inputs[2].data);
    const bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
    status = vec ? launch_adam<S, C, V>(a, p, g, m, v, n, h, st) : launch_adam<S, C, 1>(a, p, g, m, v, n, h, st);
  });
  if (!ok) return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", pd.dtype);
  return status;
}

}  // namespace tcu
