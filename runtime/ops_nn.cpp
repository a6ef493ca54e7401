// Front-ends of the CONV, POOL and OPTIM kinds (ops.def): 2-D convolution and its two
// gradients, 2-D max pooling and its gradient, fused optimizer updates. Once for every plugin:
// ranks, channels, groups, attributes, dtypes and devices are checked, defaults applied, the
// output shape computed (PyTorch's rules) and the kernel handed contiguous NCHW descriptors,
// exactly as plugin.h promises for these kinds.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "dispatch.h"

namespace tessera {

namespace {

constexpr TsrDevice kCpu{TSR_DEVICE_CPU, 0};

// ---- messages ----------------------------------------------------------------------------

// The operands' roles, in the order the op takes them (OPTIM: the parameter first).
const char* role(int32_t op, int32_t i) {
  static const char* const conv2d[] = {"input", "weight", "bias"};
  static const char* const grad_w[] = {"grad_output", "weight"};
  static const char* const grad_x[] = {"grad_output", "input"};
  static const char* const sgd[] = {"param", "grad", "momentum_buffer"};
  static const char* const adam[] = {"param", "grad", "exp_avg", "exp_avg_sq", "step"};
  switch (op) {
    case kOp_conv2d: return conv2d[i];
    case kOp_conv2d_backward_input: return grad_w[i];
    case kOp_conv2d_backward_weight:
    case kOp_max_pool2d_backward: return grad_x[i];
    case kOp_max_pool2d: return "input";
    case kOp_sgd_step: return sgd[i];
    default: return adam[i];
  }
}

// "[conv2d] input [8, 3, 28, 28] float32 on cpu, weight [16, 4, 3, 3] float32 on cpu: what"
[[noreturn]] void nn_fail(int32_t status, int32_t op, TensorImpl* const* t, int32_t n, const std::string& what) {
  std::string s = prefix(op);
  for (int32_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::string(role(op, i)) + " " + describe(*t[i]);
  fail(status, s + (n ? ": " : "") + what);
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string pair(const int64_t* v) { return shape_str(v, 2); }

// Every operand floating, of one dtype, on one device (the given output's device too).
void check_operands(int32_t op, TensorImpl* const* t, int32_t n, const TensorImpl* out) {
  for (int32_t i = 0; i < n; ++i) {
    if (!is_floating(t[i]->dtype_))
      nn_fail(TSR_ERR_TYPE, op, t, n,
              std::string(role(op, i)) + " must be float16, bfloat16, float32 or float64, got " +
                  dtype_str(t[i]->dtype_));
    if (t[i]->dtype_ != t[0]->dtype_)
      nn_fail(TSR_ERR_TYPE, op, t, n,
              std::string("expects one dtype for all operands, got ") + dtype_str(t[0]->dtype_) + " " + role(op, 0) +
                  " and " + dtype_str(t[i]->dtype_) + " " + role(op, i));
    if (!(t[i]->device_ == t[0]->device_))
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, "expects all tensors on one device");
  }
  if (out && !(out->device_ == t[0]->device_))
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, "output is on " + device_str(out->device_) + ", the inputs on " +
                                                    device_str(t[0]->device_));
}

// ---- geometry ----------------------------------------------------------------------------

// [N, C, H, W] of a 4-D tensor or of a 3-D (unbatched) one seen with N = 1. Only N may be 0.
void nchw(int32_t op, TensorImpl* const* t, int32_t n, int32_t i, int64_t* s) {
  const TensorImpl& x = *t[i];
  if (x.ndim_ != 3 && x.ndim_ != 4)
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n,
            std::string("expects a 3-D (unbatched) or 4-D (batched) ") + role(op, i) + ", got " +
                std::to_string(x.ndim_) + "-D");
  const int32_t lead = 4 - x.ndim_;
  s[0] = 1;
  for (int32_t d = 0; d < x.ndim_; ++d) s[lead + d] = x.sizes_[d];
  for (int32_t d = 1; d < 4; ++d)
    if (s[d] == 0)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n,
              std::string(role(op, i)) + " has an empty dim: only the batch dim may be 0");
}

// Floor division (PyTorch's div_rtn).
int64_t div_floor(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

// Output size of one spatial dim. In ceil mode the last window must start inside the input
// or its left padding (PyTorch's pooling_output_shape).
int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  int64_t o = div_floor(in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) --o;
  return o;
}

