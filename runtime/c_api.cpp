// The host C ABI (tessera.h): argument checks, then the runtime's C++ functions, each call
// wrapped in guard() so that errors become a status plus tsr_last_error(). The typed per-op
// entry points are generated from ops.def, one definition macro per op kind.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

#include "autograd.h"
#include "dispatch.h"
#include "error.h"
#include "ops.h"
#include "registry.h"
#include "tessera/tessera.h"

using namespace tessera;

namespace {

// NULL_POINTER naming the C function and the argument.
void need(const void* p, const char* fn, const char* arg) {
  if (!p) fail(TSR_ERR_NULL_POINTER, std::string("[") + fn + "] argument '" + arg + "' is NULL");
}
#define TSR_NEED(arg) need(arg, fn, #arg)  // fn: the C function, captured from __func__

// Stores a new tensor into an out-parameter.
void give(Tensor t, TsrTensor* out) { *out = t.release(); }

// A view of t made by make(); when t carries autograd state the view is recorded as the
// VIEW op `op` with the attrs fill() writes (the view function has validated them).
template <class Make, class Fill>
void give_view(int32_t op, TsrTensor t, TsrTensor* out, Make make, Fill fill) {
  if (!t->autograd_) return give(make(), out);
  Tensor v;
  {
    autograd::NoGradGuard no_grad;  // a reshape that copies records nothing of its own
    v = make();
  }
  TsrAttrs a = default_attrs();
  fill(a);
  autograd::record_op(op, &t, 1, a, *v);
  give(std::move(v), out);
}

// Backward's roots: at least one, none NULL.
void need_roots(const TsrTensor* roots, int32_t num_roots, const char* fn) {
  if (num_roots < 1) fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + fn + "] needs at least one root");
  need(roots, fn, "roots");
  for (int32_t i = 0; i < num_roots; ++i)
    if (!roots[i]) fail(TSR_ERR_NULL_POINTER, std::string("[") + fn + "] roots[" + std::to_string(i) + "] is NULL");
}

void set_shape(TsrAttrs& a, const int64_t* sizes, int32_t ndim) {
  a.nshape = ndim;
  std::copy_n(sizes, ndim, a.shape);
}

// Calls op on inputs (named as in tessera.h for messages) into a new tensor *out.
void call_new(int32_t op, const char* fn, std::initializer_list<TsrTensor> in, const TsrAttrs& attrs,
              TsrTensor* out) {
  static constexpr const char* kNames[4][3] = {{}, {"x"}, {"a", "b"}, {"cond", "a", "b"}};
  const TsrTensor* t = in.begin();
  for (size_t i = 0; i < in.size(); ++i) need(t[i], fn, in.size() == 1 && attrs.scalar_arg >= 0 ? "a" : kNames[in.size()][i]);
  need(out, fn, "out");
  TensorImpl* o = nullptr;
  call(op, t, static_cast<int32_t>(in.size()), attrs, &o, 1);
  *out = o;
}

int32_t call_one(int32_t op, const char* fn, std::initializer_list<TsrTensor> in, const TsrAttrs& attrs,
                 TsrTensor* out) {
  return guard([&] { call_new(op, fn, in, attrs, out); });
}

int32_t call_in_place(int32_t op, const char* fn, TsrTensor dst, std::initializer_list<TsrTensor> in,
                      const TsrAttrs& attrs) {
  return guard([&] {
    need(dst, fn, in.size() ? "dst" : "t");
    for (TsrTensor t : in) need(t, fn, "src");
    call_into(op, in.begin(), static_cast<int32_t>(in.size()), attrs, dst);
  });
}

int32_t binary_scalar(int32_t op, const char* fn, TsrTensor a, TsrScalar b, TsrTensor* out) {
  TsrAttrs attrs = default_attrs();
  attrs.scalar = b;
  attrs.scalar_arg = 1;
  return call_one(op, fn, {a}, attrs, out);
}

