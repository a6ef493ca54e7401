# Tensor factories (tensor, zeros, arange, rand, ...) and the torch-style functional forms of every op.
from ctypes import byref, c_int64, c_void_p

import numpy as np

from . import _C, _tensor
from ._C import lib, scalar_or_none
from ._tensor import OP_KINDS, Tensor, _wrap_h, _call, _call_scalar, _dims_arg, _fast, _raise
from ._types import _dtype_id, bfloat16, bool_, float32, float64, int32, int64, to_dtype, uint8

_CPU = _C.Device(0, 0)


def _dev(device):
    return _CPU if device is None else _C.device_struct(device)


def _finish(t, requires_grad):
    if requires_grad:
        t.requires_grad_(True)
    return t


def _np_for_tessera(a, dt):
    """(contiguous ndarray, runtime dtype) holding `a` for a tessera dtype (None: inferred as torch does)."""
    if dt is None:
        if a.dtype.kind == "b":
            dt = bool_
        elif a.dtype.kind == "u" and a.dtype.itemsize == 1:
            dt = uint8
        elif a.dtype.kind in "iu":
            dt = int64 if a.dtype.itemsize == 8 or a.dtype.kind == "u" else int32
        elif a.dtype.kind == "f":
            dt = to_dtype(a.dtype) if a.dtype.itemsize in (2, 4, 8) else float32
        else:
            raise TypeError(f"can't convert data of numpy dtype {a.dtype} to a tessera tensor (expected bool, "
                            f"int, uint8 or float data)")
    if dt is bfloat16:
        return np.asarray(a, dtype=np.float32, order="C"), float32._id, bfloat16
    if dt._id is None:
        _dtype_id(dt)
    return np.asarray(a, dtype=dt._np, order="C"), dt._id, None


def _infer_python(data, dt):
    """numpy array for Python data with torch's inference: bools -> bool, ints -> int64, floats -> float32
    (kept float64 when a dtype `dt` is given, so tensor(1.7, dtype=float64) is exactly 1.7)."""
    a = np.asarray(data)
    if a.dtype == object:
        raise TypeError(f"can't build a tensor from {type(data).__name__} data of mixed or non-numeric types")
    if a.dtype.kind == "f" and dt is None and not _has_numpy_float(data):
        a = a.astype(np.float32)
    elif a.dtype.kind == "i" and a.dtype != np.int64:
        a = a.astype(np.int64)
    elif a.dtype.kind in "US":
        raise TypeError(f"can't build a tensor from strings ({data!r})")
    return a


def _has_numpy_float(data):
    """Whether nested data holds numpy floating arrays/scalars or tensors (whose dtype then wins)."""
    if isinstance(data, (np.ndarray, np.generic, Tensor)):
        return True
    if isinstance(data, (list, tuple)) and data:
        return _has_numpy_float(data[0])
    return False


