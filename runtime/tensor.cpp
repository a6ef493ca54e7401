// Tensor creation and lifetime: storages on a device's allocator or borrowed memory, views
// over a storage, byte copies between devices, and the strings error messages are made of.
#include "tensor.h"
#include "streams.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "autograd.h"
#include "error.h"
#include "registry.h"

namespace tessera {

void Storage::release() {
  if (refcount_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (borrowed_) {
    if (deleter_) deleter_(deleter_ctx_);
  } else if (const DeviceType* dt = device_type(device_.type)) {  // gone after shutdown: leak, not crash
    dt->iface.free(dt->iface.ctx, device_.index, data_, nbytes_);
  }
  if (block_)
    delete block_;
  else
    delete this;
}

}  // namespace tessera

void TsrTensorImpl::release() {
  if (refcount_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (autograd_) tessera::autograd::release_meta(*this);
  tessera::Storage* s = storage_;
  if (!s->block_ || &s->block_->impl != this) delete this;  // else freed with its storage
  s->release();
}

bool TsrTensorImpl::is_contiguous() const {
  int64_t expected = 1;
  for (int32_t i = ndim_ - 1; i >= 0; --i) {
    if (sizes_[i] == 0) return true;
    if (sizes_[i] != 1 && strides_[i] != expected) return false;
    expected *= sizes_[i];
  }
  return true;
}

namespace tessera {

std::string shape_str(const int64_t* sizes, int32_t ndim) {
  std::string s = "[";
  for (int32_t i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(sizes[i]);
  }
  return s + "]";
}

std::string device_str(TsrDevice d) {
  const DeviceType* dt = device_type(d.type);
  std::string name = dt                          ? dt->name
                     : d.type == TSR_DEVICE_CPU  ? "cpu"
                     : d.type == TSR_DEVICE_CUDA ? "cuda"
                                                 : "device" + std::to_string(d.type);
  if (d.type == TSR_DEVICE_CPU && d.index == 0) return name;
  return name + ":" + std::to_string(d.index);
}

std::string describe(const TensorImpl& t) {
  return shape_str(t.sizes_, t.ndim_) + " " + dtype_str(t.dtype_) + " on " + device_str(t.device_);
}

const TsrDeviceInterface& device_iface(TsrDevice d, const char* op) {
  const DeviceType* dt = device_type(d.type);
  if (!dt) {
    if (!registry().initialized)
      fail(TSR_ERR_NOT_INITIALIZED, std::string("[") + op + "] tsr_init was not called (device " +
                                        device_str(d) + ")");
    fail(TSR_ERR_INVALID_ARGUMENT,
         std::string("[") + op + "] device " + device_str(d) + " is not available (no plugin registered it)");
  }
  if (d.index < 0 || d.index >= dt->iface.device_count)
    fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + op + "] device " + device_str(d) + " is out of range (" +
                                       std::to_string(dt->iface.device_count) + " " + dt->name + " device(s))");
  return dt->iface;
}

int64_t contiguous_strides(const int64_t* sizes, int32_t ndim, int64_t* strides) {
  int64_t n = 1;
  for (int32_t i = ndim - 1; i >= 0; --i) {
    strides[i] = n;
    n *= sizes[i];
  }
  return n;
}

void check_ndim(int32_t ndim, const char* op) {
  if (ndim < 0 || ndim > TSR_MAX_DIMS)
    fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + op + "] rank " + std::to_string(ndim) +
                                       " is out of range (at most " + std::to_string(TSR_MAX_DIMS) + " dims)");
}

int64_t wrap_dim(int64_t dim, int32_t ndim, const char* op, const TensorImpl& t) {
  int64_t n = ndim > 0 ? ndim : 1;
  if (dim < -n || dim >= n)
    fail(TSR_ERR_INDEX, std::string("[") + op + "] dim " + std::to_string(dim) + " is out of range for a " +
                            std::to_string(ndim) + "-D tensor (expected in [" + std::to_string(-n) + ", " +
                            std::to_string(n - 1) + "]); input " + describe(t));
  return dim < 0 ? dim + n : dim;
}

namespace {

void check_dtype(int32_t dtype, const char* op) {
  if (!dtype_valid(dtype))
    fail(TSR_ERR_TYPE, std::string("[") + op + "] unknown dtype " + std::to_string(dtype));
}

}  // namespace

// Number of elements of sizes; INVALID_ARGUMENT on negative sizes or overflow.
int64_t checked_numel(const int64_t* sizes, int32_t ndim, int32_t dtype, const char* op) {
  int64_t n = 1;
  for (int32_t i = 0; i < ndim; ++i) {
    if (sizes[i] < 0 || __builtin_mul_overflow(n, sizes[i], &n))
      fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + op + "] invalid shape " + shape_str(sizes, ndim) +
                                         " for dtype " + dtype_str(dtype));
  }
  if (n > INT64_MAX / 8)
    fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + op + "] shape " + shape_str(sizes, ndim) + " is too large");
  return n;
}