int32_t clamp(int32_t op, const char* fn, TsrTensor x, const TsrScalar* min, const TsrScalar* max, TsrTensor* out) {
  TsrAttrs attrs = default_attrs();
  if (min) attrs.scalar = *min, attrs.has_scalar = 1;
  if (max) attrs.scalar2 = *max, attrs.has_scalar2 = 1;
  return call_one(op, fn, {x}, attrs, out);
}

int32_t arange(int32_t op, const char* fn, TsrScalar start, TsrScalar end, TsrScalar step, int32_t dtype,
               TsrDevice device, TsrTensor* out) {
  TsrAttrs attrs = default_attrs();
  attrs.scalar = start, attrs.scalar2 = end, attrs.scalar3 = step;
  attrs.dtype = dtype;
  attrs.device = device;
  return call_one(op, fn, {}, attrs, out);
}

int32_t reduce(int32_t op, const char* fn, TsrTensor x, const int64_t* dims, int32_t ndims, int32_t keepdim,
               TsrTensor* out) {
  return guard([&] {
    if (ndims > 0) need(dims, fn, "dims");
    check_ndim(ndims, fn);
    TsrAttrs attrs = default_attrs();
    attrs.keepdim = keepdim != 0;
    if (op == kOp_argmax || op == kOp_argmin) {
      if (ndims > 1)
        fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + kOpInfo[op].name + "] takes at most one dim, got " +
                                           shape_str(dims, ndims));
      attrs.has_dim = ndims == 1;
      if (ndims == 1) attrs.dim = dims[0];
    } else {
      attrs.ndims = ndims;
      std::copy(dims, dims + ndims, attrs.dims);
    }
    call_new(op, fn, {x}, attrs, out);
  });
}

int32_t softmax(int32_t op, const char* fn, TsrTensor x, int64_t dim, TsrTensor* out) {
  TsrAttrs attrs = default_attrs();
  attrs.dim = dim;
  return call_one(op, fn, {x}, attrs, out);
}

int32_t fill(int32_t op, const char* fn, TsrTensor t, TsrScalar value) {
  TsrAttrs attrs = default_attrs();
  attrs.scalar = value;
  return call_in_place(op, fn, t, {}, attrs);
}

int32_t random(int32_t op, const char* fn, TsrTensor t, TsrScalar p0, TsrScalar p1) {
  TsrAttrs attrs = default_attrs();
  attrs.scalar = p0, attrs.scalar2 = p1;
  return call_in_place(op, fn, t, {}, attrs);
}

}  // namespace