def tensor(data, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new tensor copying `data` (nested lists, numbers, numpy arrays, tensors)."""
    if isinstance(data, Tensor):
        t = data.detach().to(data.device if device is None else device, dtype or data.dtype, copy=True)
        return _finish(t, requires_grad)
    dt = None if dtype is None else to_dtype(dtype)
    if isinstance(data, (np.ndarray, np.generic)):
        a = np.asarray(data)
    else:
        a = _infer_python(data, dt)
    a, rid, then = _np_for_tessera(a, dt)
    sizes = (c_int64 * max(a.ndim, 1))(*a.shape)
    o = c_void_p()
    st = lib.tsr_from_buffer(a.ctypes.data if a.size else None, sizes, a.ndim, rid, _dev(device), byref(o))
    if st:
        _raise(st, "tensor")
    t = _wrap_h(o)
    if then is not None:
        t = t.to(then)
    return _finish(t, requires_grad)


as_tensor = tensor


def from_numpy(array):
    """A tensor sharing `array`'s memory (zero copy; the array stays alive while the tensor does)."""
    from . import _dlpack
    return _dlpack.from_numpy(array)


def _size(size):
    return _dims_arg(size)


def empty(*size, dtype=None, device=None, requires_grad=False, out=None, pin_memory=False, memory_format=None):
    s = _size(size)
    arr = (c_int64 * max(len(s), 1))(*s)
    o = c_void_p()
    st = lib.tsr_empty(arr, len(s), _dtype_id(dtype if dtype is not None else float32), _dev(device), byref(o))
    if st:
        _raise(st, "empty")
    return _finish(_wrap_h(o), requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    s = _size((size,) if isinstance(size, int) else size)
    if dtype is None:
        dtype = bool_ if isinstance(fill_value, bool) else int64 if isinstance(fill_value, int) else float32
    arr = (c_int64 * max(len(s), 1))(*s)
    o = c_void_p()
    st = lib.tsr_full(arr, len(s), _dtype_id(dtype), _dev(device), _C.scalar(fill_value), byref(o))
    if st:
        _raise(st, "full")
    return _finish(_wrap_h(o), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return full(_size(size), 0, dtype=dtype or float32, device=device, requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return full(_size(size), 1, dtype=dtype or float32, device=device, requires_grad=requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    return _finish(empty(*size, dtype=dtype or float32, device=device).uniform_(0.0, 1.0), requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    return _finish(empty(*size, dtype=dtype or float32, device=device).normal_(0.0, 1.0), requires_grad)


def randint(low, high=None, size=None, *, dtype=None, device=None, requires_grad=False, generator=None):
    """Uniform integers in [low, high): randint(high, size) or randint(low, high, size)."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if high <= low:
        raise ValueError(f"randint: expected low < high, got low={low}, high={high}")
    u = empty(*_size((size,) if isinstance(size, int) else size), dtype=float64, device=device)
    u.uniform_(0.0, float(high - low))
    r = u.to(int64).clamp(max=high - low - 1)
    if low:
        r = r + low
    return _finish(r.to(dtype) if dtype is not None else r, requires_grad)


def randperm(n, *, dtype=None, device=None, requires_grad=False, generator=None):
    return tensor(np.argsort(rand(n, dtype=float64).numpy(), kind="stable"), dtype=dtype or int64, device=device,
                  requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    o = c_void_p()
    st = _fast.tsr_arange(_C.scalar(start), _C.scalar(end), _C.scalar(step), _dtype_id(dtype), _dev(device),
                          byref(o))
    if st:
        _raise(st, "arange")
    return _finish(_wrap_h(o), requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    return tensor(np.linspace(start, end, steps), dtype=dtype or float32, device=device,
                  requires_grad=requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    return tensor(np.eye(n, m), dtype=dtype or float32, device=device, requires_grad=requires_grad)


def _like(t, dtype, device):
    return dict(dtype=dtype or t.dtype, device=t.device if device is None else device)


def empty_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return empty(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def zeros_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return zeros(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def ones_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return ones(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return full(input.shape, fill_value, requires_grad=requires_grad, **_like(input, dtype, device))


def rand_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return rand(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def randn_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return randn(input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def randint_like(input, low, high=None, *, dtype=None, device=None, requires_grad=False):
    return randint(low, high, input.shape, requires_grad=requires_grad, **_like(input, dtype, device))


def manual_seed(seed):
    lib.tsr_manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)


def seed():
    import random
    s = random.getrandbits(63)
    manual_seed(s)
    return s


# ---- functional forms ------------------------------------------------------------------------------
def where(condition, input=None, other=None):
    if not isinstance(condition, Tensor):
        raise TypeError(f"where(): condition must be a Tensor, got {type(condition).__name__}")
    if input is None and other is None:
        return tuple(tensor(i) for i in np.nonzero(condition._host_copy()))
    ti, to_ = isinstance(input, Tensor), isinstance(other, Tensor)
    if ti and to_:
        o = c_void_p()
        st = _fast.tsr_where(condition._h, input._h, other._h, byref(o))
        if st:
            _raise(st, "where")
        return _wrap_h(o)
    if ti or to_:
        s = _C.scalar(other if ti else input)
        a = _C.attrs(scalar_arg=2 if ti else 1)
        a.scalar = s
        return _call("where", [condition, input if ti else other], None, a)
    ref = condition
    return where(condition, tensor(input, device=ref.device), other)


def clamp(input, min=None, max=None, *, out=None):
    r = input.clamp(min, max)
    return out.copy_(r) if out is not None else r


clip = clamp


def _binary_function(name):
    method = getattr(Tensor, name, None) or _tensor._binary_method(name)

    def fn(input, other, *, out=None):
        if isinstance(input, Tensor):
            if out is not None:
                if isinstance(other, Tensor):
                    return _call(name, [input, other], out)
                return _call_scalar(name, input, _C.scalar(other), 1, out)
            return method(input, other)
        if isinstance(other, Tensor):
            s = scalar_or_none(input)
            if s is None:
                raise TypeError(f"{name}(): argument 'input' must be Tensor or Number, not {type(input).__name__}")
            return _call_scalar(name, other, s, 0, out)
        raise TypeError(f"{name}(): expected a Tensor argument, got {type(input).__name__} and "
                        f"{type(other).__name__}")
    fn.__name__ = name
    return fn


def _unary_function(name):
    method = getattr(Tensor, name, None) or _tensor._unary_method(name)  # no method for *_backward ops

    def fn(input, *, out=None):
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(input).__name__}")
        if out is not None:
            return _call(name, [input], out)
        return method(input)
    fn.__name__ = name
    return fn


def add(input, other, *, alpha=1, out=None):
    if alpha == 1:
        return _binary_function("add")(input, other, out=out)
    return input.add(other, alpha=alpha) if out is None else _call("add", [input, other], out, _C.attrs(alpha=alpha))


def sub(input, other, *, alpha=1, out=None):
    if alpha == 1:
        return _binary_function("sub")(input, other, out=out)
    return input.sub(other, alpha=alpha) if out is None else _call("sub", [input, other], out, _C.attrs(alpha=alpha))


def _method_function(name):
    def fn(input, *args, **kwargs):
        return getattr(input, name)(*args, **kwargs)
    fn.__name__ = name
    return fn


def functions():
    """Every op of the table (and the torch-named helpers) as a module-level function, by name."""
    out = {}
    for name, kind in OP_KINDS.items():
        if kind in ("BINARY", "COMPARE"):
            out[name] = _binary_function(name)
        elif kind == "UNARY":
            out[name] = _unary_function(name)
        elif kind in ("REDUCE", "SOFTMAX", "MATMUL", "VIEW"):
            out[name] = _method_function(name)
        elif kind in ("CONV", "POOL", "OPTIM", "NN", "INDEX", "SAMPLE", "FOREACH"):
            out[name] = _raw_op(name)  # (*_backward, grad_norm, ...: by op name, num_outputs= for several)
        elif kind in ("COPY", "FILL", "RANDOM"):  # in place on their first argument
            out[name] = _method_function(name + "_")
    out.update(_functional_forms())
    out.update(add=add, sub=sub, where=where, clamp=clamp, clip=clip, normal=normal, bernoulli=bernoulli,
               multinomial=multinomial, use_deterministic_algorithms=use_deterministic_algorithms,
               are_deterministic_algorithms_enabled=are_deterministic_algorithms_enabled,
               is_deterministic_algorithms_warn_only_enabled=is_deterministic_algorithms_warn_only_enabled)
    for name in ("mm", "bmm", "mv", "dot", "t", "numel", "square", "reciprocal", "lerp", "addmm", "amax", "amin",
                 "norm", "split", "chunk", "unbind", "clamp_min", "clamp_max", "masked_fill", "flatten",
                 "logical_not", "logical_and", "logical_or", "logical_xor", "negative", "multiply", "divide",
                 "true_divide", "subtract", "rsub", "swapaxes", "is_floating_point", "unflatten",
                 "gather", "index_select", "triu", "tril", "topk"):
        out[name] = _method_function(name)
    return out


def normal(mean=0.0, std=1.0, size=None, *, dtype=None, device=None, requires_grad=False, generator=None):
    """torch.normal: tensor or number mean/std; with numbers, `size` gives the shape."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        ref = mean if isinstance(mean, Tensor) else std
        return randn_like(ref) * std + mean
    return _finish(empty(*_size(size), dtype=dtype or float32, device=device).normal_(mean, std), requires_grad)


def bernoulli(input, p=None, *, generator=None):
    """0/1 samples with probabilities `input` (or the number p), in input's dtype."""
    return input.bernoulli(p)


def _functional_forms():
    """torch.layer_norm, torch.dropout and the other nn.functional ops that torch also has at the top level
    (nn.functional is imported when first called: it imports this module)."""
    def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
        from .nn import functional as F
        return F.layer_norm(input, normalized_shape, weight, bias, eps)

    def dropout(input, p=0.5, train=True):
        from .nn import functional as F
        return F.dropout(input, p, train)

    def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        from .nn import functional as F
        return F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale)

    def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        from .nn import functional as F
        return F.cross_entropy(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=label_smoothing)

    def embedding(weight, input, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
        from .nn import functional as F  # torch.embedding's order: (weight, indices); padding_idx -1: none
        return F.embedding(input, weight, None if padding_idx == -1 else padding_idx)
    return dict(layer_norm=layer_norm, dropout=dropout, scaled_dot_product_attention=scaled_dot_product_attention,
                cross_entropy=cross_entropy, embedding=embedding)


def multinomial(input, num_samples, replacement=False, *, generator=None, out=None):
    """torch.multinomial: int64 samples of the categories weighted by input's rows."""
    r = input.multinomial(num_samples, replacement)
    return out.copy_(r) if out is not None else r


_warn_only = [False]


def use_deterministic_algorithms(mode, *, warn_only=False):
    """Deterministic (bitwise reproducible) kernels where an op has a choice (embedding/gather backward on CUDA);
    the CPU is always deterministic."""
    _C.use_deterministic_algorithms(bool(mode))
    _warn_only[0] = bool(mode) and bool(warn_only)


def are_deterministic_algorithms_enabled():
    return _C.deterministic_algorithms_enabled()


def is_deterministic_algorithms_warn_only_enabled():
    return _warn_only[0]


def _raw_op(name):
    def fn(*inputs, out=None, **attrs):
        return _C.call_op(name, list(inputs), out=out, **attrs)
    fn.__name__ = name
    return fn


_CAT_MAX_INPUTS = 64  # the cat op's limit (ops.def): longer lists are concatenated in groups


def cat(tensors, dim=0, *, out=None):
    """Concatenation along dim through the cat op (differentiable; dtypes promoted). 1-D empty tensors are
    skipped, as torch's legacy rule."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"cat(): expected a sequence of Tensors, got {type(t).__name__} at position {i}")
    tensors = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
    ref = tensors[0]
    nd = ref.ndim
    if nd == 0:
        raise ValueError("cat(): zero-dimensional tensor (at position 0) cannot be concatenated")
    d = dim % nd if -nd <= dim < nd else None
    if d is None:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but got {dim})")
    for t in tensors:
        if t.device != ref.device:
            raise ValueError(f"cat(): expected all tensors on one device, got {ref.device} and {t.device}")
        if t.ndim != nd or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref.shape)) if i != d):
            raise ValueError(f"cat(): sizes of tensors must match except in dimension {d}: got "
                             f"{list(ref.shape)} and {list(t.shape)}")
    while len(tensors) > _CAT_MAX_INPUTS:
        tensors = [_C.call_op("cat", tensors[k:k + _CAT_MAX_INPUTS], dim=d)
                   for k in range(0, len(tensors), _CAT_MAX_INPUTS)]
    return _C.call_op("cat", tensors, out=out, dim=d)


concat = concatenate = cat


def stack(tensors, dim=0, *, out=None):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack(): expected a non-empty list of Tensors")
    nd = tensors[0].ndim + 1
    d = dim % nd if -nd <= dim < nd else None
    if d is None:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but got {dim})")
    for t in tensors:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} "
                             f"and {list(t.shape)}")
    return cat([t.unsqueeze(d) for t in tensors], d, out=out)


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    return input.numel()


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(np.allclose(input._host_copy(), other._host_copy(), rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other):
    return input.shape == other.shape and bool(np.array_equal(input._host_copy(), other._host_copy()))

