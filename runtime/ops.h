// The dispatcher (ops.cpp) and the view functions (views.cpp): what the C ABI calls.
#pragma once

#include <cstdint>

#include "tensor.h"

namespace tessera {

// Attrs with tsr_attrs_init's defaults.
const TsrAttrs& default_attrs();

// Runs any op of ops.def. outputs[i] == nullptr: the result is allocated and stored there
// (owned by the caller); otherwise it is written in place (its version bumped).
void call(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs, TensorImpl** outputs,
          int32_t num_outputs);

// call() without autograd: what it runs once autograd has seen the call (autograd.cpp).
void call_untracked(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs,
                    TensorImpl** outputs, int32_t num_outputs = 1);

// Single-output conveniences over call().
Tensor call1(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs);
void call_into(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs, TensorImpl* out);

// dst[...] = src (broadcast to dst's shape, cast to its dtype, from any device).
void copy_(TensorImpl& dst, TensorImpl& src);
// A copy on `device` with `dtype` (-1 keeps it); t itself when nothing changes.
Tensor to(TensorImpl& t, TsrDevice device, int32_t dtype);
Tensor contiguous(TensorImpl& t);
Tensor clone(TensorImpl& t);
Tensor full(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device, const TsrScalar& value);
// Seeds every device type's generator and zeroes its offset.
void manual_seed(uint64_t seed);

// Views (views.cpp): share t's storage and version counter.
Tensor view(TensorImpl& t, const int64_t* sizes, int32_t ndim);
Tensor reshape(TensorImpl& t, const int64_t* sizes, int32_t ndim);
Tensor permute(TensorImpl& t, const int64_t* dims, int32_t ndim);
Tensor transpose(TensorImpl& t, int64_t dim0, int64_t dim1);
Tensor t_(TensorImpl& t);
Tensor slice(TensorImpl& t, int64_t dim, int64_t start, int64_t end, int64_t step);
Tensor narrow(TensorImpl& t, int64_t dim, int64_t start, int64_t length);
Tensor select(TensorImpl& t, int64_t dim, int64_t index);
Tensor expand(TensorImpl& t, const int64_t* sizes, int32_t ndim);
Tensor squeeze(TensorImpl& t, const int64_t* dims, int32_t ndims);  // ndims 0: every size-1 dim
Tensor unsqueeze(TensorImpl& t, int64_t dim);
Tensor flatten(TensorImpl& t, int64_t start_dim, int64_t end_dim);
Tensor as_strided(TensorImpl& t, const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t offset);
// A VIEW-kind op of ops.def called through tsr_call, its arguments in attrs.
Tensor view_op(int32_t op, TensorImpl& t, const TsrAttrs& attrs);

// Broadcast shape of a and b (PyTorch rules) into out/*nout; false when they don't broadcast.
bool broadcast_shape(const int64_t* a, int32_t na, const int64_t* b, int32_t nb, int64_t* out, int32_t* nout);

}  // namespace tessera