Tensor empty(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device, const char* op) {
  check_ndim(ndim, op);
  check_dtype(dtype, op);
  const TsrDeviceInterface& iface = device_iface(device, op);
  size_t nbytes = static_cast<size_t>(checked_numel(sizes, ndim, dtype, op)) * itemsize(dtype);
  void* data = nullptr;
  if (int32_t st = iface.allocate(iface.ctx, device.index, nbytes, &data); st != TSR_OK || !data)
    fail(st != TSR_OK ? st : TSR_ERR_OUT_OF_MEMORY,
         std::string("[") + op + "] allocating " + std::to_string(nbytes) + " bytes for " + shape_str(sizes, ndim) +
             " " + dtype_str(dtype) + " on " + device_str(device) + " failed: " + last_error());
  auto* block = new (std::nothrow) TensorBlock;
  if (!block) {
    iface.free(iface.ctx, device.index, data, nbytes);
    throw std::bad_alloc();
  }
  Storage& s = block->storage;
  s.data_ = data;
  s.nbytes_ = nbytes;
  s.device_ = device;
  s.block_ = block;
  s.stream_ = current_stream(device);
  TensorImpl& t = block->impl;
  t.storage_ = &s;
  t.ndim_ = ndim;
  t.dtype_ = dtype;
  t.device_ = device;
  std::copy_n(sizes, ndim, t.sizes_);  // sizes may be NULL when ndim is 0
  contiguous_strides(sizes, ndim, t.strides_);
  return Tensor(&t);
}

void copy_bytes(void* dst, TsrDevice dst_device, const void* src, TsrDevice src_device, size_t nbytes,
                const char* op) {
  if (nbytes == 0) return;
  // The copy function of the non-CPU side moves bytes to or from the host.
  auto one_side = [&](TsrDevice side, void* d, TsrDevice dd, const void* s, TsrDevice sd) {
    const TsrDeviceInterface& iface = device_iface(side, op);
    if (int32_t st = iface.copy(iface.ctx, d, dd, s, sd, nbytes, current_stream(side)); st != TSR_OK)
      fail(st, std::string("[") + op + "] copying " + std::to_string(nbytes) + " bytes from " + device_str(sd) +
                   " to " + device_str(dd) + " failed: " + last_error());
  };
  if (dst_device.type == TSR_DEVICE_CPU || src_device.type == TSR_DEVICE_CPU ||
      dst_device.type == src_device.type) {
    one_side(dst_device.type != TSR_DEVICE_CPU ? dst_device : src_device, dst, dst_device, src, src_device);
    return;
  }
  TsrDevice cpu{TSR_DEVICE_CPU, 0};
  int64_t n = static_cast<int64_t>(nbytes);
  Tensor host = empty(&n, 1, TSR_UINT8, cpu, op);  // staging buffer (n bytes)
  one_side(src_device, host->data(), cpu, src, src_device);
  one_side(dst_device, dst, dst_device, host->data(), cpu);
}

Tensor from_buffer(const void* data, const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device) {
  Tensor t = empty(sizes, ndim, dtype, device, "from_buffer");
  copy_bytes(t->data(), device, data, TsrDevice{TSR_DEVICE_CPU, 0}, t->storage_->nbytes_, "from_buffer");
  return t;
}

Tensor from_borrowed(void* data, const int64_t* sizes, const int64_t* strides, int32_t ndim, int32_t dtype,
                     TsrDevice device, void (*deleter)(void*), void* ctx) {
  const char* op = "from_borrowed";
  check_ndim(ndim, op);
  check_dtype(dtype, op);
  device_iface(device, op);
  int64_t numel = checked_numel(sizes, ndim, dtype, op);
  auto t = std::make_unique<TensorImpl>();
  t->ndim_ = ndim;
  t->dtype_ = dtype;
  t->device_ = device;
  std::copy_n(sizes, ndim, t->sizes_);
  int64_t extent = numel > 0 ? 1 : 0;  // elements spanned: 1 + sum((size - 1) * stride)
  if (strides) {
    for (int32_t i = 0; i < ndim; ++i) {
      if (strides[i] < 0)
        fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + op + "] negative strides " + shape_str(strides, ndim) +
                                           " are not supported (sizes " + shape_str(sizes, ndim) + ")");
      t->strides_[i] = strides[i];
      int64_t span = 0;
      if (numel > 0 && (__builtin_mul_overflow(sizes[i] - 1, strides[i], &span) ||
                        __builtin_add_overflow(extent, span, &extent)))
        fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + op + "] strides " + shape_str(strides, ndim) +
                                           " are too large for sizes " + shape_str(sizes, ndim));
    }
  } else {
    extent = contiguous_strides(sizes, ndim, t->strides_);
  }
  auto* s = new Storage;
  s->data_ = data;
  s->nbytes_ = static_cast<size_t>(extent) * itemsize(dtype);
  s->device_ = device;
  s->borrowed_ = true;
  s->deleter_ = deleter;
  s->deleter_ctx_ = ctx;
  t->storage_ = s;
  return Tensor(t.release());
}

Tensor make_view(const TensorImpl& t, const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t offset) {
  auto* v = new TensorImpl;
  v->storage_ = t.storage_;
  t.storage_->retain();
  v->offset_ = offset;
  v->ndim_ = ndim;
  v->dtype_ = t.dtype_;
  v->device_ = t.device_;
  std::copy_n(sizes, ndim, v->sizes_);
  std::copy_n(strides, ndim, v->strides_);
  return Tensor(v);
}

}  // namespace tessera