// attrs' stride2/padding/dilation/groups (and pool's kernel) checked, with defaults applied,
// into the kernel's copy k.
void geometry(int32_t op, TensorImpl* const* t, int32_t n, const TsrAttrs& a, TsrAttrs& k, bool pool) {
  k = a;
  for (int32_t i = 0; i < 2; ++i) {
    if (pool && a.kernel[i] <= 0)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, "kernel size should be greater than zero, got " + pair(a.kernel));
    if (a.stride2[i] < 0)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, "stride should be greater than zero, got " + pair(a.stride2));
    if (a.dilation[i] < 0)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, "dilation should be greater than zero, got " + pair(a.dilation));
    if (a.padding[i] < 0)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, "negative padding is not supported, got " + pair(a.padding));
    if (pool && a.padding[i] > a.kernel[i] / 2)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n,
              "pad should be at most half of kernel size, but got padding " + pair(a.padding) + " and kernel " +
                  pair(a.kernel));
    k.stride2[i] = a.stride2[i] ? a.stride2[i] : pool ? a.kernel[i] : 1;
    k.dilation[i] = a.dilation[i] ? a.dilation[i] : 1;
  }
  if (a.groups < 0)
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, "non-positive groups is not supported, got " + std::to_string(a.groups));
  k.groups = a.groups ? a.groups : 1;
  k.ceil_mode = a.ceil_mode != 0;
}

// ---- running a CONV or POOL kernel ---------------------------------------------------------

// t's descriptor, a 3-D (unbatched) t seen as 4-D with N = 1.
TsrTensorDesc desc4(const TensorImpl& t) {
  TsrTensorDesc d = desc(t);
  if (t.ndim_ == 3) {
    for (int32_t i = 3; i > 0; --i) d.sizes[i] = d.sizes[i - 1], d.strides[i] = d.strides[i - 1];
    d.sizes[0] = 1;
    d.strides[0] = d.sizes[1] * d.strides[1];
    d.ndim = 4;
  }
  return d;
}

// Allocates (or checks the given) output of `sizes` and runs the kernel on contiguous copies of
// the inputs; an empty input with a non-empty output (a batch of 0 for a weight gradient, a
// weight of 0 out channels for an input gradient) gives zeros.
void run_nn(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& k, TensorImpl** outs,
            const int64_t* sizes, int32_t ndim) {
  TensorImpl* given = outs[0];
  const int32_t dtype = in[0]->dtype_;
  const TsrDevice dev = in[0]->device_;
  const KernelSlot& slot = resolve(op, dev, dtype);
  const bool direct = !given || (given->is_contiguous() && !overlaps(*given, in, nin, false));
  Tensor out = target(op, given, sizes, ndim, dtype, dev, in, nin, direct);
  bool empty_input = false;
  for (int32_t i = 0; i < nin; ++i) empty_input |= in[i]->numel() == 0;
  if (out->numel() > 0 && empty_input) {
    fill_kernel(*out, tsr_scalar_int(0));
  } else if (out->numel() > 0) {
    Tensor keep[3];
    TsrTensorDesc d[3];
    for (int32_t i = 0; i < nin; ++i) {
      const TensorImpl* x = in[i];
      if (!x->is_contiguous()) keep[i] = cast(*x, x->dtype_), x = keep[i].get();
      d[i] = desc4(*x);
    }
    TsrTensorDesc o = desc4(*out);
    run(slot, op, &o, d, nin, k);
  }
  finish_out(given, out, outs);
}

}  // namespace

// ---- CONV --------------------------------------------------------------------------------

