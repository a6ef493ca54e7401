"""Tensor indexing: the index operands of gather/index_select and the machinery behind __getitem__/__setitem__."""
from ctypes import byref, c_int64, c_void_p

import numpy as np

from ._tensor import Tensor, _fast, _raise, _wrap_h
from ._types import bool_


def _index_tensor(index, op):
    """An index operand: a Tensor of an integer dtype (anything else: the TypeError/IndexError torch raises)."""
    if not isinstance(index, Tensor):
        raise TypeError(f"{op}(): argument 'index' must be Tensor, not {type(index).__name__}")
    dt = index.dtype
    if dt.is_floating_point or dt is bool_:
        raise RuntimeError(f"{op}(): Expected dtype int32 or int64 for index, got {dt.name} "
                           f"(shape {list(index.shape)})")
    return index


def _is_advanced(k):
    if isinstance(k, Tensor):  # a 0-d integer tensor indexes like an int (a view, as PyTorch)
        return k.ndim != 0 or k.dtype.is_floating_point or k.dtype is bool_
    return isinstance(k, (list, np.ndarray)) or isinstance(k, bool)


def _slice(t, dim, s):
    step = 1 if s.step is None else s.step.__index__()
    if step <= 0:
        raise ValueError("step must be greater than zero")
    start = 0 if s.start is None else s.start.__index__()
    stop = (1 << 62) if s.stop is None else s.stop.__index__()
    o = c_void_p()
    st = _fast.tsr_slice(t._h, c_int64(dim), c_int64(start), c_int64(stop), c_int64(step), byref(o))
    if st:
        _raise(st, "index")
    return _wrap_h(o)


def _basic_index(t, key):
    """Views for ints, slices, None and Ellipsis."""
    ndim = t.ndim
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if consumed > ndim:
        raise IndexError(f"too many indices for tensor of dimension {ndim}")
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    dim = 0
    for k in key:
        if k is None:
            t = t.unsqueeze(dim)
            dim += 1
        elif k is Ellipsis:
            dim += ndim - consumed
        elif isinstance(k, slice):
            t = _slice(t, dim, k)
            dim += 1
        else:
            try:
                i = k.__index__()
            except AttributeError:
                raise TypeError(f"only integers, slices (`:`), ellipsis (`...`), None and integer or boolean "
                                f"tensors are valid indices (got {type(k).__name__})") from None
            o = c_void_p()
            st = _fast.tsr_select(t._h, c_int64(dim), c_int64(i), byref(o))
            if st:
                _raise(st, "index")
            t = _wrap_h(o)
    return t


def _np_key(key):
    out = []
    for k in key:
        if isinstance(k, Tensor):
            k = k._host_copy()
            if k.dtype != np.bool_ and k.dtype.kind not in "iu":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        out.append(k)
    return tuple(out)


_GATHER_LIMIT = 1 << 26  # elements of the one-hot matrix a differentiable gather may build


def _advanced_get(t, key):
    """Integer-array / boolean-mask indexing: a copy gathered through numpy, or, when t requires
    grad, a one-hot matmul over t's flattened elements so that the gradient flows back."""
    from . import _factories
    from .autograd import is_grad_enabled
    try:
        if t.requires_grad and is_grad_enabled():
            lin = np.arange(t.numel(), dtype=np.int64).reshape(t.shape)[_np_key(key)]
        else:
            r = t._host_copy()[_np_key(key)]
    except IndexError as e:
        raise IndexError(str(e)) from None
    if not (t.requires_grad and is_grad_enabled()):
        return _factories.tensor(np.asarray(r, order="C"), dtype=t.dtype, device=t.device)
    n, k = t.numel(), lin.size
    if n * k > _GATHER_LIMIT:
        raise NotImplementedError(
            f"[index] integer/mask indexing of a tensor that requires grad ({list(t.shape)} {t.dtype}) is done "
            f"as a one-hot matmul here, and {k} x {n} elements is too large; index under no_grad or with slices")
    idx = _factories.tensor(lin.reshape(k, 1), device=t.device)
    onehot = (idx == _factories.arange(n, device=t.device).reshape(1, n)).to(t.dtype)  # [k, n]
    return (onehot @ t.reshape(n, 1)).reshape(lin.shape)


def _advanced_set(t, key, value):
    """Integer-array / boolean-mask writes: computed through numpy, then copied in with copy_ (so the
    version counter moves and autograd's in-place checks apply). Not differentiable."""
    from . import _factories
    from .autograd import is_grad_enabled
    if is_grad_enabled() and (t.requires_grad or (isinstance(value, Tensor) and value.requires_grad)):
        raise NotImplementedError(
            f"[index_put] integer/mask index assignment on {list(t.shape)} {t.dtype} with tensors that require "
            f"grad is not differentiable yet; use slices, or do it under tessera.no_grad()")
    a = t._host_copy()
    v = value._host_copy() if isinstance(value, Tensor) else value
    try:
        a[_np_key(key)] = v
    except IndexError as e:
        raise IndexError(str(e)) from None
    t.copy_(_factories.tensor(a, dtype=t.dtype, device=t.device))
