// The dispatcher: one front-end per op kind of ops.def. Each validates shapes, dtypes and
// devices, promotes types, broadcasts, allocates the output and hands the kernel exactly
// what plugin.h promises for its kind. Hot path: no lock, no string lookup, descs on the stack.
#include "ops.h"
#include "streams.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>
#include <limits>

#include "dispatch.h"
#include "autograd.h"
#include "error.h"
#include "log.h"
#include "registry.h"

namespace tessera {

namespace {

constexpr TsrDevice kCpu{TSR_DEVICE_CPU, 0};

TsrAttrs make_default_attrs() {
  TsrAttrs a;
  std::memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.dtype = -1;
  a.scalar_arg = -1;
  a.alpha = tsr_scalar_int(1);
  a.scalar3 = tsr_scalar_int(1);
  a.correction = 1;
  return a;
}
const TsrAttrs kDefaultAttrs = make_default_attrs();

// The defaults with their scalars already in a compute dtype's kind: the typed entry points
// pass kDefaultAttrs, and these spare the hot path a copy of the attrs.
TsrAttrs make_default_attrs_for(int32_t dtype) {
  TsrAttrs a = make_default_attrs();
  a.scalar = scalar_to(a.scalar, dtype);
  a.scalar2 = scalar_to(a.scalar2, dtype);
  a.scalar3 = scalar_to(a.scalar3, dtype);
  a.alpha = scalar_to(a.alpha, dtype);
  return a;
}
const TsrAttrs kDefaultAttrsFloat = make_default_attrs_for(TSR_FLOAT32);
const TsrAttrs kDefaultAttrsInt = make_default_attrs_for(TSR_INT64);

// Philox state per device type: seed, and the next free counter (units of 4 numbers).
struct Generator {
  std::atomic<uint64_t> seed{67280421310721ull};
  std::atomic<uint64_t> offset{0};
};
Generator g_generators[TSR_MAX_DEVICE_TYPES];

std::atomic<bool> g_fallback_warned[kNumOps];
thread_local bool t_in_fallback = false;

// Thrown when a device lacks a kernel and the config says "fallback": "cpu".
struct CpuFallback {};

}  // namespace

// ---- helpers shared with ops_nn.cpp (dispatch.h) ----------------------------------------

std::string prefix(int32_t op) { return std::string("[") + kOpInfo[op].name + "] "; }

std::string inputs_str(TensorImpl* const* in, int32_t n) {
  std::string s = n == 1 ? "input " : "inputs ";
  for (int32_t i = 0; i < n; ++i) s += (i ? ", " : "") + describe(*in[i]);
  return s;
}

[[noreturn]] void op_fail(int32_t status, int32_t op, const std::string& what, TensorImpl* const* in, int32_t n) {
  fail(status, prefix(op) + what + (n > 0 ? "; " + inputs_str(in, n) : ""));
}

// The kernel slot for (op, device) that handles `dtype` (and `dtype2`, for copy's destination).
[[noreturn]] void missing_kernel(int32_t op, TsrDevice dev, int32_t dtype, int32_t dtype2) {
  if (!registry().initialized) fail(TSR_ERR_NOT_INITIALIZED, prefix(op) + "tsr_init was not called");
  if (registry().fallback == Fallback::Cpu && dev.type != TSR_DEVICE_CPU && !t_in_fallback) throw CpuFallback{};
  std::string dt = dtype_str(dtype);
  if (dtype2 >= 0 && dtype2 != dtype) dt += " -> " + dtype_str(dtype2);
  fail(TSR_ERR_NOT_IMPLEMENTED, prefix(op) + "no kernel for dtype " + dt + " on device " + device_str(dev));
}

void warn_cpu_fallback(int32_t op, TsrDevice dev) {
  if (!g_fallback_warned[op].exchange(true, std::memory_order_relaxed))
    log().warn("[{}] no kernel on {}: running on the CPU (fallback \"cpu\")", kOpInfo[op].name, device_str(dev));
}

const KernelSlot& resolve(int32_t op, TsrDevice dev, int32_t dtype, int32_t dtype2) {
  const KernelSlot& s = kernel_slot(op, dev.type);
  uint32_t need = TSR_DTYPE_BIT(dtype) | (dtype2 >= 0 ? TSR_DTYPE_BIT(dtype2) : 0u);
  if (s.fn && (s.dtype_mask & need) == need) [[likely]]
    return s;
  missing_kernel(op, dev, dtype, dtype2);
}

TsrTensorDesc desc(const TensorImpl& t) {
  TsrTensorDesc d;
  d.struct_size = sizeof d;
  d.dtype = t.dtype_;
  d.data = t.data();
  d.ndim = t.ndim_;
  d.device = t.device_;
  d.reserved = 0;
  std::memcpy(d.sizes, t.sizes_, sizeof d.sizes);
  std::memcpy(d.strides, t.strides_, sizeof d.strides);
  return d;
}

// t as seen with the output's sizes: broadcast dims (new or size 1 -> n) get stride 0.
// Written in place: building it in a temporary and copying it into an array of descs
// costs the 1-element add a fifth of its time (store-forwarding stalls on 160 bytes).
void broadcast_desc(TsrTensorDesc& d, const TensorImpl& t, const int64_t* sizes, int32_t ndim) {
  d.struct_size = sizeof d;
  d.dtype = t.dtype_;
  d.data = t.data();
  d.ndim = ndim;
  d.device = t.device_;
  d.reserved = 0;
  int32_t lead = ndim - t.ndim_;
  for (int32_t i = 0; i < ndim; ++i) {
    int32_t j = i - lead;
    d.sizes[i] = sizes[i];
    d.strides[i] = j >= 0 && t.sizes_[j] == sizes[i] ? t.strides_[j] : 0;
  }
}

void run(const KernelSlot& s, int32_t op, TsrTensorDesc* outs, const TsrTensorDesc* ins, int32_t nin,
         const TsrAttrs& attrs, int32_t nout) {
  TsrKernelArgs args{sizeof(TsrKernelArgs), op, kOpInfo[op].name, nout, nin, outs, ins, &attrs,
                     current_stream(outs[0].device), s.ctx};
  if (int32_t st = s.fn(&args); st != TSR_OK) [[unlikely]] {
    std::string msg = last_error();
    fail(st, prefix(op) + "kernel of plugin '" + (s.plugin ? s.plugin->name : "?") + "' failed on " +
                 device_str(outs[0].device) + " (output " + shape_str(outs[0].sizes, outs[0].ndim) + " " +
                 dtype_str(outs[0].dtype) + "): " + msg);
  }
}

// dst[...] = src through dst's device's copy kernel (src broadcast to dst's sizes, same device).
void copy_kernel(TensorImpl& dst, const TensorImpl& src) {
  if (dst.numel() == 0) return;
  const KernelSlot& s = resolve(kOp_copy, dst.device_, src.dtype_, dst.dtype_);
  TsrTensorDesc o = desc(dst), i;
  broadcast_desc(i, src, dst.sizes_, dst.ndim_);
  run(s, kOp_copy, &o, &i, 1, kDefaultAttrs);
}

Tensor cast(const TensorImpl& t, int32_t dtype) {
  Tensor r = empty_like(t, dtype);
  copy_kernel(*r, t);
  return r;
}

// t itself when it has `dtype`, else a converted copy kept alive by `keep`.
TensorImpl* as_dtype(TensorImpl* t, int32_t dtype, Tensor& keep) {
  if (t->dtype_ == dtype) return t;
  keep = cast(*t, dtype);
  return keep.get();
}

void fill_kernel(TensorImpl& t, const TsrScalar& value) {
  if (t.numel() == 0) return;
  const KernelSlot& s = resolve(kOp_fill, t.device_, t.dtype_);
  TsrAttrs a = kDefaultAttrs;
  a.scalar = scalar_to(value, t.dtype_);
  TsrTensorDesc o = desc(t);
  run(s, kOp_fill, &o, nullptr, 0, a);
}

void check_devices(int32_t op, TensorImpl* const* in, int32_t n, const TensorImpl* out) {
  for (int32_t i = 1; i < n; ++i)
    if (!(in[i]->device_ == in[0]->device_))
      op_fail(TSR_ERR_INVALID_ARGUMENT, op,
              "expected all tensors on one device, got " + device_str(in[0]->device_) + " and " +
                  device_str(in[i]->device_),
              in, n);
  if (out && n > 0 && !(out->device_ == in[0]->device_))
    op_fail(TSR_ERR_INVALID_ARGUMENT, op,
            "expected all tensors on one device, got output on " + device_str(out->device_) + " and input on " +
                device_str(in[0]->device_),
            in, n);
}

void check_scalar(int32_t op, const TsrScalar& s) {
  if (s.kind < TSR_SCALAR_BOOL || s.kind > TSR_SCALAR_FLOAT)
    fail(TSR_ERR_TYPE, prefix(op) + "unknown scalar kind " + std::to_string(s.kind));
}

// A given output (out=, in-place) must have the result's shape, accept its dtype and not
// write one element twice.
void check_out(int32_t op, const TensorImpl& out, const int64_t* sizes, int32_t ndim, int32_t dtype,
               TensorImpl* const* in, int32_t n) {
  if (out.ndim_ != ndim || !std::equal(sizes, sizes + ndim, out.sizes_))
    op_fail(TSR_ERR_INVALID_ARGUMENT, op,
            "output has shape " + shape_str(out.sizes_, out.ndim_) + " but the result has shape " +
                shape_str(sizes, ndim),
            in, n);
  if (!can_cast(dtype, out.dtype_))
    op_fail(TSR_ERR_TYPE, op, "result type " + dtype_str(dtype) + " can't be cast to the output's dtype " +
                                  dtype_str(out.dtype_), in, n);
  if (out.numel() == 0) return;  // nothing is written, so nothing is written twice
  for (int32_t i = 0; i < ndim; ++i)
    if (out.strides_[i] == 0 && out.sizes_[i] > 1)
      op_fail(TSR_ERR_INVALID_ARGUMENT, op,
              "output " + shape_str(out.sizes_, out.ndim_) + " with strides " + shape_str(out.strides_, out.ndim_) +
                  " has elements that share memory",
              in, n);
}

// Whether writing into `out` directly could clobber an input it does not alias exactly.
bool overlaps(const TensorImpl& out, TensorImpl* const* in, int32_t n, bool exact_ok) {
  for (int32_t i = 0; i < n; ++i) {
    const TensorImpl& x = *in[i];
    if (x.storage_ != out.storage_) continue;
    bool exact = x.offset_ == out.offset_ && x.ndim_ == out.ndim_ && x.dtype_ == out.dtype_ &&
                 std::equal(x.sizes_, x.sizes_ + x.ndim_, out.sizes_) &&
                 std::equal(x.strides_, x.strides_ + x.ndim_, out.strides_);
    if (!exact_ok || !exact) return true;
  }
  return false;
}

// The tensor a kernel writes: the given output when it can take the result directly, else a
// fresh contiguous tensor (copied into the given output by finish_out).
Tensor target(int32_t op, TensorImpl* given, const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice dev,
              TensorImpl* const* in, int32_t n, bool direct_ok) {
  if (given) {
    check_out(op, *given, sizes, ndim, dtype, in, n);
    if (direct_ok && given->dtype_ == dtype) return Tensor::retain(given);
  }
  return empty(sizes, ndim, dtype, dev, kOpInfo[op].name);
}

void finish_out(TensorImpl* given, Tensor& result, TensorImpl** slot) {
  if (!given) {
    *slot = result.release();
    return;
  }
  if (result.get() != given) copy_kernel(*given, *result);
  given->storage_->bump_version();
}

void expect_inputs(int32_t op, int32_t got, int32_t want, const char* what) {
  if (got != want)
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects " + std::to_string(want) + " tensor input(s)" + what +
                                       ", got " + std::to_string(got));
}