extern "C" {

// ---- runtime ---------------------------------------------------------------------------

int32_t tsr_abi_version(uint32_t* major, uint32_t* minor) {
  return guard([&, fn = __func__] {
    TSR_NEED(major);
    TSR_NEED(minor);
    *major = TSR_ABI_MAJOR;
    *minor = TSR_ABI_MINOR;
  });
}

int32_t tsr_init(const char* config_path) {
  return guard([&] {
    if (!registry().initialized) runtime_init(config_path);
  });
}

int32_t tsr_shutdown(void) { return guard([] { runtime_shutdown(); }); }

const char* tsr_last_error(void) { return last_error(); }

int32_t tsr_info_json(const char** out) {
  return guard([&, fn = __func__] {
    TSR_NEED(out);
    thread_local std::string text;
    text = info_json().dump();
    *out = text.c_str();
  });
}

// ---- dtypes, devices, attrs --------------------------------------------------------------

const char* tsr_dtype_name(int32_t dtype) { return dtype_name(dtype); }

int32_t tsr_dtype_parse(const char* name, int32_t* dtype) {
  return guard([&, fn = __func__] {
    TSR_NEED(name);
    TSR_NEED(dtype);
    int32_t dt = dtype_from_name(name);
    if (dt < 0)
      fail(TSR_ERR_TYPE, std::string("[tsr_dtype_parse] unknown dtype '") + name +
                             "' (expected bool, uint8, int32, int64, float16, bfloat16, float32 or float64)");
    *dtype = dt;
  });
}

int32_t tsr_dtype_itemsize(int32_t dtype, size_t* size) {
  return guard([&, fn = __func__] {
    TSR_NEED(size);
    if (!dtype_valid(dtype)) fail(TSR_ERR_TYPE, "[tsr_dtype_itemsize] unknown dtype " + std::to_string(dtype));
    *size = itemsize(dtype);
  });
}

int32_t tsr_device_parse(const char* text, TsrDevice* device) {
  return guard([&, fn = __func__] {
    TSR_NEED(text);
    TSR_NEED(device);
    std::string s = text, name = s.substr(0, s.find(':'));
    int64_t index = 0;
    if (name.size() < s.size()) {
      std::string digits = s.substr(name.size() + 1);
      bool ok = !digits.empty() && digits.size() < 10 && std::all_of(digits.begin(), digits.end(), ::isdigit);
      if (!ok) fail(TSR_ERR_INVALID_ARGUMENT, "[tsr_device_parse] invalid device '" + s + "' (expected e.g. cuda:0)");
      index = std::stoll(digits);
    }
    int32_t id = device_type_id(name.c_str());
    if (id < 0 && name == "cpu") id = TSR_DEVICE_CPU;  // fixed ids, even before their plugin loads
    if (id < 0 && name == "cuda") id = TSR_DEVICE_CUDA;
    if (id < 0) fail(TSR_ERR_INVALID_ARGUMENT, "[tsr_device_parse] unknown device type '" + name + "'");
    *device = TsrDevice{id, static_cast<int32_t>(index)};
  });
}

int32_t tsr_device_name(TsrDevice device, char* buf, size_t size) {
  return guard([&, fn = __func__] {
    TSR_NEED(buf);
    if (size > 0) std::snprintf(buf, size, "%s", device_str(device).c_str());
  });
}

int32_t tsr_device_count(const char* type_name, int32_t* count) {
  return guard([&, fn = __func__] {
    TSR_NEED(type_name);
    TSR_NEED(count);
    const DeviceType* dt = device_type(device_type_id(type_name));
    *count = dt ? dt->iface.device_count : 0;
  });
}

int32_t tsr_synchronize(TsrDevice device) {
  return guard([&] {
    const TsrDeviceInterface& iface = device_iface(device, "tsr_synchronize");
    if (!iface.synchronize) return;
    if (int32_t st = iface.synchronize(iface.ctx, device.index); st != TSR_OK)
      fail(st, "[tsr_synchronize] " + device_str(device) + ": " + last_error());
  });
}

void tsr_attrs_init(TsrAttrs* attrs) {
  if (attrs) *attrs = default_attrs();
}

// ---- tensors --------------------------------------------------------------------------

int32_t tsr_tensor_info(TsrTensor t, TsrTensorInfo* info) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(info);
    // Write no more than the caller's struct holds: a host built against an older, smaller
    // TsrTensorInfo gets the members it knows.
    const uint32_t caller_size = info->struct_size;
    if (caller_size < offsetof(TsrTensorInfo, sizes))
      fail(TSR_ERR_INVALID_ARGUMENT, "[tsr_tensor_info] info->struct_size is " + std::to_string(caller_size) +
                                         "; set it to sizeof(TsrTensorInfo) (" + std::to_string(sizeof *info) + ")");
    TsrTensorInfo full;
    std::memset(&full, 0, sizeof full);
    full.struct_size = std::min<uint32_t>(caller_size, sizeof full);
    full.dtype = t->dtype_;
    full.device = t->device_;
    full.ndim = t->ndim_;
    full.is_contiguous = t->is_contiguous();
    std::copy(t->sizes_, t->sizes_ + t->ndim_, full.sizes);
    std::copy(t->strides_, t->strides_ + t->ndim_, full.strides);
    full.storage_offset = t->offset_;
    full.numel = t->numel();
    full.data = t->data();
    full.version = t->version();
    std::memcpy(info, &full, full.struct_size);
  });
}

