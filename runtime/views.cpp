// Views: new geometry over the same storage, no copy (reshape/flatten copy only when the
// strides forbid a view). Each checks its arguments and names the op, shape, dtype, device.
#include <algorithm>
#include <cstring>
#include <string>

#include "error.h"
#include "op_table.h"
#include "ops.h"

namespace tessera {

namespace {

[[noreturn]] void view_fail(int32_t status, const char* op, const std::string& what, const TensorImpl& t) {
  fail(status, std::string("[") + op + "] " + what + "; input " + describe(t));
}

// Resolves one -1 in sizes against numel; INVALID_ARGUMENT when the shape can't hold it.
void infer_size(const char* op, TensorImpl& t, const int64_t* sizes, int32_t ndim, int64_t* out) {
  check_ndim(ndim, op);
  int64_t numel = t.numel(), known = 1;
  int32_t infer = -1;
  for (int32_t i = 0; i < ndim; ++i) {
    out[i] = sizes[i];
    if (sizes[i] == -1 && infer < 0) {
      infer = i;
    } else if (sizes[i] < 0) {
      view_fail(TSR_ERR_INVALID_ARGUMENT, op, "invalid shape " + shape_str(sizes, ndim), t);
    } else if (__builtin_mul_overflow(known, sizes[i], &known)) {
      view_fail(TSR_ERR_INVALID_ARGUMENT, op, "shape " + shape_str(sizes, ndim) + " is too large", t);
    }
  }
  bool ok = infer < 0 ? known == numel : known != 0 && numel % known == 0;
  if (!ok)
    view_fail(TSR_ERR_INVALID_ARGUMENT, op,
              "shape " + shape_str(sizes, ndim) + " is invalid for input of size " + std::to_string(numel), t);
  if (infer >= 0) out[infer] = numel / known;
}

// PyTorch's computeStride: strides for viewing (old sizes, strides) as new sizes, or false.
bool compute_stride(const TensorImpl& t, const int64_t* shape, int32_t ndim, int64_t* strides) {
  if (t.ndim_ == 0) {
    std::fill(strides, strides + ndim, 1);
    return true;
  }
  if (t.numel() == 0) {
    contiguous_strides(shape, ndim, strides);
    for (int32_t i = ndim - 2; i >= 0; --i) strides[i] = std::max<int64_t>(shape[i + 1], 1) * strides[i + 1];
    return true;
  }
  int64_t view_d = ndim - 1;
  int64_t chunk_base_stride = t.strides_[t.ndim_ - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = t.ndim_ - 1; d >= 0; --d) {
    tensor_numel *= t.sizes_[d];
    if (d == 0 || (t.sizes_[d - 1] != 1 && t.strides_[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = t.strides_[d - 1];
        tensor_numel = view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor view(TensorImpl& t, const int64_t* sizes, int32_t ndim) {
  int64_t shape[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  infer_size("view", t, sizes, ndim, shape);
  if (!compute_stride(t, shape, ndim, strides))
    view_fail(TSR_ERR_INVALID_ARGUMENT, "view",
              "view size " + shape_str(shape, ndim) + " is not compatible with the input's sizes " +
                  shape_str(t.sizes_, t.ndim_) + " and strides " + shape_str(t.strides_, t.ndim_) +
                  " (use reshape instead)",
              t);
  return make_view(t, shape, strides, ndim, t.offset_);
}

Tensor reshape(TensorImpl& t, const int64_t* sizes, int32_t ndim) {
  int64_t shape[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  infer_size("reshape", t, sizes, ndim, shape);
  if (compute_stride(t, shape, ndim, strides)) return make_view(t, shape, strides, ndim, t.offset_);
  Tensor c = contiguous(t);
  contiguous_strides(shape, ndim, strides);
  return make_view(*c, shape, strides, ndim, c->offset_);
}

Tensor permute(TensorImpl& t, const int64_t* dims, int32_t ndim) {
  if (ndim != t.ndim_)
    view_fail(TSR_ERR_INVALID_ARGUMENT, "permute",
              "number of dims in " + shape_str(dims, ndim) + " doesn't match the tensor's rank " +
                  std::to_string(t.ndim_),
              t);
  int64_t sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  bool seen[TSR_MAX_DIMS] = {};
  for (int32_t i = 0; i < ndim; ++i) {
    int64_t d = wrap_dim(dims[i], t.ndim_, "permute", t);
    if (seen[d]) view_fail(TSR_ERR_INVALID_ARGUMENT, "permute", "dim " + std::to_string(d) + " is repeated in " +
                                                                     shape_str(dims, ndim), t);
    seen[d] = true;
    sizes[i] = t.sizes_[d];
    strides[i] = t.strides_[d];
  }
  return make_view(t, sizes, strides, ndim, t.offset_);
}

Tensor transpose(TensorImpl& t, int64_t dim0, int64_t dim1) {
  int64_t d0 = wrap_dim(dim0, t.ndim_, "transpose", t), d1 = wrap_dim(dim1, t.ndim_, "transpose", t);
  int64_t sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  std::memcpy(sizes, t.sizes_, sizeof(int64_t) * t.ndim_);
  std::memcpy(strides, t.strides_, sizeof(int64_t) * t.ndim_);
  if (t.ndim_ > 0) {
    std::swap(sizes[d0], sizes[d1]);
    std::swap(strides[d0], strides[d1]);
  }
  return make_view(t, sizes, strides, t.ndim_, t.offset_);
}

Tensor t_(TensorImpl& t) {
  if (t.ndim_ > 2)
    view_fail(TSR_ERR_INVALID_ARGUMENT, "t", "expects a tensor with <= 2 dims, got " + std::to_string(t.ndim_), t);
  return transpose(t, 0, t.ndim_ == 2 ? 1 : 0);
}

Tensor slice(TensorImpl& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  if (t.ndim_ == 0) view_fail(TSR_ERR_INDEX, "slice", "cannot slice a 0-D tensor", t);
  int64_t d = wrap_dim(dim, t.ndim_, "slice", t);
  if (step <= 0) view_fail(TSR_ERR_INVALID_ARGUMENT, "slice", "step must be positive, got " + std::to_string(step), t);
  int64_t n = t.sizes_[d];
  auto clamp = [n](int64_t i) { return i < 0 ? (i < -n ? 0 : i + n) : std::min(i, n); };  // Python's rule
  start = clamp(start);
  end = std::max(clamp(end), start);
  int64_t sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  std::memcpy(sizes, t.sizes_, sizeof(int64_t) * t.ndim_);
  std::memcpy(strides, t.strides_, sizeof(int64_t) * t.ndim_);
  sizes[d] = end > start ? (end - start - 1) / step + 1 : 0;
  strides[d] *= step;
  return make_view(t, sizes, strides, t.ndim_, t.offset_ + start * t.strides_[d]);
}

Tensor narrow(TensorImpl& t, int64_t dim, int64_t start, int64_t length) {
  if (t.ndim_ == 0) view_fail(TSR_ERR_INDEX, "narrow", "cannot narrow a 0-D tensor", t);
  int64_t d = wrap_dim(dim, t.ndim_, "narrow", t);
  int64_t n = t.sizes_[d];
  if (start < -n || start > n)
    view_fail(TSR_ERR_INDEX, "narrow",
              "start " + std::to_string(start) + " is out of range for dim " + std::to_string(d) + " of size " +
                  std::to_string(n),
              t);
  if (start < 0) start += n;
  if (length < 0 || length > n - start)
    view_fail(TSR_ERR_INVALID_ARGUMENT, "narrow",
              "start " + std::to_string(start) + " + length " + std::to_string(length) + " exceeds dim " +
                  std::to_string(d) + " of size " + std::to_string(n),
              t);
  return slice(t, d, start, start + length, 1);
}

Tensor select(TensorImpl& t, int64_t dim, int64_t index) {
  if (t.ndim_ == 0) view_fail(TSR_ERR_INDEX, "select", "cannot select from a 0-D tensor", t);
  int64_t d = wrap_dim(dim, t.ndim_, "select", t);
  int64_t n = t.sizes_[d];
  if (index < -n || index >= n)
    view_fail(TSR_ERR_INDEX, "select",
              "index " + std::to_string(index) + " is out of range for dim " + std::to_string(d) + " of size " +
                  std::to_string(n),
              t);
  if (index < 0) index += n;
  int64_t sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  for (int32_t i = 0, j = 0; i < t.ndim_; ++i) {
    if (i == d) continue;
    sizes[j] = t.sizes_[i];
    strides[j++] = t.strides_[i];
  }
  return make_view(t, sizes, strides, t.ndim_ - 1, t.offset_ + index * t.strides_[d]);
}

Tensor expand(TensorImpl& t, const int64_t* sizes, int32_t ndim) {
  check_ndim(ndim, "expand");
  if (ndim < t.ndim_)
    view_fail(TSR_ERR_INVALID_ARGUMENT, "expand",
              "the number of sizes in " + shape_str(sizes, ndim) + " must be >= the tensor's rank " +
                  std::to_string(t.ndim_),
              t);
  int64_t out_sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  int32_t lead = ndim - t.ndim_;
  for (int32_t i = 0; i < ndim; ++i) {
    int64_t want = sizes[i];
    if (i < lead) {
      if (want < 0)
        view_fail(TSR_ERR_INVALID_ARGUMENT, "expand",
                  "size -1 is not allowed in a new leading dim: target " + shape_str(sizes, ndim), t);
      out_sizes[i] = want;
      strides[i] = 0;
      continue;
    }
    int64_t have = t.sizes_[i - lead];
    if (want == -1) want = have;
    if (want == have) {
      out_sizes[i] = have;
      strides[i] = t.strides_[i - lead];
    } else if (have == 1 && want >= 0) {
      out_sizes[i] = want;
      strides[i] = 0;
    } else {
      view_fail(TSR_ERR_INVALID_ARGUMENT, "expand",
                "the expanded size " + std::to_string(want) + " must match the existing size " +
                    std::to_string(have) + " at non-singleton dim " + std::to_string(i) + ": target " +
                    shape_str(sizes, ndim),
                t);
    }
  }
  checked_numel(out_sizes, ndim, t.dtype_, "expand");  // stride-0 dims can make numel overflow
  return make_view(t, out_sizes, strides, ndim, t.offset_);
}

Tensor squeeze(TensorImpl& t, const int64_t* dims, int32_t ndims) {
  check_ndim(ndims, "squeeze");
  bool drop[TSR_MAX_DIMS] = {};
  for (int32_t i = 0; i < t.ndim_; ++i) drop[i] = ndims == 0 && t.sizes_[i] == 1;
  for (int32_t i = 0; i < ndims; ++i) {
    int64_t d = wrap_dim(dims[i], t.ndim_, "squeeze", t);
    if (t.ndim_ > 0 && t.sizes_[d] == 1) drop[d] = true;
  }
  int64_t sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  int32_t n = 0;
  for (int32_t i = 0; i < t.ndim_; ++i) {
    if (drop[i]) continue;
    sizes[n] = t.sizes_[i];
    strides[n++] = t.strides_[i];
  }
  return make_view(t, sizes, strides, n, t.offset_);
}

Tensor unsqueeze(TensorImpl& t, int64_t dim) {
  if (t.ndim_ >= TSR_MAX_DIMS)
    view_fail(TSR_ERR_INVALID_ARGUMENT, "unsqueeze", "a tensor can have at most " + std::to_string(TSR_MAX_DIMS) + " dims", t);
  if (dim < -(t.ndim_ + 1) || dim > t.ndim_)
    view_fail(TSR_ERR_INDEX, "unsqueeze",
              "dim " + std::to_string(dim) + " is out of range for a " + std::to_string(t.ndim_) +
                  "-D tensor (expected in [" + std::to_string(-(t.ndim_ + 1)) + ", " + std::to_string(t.ndim_) + "])",
              t);
  int64_t d = dim < 0 ? dim + t.ndim_ + 1 : dim;
  int64_t sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  for (int32_t i = 0, j = 0; i <= t.ndim_; ++i) {
    if (i == d) {
      sizes[i] = 1;
      strides[i] = d < t.ndim_ ? t.sizes_[d] * t.strides_[d] : 1;
    } else {
      sizes[i] = t.sizes_[j];
      strides[i] = t.strides_[j++];
    }
  }
  return make_view(t, sizes, strides, t.ndim_ + 1, t.offset_);
}

Tensor flatten(TensorImpl& t, int64_t start_dim, int64_t end_dim) {
  int64_t s = wrap_dim(start_dim, t.ndim_, "flatten", t), e = wrap_dim(end_dim, t.ndim_, "flatten", t);
  if (s > e)
    view_fail(TSR_ERR_INVALID_ARGUMENT, "flatten",
              "start_dim " + std::to_string(start_dim) + " comes after end_dim " + std::to_string(end_dim), t);
  if (t.ndim_ == 0) {
    int64_t one = 1;
    return reshape(t, &one, 1);
  }
  int64_t sizes[TSR_MAX_DIMS];
  int32_t n = 0;
  for (int64_t i = 0; i < t.ndim_; ++i) {
    if (i <= s || i > e)
      sizes[n++] = t.sizes_[i];
    else
      sizes[n - 1] *= t.sizes_[i];
  }
  return reshape(t, sizes, n);
}

Tensor as_strided(TensorImpl& t, const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t offset) {
  check_ndim(ndim, "as_strided");
  int64_t numel = 1, last = offset;  // last: the highest element index addressed
  bool overflow = false;
  for (int32_t i = 0; i < ndim; ++i) {
    if (sizes[i] < 0 || strides[i] < 0)
      view_fail(TSR_ERR_INVALID_ARGUMENT, "as_strided",
                "sizes " + shape_str(sizes, ndim) + " and strides " + shape_str(strides, ndim) +
                    " must be non-negative",
                t);
    int64_t span = 0;
    overflow |= __builtin_mul_overflow(numel, sizes[i], &numel) ||
                __builtin_mul_overflow(sizes[i] > 0 ? sizes[i] - 1 : 0, strides[i], &span) ||
                __builtin_add_overflow(last, span, &last);
  }
  int64_t capacity = static_cast<int64_t>(t.storage_->nbytes_ / itemsize(t.dtype_));
  if (offset < 0 || overflow || (numel > 0 && last >= capacity))
    view_fail(TSR_ERR_INVALID_ARGUMENT, "as_strided",
              "sizes " + shape_str(sizes, ndim) + ", strides " + shape_str(strides, ndim) + " and storage offset " +
                  std::to_string(offset) + " are out of bounds for a storage of " + std::to_string(capacity) +
                  " elements",
              t);
  return make_view(t, sizes, strides, ndim, offset);
}

Tensor view_op(int32_t op, TensorImpl& t, const TsrAttrs& a) {
  switch (op) {
    case kOp_view: return view(t, a.shape, a.nshape);
    case kOp_reshape: return reshape(t, a.shape, a.nshape);
    case kOp_permute: return permute(t, a.dims, a.ndims);
    case kOp_transpose: return transpose(t, a.dim, a.dim2);
    case kOp_slice: return slice(t, a.dim, a.start, a.end, a.step);
    case kOp_narrow: return narrow(t, a.dim, a.start, a.end);
    case kOp_select: return select(t, a.dim, a.index);
    case kOp_expand: return expand(t, a.shape, a.nshape);
    case kOp_squeeze: return a.ndims == 0 && a.has_dim ? squeeze(t, &a.dim, 1) : squeeze(t, a.dims, a.ndims);
    case kOp_unsqueeze: return unsqueeze(t, a.dim);
    case kOp_flatten: return flatten(t, a.dim, a.dim2);
    case kOp_as_strided: return as_strided(t, a.shape, a.strides, a.nshape, a.index);
    default: fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + kOpInfo[op].name + "] is not a view op");
  }
}

}  // namespace tessera