namespace {

// PyTorch's checked conversion of a fill value or clamp bound: it must be representable in the
// dtype (300 into uint8, NaN into int32 or 1e6 into float16 is an error, not a silent wrap;
// like PyTorch, an integer down to -255 may wrap into uint8).
void check_fits(int32_t op, const TsrScalar& s, int32_t dtype) {
  if (dtype == TSR_BOOL) return;
  const bool is_int = s.kind != TSR_SCALAR_FLOAT;
  const double v = is_int ? static_cast<double>(s.v.i) : s.v.f;
  bool ok = true;
  switch (dtype) {
    case TSR_UINT8: ok = v >= (is_int ? -255 : 0) && v <= 255; break;  // -3 wraps to 253
    case TSR_INT32: ok = v >= INT32_MIN && v <= INT32_MAX; break;
    case TSR_INT64: ok = is_int || (v >= -0x1p63 && v < 0x1p63); break;
    case TSR_FLOAT16: ok = !std::isfinite(v) || std::fabs(v) <= 65504.0; break;
    case TSR_BFLOAT16:
    case TSR_FLOAT32: ok = !std::isfinite(v) || std::fabs(v) <= 3.4028234663852886e38; break;
    default: break;
  }
  if (!ok)
    fail(TSR_ERR_RUNTIME, prefix(op) + "value " + (is_int ? std::to_string(s.v.i) : std::to_string(s.v.f)) +
                              " cannot be converted to dtype " + dtype_str(dtype) + " without overflow");
}

// ---- UNARY, BINARY, COMPARE, WHERE, CLAMP ----------------------------------------------

void elementwise(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  const OpInfo& info = kOpInfo[op];
  const OpKind kind = info.kind;
  const bool where = kind == OpKind::WHERE;
  bool has_scalar = false;
  int32_t want = 1;
  if (kind == OpKind::BINARY || kind == OpKind::COMPARE || where) {
    int32_t lo = where ? 1 : 0, hi = where ? 2 : 1;
    has_scalar = attrs.scalar_arg >= 0;
    if (has_scalar && (attrs.scalar_arg < lo || attrs.scalar_arg > hi))
      fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "scalar_arg " + std::to_string(attrs.scalar_arg) +
                                         " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    want = (where ? 3 : 2) - has_scalar;
  }
  expect_inputs(op, nin, want, has_scalar ? " besides the scalar" : "");
  TensorImpl* given = outs[0];
  check_devices(op, in, nin, given);
  const TsrDevice dev = in[0]->device_;

  // Compute dtype: PyTorch's result_type over the operands (WHERE's cond excluded).
  ResultType rt;
  for (int32_t i = where ? 1 : 0; i < nin; ++i) rt.add_tensor(in[i]->dtype_, in[i]->ndim_);
  if (has_scalar) {
    check_scalar(op, attrs.scalar);
    rt.add_scalar(attrs.scalar);
  }
  if (kind == OpKind::CLAMP) {
    if (!attrs.has_scalar && !attrs.has_scalar2)
      op_fail(TSR_ERR_INVALID_ARGUMENT, op, "at least one of min and max must be given", in, nin);
    if (attrs.has_scalar) check_scalar(op, attrs.scalar), rt.add_scalar(attrs.scalar);
    if (attrs.has_scalar2) check_scalar(op, attrs.scalar2), rt.add_scalar(attrs.scalar2);
  }
  int32_t compute = rt.result();
  if (info.types == OpTypes::FLOAT) compute = to_floating(compute);
  if (kind == OpKind::CLAMP) {
    if (attrs.has_scalar) check_fits(op, attrs.scalar, compute);
    if (attrs.has_scalar2) check_fits(op, attrs.scalar2, compute);
  }
  // Checked before the exponent wraps into the compute dtype (uint8: -3 becomes 253).
  if (op == kOp_pow && attrs.scalar_arg == 1 && !is_floating(compute) && attrs.scalar.kind == TSR_SCALAR_INT &&
      attrs.scalar.v.i < 0)
    op_fail(TSR_ERR_RUNTIME, op, "Integers to negative integer powers are not allowed", in, nin);
  if (info.types == OpTypes::NUM && compute == TSR_BOOL)
    op_fail(TSR_ERR_TYPE, op, "not supported for dtype bool", in, nin);
  if (where && in[0]->dtype_ != TSR_BOOL)
    op_fail(TSR_ERR_TYPE, op, "condition must be bool, got " + dtype_str(in[0]->dtype_), in, nin);
  const int32_t out_dtype = kind == OpKind::COMPARE ? TSR_BOOL : compute;
  const KernelSlot& slot = resolve(op, dev, compute);

  int64_t sizes[TSR_MAX_DIMS];
  int32_t ndim = in[0]->ndim_;
  std::memcpy(sizes, in[0]->sizes_, sizeof(int64_t) * ndim);
  for (int32_t i = 1; i < nin; ++i)
    if ((in[i]->ndim_ != ndim || !std::equal(sizes, sizes + ndim, in[i]->sizes_)) &&
        !broadcast_shape(sizes, ndim, in[i]->sizes_, in[i]->ndim_, sizes, &ndim))
      op_fail(TSR_ERR_INVALID_ARGUMENT, op, "shapes cannot be broadcast together", in, nin);

  // The kernel's attrs: scalars converted to the compute dtype.
  TsrAttrs copy;
  const TsrAttrs* k = is_floating(compute) ? &kDefaultAttrsFloat : &kDefaultAttrsInt;
  if (&attrs != &kDefaultAttrs) {
    copy = attrs;
    k = &copy;
    if (op == kOp_add || op == kOp_sub) {
      check_scalar(op, attrs.alpha);
      if (!is_floating(compute) && attrs.alpha.kind == TSR_SCALAR_FLOAT)
        op_fail(TSR_ERR_TYPE, op, "alpha must not be a floating point number for integral inputs", in, nin);
      copy.alpha = scalar_to(attrs.alpha, compute);
    }
    if (has_scalar || (kind == OpKind::CLAMP && attrs.has_scalar)) copy.scalar = scalar_to(attrs.scalar, compute);
    if (kind == OpKind::CLAMP && attrs.has_scalar2) copy.scalar2 = scalar_to(attrs.scalar2, compute);
  }

  Tensor keep[3];
  TensorImpl* x[3];
  for (int32_t i = 0; i < nin; ++i) x[i] = where && i == 0 ? in[0] : as_dtype(in[i], compute, keep[i]);
  Tensor out = target(op, given, sizes, ndim, out_dtype, dev, in, nin, !given || !overlaps(*given, x, nin, true));
  if (out->numel() > 0) {
    TsrTensorDesc o = desc(*out), d[3];
    for (int32_t i = 0; i < nin; ++i) broadcast_desc(d[i], *x[i], sizes, ndim);
    run(slot, op, &o, d, nin, *k);
  }
  finish_out(given, out, outs);
}

// ---- REDUCE ------------------------------------------------------------------------------

void reduce(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  expect_inputs(op, nin, 1, "");
  TensorImpl* given = outs[0];
  check_devices(op, in, 1, given);
  TensorImpl& x0 = *in[0];
  const OpInfo& info = kOpInfo[op];
  const bool arg = op == kOp_argmax || op == kOp_argmin;

  // A 0-D input reduces as a 1-D tensor of one element.
  const int32_t kdim = std::max<int32_t>(x0.ndim_, 1);
  bool reduced[TSR_MAX_DIMS] = {};
  if (attrs.ndims < 0)
    op_fail(TSR_ERR_INVALID_ARGUMENT, op, "ndims " + std::to_string(attrs.ndims) + " is negative", in, 1);
  if (arg ? attrs.has_dim != 0 : attrs.ndims > 0) {
    int32_t n = arg ? 1 : attrs.ndims;
    check_ndim(n, info.name);
    for (int32_t i = 0; i < n; ++i) {
      int64_t d = wrap_dim(arg ? attrs.dim : attrs.dims[i], x0.ndim_, info.name, x0);
      if (reduced[d])
        op_fail(TSR_ERR_INVALID_ARGUMENT, op, "dim " + std::to_string(d) + " appears more than once in " +
                                                  shape_str(attrs.dims, n), in, 1);
      reduced[d] = true;
    }
  } else {
    std::fill(reduced, reduced + kdim, true);
  }

  if (info.types == OpTypes::NUM && x0.dtype_ == TSR_BOOL)
    op_fail(TSR_ERR_TYPE, op, "not supported for dtype bool", in, 1);
  const int32_t in_dtype = info.types == OpTypes::FLOAT ? to_floating(x0.dtype_) : x0.dtype_;
  const int32_t out_dtype =
      arg ? TSR_INT64 : (op == kOp_sum || op == kOp_prod) && !is_floating(in_dtype) ? TSR_INT64 : in_dtype;

  // Kernel geometry (keepdim form) and the result's shape.
  int64_t in_sizes[TSR_MAX_DIMS], in_strides[TSR_MAX_DIMS], keep_sizes[TSR_MAX_DIMS], sizes[TSR_MAX_DIMS];
  int32_t ndim = 0;
  TsrAttrs k = attrs;
  k.ndims = 0;
  for (int32_t i = 0; i < kdim; ++i) {
    in_sizes[i] = x0.ndim_ ? x0.sizes_[i] : 1;
    in_strides[i] = x0.ndim_ ? x0.strides_[i] : 1;
    keep_sizes[i] = reduced[i] ? 1 : in_sizes[i];
    if (reduced[i]) k.dims[k.ndims++] = i;
    if (x0.ndim_ > 0 && (attrs.keepdim || !reduced[i])) sizes[ndim++] = keep_sizes[i];
  }

  Tensor out = target(op, given, sizes, ndim, out_dtype, x0.device_, in, 1,
                      !given || given->storage_ != x0.storage_);
  if (out->numel() > 0) {
    if (x0.numel() == 0) {
      if (op == kOp_sum || op == kOp_prod)
        fill_kernel(*out, tsr_scalar_int(op == kOp_sum ? 0 : 1));
      else if (info.types == OpTypes::FLOAT)
        fill_kernel(*out, tsr_scalar_float(std::numeric_limits<double>::quiet_NaN()));
      else
        op_fail(TSR_ERR_INVALID_ARGUMENT, op,
                "cannot reduce over a zero-size dim (dims " + shape_str(k.dims, k.ndims) + ")", in, 1);
    } else {
      const KernelSlot& slot = resolve(op, x0.device_, in_dtype);
      Tensor keep;
      TensorImpl* x = as_dtype(&x0, in_dtype, keep);
      TsrTensorDesc d = desc(*x), o = desc(*out);
      d.ndim = o.ndim = kdim;
      std::memcpy(d.sizes, in_sizes, sizeof(int64_t) * kdim);
      if (x == &x0) std::memcpy(d.strides, in_strides, sizeof(int64_t) * kdim);
      else contiguous_strides(in_sizes, kdim, d.strides);
      for (int32_t i = 0, j = 0; i < kdim; ++i) {
        o.sizes[i] = keep_sizes[i];
        bool listed = x0.ndim_ > 0 && (attrs.keepdim || !reduced[i]);
        o.strides[i] = listed ? out->strides_[j++] : 0;
      }
      run(slot, op, &o, &d, 1, k);
    }
  }
  finish_out(given, out, outs);
}

// ---- SOFTMAX -----------------------------------------------------------------------------

void softmax(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  expect_inputs(op, nin, 1, "");
  TensorImpl* given = outs[0];
  check_devices(op, in, 1, given);
  TensorImpl& x0 = *in[0];
  TsrAttrs k = attrs;
  k.dim = wrap_dim(attrs.dim, x0.ndim_, kOpInfo[op].name, x0);
  const int32_t dtype = to_floating(x0.dtype_);
  const KernelSlot& slot = resolve(op, x0.device_, dtype);
  Tensor keep;
  TensorImpl* x = as_dtype(&x0, dtype, keep);
  Tensor out = target(op, given, x0.sizes_, x0.ndim_, dtype, x0.device_, in, 1,
                      !given || given->storage_ != x0.storage_);
  if (out->numel() > 0) {
    TsrTensorDesc d = desc(*x), o = desc(*out);
    if (x0.ndim_ == 0) d.ndim = o.ndim = 1, d.sizes[0] = o.sizes[0] = 1, d.strides[0] = o.strides[0] = 1;
    run(slot, op, &o, &d, 1, k);
  }
  finish_out(given, out, outs);
}

// ---- MATMUL ------------------------------------------------------------------------------

// t as a (..., rows, cols) operand of a batched matmul with the given batch sizes. A 1-D a
// is a (1, K) row, a 1-D b a (K, 1) column.
TsrTensorDesc matmul_desc(const TensorImpl& t, bool is_a, const int64_t* batch, int32_t nbatch) {
  TsrTensorDesc d = desc(t);
  d.ndim = nbatch + 2;
  int64_t* ms = d.sizes + nbatch;
  int64_t* mt = d.strides + nbatch;
  if (t.ndim_ == 1) {
    int64_t n = t.sizes_[0], s = t.strides_[0];
    ms[0] = is_a ? 1 : n, ms[1] = is_a ? n : 1;
    mt[0] = is_a ? n * s : s, mt[1] = is_a ? s : 1;
  } else {
    ms[0] = t.sizes_[t.ndim_ - 2], ms[1] = t.sizes_[t.ndim_ - 1];
    mt[0] = t.strides_[t.ndim_ - 2], mt[1] = t.strides_[t.ndim_ - 1];
  }
  int32_t tb = std::max(t.ndim_ - 2, 0), lead = nbatch - tb;
  for (int32_t i = 0; i < nbatch; ++i) {
    int32_t j = i - lead;
    d.sizes[i] = batch[i];
    d.strides[i] = j >= 0 && t.sizes_[j] == batch[i] ? t.strides_[j] : 0;
  }
  return d;
}

void matmul(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs&, TensorImpl** outs) {
  expect_inputs(op, nin, 2, "");
  TensorImpl* given = outs[0];
  check_devices(op, in, 2, given);
  TensorImpl &a0 = *in[0], &b0 = *in[1];
  if (a0.ndim_ == 0 || b0.ndim_ == 0)
    op_fail(TSR_ERR_INVALID_ARGUMENT, op, "both arguments need at least 1 dim", in, 2);
  ResultType rt;
  rt.add_tensor(a0.dtype_, a0.ndim_);
  rt.add_tensor(b0.dtype_, b0.ndim_);
  const int32_t dtype = rt.result();
  if (dtype == TSR_BOOL) op_fail(TSR_ERR_TYPE, op, "not supported for dtype bool", in, 2);
  const int64_t m = a0.ndim_ > 1 ? a0.sizes_[a0.ndim_ - 2] : 1, ka = a0.sizes_[a0.ndim_ - 1];
  const int64_t kb = b0.ndim_ > 1 ? b0.sizes_[b0.ndim_ - 2] : b0.sizes_[0], n = b0.ndim_ > 1 ? b0.sizes_[b0.ndim_ - 1] : 1;
  if (ka != kb)
    op_fail(TSR_ERR_INVALID_ARGUMENT, op,
            "shapes cannot be multiplied (inner dims " + std::to_string(ka) + " != " + std::to_string(kb) + ")", in,
            2);
  int64_t batch[TSR_MAX_DIMS];
  int32_t nbatch = 0;
  if (!broadcast_shape(a0.sizes_, std::max(a0.ndim_ - 2, 0), b0.sizes_, std::max(b0.ndim_ - 2, 0), batch, &nbatch))
    op_fail(TSR_ERR_INVALID_ARGUMENT, op, "batch dims cannot be broadcast together", in, 2);
  int64_t sizes[TSR_MAX_DIMS], ksizes[TSR_MAX_DIMS], kstrides[TSR_MAX_DIMS];
  int32_t ndim = nbatch;
  std::copy(batch, batch + nbatch, sizes);
  if (a0.ndim_ > 1) sizes[ndim++] = m;
  if (b0.ndim_ > 1) sizes[ndim++] = n;
  const KernelSlot& slot = resolve(op, a0.device_, dtype);
  Tensor keep_a, keep_b;
  TensorImpl* x[2] = {as_dtype(&a0, dtype, keep_a), as_dtype(&b0, dtype, keep_b)};
  bool direct = !given || (given->is_contiguous() && !overlaps(*given, in, 2, false));
  Tensor out = target(op, given, sizes, ndim, dtype, a0.device_, in, 2, direct);
  if (out->numel() == 0) {
  } else if (ka == 0) {
    fill_kernel(*out, tsr_scalar_int(0));
  } else {
    std::copy(batch, batch + nbatch, ksizes);
    ksizes[nbatch] = m, ksizes[nbatch + 1] = n;
    TsrTensorDesc o = desc(*out), d[2] = {matmul_desc(*x[0], true, batch, nbatch),
                                          matmul_desc(*x[1], false, batch, nbatch)};
    o.ndim = nbatch + 2;
    contiguous_strides(ksizes, o.ndim, kstrides);
    std::memcpy(o.sizes, ksizes, sizeof(int64_t) * o.ndim);
    std::memcpy(o.strides, kstrides, sizeof(int64_t) * o.ndim);
    run(slot, op, &o, d, 2, kDefaultAttrs);
  }
  finish_out(given, out, outs);
}

// ---- factories and in-place fills: FILL, ARANGE, RANDOM ------------------------------

// The output of a factory-like op: the given tensor, or a new one from attrs.shape/dtype/device.
Tensor factory_out(int32_t op, TensorImpl* given, const TsrAttrs& attrs, int32_t default_dtype) {
  if (given) return Tensor::retain(given);
  check_ndim(attrs.nshape, kOpInfo[op].name);
  return empty(attrs.shape, attrs.nshape, attrs.dtype >= 0 ? attrs.dtype : default_dtype, attrs.device,
               kOpInfo[op].name);
}

void fill(int32_t op, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  expect_inputs(op, nin, 0, "");
  check_scalar(op, attrs.scalar);
  Tensor out = factory_out(op, outs[0], attrs, scalar_dtype(attrs.scalar));
  check_fits(op, attrs.scalar, out->dtype_);
  fill_kernel(*out, attrs.scalar);
  finish_out(outs[0], out, outs);
}

void arange(int32_t op, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  expect_inputs(op, nin, 0, "");
  const TsrScalar &start = attrs.scalar, &end = attrs.scalar2, &step = attrs.scalar3;
  for (const TsrScalar* s : {&start, &end, &step}) check_scalar(op, *s);
  bool ints = start.kind != TSR_SCALAR_FLOAT && end.kind != TSR_SCALAR_FLOAT && step.kind != TSR_SCALAR_FLOAT;
  int32_t dtype = attrs.dtype >= 0 ? attrs.dtype : ints ? TSR_INT64 : TSR_FLOAT32;
  if (!dtype_valid(dtype)) fail(TSR_ERR_TYPE, prefix(op) + "unknown dtype " + std::to_string(dtype));
  double s0 = scalar_as_double(start), s1 = scalar_as_double(end), st = scalar_as_double(step);
  std::string range = "(start " + std::to_string(s0) + ", end " + std::to_string(s1) + ", step " +
                      std::to_string(st) + ")";
  if (st == 0 || !std::isfinite(s0) || !std::isfinite(s1) || (s1 - s0) / st < 0)
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "the range is empty or infinite for its step " + range);
  if ((s1 - s0) / st > 0x1p62) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "the range is too large " + range);
  __int128 span = static_cast<__int128>(end.v.i) - start.v.i;  // ints: exact ceil division
  int64_t n = ints ? static_cast<int64_t>((span + step.v.i + (step.v.i > 0 ? -1 : 1)) / step.v.i)
                   : static_cast<int64_t>(std::ceil((s1 - s0) / st));
  TensorImpl* given = outs[0];
  Tensor out;
  if (given) {
    check_out(op, *given, &n, 1, dtype, nullptr, 0);
    out = Tensor::retain(given);
  } else {
    out = empty(&n, 1, dtype, attrs.device, "arange");
  }
  const KernelSlot& slot = resolve(op, out->device_, out->dtype_);
  if (n > 0) {
    TsrAttrs k = attrs;
    k.scalar = scalar_to(start, out->dtype_);
    k.scalar2 = scalar_to(end, out->dtype_);
    k.scalar3 = scalar_to(step, out->dtype_);
    Tensor dst = out->is_contiguous() ? out : empty(&n, 1, out->dtype_, out->device_, "arange");
    TsrTensorDesc o = desc(*dst);
    run(slot, op, &o, nullptr, 0, k);
    if (dst.get() != out.get()) copy_kernel(*out, *dst);
  }
  finish_out(given, out, outs);
}

