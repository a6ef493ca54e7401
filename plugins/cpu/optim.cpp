// Fused optimizer updates of the CPU plugin: sgd_step and adam_step read the gradient and the
// states and write the parameter and the states in one pass over contiguous memory, in chunks
// on the pool; the loops vectorize (an AVX2 variant is picked at run time). torch.optim's
// formulas, in float32 for float16/bfloat16/float32 parameters and in float64 for float64.
#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kGrain = 16384;  // elements per task: the update is memory-bound

template <class C>
struct SgdHp {
  C lr, momentum, one_minus_dampening, weight_decay, sign;  // sign: -1 to maximize
  bool decay, nesterov, new_buffer;
};

// torch.optim.SGD: d = ±g (+ wd p); buf = d if new else momentum buf + (1 - dampening) d;
// d = d + momentum buf (nesterov) or buf; p -= lr d. Loop-invariant flags are selects.
template <class S, class C, bool kBuffer>
struct SgdK {
  static TSR_INLINE void run(S* p, const S* g, S* buf, int64_t n, SgdHp<C> h) {
    for (int64_t i = 0; i < n; ++i) {
      const C pv = cast<C>(p[i]);
      C d = cast<C>(g[i]) * h.sign;
      d = h.decay ? d + h.weight_decay * pv : d;
      if constexpr (kBuffer) {
        const C b = h.new_buffer ? d : h.momentum * cast<C>(buf[i]) + h.one_minus_dampening * d;
        buf[i] = cast<S>(b);
        d = h.nesterov ? d + h.momentum * b : b;
      }
      p[i] = cast<S>(pv - h.lr * d);
    }
  }
};

template <class C>
struct AdamHp {
  C beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, sign;
  C param_scale;  // AdamW: 1 - lr * weight_decay, else 1
  C step_size;    // lr / (1 - beta1^step)
  C bc2_sqrt;     // sqrt(1 - beta2^step)
  bool l2;        // Adam with weight decay: g += wd p
};

// torch.optim.Adam/AdamW: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
// p -= step_size m / (sqrt(v) / bc2_sqrt + eps).
template <class S, class C>
struct AdamK {
  static TSR_INLINE void run(S* p, const S* g, S* m, S* v, int64_t n, AdamHp<C> h) {
    for (int64_t i = 0; i < n; ++i) {
      C pv = cast<C>(p[i]);
      C gv = cast<C>(g[i]) * h.sign;
      gv = h.l2 ? gv + h.weight_decay * pv : gv;
      pv *= h.param_scale;
      const C mv = h.beta1 * cast<C>(m[i]) + h.one_minus_beta1 * gv;
      const C vv = h.beta2 * cast<C>(v[i]) + h.one_minus_beta2 * (gv * gv);
      const C denom = std::sqrt(vv) / h.bc2_sqrt + h.eps;
      p[i] = cast<S>(pv - h.step_size * (mv / denom));
      m[i] = cast<S>(mv);
      v[i] = cast<S>(vv);
    }
  }
};

int64_t numel_of(const TsrTensorDesc& d) {
  int64_t n = 1;
  for (int32_t i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  return n;
}

void sgd_step_body(const TsrKernelArgs* a) {
  const TsrTensorDesc& pd = a->outputs[0];
  const double* hp = a->attrs->hp;  // lr, momentum, dampening, weight_decay, nesterov, maximize, buffer_is_new
  const int64_t n = numel_of(pd);
  dispatch_float_storage(pd.dtype, [&](auto s) {
    using S = decltype(s);
    using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
    const SgdHp<C> h{C(hp[0]), C(hp[1]),    C(1 - hp[2]),    C(hp[3]),     C(hp[5] != 0 ? -1 : 1),
                     hp[3] != 0, hp[4] != 0, hp[6] != 0};
    S* p = static_cast<S*>(pd.data);
    const S* g = static_cast<const S*>(a->inputs[0].data);
    S* buf = a->num_inputs > 1 ? static_cast<S*>(a->inputs[1].data) : nullptr;
    state_of(a).pool.parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      if (buf)
        isa_run<SgdK<S, C, true>>(p + b, g + b, buf + b, e - b, h);
      else
        isa_run<SgdK<S, C, false>>(p + b, g + b, buf, e - b, h);
    });
  });
}

void adam_step_body(const TsrKernelArgs* a) {
  const TsrTensorDesc& pd = a->outputs[0];
  const double* hp = a->attrs->hp;  // lr, beta1, beta2, eps, weight_decay, step, decoupled, maximize
  // capturable Adam: the step from the 4th input (float32, one element), hp[5] unused
  const double step = a->num_inputs == 4 ? *static_cast<const float*>(a->inputs[3].data) : hp[5];
  const double lr = hp[0], beta1 = hp[1], beta2 = hp[2], wd = hp[4];
  const bool decoupled = hp[6] != 0;
  const int64_t n = numel_of(pd);
  dispatch_float_storage(pd.dtype, [&](auto s) {
    using S = decltype(s);
    using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
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
    state_of(a).pool.parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      isa_run<AdamK<S, C>>(p + b, g + b, m + b, v + b, e - b, h);
    });
  });
}

}  // namespace

int32_t kernel_sgd_step(const TsrKernelArgs* a) { return run_kernel(a, &sgd_step_body); }
int32_t kernel_adam_step(const TsrKernelArgs* a) { return run_kernel(a, &adam_step_body); }

}  // namespace tessera_cpu