int32_t tsr_retain(TsrTensor t) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    t->retain();
  });
}

int32_t tsr_release(TsrTensor t) {
  if (t) t->release();
  return TSR_OK;
}

int32_t tsr_empty(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device, TsrTensor* out) {
  return guard([&, fn = __func__] {
    if (ndim > 0) TSR_NEED(sizes);
    TSR_NEED(out);
    give(empty(sizes, ndim, dtype, device), out);
  });
}

int32_t tsr_full(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device, TsrScalar value,
                 TsrTensor* out) {
  return guard([&, fn = __func__] {
    if (ndim > 0) TSR_NEED(sizes);
    TSR_NEED(out);
    give(full(sizes, ndim, dtype, device, value), out);
  });
}

int32_t tsr_from_buffer(const void* data, const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device,
                        TsrTensor* out) {
  return guard([&, fn = __func__] {
    if (ndim > 0) TSR_NEED(sizes);
    TSR_NEED(out);
    if (!data && (ndim == 0 || std::find(sizes, sizes + std::max(ndim, 0), 0) == sizes + std::max(ndim, 0)))
      TSR_NEED(data);  // NULL is fine only for no elements
    give(from_buffer(data, sizes, ndim, dtype, device), out);
  });
}

int32_t tsr_from_borrowed(void* data, const int64_t* sizes, const int64_t* strides, int32_t ndim, int32_t dtype,
                          TsrDevice device, void (*deleter)(void* ctx), void* ctx, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(data);
    if (ndim > 0) TSR_NEED(sizes);
    TSR_NEED(out);
    give(from_borrowed(data, sizes, strides, ndim, dtype, device, deleter, ctx), out);
  });
}

int32_t tsr_copy_to_host(TsrTensor t, void* dst, size_t nbytes) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    if (nbytes > 0) TSR_NEED(dst);
    size_t want = static_cast<size_t>(t->numel()) * itemsize(t->dtype_);
    if (nbytes != want)
      fail(TSR_ERR_INVALID_ARGUMENT, "[tsr_copy_to_host] buffer of " + std::to_string(nbytes) + " bytes for " +
                                         describe(*t) + ", which needs " + std::to_string(want));
    Tensor c = contiguous(*t);
    copy_bytes(dst, TsrDevice{TSR_DEVICE_CPU, 0}, c->data(), c->device_, want, "tsr_copy_to_host");
  });
}

int32_t tsr_to(TsrTensor t, TsrDevice device, int32_t dtype, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give(to(*t, device, dtype), out);
  });
}

int32_t tsr_contiguous(TsrTensor t, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give(contiguous(*t), out);
  });
}

int32_t tsr_clone(TsrTensor t, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give(clone(*t), out);
  });
}

int32_t tsr_manual_seed(uint64_t seed) {
  manual_seed(seed);
  return TSR_OK;
}

int32_t tsr_use_deterministic_algorithms(int32_t on) {
  set_deterministic(on != 0);
  return TSR_OK;
}

int32_t tsr_deterministic_algorithms_enabled(void) { return deterministic() ? 1 : 0; }

// ---- views ------------------------------------------------------------------------------

int32_t tsr_view(TsrTensor t, const int64_t* sizes, int32_t ndim, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    if (ndim > 0) TSR_NEED(sizes);
    TSR_NEED(out);
    give_view(kOp_view, t, out, [&] { return view(*t, sizes, ndim); }, [&](TsrAttrs& a) { set_shape(a, sizes, ndim); });
  });
}

int32_t tsr_reshape(TsrTensor t, const int64_t* sizes, int32_t ndim, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    if (ndim > 0) TSR_NEED(sizes);
    TSR_NEED(out);
    give_view(kOp_reshape, t, out, [&] { return reshape(*t, sizes, ndim); }, [&](TsrAttrs& a) { set_shape(a, sizes, ndim); });
  });
}