void random(int32_t op, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  expect_inputs(op, nin, 0, "");
  check_scalar(op, attrs.scalar);
  check_scalar(op, attrs.scalar2);
  Tensor out = factory_out(op, outs[0], attrs, TSR_FLOAT32);
  TensorImpl* self = out.get();
  if (op != kOp_bernoulli && !is_floating(out->dtype_))
    op_fail(TSR_ERR_TYPE, op, "expects a floating point tensor", &self, 1);
  double p0 = scalar_as_double(attrs.scalar), p1 = scalar_as_double(attrs.scalar2);
  bool ok = op == kOp_uniform ? p0 <= p1 : op == kOp_normal ? p1 >= 0 : p0 >= 0 && p0 <= 1;
  if (!ok)
    op_fail(TSR_ERR_INVALID_ARGUMENT, op,
            "invalid parameters (" + std::to_string(p0) + ", " + std::to_string(p1) + ")", &self, 1);
  for (int32_t i = 0; i < out->ndim_; ++i)
    if (out->strides_[i] == 0 && out->sizes_[i] > 1)
      op_fail(TSR_ERR_INVALID_ARGUMENT, op, "output has elements that share memory", &self, 1);
  const KernelSlot& slot = resolve(op, out->device_, out->dtype_);
  if (int64_t numel = out->numel(); numel > 0) {
    TsrAttrs k = attrs;
    k.scalar = tsr_scalar_float(p0);  // probabilities and bounds stay doubles
    k.scalar2 = tsr_scalar_float(p1);
    const uint64_t per = op == kOp_normal ? 2 : 4;
    generator_take(out->device_, (static_cast<uint64_t>(numel) + per - 1) / per, &k.seed, &k.offset);
    TsrTensorDesc o = desc(*out);
    run(slot, op, &o, nullptr, 0, k);
  }
  finish_out(outs[0], out, outs);
}