void conv(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  const bool forward = op == kOp_conv2d;
  if (forward ? nin != 2 && nin != 3 : nin != 2)
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects " +
                                       (forward ? "2 or 3 tensor inputs (input, weight[, bias])"
                                                : op == kOp_conv2d_backward_input ? "2 tensor inputs (grad_output, weight)"
                                                                                  : "2 tensor inputs (grad_output, input)") +
                                       ", got " + std::to_string(nin));
  check_operands(op, in, nin, outs[0]);
  TsrAttrs k;
  geometry(op, in, nin, attrs, k, false);
  const int64_t groups = k.groups;

  // x [N, C, H, W], w [O, C/groups, kh, kw], y [N, O, Ho, Wo]: which ones are given, which one
  // comes from attrs.shape, and which one is the output.
  int64_t x[4], w[4], y[4];
  int32_t x_ndim = 4;
  const int64_t* result = nullptr;
  if (op == kOp_conv2d_backward_weight && attrs.nshape != 4)
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
            "attrs.shape must be the 4-D weight shape [out_channels, in_channels/groups, kh, kw], got " +
                std::to_string(attrs.nshape) + "-D");
  if (op == kOp_conv2d_backward_input && attrs.nshape != 3 && attrs.nshape != 4)
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
            "attrs.shape must be the input's 3-D or 4-D shape, got " + std::to_string(attrs.nshape) + "-D");
  if (forward || op == kOp_conv2d_backward_input) {
    const TensorImpl& wt = *in[1];
    if (wt.ndim_ != 4)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
              "expects a 4-D weight [out_channels, in_channels/groups, kh, kw], got " + std::to_string(wt.ndim_) + "-D");
    std::copy(wt.sizes_, wt.sizes_ + 4, w);
  } else {
    std::copy(attrs.shape, attrs.shape + 4, w);
  }
  if (forward) {
    nchw(op, in, nin, 0, x);
    x_ndim = in[0]->ndim_;
  } else if (op == kOp_conv2d_backward_weight) {
    nchw(op, in, nin, 1, x);
    x_ndim = in[1]->ndim_;
    result = w;
  } else {
    x_ndim = attrs.nshape;
    const int32_t lead = 4 - x_ndim;
    x[0] = 1;
    std::copy(attrs.shape, attrs.shape + x_ndim, x + lead);
    result = attrs.shape;
  }
  for (int32_t i = 0; i < 4; ++i)
    if (w[i] < 0 || x[i] < 0 || (i > 0 && (w[i] == 0 || x[i] == 0)))
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
              "weight " + shape_str(w, 4) + " and input " + shape_str(x, 4) +
                  " need positive sizes (only the input's batch dim and the weight's out channels may be 0)");
  if (w[0] % groups != 0)
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
            "given groups=" + std::to_string(groups) + ", expected the weight's out channels (" + std::to_string(w[0]) +
                ") to be divisible by " + std::to_string(groups));
  if (x[1] != w[1] * groups)
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
            "weight expects " + std::to_string(w[1]) + " input channels per group (groups " + std::to_string(groups) +
                "), input has " + std::to_string(x[1]));
  if (forward && nin == 3 && (in[2]->ndim_ != 1 || in[2]->sizes_[0] != w[0]))
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
            "bias must be 1-D with " + std::to_string(w[0]) + " elements (the weight's out channels)");

  y[0] = x[0];
  y[1] = w[0];
  for (int32_t i = 0; i < 2; ++i) {
    y[2 + i] = out_size(x[2 + i], w[2 + i], k.stride2[i], k.padding[i], k.dilation[i], false);
    if (y[2 + i] <= 0) {
      int64_t padded[2] = {x[2] + 2 * k.padding[0], x[3] + 2 * k.padding[1]};
      int64_t dilated[2] = {k.dilation[0] * (w[2] - 1) + 1, k.dilation[1] * (w[3] - 1) + 1};
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
              "padded input " + pair(padded) + " is smaller than the dilated kernel " + pair(dilated));
    }
  }
  if (!forward) {  // grad_output must be what conv2d of x and w gives
    const TensorImpl& g = *in[0];
    int64_t got[4] = {1, 0, 0, 0};
    bool ok = g.ndim_ == x_ndim;
    if (ok) std::copy(g.sizes_, g.sizes_ + g.ndim_, got + (4 - g.ndim_));
    for (int32_t i = 0; i < 4 && ok; ++i) ok = got[i] == y[i];
    if (!ok)
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
              "grad_output should have shape " + shape_str(y + (4 - x_ndim), x_ndim) +
                  " (conv2d of input " + shape_str(x + (4 - x_ndim), x_ndim) + " and weight " + shape_str(w, 4) + ")");
  }
  if (forward) {
    const int32_t lead = 4 - x_ndim;
    return run_nn(op, in, nin, k, outs, y + lead, x_ndim);
  }
  run_nn(op, in, nin, k, outs, result, op == kOp_conv2d_backward_weight ? 4 : x_ndim);
}

// ---- POOL --------------------------------------------------------------------------------