int32_t tsr_permute(TsrTensor t, const int64_t* dims, int32_t ndim, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    if (ndim > 0) TSR_NEED(dims);
    TSR_NEED(out);
    give_view(kOp_permute, t, out, [&] { return permute(*t, dims, ndim); }, [&](TsrAttrs& a) {
      a.ndims = ndim;
      std::copy_n(dims, ndim, a.dims);
    });
  });
}

int32_t tsr_transpose(TsrTensor t, int64_t dim0, int64_t dim1, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_transpose, t, out, [&] { return transpose(*t, dim0, dim1); }, [&](TsrAttrs& a) {
      a.dim = dim0;
      a.dim2 = dim1;
    });
  });
}

int32_t tsr_t(TsrTensor t, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_transpose, t, out, [&] { return t_(*t); }, [&](TsrAttrs& a) {
      a.dim = 0;
      a.dim2 = t->ndim_ == 2 ? 1 : 0;
    });
  });
}

int32_t tsr_slice(TsrTensor t, int64_t dim, int64_t start, int64_t end, int64_t step, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_slice, t, out, [&] { return slice(*t, dim, start, end, step); }, [&](TsrAttrs& a) {
      a.dim = dim;
      a.start = start, a.end = end, a.step = step;
    });
  });
}

int32_t tsr_narrow(TsrTensor t, int64_t dim, int64_t start, int64_t length, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_narrow, t, out, [&] { return narrow(*t, dim, start, length); }, [&](TsrAttrs& a) {
      a.dim = dim;
      a.start = start, a.end = length;
    });
  });
}

int32_t tsr_select(TsrTensor t, int64_t dim, int64_t index, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_select, t, out, [&] { return select(*t, dim, index); }, [&](TsrAttrs& a) {
      a.dim = dim;
      a.index = index;
    });
  });
}

int32_t tsr_expand(TsrTensor t, const int64_t* sizes, int32_t ndim, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    if (ndim > 0) TSR_NEED(sizes);
    TSR_NEED(out);
    give_view(kOp_expand, t, out, [&] { return expand(*t, sizes, ndim); }, [&](TsrAttrs& a) { set_shape(a, sizes, ndim); });
  });
}

int32_t tsr_squeeze(TsrTensor t, const int64_t* dims, int32_t ndims, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_squeeze, t, out, [&] { return squeeze(*t, dims, dims ? ndims : 0); }, [&](TsrAttrs& a) {
      a.ndims = dims ? ndims : 0;
      std::copy_n(dims, a.ndims, a.dims);
    });
  });
}

int32_t tsr_unsqueeze(TsrTensor t, int64_t dim, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_unsqueeze, t, out, [&] { return unsqueeze(*t, dim); }, [&](TsrAttrs& a) { a.dim = dim; });
  });
}

int32_t tsr_flatten(TsrTensor t, int64_t start_dim, int64_t end_dim, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give_view(kOp_flatten, t, out, [&] { return flatten(*t, start_dim, end_dim); }, [&](TsrAttrs& a) {
      a.dim = start_dim;
      a.dim2 = end_dim;
    });
  });
}

int32_t tsr_as_strided(TsrTensor t, const int64_t* sizes, const int64_t* strides, int32_t ndim,
                       int64_t storage_offset, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    if (ndim > 0) TSR_NEED(sizes), TSR_NEED(strides);
    TSR_NEED(out);
    give_view(kOp_as_strided, t, out, [&] { return as_strided(*t, sizes, strides, ndim, storage_offset); },
              [&](TsrAttrs& a) {
                set_shape(a, sizes, ndim);
                std::copy_n(strides, ndim, a.strides);
                a.index = storage_offset;
              });
  });
}

// ---- ops ----------------------------------------------------------------------------------

int32_t tsr_op_count(void) { return kNumOps; }

const char* tsr_op_name(int32_t op) { return op >= 0 && op < kNumOps ? kOpInfo[op].name : nullptr; }