// ---- COPY --------------------------------------------------------------------------------

// dst[...] = src: src broadcast to dst's shape, converted to its dtype, moved from any device.
void copy_into(TensorImpl& dst, TensorImpl& src0) {
  TensorImpl* in[1] = {&src0};
  int64_t sizes[TSR_MAX_DIMS];
  int32_t ndim = 0;
  if (!broadcast_shape(src0.sizes_, src0.ndim_, dst.sizes_, dst.ndim_, sizes, &ndim) || ndim != dst.ndim_ ||
      !std::equal(sizes, sizes + ndim, dst.sizes_))
    op_fail(TSR_ERR_INVALID_ARGUMENT, kOp_copy,
            "source cannot be broadcast to the destination's shape " + shape_str(dst.sizes_, dst.ndim_), in, 1);
  check_out(kOp_copy, dst, dst.sizes_, dst.ndim_, dst.dtype_, in, 1);
  Tensor src = Tensor::retain(&src0);
  if (!(src->device_ == dst.device_)) {
    // Convert and compact on the source's device, then move contiguous bytes: straight into
    // dst when it is contiguous with src's shape, else into a staging tensor on dst's device.
    TsrAttrs a = kDefaultAttrs;
    a.dtype = dst.dtype_;
    if (src->dtype_ != dst.dtype_ || !src->is_contiguous()) src = call1(kOp_copy, in, 1, a);
    size_t nbytes = static_cast<size_t>(src->numel()) * itemsize(src->dtype_);
    if (dst.is_contiguous() && src->ndim_ == dst.ndim_ && std::equal(dst.sizes_, dst.sizes_ + dst.ndim_, src->sizes_)) {
      copy_bytes(dst.data(), dst.device_, src->data(), src->device_, nbytes, "copy");
      dst.storage_->bump_version();
      return;
    }
    Tensor moved = empty(src->sizes_, src->ndim_, src->dtype_, dst.device_, "copy");
    copy_bytes(moved->data(), dst.device_, src->data(), src->device_, nbytes, "copy");
    src = moved;
  } else if (src->storage_ == dst.storage_) {
    src = clone(*src);  // possible overlap: read everything before writing
  }
  copy_kernel(dst, *src);
  dst.storage_->bump_version();
}