void pool(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  const bool forward = op == kOp_max_pool2d;
  expect_inputs(op, nin, forward ? 1 : 2, forward ? " (input)" : " (grad_output, input)");
  check_operands(op, in, nin, outs[0]);
  TsrAttrs k;
  geometry(op, in, nin, attrs, k, true);
  const int32_t xi = forward ? 0 : 1;
  int64_t x[4], y[4];
  nchw(op, in, nin, xi, x);
  const int32_t ndim = in[xi]->ndim_, lead = 4 - ndim;
  y[0] = x[0];
  y[1] = x[1];
  for (int32_t i = 0; i < 2; ++i)
    y[2 + i] = out_size(x[2 + i], k.kernel[i], k.stride2[i], k.padding[i], k.dilation[i], k.ceil_mode);
  if (y[2] <= 0 || y[3] <= 0)
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
            "given input size " + shape_str(x + 1, 3) + ", the calculated output size " + shape_str(y + 1, 3) +
                " is too small (kernel " + pair(k.kernel) + ", stride " + pair(k.stride2) + ", padding " +
                pair(k.padding) + ", dilation " + pair(k.dilation) + ")");
  if (forward) return run_nn(op, in, nin, k, outs, y + lead, ndim);
  const TensorImpl& g = *in[0];
  if (g.ndim_ != ndim || !std::equal(y + lead, y + 4, g.sizes_))
    nn_fail(TSR_ERR_INVALID_ARGUMENT, op, in, nin,
            "grad_output should have shape " + shape_str(y + lead, ndim) + " (max_pool2d of the input)");
  run_nn(op, in, nin, k, outs, in[1]->sizes_, ndim);
}

// ---- OPTIM -------------------------------------------------------------------------------

namespace {

// step_input: adam_step's step comes from its 4th input, hp[5] is not used.
void check_hyperparameters(int32_t op, TensorImpl* const* t, int32_t n, const double* hp, bool step_input) {
  auto bad = [&](const std::string& what) { nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, what); };
  auto flag = [&](int32_t i, const char* name) {
    if (hp[i] != 0 && hp[i] != 1) bad(std::string(name) + " (hp[" + std::to_string(i) + "]) must be 0 or 1, got " + num(hp[i]));
    return hp[i] != 0;
  };
  if (!(hp[0] >= 0)) bad("Invalid learning rate: " + num(hp[0]));
  if (op == kOp_sgd_step) {
    const double momentum = hp[1], dampening = hp[2];
    if (!(momentum >= 0)) bad("Invalid momentum value: " + num(momentum));
    if (!(hp[3] >= 0)) bad("Invalid weight_decay value: " + num(hp[3]));
    if (!std::isfinite(dampening)) bad("Invalid dampening value: " + num(dampening));
    const bool nesterov = flag(4, "nesterov");
    flag(5, "maximize");
    flag(6, "buffer_is_new");
    if (nesterov && (momentum <= 0 || dampening != 0)) bad("Nesterov momentum requires a momentum and zero dampening");
    if ((momentum != 0) != (n == 3))
      bad(momentum != 0 ? "momentum " + num(momentum) + " needs a momentum_buffer input"
                        : std::string("momentum is 0: no momentum_buffer input expected"));
  } else {
    if (!(hp[3] >= 0)) bad("Invalid epsilon value: " + num(hp[3]));
    if (!(hp[1] >= 0 && hp[1] < 1)) bad("Invalid beta parameter at index 0: " + num(hp[1]));
    if (!(hp[2] >= 0 && hp[2] < 1)) bad("Invalid beta parameter at index 1: " + num(hp[2]));
    if (!(hp[4] >= 0)) bad("Invalid weight_decay value: " + num(hp[4]));
    if (!step_input && (!(hp[5] >= 1) || !std::isfinite(hp[5]))) bad("step (hp[5]) must be >= 1, got " + num(hp[5]));
    flag(6, "decoupled");
    flag(7, "maximize");
  }
}

// adam_step's optional step input (t[n]): one float32 element on the param's device, read
// only, so exempt from the checks of the param and states but for sharing their memory.
void check_step_input(int32_t op, TensorImpl* const* t, int32_t n) {
  const TensorImpl& step = *t[n];
  auto bad = [&](int32_t status, const std::string& what) { nn_fail(status, op, t, n + 1, "step " + what); };
  if (step.dtype_ != TSR_FLOAT32) bad(TSR_ERR_TYPE, "must be float32, got " + dtype_str(step.dtype_));
  if (step.numel() != 1) bad(TSR_ERR_INVALID_ARGUMENT, "must have one element, got " + std::to_string(step.numel()));
  if (!(step.device_ == t[0]->device_))
    bad(TSR_ERR_INVALID_ARGUMENT, "must be on the param's device " + device_str(t[0]->device_) + ", got " +
                                      device_str(step.device_));
  for (int32_t i = 0; i < n; ++i)
    if (step.storage_ == t[i]->storage_)
      bad(TSR_ERR_INVALID_ARGUMENT, std::string("shares memory with ") + role(op, i) + ", which the update writes");
}

}  // namespace

