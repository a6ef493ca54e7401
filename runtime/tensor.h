// Tensors: a refcounted Storage (device memory + version counter shared by every view) and
// the TensorImpl behind a TsrTensor handle (sizes, strides, offset, dtype, device).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "dtype.h"
#include "tessera/plugin.h"
#include "tessera/tessera.h"

namespace tessera {

struct TensorBlock;

// Memory on one device. Invariant: data_ holds nbytes_ bytes; the version counter is bumped
// by every in-place write through any view.
struct Storage {
  std::atomic<int64_t> refcount_{1};
  std::atomic<uint64_t> version_{0};
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  TsrDevice device_{};
  bool borrowed_ = false;              // memory owned by the caller: deleter_(deleter_ctx_)
  void (*deleter_)(void*) = nullptr;   //   instead of the device interface's free
  void* deleter_ctx_ = nullptr;
  TensorBlock* block_ = nullptr;       // the allocation this storage shares with its first impl
  void* stream_ = nullptr;             // the stream it was allocated on (device memory)
  // The last other stream its use was recorded on (kNoStream: none yet; nullptr is a real
  // stream, the default one).
  static inline void* const kNoStream = reinterpret_cast<void*>(~uintptr_t{0});
  std::atomic<void*> used_on_{kNoStream};

  void retain() { refcount_.fetch_add(1, std::memory_order_relaxed); }
  void release();
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }
};

}  // namespace tessera

// The tensor behind TsrTensor. Invariants: ndim_ <= TSR_MAX_DIMS; sizes_ >= 0, strides_ >= 0
// (in elements); element (i0..in) lives at storage data + (offset_ + sum(ik * strides_[k])) *
// itemsize; every element addressed lies inside the storage.
struct TsrTensorImpl {
  std::atomic<int64_t> refcount_{1};
  tessera::Storage* storage_ = nullptr;
  int64_t offset_ = 0;  // storage offset, in elements
  int32_t ndim_ = 0;
  int32_t dtype_ = TSR_FLOAT32;
  TsrDevice device_{};
  int64_t sizes_[TSR_MAX_DIMS] = {};
  int64_t strides_[TSR_MAX_DIMS] = {};
  void* autograd_ = nullptr;  // autograd metadata; null when no gradient is needed

  void retain() { refcount_.fetch_add(1, std::memory_order_relaxed); }
  void release();

  int64_t numel() const {
    int64_t n = 1;
    for (int32_t i = 0; i < ndim_; ++i) n *= sizes_[i];
    return n;
  }
  bool is_contiguous() const;
  void* data() const {
    return static_cast<char*>(storage_->data_) + offset_ * static_cast<int64_t>(tessera::itemsize(dtype_));
  }
  uint64_t version() const { return storage_->version_.load(std::memory_order_relaxed); }
};

namespace tessera {

using TensorImpl = TsrTensorImpl;

// A fresh tensor's impl and storage, allocated together with one `new`.
struct TensorBlock {
  TsrTensorImpl impl;
  Storage storage;
};

// An owning handle (one reference) to a TensorImpl.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(TensorImpl* adopt) : p_(adopt) {}
  static Tensor retain(TensorImpl* p) {
    p->retain();
    return Tensor(p);
  }
  Tensor(const Tensor& o) : p_(o.p_) {
    if (p_) p_->retain();
  }
  Tensor(Tensor&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Tensor& operator=(Tensor o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Tensor() {
    if (p_) p_->release();
  }
  TensorImpl* get() const { return p_; }
  TensorImpl* operator->() const { return p_; }
  TensorImpl& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }
  TensorImpl* release() { return std::exchange(p_, nullptr); }

 private:
  TensorImpl* p_ = nullptr;
};

// "[2, 3]"
std::string shape_str(const int64_t* sizes, int32_t ndim);
// "cpu", "cuda:0"
std::string device_str(TsrDevice d);
// "[2, 3] float32 on cpu"
std::string describe(const TensorImpl& t);

// The device interface of d, checked: NOT_INITIALIZED before tsr_init, INVALID_ARGUMENT for an
// unknown type or an ordinal out of range. `op` names the caller in the message.
const TsrDeviceInterface& device_iface(TsrDevice d, const char* op);

// Contiguous strides for sizes; returns the number of elements.
int64_t contiguous_strides(const int64_t* sizes, int32_t ndim, int64_t* strides);

// A contiguous uninitialized tensor.
Tensor empty(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device, const char* op = "empty");
inline Tensor empty_like(const TensorImpl& t, int32_t dtype) {
  return empty(t.sizes_, t.ndim_, dtype, t.device_);
}
// Contiguous row-major host data, copied to the device.
Tensor from_buffer(const void* data, const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device);
// Memory the caller owns; deleter(ctx) runs when the last view goes.
Tensor from_borrowed(void* data, const int64_t* sizes, const int64_t* strides, int32_t ndim, int32_t dtype,
                     TsrDevice device, void (*deleter)(void*), void* ctx);
// A new impl over t's storage (a view): same dtype/device, given geometry.
// Number of elements of sizes; INVALID_ARGUMENT naming op on negative sizes or overflow.
int64_t checked_numel(const int64_t* sizes, int32_t ndim, int32_t dtype, const char* op);
Tensor make_view(const TensorImpl& t, const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t offset);

// Byte copy of contiguous memory between devices (either side may be the host/CPU).
void copy_bytes(void* dst, TsrDevice dst_device, const void* src, TsrDevice src_device, size_t nbytes,
                const char* op);

// Checks a rank: INVALID_ARGUMENT naming `op` when ndim is outside [0, TSR_MAX_DIMS].
void check_ndim(int32_t ndim, const char* op);
// Wraps a dim into [0, ndim) (0-dim tensors accept 0 and -1); INDEX error naming dim and rank.
int64_t wrap_dim(int64_t dim, int32_t ndim, const char* op, const TensorImpl& t);

}  // namespace tessera