void copy(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs) {
  expect_inputs(op, nin, 1, "");
  if (outs[0]) {
    copy_into(*outs[0], *in[0]);
    return;
  }
  int32_t dtype = attrs.dtype >= 0 ? attrs.dtype : in[0]->dtype_;
  if (!dtype_valid(dtype)) fail(TSR_ERR_TYPE, prefix(op) + "unknown dtype " + std::to_string(dtype));
  Tensor out = empty(in[0]->sizes_, in[0]->ndim_, dtype, in[0]->device_, "copy");
  copy_kernel(*out, *in[0]);
  outs[0] = out.release();
}

// ---- dispatch ----------------------------------------------------------------------------

void dispatch(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs,
              int32_t nout) {
  switch (kOpInfo[op].kind) {
    case OpKind::UNARY:
    case OpKind::BINARY:
    case OpKind::COMPARE:
    case OpKind::WHERE:
    case OpKind::CLAMP: return elementwise(op, in, nin, attrs, outs);
    case OpKind::COPY: return copy(op, in, nin, attrs, outs);
    case OpKind::FILL: return fill(op, nin, attrs, outs);
    case OpKind::ARANGE: return arange(op, nin, attrs, outs);
    case OpKind::REDUCE: return reduce(op, in, nin, attrs, outs);
    case OpKind::SOFTMAX: return softmax(op, in, nin, attrs, outs);
    case OpKind::MATMUL: return matmul(op, in, nin, attrs, outs);
    case OpKind::RANDOM: return random(op, nin, attrs, outs);
    case OpKind::VIEW:
      expect_inputs(op, nin, 1, "");
      if (outs[0]) fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "returns a new view; its output must be NULL");
      outs[0] = view_op(op, *in[0], attrs).release();
      return;
    case OpKind::CONV: return conv(op, in, nin, attrs, outs);
    case OpKind::POOL: return pool(op, in, nin, attrs, outs);
    case OpKind::OPTIM: return optim(op, in, nin, attrs, outs);
    case OpKind::NN:
    case OpKind::INDEX:
    case OpKind::SAMPLE:
    case OpKind::FOREACH:
    case OpKind::COMPOSITE: return transformer_op(op, in, nin, attrs, outs, nout);
  }
}