void optim(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  const bool sgd = op == kOp_sgd_step;
  if (!outs[0])
    fail(TSR_ERR_NULL_POINTER, prefix(op) + "outputs[0] must be the parameter to update in place, got NULL");
  if (sgd ? nin != 1 && nin != 2 : nin != 3 && nin != 4)
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects " +
                                       (sgd ? "1 or 2 tensor inputs (grad[, momentum_buffer])"
                                            : "3 or 4 tensor inputs (grad, exp_avg, exp_avg_sq[, step])") +
                                       ", got " + std::to_string(nin));
  TensorImpl* t[5] = {outs[0]};  // param, grad, states..., adam_step's step input last
  const bool step_input = !sgd && nin == 4;
  const int32_t n = nin + 1 - step_input;  // param, grad and states
  std::copy(in, in + nin, t + 1);
  check_operands(op, t, n, nullptr);
  TensorImpl& param = *t[0];
  for (int32_t i = 1; i < n; ++i) {
    if (t[i]->ndim_ != param.ndim_ || !std::equal(param.sizes_, param.sizes_ + param.ndim_, t[i]->sizes_))
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n, std::string(role(op, i)) + " must have the param's shape");
    for (int32_t j = 0; j < i; ++j)
      if (t[i]->storage_ == t[j]->storage_)
        nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n,
                std::string(role(op, i)) + " shares memory with " + role(op, j) + ": the update writes them in place");
  }
  for (int32_t i = 0; i < n; ++i)
    if (i != 1 && !t[i]->is_contiguous())
      nn_fail(TSR_ERR_INVALID_ARGUMENT, op, t, n,
              std::string(role(op, i)) + " is not contiguous: the fused update writes param and state tensors in place");
  check_hyperparameters(op, t, n, attrs.hp, step_input);
  if (step_input) check_step_input(op, t, n);

  // No kernel on this device and fallback "cpu": update CPU copies, then copy every written
  // tensor back (the generic fallback would copy back only outputs[0], not the states).
  const TsrDevice dev = param.device_;
  const KernelSlot& s = kernel_slot(op, dev.type);
  if (!(s.fn && (s.dtype_mask & TSR_DTYPE_BIT(param.dtype_))) && dev.type != TSR_DEVICE_CPU &&
      registry().fallback == Fallback::Cpu) {
    warn_cpu_fallback(op, dev);
    const size_t nbytes = static_cast<size_t>(param.numel()) * itemsize(param.dtype_);
    Tensor cpu[5];
    TensorImpl* ptr[5];
    for (int32_t i = 0; i < n; ++i) {
      Tensor src = t[i]->is_contiguous() ? Tensor::retain(t[i]) : cast(*t[i], t[i]->dtype_);
      cpu[i] = empty(param.sizes_, param.ndim_, param.dtype_, kCpu, kOpInfo[op].name);
      copy_bytes(cpu[i]->data(), kCpu, src->data(), dev, nbytes, kOpInfo[op].name);
      ptr[i] = cpu[i].get();
    }
    if (step_input) {  // read only: not copied back
      cpu[n] = empty(nullptr, 0, TSR_FLOAT32, kCpu, kOpInfo[op].name);
      copy_bytes(cpu[n]->data(), kCpu, t[n]->data(), dev, sizeof(float), kOpInfo[op].name);
      ptr[n] = cpu[n].get();
    }
    optim(op, ptr + 1, nin, attrs, ptr);
    for (int32_t i = 0; i < n; ++i)
      if (i != 1) {
        copy_bytes(t[i]->data(), dev, cpu[i]->data(), kCpu, nbytes, kOpInfo[op].name);
        t[i]->storage_->bump_version();
      }
    return;
  }
  const KernelSlot& slot = resolve(op, dev, param.dtype_);
  if (param.numel() == 0) return;
  Tensor grad = t[1]->is_contiguous() ? Tensor::retain(t[1]) : cast(*t[1], t[1]->dtype_);
  TsrTensorDesc o = desc(param), d[4];
  d[0] = desc(*grad);
  for (int32_t i = 2; i <= nin; ++i) d[i - 1] = desc(*t[i]);  // the states, then the step input
  run(slot, op, &o, d, nin, attrs);
  for (int32_t i = 0; i < n; ++i)
    if (i != 1) t[i]->storage_->bump_version();  // not the read-only step input
}

}  // namespace tessera