int32_t tsr_op_lookup(const char* name, int32_t* op) {
  return guard([&, fn = __func__] {
    TSR_NEED(name);
    TSR_NEED(op);
    int32_t id = op_lookup(name);
    if (id < 0) fail(TSR_ERR_INVALID_ARGUMENT, std::string("[tsr_op_lookup] unknown op '") + name + "'");
    *op = id;
  });
}

int32_t tsr_call(int32_t op, const TsrTensor* inputs, int32_t num_inputs, const TsrAttrs* attrs,
                 TsrTensor* outputs, int32_t num_outputs) {
  return guard([&, fn = __func__] {
    if (num_inputs > 0) TSR_NEED(inputs);
    TSR_NEED(outputs);
    TsrAttrs a = default_attrs();
    if (attrs) {
      if (attrs->struct_size == 0)
        fail(TSR_ERR_INVALID_ARGUMENT, "[tsr_call] attrs.struct_size is 0 (fill attrs with tsr_attrs_init)");
      std::memcpy(&a, attrs, std::min<size_t>(attrs->struct_size, sizeof a));
    }
    call(op, inputs, num_inputs, a, outputs, num_outputs);
  });
}

// One definition per op, generated from ops.def by kind (mirrors the TSR_DECL_* in tessera.h).
#define TSR_DEF_UNARY(name) \
  int32_t tsr_##name(TsrTensor x, TsrTensor* out) { return call_one(kOp_##name, "tsr_" #name, {x}, default_attrs(), out); }
#define TSR_DEF_BINARY(name)                                                                \
  int32_t tsr_##name(TsrTensor a, TsrTensor b, TsrTensor* out) {                            \
    return call_one(kOp_##name, "tsr_" #name, {a, b}, default_attrs(), out);                \
  }                                                                                         \
  int32_t tsr_##name##_scalar(TsrTensor a, TsrScalar b, TsrTensor* out) {                   \
    return binary_scalar(kOp_##name, "tsr_" #name "_scalar", a, b, out);                    \
  }
#define TSR_DEF_COMPARE(name) TSR_DEF_BINARY(name)
#define TSR_DEF_WHERE(name)                                                                 \
  int32_t tsr_##name(TsrTensor cond, TsrTensor a, TsrTensor b, TsrTensor* out) {            \
    return call_one(kOp_##name, "tsr_" #name, {cond, a, b}, default_attrs(), out);          \
  }
#define TSR_DEF_CLAMP(name)                                                                         \
  int32_t tsr_##name(TsrTensor x, const TsrScalar* min, const TsrScalar* max, TsrTensor* out) {     \
    return clamp(kOp_##name, "tsr_" #name, x, min, max, out);                                      \
  }
#define TSR_DEF_COPY(name) \
  int32_t tsr_##name##_(TsrTensor dst, TsrTensor src) { return call_in_place(kOp_##name, "tsr_" #name "_", dst, {src}, default_attrs()); }
#define TSR_DEF_FILL(name) \
  int32_t tsr_##name##_(TsrTensor t, TsrScalar value) { return fill(kOp_##name, "tsr_" #name "_", t, value); }