// Runs op on CPU copies of its inputs and copies the results back (fallback "cpu").
void run_on_cpu(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs,
                int32_t nout) {
  TsrDevice dev = nin > 0 ? in[0]->device_ : outs[0] ? outs[0]->device_ : attrs.device;
  warn_cpu_fallback(op, dev);
  struct Reset {
    ~Reset() { t_in_fallback = false; }
  } reset;
  t_in_fallback = true;
  std::vector<Tensor> keep(nin), shadow(nout);
  std::vector<TensorImpl*> cin(nin), cout(nout);
  for (int32_t i = 0; i < nin; ++i) {
    keep[i] = to(*in[i], kCpu, -1);
    cin[i] = keep[i].get();
  }
  TsrAttrs a = attrs;
  a.device = kCpu;
  for (int32_t i = 0; i < nout; ++i)  // the given outputs' CPU stand-ins
    if (outs[i]) {
      shadow[i] = empty(outs[i]->sizes_, outs[i]->ndim_, outs[i]->dtype_, kCpu, kOpInfo[op].name);
      if (kOpInfo[op].kind == OpKind::FOREACH) copy_into(*shadow[i], *outs[i]);  // scaled in place
      cout[i] = shadow[i].get();
    }
  dispatch(op, cin.data(), nin, a, cout.data(), nout);
  for (int32_t i = 0; i < nout; ++i) {
    if (outs[i]) {
      copy_into(*outs[i], *shadow[i]);
    } else {
      Tensor result(cout[i]);
      outs[i] = to(*result, dev, -1).release();
    }
  }
}

}  // namespace

const TsrAttrs& default_attrs() { return kDefaultAttrs; }

bool broadcast_shape(const int64_t* a, int32_t na, const int64_t* b, int32_t nb, int64_t* out, int32_t* nout) {
  int32_t n = std::max(na, nb);
  int64_t r[TSR_MAX_DIMS];
  for (int32_t i = 0; i < n; ++i) {
    int64_t x = i < n - na ? 1 : a[i - (n - na)];
    int64_t y = i < n - nb ? 1 : b[i - (n - nb)];
    if (x != y && x != 1 && y != 1) return false;
    r[i] = x == 1 ? y : x;
  }
  std::copy(r, r + n, out);
  *nout = n;
  return true;
}

// Ops with several outputs, and cat (any number of inputs). The outputs the caller did not ask
// for (layer_norm's statistics, attention's log-sum-exp) are made anyway, kept by autograd's
// node when its rule reads them, and dropped here.
void call_multi(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs,
                TensorImpl** outputs, int32_t num_outputs, int32_t natural) {
  bool tracked = false;
  for (int32_t i = 0; i < num_inputs; ++i) {
    if (!inputs[i]) fail(TSR_ERR_NULL_POINTER, prefix(op) + "input " + std::to_string(i) + " is NULL");
    tracked |= inputs[i]->autograd_ != nullptr;
  }
  if (op == kOp_cat && num_inputs > 3 && tracked && autograd::grad_enabled()) {
    // A node has three input edges: concatenate groups of three, then the groups.
    std::vector<Tensor> parts;
    for (int32_t i = 0; i < num_inputs; i += 3) parts.push_back(call1(kOp_cat, inputs + i, std::min(3, num_inputs - i), attrs));
    std::vector<TensorImpl*> p;
    for (Tensor& t : parts) p.push_back(t.get());
    return call(op, p.data(), static_cast<int32_t>(p.size()), attrs, outputs, num_outputs);
  }
  TensorImpl* small[4] = {};
  std::vector<TensorImpl*> big;
  TensorImpl** all = small;
  if (natural > 4) {
    big.assign(natural, nullptr);
    all = big.data();
  }
  std::copy(outputs, outputs + num_outputs, all);
  if (tracked && kOpInfo[op].differentiable)
    autograd::record_call(op, inputs, num_inputs, attrs, all, natural);
  else
    call_untracked(op, inputs, num_inputs, attrs, all, natural);
  std::copy(all, all + num_outputs, outputs);
  for (int32_t i = num_outputs; i < natural; ++i) Tensor drop(all[i]);
}