#define TSR_DEF_ARANGE(name)                                                                             \
  int32_t tsr_##name(TsrScalar start, TsrScalar end, TsrScalar step, int32_t dtype, TsrDevice device,    \
                     TsrTensor* out) {                                                                   \
    return arange(kOp_##name, "tsr_" #name, start, end, step, dtype, device, out);                      \
  }
#define TSR_DEF_REDUCE(name)                                                                             \
  int32_t tsr_##name(TsrTensor x, const int64_t* dims, int32_t ndims, int32_t keepdim, TsrTensor* out) { \
    return reduce(kOp_##name, "tsr_" #name, x, dims, ndims, keepdim, out);                              \
  }
#define TSR_DEF_SOFTMAX(name) \
  int32_t tsr_##name(TsrTensor x, int64_t dim, TsrTensor* out) { return softmax(kOp_##name, "tsr_" #name, x, dim, out); }
#define TSR_DEF_MATMUL(name)                                                   \
  int32_t tsr_##name(TsrTensor a, TsrTensor b, TsrTensor* out) {               \
    return call_one(kOp_##name, "tsr_" #name, {a, b}, default_attrs(), out);   \
  }
#define TSR_DEF_RANDOM(name) \
  int32_t tsr_##name##_(TsrTensor t, TsrScalar p0, TsrScalar p1) { return random(kOp_##name, "tsr_" #name "_", t, p0, p1); }
#define TSR_DEF_VIEW(name) /* defined above by hand */
#define TSR_DEF_CONV(name) /* through tsr_call */
#define TSR_DEF_POOL(name)
#define TSR_DEF_OPTIM(name)
#define TSR_DEF_NN(name)
#define TSR_DEF_INDEX(name)
#define TSR_DEF_SAMPLE(name)
#define TSR_DEF_FOREACH(name)
#define TSR_DEF_COMPOSITE(name)
#define TSR_OP(name, kind, types, diff) TSR_DEF_##kind(name)
#include "tessera/ops.def"
#undef TSR_OP

// ---- autograd ---------------------------------------------------------------------------------

int32_t tsr_set_requires_grad(TsrTensor t, int32_t requires_grad) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    autograd::set_requires_grad(*t, requires_grad != 0);
  });
}

int32_t tsr_requires_grad(TsrTensor t, int32_t* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    *out = autograd::requires_grad(*t);
  });
}

int32_t tsr_is_leaf(TsrTensor t, int32_t* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    *out = autograd::is_leaf(*t);
  });
}

int32_t tsr_grad(TsrTensor t, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give(autograd::grad(*t), out);
  });
}

int32_t tsr_set_grad(TsrTensor t, TsrTensor grad) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    autograd::set_grad(*t, grad);
  });
}

int32_t tsr_retain_grad(TsrTensor t) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    autograd::retain_grad(*t);
  });
}

int32_t tsr_detach(TsrTensor t, TsrTensor* out) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(out);
    give(autograd::detach(*t), out);
  });
}

int32_t tsr_grad_fn_name(TsrTensor t, const char** name) {
  return guard([&, fn = __func__] {
    TSR_NEED(t);
    TSR_NEED(name);
    *name = autograd::grad_fn_name(*t);
  });
}

int32_t tsr_backward(const TsrTensor* roots, const TsrTensor* grads, int32_t num_roots, int32_t retain_graph) {
  return guard([&, fn = __func__] {
    need_roots(roots, num_roots, fn);
    autograd::backward(roots, grads, num_roots, retain_graph != 0);
  });
}

int32_t tsr_autograd_grad(const TsrTensor* roots, const TsrTensor* grads, int32_t num_roots, const TsrTensor* inputs,
                          int32_t num_inputs, int32_t retain_graph, int32_t allow_unused, TsrTensor* outputs) {
  return guard([&, fn = __func__] {
    need_roots(roots, num_roots, fn);
    if (num_inputs < 1) fail(TSR_ERR_INVALID_ARGUMENT, "[tsr_autograd_grad] needs at least one input");
    TSR_NEED(inputs);
    TSR_NEED(outputs);
    for (int32_t i = 0; i < num_inputs; ++i)
      if (!inputs[i]) fail(TSR_ERR_NULL_POINTER, "[tsr_autograd_grad] inputs[" + std::to_string(i) + "] is NULL");
    std::fill(outputs, outputs + num_inputs, nullptr);
    autograd::grad_of(roots, grads, num_roots, inputs, num_inputs, retain_graph != 0, allow_unused != 0, outputs);
  });
}

int32_t tsr_set_grad_enabled(int32_t enabled) { return autograd::set_grad_enabled(enabled != 0); }

int32_t tsr_is_grad_enabled(void) { return autograd::grad_enabled(); }

}  // extern "C"