void call(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs, TensorImpl** outputs,
          int32_t num_outputs) {
  if (op < 0 || op >= kNumOps) fail(TSR_ERR_INVALID_ARGUMENT, "[tsr_call] unknown op id " + std::to_string(op));
  if (num_inputs < 0 || num_inputs > max_inputs(op))
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "invalid number of inputs " + std::to_string(num_inputs));
  if (!outputs && num_outputs > 0) fail(TSR_ERR_NULL_POINTER, prefix(op) + "outputs is NULL");
  const int32_t natural = num_outputs >= 1 ? natural_outputs(op, num_inputs, num_outputs) : 0;
  if (num_outputs < 1 || num_outputs > natural)
    fail(TSR_ERR_INVALID_ARGUMENT, prefix(op) + "expects " + (natural > 1 ? "1 to " + std::to_string(natural) : "1") +
                                       " outputs, got " + std::to_string(num_outputs));
  if (natural > 1 || kOpInfo[op].kind == OpKind::COMPOSITE) [[unlikely]]
    return call_multi(op, inputs, num_inputs, attrs, outputs, num_outputs, natural);
  // Autograd sees the call only when a tensor carries autograd metadata: pointer checks here.
  bool tracked = outputs[0] && outputs[0]->autograd_;
  for (int32_t i = 0; i < num_inputs; ++i) {
    if (!inputs[i]) fail(TSR_ERR_NULL_POINTER, prefix(op) + "input " + std::to_string(i) + " is NULL");
    tracked |= inputs[i]->autograd_ != nullptr;
  }
  if (tracked) [[unlikely]]
    return autograd::record_call(op, inputs, num_inputs, attrs, outputs);
  call_untracked(op, inputs, num_inputs, attrs, outputs);
}

void call_untracked(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs,
                    TensorImpl** outputs, int32_t num_outputs) {
  const bool trace = g_trace_ops.load(std::memory_order_relaxed);
  const auto t0 = trace ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  note_stream_uses(inputs, num_inputs);
  note_stream_uses(outputs, num_outputs);
  try {
    dispatch(op, inputs, num_inputs, attrs, outputs, num_outputs);
  } catch (const CpuFallback&) {
    run_on_cpu(op, inputs, num_inputs, attrs, outputs, num_outputs);
  }
  if (trace) [[unlikely]] {
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    log().trace("[{}] on {} {} ({:.1f} us)", kOpInfo[op].name, device_str(outputs[0]->device_),
                num_inputs ? inputs_str(inputs, num_inputs) : "no inputs", us);
  }
}

Tensor call1(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs) {
  TensorImpl* out = nullptr;
  call(op, inputs, num_inputs, attrs, &out, 1);
  return Tensor(out);
}

void call_into(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs, TensorImpl* out) {
  call(op, inputs, num_inputs, attrs, &out, 1);
}

void copy_(TensorImpl& dst, TensorImpl& src) {
  TensorImpl* in[1] = {&src};
  call_into(kOp_copy, in, 1, kDefaultAttrs, &dst);
}

Tensor to(TensorImpl& t, TsrDevice device, int32_t dtype) {
  if (dtype < 0) dtype = t.dtype_;
  if (t.device_ == device && t.dtype_ == dtype) return Tensor::retain(&t);
  if (t.device_ == device) {
    TensorImpl* in[1] = {&t};
    TsrAttrs a = kDefaultAttrs;
    a.dtype = dtype;
    return call1(kOp_copy, in, 1, a);
  }
  Tensor out = empty(t.sizes_, t.ndim_, dtype, device, "to");
  copy_(*out, t);
  out->storage_->version_.store(0, std::memory_order_relaxed);  // fresh and unshared: not an in-place change
  return out;
}

Tensor contiguous(TensorImpl& t) { return t.is_contiguous() ? Tensor::retain(&t) : clone(t); }

Tensor clone(TensorImpl& t) {
  TensorImpl* in[1] = {&t};
  return call1(kOp_copy, in, 1, kDefaultAttrs);
}

Tensor full(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device, const TsrScalar& value) {
  check_ndim(ndim, "full");
  TsrAttrs a = kDefaultAttrs;
  a.scalar = value;
  a.nshape = ndim;
  std::copy(sizes, sizes + ndim, a.shape);
  a.dtype = dtype;
  a.device = device;
  return call1(kOp_fill, nullptr, 0, a);
}

void generator_take(TsrDevice dev, uint64_t count, uint64_t* seed, uint64_t* offset) {
  Generator& g = g_generators[dev.type];
  *seed = g.seed.load(std::memory_order_relaxed);
  *offset = g.offset.fetch_add(count, std::memory_order_relaxed);
}

void manual_seed(uint64_t seed) {
  for (Generator& g : g_generators) {
    g.seed.store(seed, std::memory_order_relaxed);
    g.offset.store(0, std::memory_order_relaxed);
  }
}

}  // namespace tessera
