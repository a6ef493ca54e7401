# The Tensor class (owning a TsrTensor handle) and the op methods with their lean fast paths; dtypes, devices
# and Size live in _types.py.
import collections
import ctypes
import math
import os
import re
import struct
from ctypes import byref, c_char_p, c_int32, c_int64, c_void_p

import numpy as np

from . import _C
from . import amp as _amp
from ._C import TensorInfo, lib, scalar_or_none

_fast = _C.fast
_error = _C.error
_new_info = TensorInfo.from_buffer_copy
_INFO0 = bytes(TensorInfo(184))


_tsr_requires_grad = _fast.tsr_requires_grad
_tsr_set_requires_grad = _fast.tsr_set_requires_grad
_tsr_is_leaf = _fast.tsr_is_leaf
_tsr_grad = _fast.tsr_grad
_tsr_set_grad = _fast.tsr_set_grad
_tsr_grad_fn_name = _fast.tsr_grad_fn_name
_tsr_retain_grad = _fast.tsr_retain_grad
_tsr_detach = _fast.tsr_detach


from ._types import (_DTYPE_NAMES, _DTYPES, Size, _device_of, _dtype_id, bfloat16, bool_, device, dtype, float16,
                     float32, float64, int32, int64, uint8)




# ---- helpers -----------------------------------------------------------------------------------
def _raise(status, where=None):
    raise _error(status, where)


def _dims_arg(dims):
    """Sizes given as varargs or one sequence -> tuple of ints."""
    if len(dims) == 1 and not isinstance(dims[0], (int, np.integer)):
        dims = dims[0]
    try:
        return tuple(int(d) if isinstance(d, (int, np.integer)) else d.__index__() for d in dims)
    except (TypeError, AttributeError):
        raise TypeError(f"expected a sequence of ints, got {dims!r}") from None


def _i64(values):
    n = len(values)
    return (c_int64 * n)(*values), n


def _wrap(handle):
    """A Tensor owning `handle` (an int or c_void_p returned owned by the runtime)."""
    t = object.__new__(Tensor)
    t._h = handle if type(handle) is c_void_p else c_void_p(handle.value if isinstance(handle, c_void_p) else handle)
    return t


def _wrap_h(o, _new=object.__new__):
    """A Tensor owning the handle in c_void_p o."""
    t = _new(Tensor)
    t._h = o
    return t


def _ints(x):
    return (x,) if isinstance(x, int) else tuple(x)


_return_max = collections.namedtuple("max", ["values", "indices"])
_return_min = collections.namedtuple("min", ["values", "indices"])
_return_topk = collections.namedtuple("topk", ["values", "indices"])
_amp_active = _amp._active  # [count of enabled autocast regions]: the ops' cheap check

# Op kinds of the ops that are not plain unary/binary (see ops.def); a new UNARY or BINARY op of the table
# is found from the library's entry points (tsr_<op>_scalar: binary) or from ops.def itself.
_SPECIAL_KINDS = {
    "where": "WHERE", "clamp": "CLAMP", "copy": "COPY", "fill": "FILL", "arange": "ARANGE",
    "sum": "REDUCE", "mean": "REDUCE", "max": "REDUCE", "min": "REDUCE", "argmax": "REDUCE", "argmin": "REDUCE",
    "prod": "REDUCE", "var": "REDUCE", "std": "REDUCE", "softmax": "SOFTMAX", "log_softmax": "SOFTMAX",
    "matmul": "MATMUL", "uniform": "RANDOM", "normal": "RANDOM", "bernoulli": "RANDOM",
    "conv2d": "CONV", "conv2d_backward_input": "CONV", "conv2d_backward_weight": "CONV",
    "max_pool2d": "POOL", "max_pool2d_backward": "POOL", "sgd_step": "OPTIM", "adam_step": "OPTIM",
    "view": "VIEW", "reshape": "VIEW", "permute": "VIEW", "transpose": "VIEW", "slice": "VIEW",
    "narrow": "VIEW", "select": "VIEW", "expand": "VIEW", "squeeze": "VIEW", "unsqueeze": "VIEW",
    "flatten": "VIEW", "as_strided": "VIEW",
    "layer_norm": "NN", "layer_norm_backward": "NN", "scaled_dot_product_attention": "NN",
    "scaled_dot_product_attention_backward": "NN", "cross_entropy": "NN", "cross_entropy_backward": "NN",
    "index_select": "INDEX", "index_select_backward": "INDEX", "gather": "INDEX", "gather_backward": "INDEX",
    "triu": "INDEX", "tril": "INDEX", "topk": "INDEX", "dropout": "SAMPLE", "multinomial": "SAMPLE",
    "grad_norm": "FOREACH", "clip_grad_scale": "FOREACH", "cat": "COMPOSITE",
}


def _ops_def_kinds():
    """Kinds read from ops.def (repo checkout or installed headers), {} if it cannot be found."""
    here = os.path.dirname(os.path.abspath(__file__))
    lib_dir = os.path.dirname(os.path.realpath(_C.library_path)) if os.sep in _C.library_path else ""
    for path in (os.path.join(here, "..", "..", "include", "tessera", "ops.def"),
                 os.path.join(lib_dir, "..", "include", "tessera", "ops.def"),
                 os.path.join(lib_dir, "..", "..", "include", "tessera", "ops.def")):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        return {m.group(1): m.group(2) for m in re.finditer(r"^\s*TSR_OP\((\w+),\s*(\w+)\s*,", text, re.M)}
    return {}


def _op_kinds():
    kinds = _ops_def_kinds()
    out = {}
    for name in _C.op_names:
        kind = _SPECIAL_KINDS.get(name) or kinds.get(name)
        if kind is None:
            if hasattr(_fast, f"tsr_{name}_scalar"):
                kind = "BINARY"
            else:
                continue  # unknown kind: reachable through _C.call_op only
        out[name] = kind
    return out


OP_KINDS = _op_kinds()


def _call(name, inputs, out=None, attrs=None):
    """tsr_call of op `name` on Tensors `inputs`, attrs a ready Attrs (or None); writes into out if given."""
    n = len(inputs)
    ins = (c_void_p * max(n, 1))(*[t._h.value for t in inputs])
    outs = (c_void_p * 1)(out._h.value if out is not None else None)
    st = lib.tsr_call(_C.op_id(name), ins, n, byref(attrs) if attrs is not None else None, outs, 1)
    if st:
        _raise(st, name)
    return out if out is not None else _wrap(outs[0])


def _call_n(name, inputs, num_outputs, attrs=None):
    """tsr_call of op `name` with num_outputs new results, returned as a tuple of Tensors."""
    n = len(inputs)
    ins = (c_void_p * max(n, 1))(*[t._h.value for t in inputs])
    outs = (c_void_p * num_outputs)()
    st = lib.tsr_call(_C.op_id(name), ins, n, byref(attrs) if attrs is not None else None, outs, num_outputs)
    if st:
        _raise(st, name)
    return tuple(_wrap(o) for o in outs)


def _call_scalar(name, x, s, scalar_arg, out=None, **kw):
    """A binary op with a scalar operand (scalar_arg 0: the scalar is the first operand)."""
    a = _C.attrs(**kw)
    a.scalar = s
    a.scalar_arg = scalar_arg
    return _call(name, [x], out, a)


def _as_tensor_like(value, ref):
    """value (a number, list, array or Tensor) as a Tensor on ref's device."""
    if isinstance(value, Tensor):
        return value
    from . import _factories
    return _factories.tensor(value, device=ref.device)


# ---- the Tensor ----------------------------------------------------------------------------------
class Tensor:
    """A Tessera tensor: `_h` is the TsrTensor handle it owns (a ctypes.c_void_p, released in __del__).
    Made by the factories and ops; a subclass (nn.Parameter) is made with Tensor._make_subclass."""
    __slots__ = ("_h", "_shape", "_dt", "_dev", "__weakref__")
    __array_priority__ = 1000

    def __del__(self, _release=_fast.tsr_release):
        try:
            _release(self._h)
        except AttributeError:  # never got a handle
            pass

    def __init__(self, *args, **kwargs):
        raise TypeError("tessera.Tensor is not constructed directly: use tessera.tensor(data), tessera.empty(...)"
                        " or another factory")

    # -- handle ------------------------------------------------------------------------------
    def _set_handle(self, h):
        """Makes this object own handle h (an int) instead of its current one."""
        old = getattr(self, "_h", None)
        self._h = c_void_p(h)
        for slot in ("_shape", "_dt", "_dev"):
            try:
                delattr(self, slot)
            except AttributeError:
                pass
        if old is not None:
            _fast.tsr_release(old)

    def _take(self, other):
        """Moves other's handle into self (other is left without one)."""
        h = other._h
        other._h = c_void_p()
        self._set_handle(h.value)

    @staticmethod
    def _make_subclass(subclass, data, require_grad=False):
        """A `subclass` instance sharing data's storage (detached), as torch.Tensor._make_subclass."""
        obj = object.__new__(subclass)
        obj._h = data.detach()._release_handle()
        if require_grad:
            obj.requires_grad_(True)
        return obj

    def _release_handle(self):
        """The handle (c_void_p), which the caller now owns; this object is left without one."""
        h = self._h
        self._h = c_void_p()
        return h

    def _info(self):
        i = _new_info(_INFO0)
        st = _fast.tsr_tensor_info(self._h, byref(i))
        if st:
            _raise(st)
        return i

    # -- metadata ----------------------------------------------------------------------------
    @property
    def shape(self):
        try:
            return self._shape
        except AttributeError:
            i = self._info()
            s = self._shape = Size(i.sizes[:i.ndim])
            self._dt = _DTYPES[i.dtype]
            self._dev = _device_of(i.device.type, i.device.index)
            return s

    def size(self, dim=None):
        s = self.shape
        if dim is None:
            return s
        try:
            return s[dim]
        except IndexError:
            raise IndexError(f"Dimension out of range (expected to be in range of [{-len(s)}, {len(s) - 1}], "
                             f"but got {dim})") from None

    @property
    def dtype(self):
        try:
            return self._dt
        except AttributeError:
            self.shape
            return self._dt

    @property
    def device(self):
        try:
            return self._dev
        except AttributeError:
            self.shape
            return self._dev

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def is_cpu(self):
        return self.device.type == "cpu"

    @property
    def ndim(self):
        return len(self.shape)

    def dim(self):
        return len(self.shape)

    ndimension = dim

    def numel(self):
        return math.prod(self.shape)

    nelement = numel

    def element_size(self):
        return self.dtype.itemsize

    def stride(self, dim=None):
        i = self._info()
        s = tuple(i.strides[:i.ndim])
        return s if dim is None else s[dim]

    def storage_offset(self):
        return self._info().storage_offset

    def data_ptr(self):
        return self._info().data or 0

    def is_contiguous(self):
        return bool(self._info().is_contiguous)

    def is_floating_point(self):
        return self.dtype.is_floating_point

    @property
    def _version(self):
        return self._info().version

    @property
    def is_leaf(self):
        r = c_int32()
        st = _tsr_is_leaf(self._h, byref(r))
        if st:
            _raise(st)
        return bool(r.value)

    # -- autograd ----------------------------------------------------------------------------
    @property
    def requires_grad(self):
        r = c_int32()
        st = _tsr_requires_grad(self._h, byref(r))
        if st:
            _raise(st)
        return bool(r.value)

    @requires_grad.setter
    def requires_grad(self, value):
        st = _tsr_set_requires_grad(self._h, 1 if value else 0)
        if st:
            _raise(st)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self):
        o = c_void_p()
        st = _tsr_grad(self._h, byref(o))
        if st:
            _raise(st)
        return _wrap_h(o) if o.value else None

    @grad.setter
    def grad(self, value):
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"assigned grad expected to be a Tensor or None but got {type(value).__name__}")
        st = _tsr_set_grad(self._h, value._h if value is not None else None)
        if st:
            _raise(st)

    @grad.deleter
    def grad(self):
        self.grad = None

    @property
    def grad_fn(self):
        name = c_char_p()
        st = _tsr_grad_fn_name(self._h, byref(name))
        if st:
            _raise(st)
        return GradFn(name.value.decode()) if name.value else None

    def retain_grad(self):
        st = _tsr_retain_grad(self._h)
        if st:
            _raise(st)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None,
                 _backward=lib.tsr_backward):
        if gradient is None and inputs is None and not create_graph:  # the common case: seed 1
            st = _backward(byref(self._h), None, 1, 1 if retain_graph else 0)
            if st:
                _raise(st, "backward")
            return
        from . import autograd
        autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self):
        o = c_void_p()
        st = _tsr_detach(self._h, byref(o))
        if st:
            _raise(st)
        return _wrap_h(o)

    def detach_(self):
        self._take(self.detach())
        return self

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be a Tensor, got {type(value).__name__}")
        rg = self.requires_grad and self.is_leaf
        self._take(value.detach())
        if rg:
            self.requires_grad_(True)

    # -- conversion --------------------------------------------------------------------------
    def numpy(self, force=False):
        """An ndarray over this tensor's memory (zero copy; keeps the tensor alive)."""
        if self.requires_grad:
            if not force:
                raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                                   "Use tensor.detach().numpy() instead.")
            return self.detach().numpy()
        i = self._info()
        if i.device.type != 0:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. "
                            f"Use Tensor.cpu() to copy the tensor to host memory first.")
        dt = _DTYPES[i.dtype]
        if dt._np is None:
            raise TypeError(f"Got unsupported ScalarType {dt.name} (numpy has no {dt.name}; "
                            f"use .float().numpy())")
        return np.asarray(_ArrayRef(self, i, dt))

    def __array__(self, dtype=None):
        t = self.detach()
        if t.dtype is bfloat16:
            t = t.float()
        a = t.cpu().numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def _host_copy(self):
        """A detached CPU numpy copy (bfloat16 as float32)."""
        t = self.detach()
        if t.dtype is bfloat16:
            t = t.float()
        return np.array(t.cpu().numpy())

    def tolist(self):
        return self._host_copy().tolist()

    def item(self):
        i = self._info()
        dt = _DTYPES[i.dtype]
        if i.numel != 1:
            raise RuntimeError(f"a Tensor with {i.numel} elements cannot be converted to Scalar")
        if i.device.type == 0:
            return _ITEM_READERS[i.dtype](ctypes.string_at(i.data, dt.itemsize))
        buf = ctypes.create_string_buffer(dt.itemsize)
        st = lib.tsr_copy_to_host(self._h, buf, dt.itemsize)
        if st:
            _raise(st)
        return _ITEM_READERS[i.dtype](buf.raw)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.is_floating_point or self.dtype is bool_ or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        n = self.numel()
        if n != 1:
            raise RuntimeError(f"Boolean value of Tensor with {'more than one value' if n else 'no values'} "
                               f"is ambiguous")
        return bool(self.item())

    def __complex__(self):
        return complex(self.item())

    def __contains__(self, element):
        return bool((self == element).sum().item())

    def any(self, dim=None, keepdim=False):
        return (self != 0).sum(dim, keepdim) > 0

    def all(self, dim=None, keepdim=False):
        return (self == 0).sum(dim, keepdim) == 0

    def __len__(self):
        s = self.shape
        if not s:
            raise TypeError("len() of a 0-d tensor")
        return s[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __hash__(self):
        return id(self)

    def __repr__(self, *, tensor_contents=None):
        from ._format import tensor_repr
        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, spec):
        if not self.shape:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __reduce_ex__(self, protocol):
        return (_rebuild, (self._host_copy(), self.dtype.name, self.requires_grad))

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        obj = object.__new__(type(self))
        obj._h = self.detach().clone()._release_handle()
        if self.requires_grad:
            obj.requires_grad_(True)
        if hasattr(self, "__dict__"):
            import copy
            obj.__dict__.update(copy.deepcopy(self.__dict__, memo))
        memo[id(self)] = obj
        return obj

    def __copy__(self):
        raise RuntimeError("use tensor.clone() or copy.deepcopy() to copy a tensor")

    # -- devices and dtypes --------------------------------------------------------------------
    def to(self, *args, **kwargs):
        """to(device), to(dtype), to(device, dtype), to(other), with keywords device=, dtype=, copy=."""
        dev = kwargs.pop("device", None)
        dt = kwargs.pop("dtype", None)
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dev, dt = a.device, a.dtype
            elif isinstance(a, (dtype, np.dtype)) or a in (float, int, bool):
                dt = a
            elif isinstance(a, (str, device)):
                dev = a
            elif isinstance(a, bool):
                pass  # non_blocking / copy positional
            elif isinstance(a, int):
                dev = a  # a CUDA ordinal
            else:
                raise TypeError(f"to() received an invalid argument {a!r}")
        d = _C.device_struct(dev) if dev is not None else self._info().device
        o = c_void_p()
        st = lib.tsr_to(self._h, d, _dtype_id(dt), byref(o))
        if st:
            _raise(st, "to")
        if o.value == self._h.value:
            _fast.tsr_release(o)
            return self.clone() if copy else self
        return _wrap_h(o)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None, non_blocking=False):
        return self.to("cuda" if device is None else device)

    def record_stream(self, stream):
        """Marks this tensor's memory as used on `stream` (a tessera.cuda.Stream): when the tensor is freed, the
        memory is not reused before the work enqueued on that stream so far is done."""
        _C.abi12("tsr_record_stream", self._h, stream._h)

    def type_as(self, other):
        return self.to(other.dtype)

    def type(self, dtype=None):
        if dtype is None:
            return f"tessera.{self.dtype.name}"
        return self.to(dtype)

    def contiguous(self, memory_format=None):
        o = c_void_p()
        st = lib.tsr_contiguous(self._h, byref(o))
        if st:
            _raise(st, "contiguous")
        if o.value == self._h.value:
            _fast.tsr_release(o)
            return self
        return _wrap_h(o)

    def clone(self, memory_format=None):
        o = c_void_p()
        st = lib.tsr_clone(self._h, byref(o))
        if st:
            _raise(st, "clone")
        return _wrap_h(o)

    # -- in-place writes -----------------------------------------------------------------------
    def copy_(self, src, non_blocking=False):
        if not isinstance(src, Tensor):
            src = _as_tensor_like(src, self)
        st = lib.tsr_copy_(self._h, src._h)
        if st:
            _raise(st, "copy_")
        return self

    def fill_(self, value):
        if isinstance(value, Tensor):
            value = value.item()
        st = _fast.tsr_fill_(self._h, _C.scalar(value))
        if st:
            _raise(st, "fill_")
        return self

    def zero_(self):
        return self.fill_(0)

    def uniform_(self, from_=0.0, to=1.0, *, generator=None):
        st = _fast.tsr_uniform_(self._h, _C.scalar(float(from_)), _C.scalar(float(to)))
        if st:
            _raise(st, "uniform_")
        return self

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        st = _fast.tsr_normal_(self._h, _C.scalar(float(mean)), _C.scalar(float(std)))
        if st:
            _raise(st, "normal_")
        return self

    def bernoulli_(self, p=0.5, *, generator=None):
        if isinstance(p, Tensor):
            return self.copy_(rand_like_(p) < p)
        st = _fast.tsr_bernoulli_(self._h, _C.scalar(float(p)), _C.scalar(0.0))
        if st:
            _raise(st, "bernoulli_")
        return self

    def bernoulli(self, p=None, *, generator=None):
        if p is not None:
            return self.new_empty(self.shape).bernoulli_(p)
        return (rand_like_(self) < self).to(self.dtype)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        from . import _factories
        return _factories.empty(*size, dtype=dtype or self.dtype, device=self.device if device is None else device,
                                requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_empty(*size, dtype=dtype, device=device).zero_().requires_grad_(requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_empty(*size, dtype=dtype, device=device).fill_(1).requires_grad_(requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
        return self.new_empty(size, dtype=dtype, device=device).fill_(fill_value).requires_grad_(requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from . import _factories
        return _factories.tensor(data, dtype=dtype or self.dtype, device=self.device if device is None else device,
                                 requires_grad=requires_grad)

    # -- views -----------------------------------------------------------------------------------
    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (dtype, str)):
            raise NotImplementedError("view(dtype) is not supported; use .to(dtype)")
        arr, n = _i64(_dims_arg(shape))
        o = c_void_p()
        st = _fast.tsr_view(self._h, arr, n, byref(o))
        if st:
            _raise(st, "view")
        return _wrap_h(o)

    def reshape(self, *shape):
        arr, n = _i64(_dims_arg(shape))
        o = c_void_p()
        st = _fast.tsr_reshape(self._h, arr, n, byref(o))
        if st:
            _raise(st, "reshape")
        return _wrap_h(o)

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def permute(self, *dims):
        arr, n = _i64(_dims_arg(dims))
        o = c_void_p()
        st = _fast.tsr_permute(self._h, arr, n, byref(o))
        if st:
            _raise(st, "permute")
        return _wrap_h(o)

    def transpose(self, dim0, dim1):
        o = c_void_p()
        st = _fast.tsr_transpose(self._h, c_int64(dim0), c_int64(dim1), byref(o))
        if st:
            _raise(st, "transpose")
        return _wrap_h(o)

    swapaxes = transpose

    def t(self):
        o = c_void_p()
        st = _fast.tsr_t(self._h, byref(o))
        if st:
            _raise(st, "t")
        return _wrap_h(o)

    @property
    def T(self):
        n = self.ndim
        return self if n < 2 else self.permute(tuple(range(n - 1, -1, -1)))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def squeeze(self, dim=None):
        o = c_void_p()
        if dim is None:
            st = _fast.tsr_squeeze(self._h, None, 0, byref(o))
        else:
            arr, n = _i64(_ints(dim))
            st = _fast.tsr_squeeze(self._h, arr, n, byref(o))
        if st:
            _raise(st, "squeeze")
        return _wrap_h(o)

    def unsqueeze(self, dim):
        o = c_void_p()
        st = _fast.tsr_unsqueeze(self._h, c_int64(dim), byref(o))
        if st:
            _raise(st, "unsqueeze")
        return _wrap_h(o)

    def flatten(self, start_dim=0, end_dim=-1):
        o = c_void_p()
        st = _fast.tsr_flatten(self._h, c_int64(start_dim), c_int64(end_dim), byref(o))
        if st:
            _raise(st, "flatten")
        return _wrap_h(o)

    def unflatten(self, dim, sizes):
        s = list(self.shape)
        dim = dim % len(s) if s else 0
        return self.view(s[:dim] + list(sizes) + s[dim + 1:])

    def expand(self, *sizes):
        arr, n = _i64(_dims_arg(sizes))
        o = c_void_p()
        st = _fast.tsr_expand(self._h, arr, n, byref(o))
        if st:
            _raise(st, "expand")
        return _wrap_h(o)

    def expand_as(self, other):
        return self.expand(other.shape)

    def narrow(self, dim, start, length):
        o = c_void_p()
        st = _fast.tsr_narrow(self._h, c_int64(dim), c_int64(int(start)), c_int64(int(length)), byref(o))
        if st:
            _raise(st, "narrow")
        return _wrap_h(o)

    def select(self, dim, index):
        o = c_void_p()
        st = _fast.tsr_select(self._h, c_int64(dim), c_int64(int(index)), byref(o))
        if st:
            _raise(st, "select")
        return _wrap_h(o)

    def as_strided(self, size, stride, storage_offset=None):
        if storage_offset is None:
            storage_offset = self.storage_offset()
        sz, n = _i64(tuple(size))
        sd, m = _i64(tuple(stride))
        if n != m:
            raise ValueError(f"as_strided: got {n} sizes but {m} strides")
        o = c_void_p()
        st = _fast.tsr_as_strided(self._h, sz, sd, n, c_int64(storage_offset), byref(o))
        if st:
            _raise(st, "as_strided")
        return _wrap_h(o)

    def split(self, split_size_or_sections, dim=0):
        size = self.shape[dim]
        if isinstance(split_size_or_sections, int):
            step = split_size_or_sections
            if step <= 0:
                raise ValueError(f"split_size must be positive, got {step}")
            sections = [min(step, size - s) for s in range(0, size, step)] or [0]
        else:
            sections = list(split_size_or_sections)
            if sum(sections) != size:
                raise ValueError(f"split sections {sections} do not sum to dim {dim}'s size {size}")
        out, start = [], 0
        for s in sections:
            out.append(self.narrow(dim, start, s))
            start += s
        return tuple(out)

    def chunk(self, chunks, dim=0):
        if chunks <= 0:
            raise ValueError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
        size = self.shape[dim]
        return self.split(max(1, -(-size // chunks)), dim)

    def unbind(self, dim=0):
        return tuple(self.select(dim, i) for i in range(self.shape[dim]))

    # -- indexing ----------------------------------------------------------------------------------
    def __getitem__(self, key):
        tk = type(key)
        if tk is int:
            o = c_void_p()
            st = _fast.tsr_select(self._h, c_int64(0), c_int64(key), byref(o))
            if st:
                _raise(st, "index")
            return _wrap_h(o)
        if tk is slice:
            return _slice(self, 0, key)
        if tk is not tuple:
            key = (key,)
        if any(_is_advanced(k) for k in key):
            return _advanced_get(self, key)
        return _basic_index(self, key)

    def __setitem__(self, key, value):
        tk = type(key)
        if tk is not tuple:
            key = (key,)
        if any(_is_advanced(k) for k in key):
            return _advanced_set(self, key, value)
        view = _basic_index(self, key)
        if isinstance(value, Tensor):
            view.copy_(value)
        else:
            s = scalar_or_none(value)
            if s is None:
                view.copy_(_as_tensor_like(value, self))
            else:
                st = _fast.tsr_fill_(view._h, s)
                if st:
                    _raise(st, "setitem")

    # -- reductions ------------------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if _amp_active[0] and dtype is None:
            x = _amp.fp32_arg(x)
        return _reduce(_fast.tsr_sum, "sum", x, dim, keepdim)

    def mean(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        return _reduce(_fast.tsr_mean, "mean", x, dim, keepdim)

    def prod(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if _amp_active[0] and dtype is None:
            x = _amp.fp32_arg(x)
        return _reduce(_fast.tsr_prod, "prod", x, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is None:
            return _reduce(_fast.tsr_max, "max", self, None, False)
        return _return_max(_reduce(_fast.tsr_max, "max", self, dim, keepdim), self.argmax(dim, keepdim))

    def min(self, dim=None, keepdim=False):
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is None:
            return _reduce(_fast.tsr_min, "min", self, None, False)
        return _return_min(_reduce(_fast.tsr_min, "min", self, dim, keepdim), self.argmin(dim, keepdim))

    def amax(self, dim=(), keepdim=False):
        return _reduce(_fast.tsr_max, "amax", self, dim if dim != () else None, keepdim)

    def amin(self, dim=(), keepdim=False):
        return _reduce(_fast.tsr_min, "amin", self, dim if dim != () else None, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return _reduce(_fast.tsr_argmax, "argmax", self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _reduce(_fast.tsr_argmin, "argmin", self, dim, keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _var_std("var", self, dim, unbiased, keepdim, correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _var_std("std", self, dim, unbiased, keepdim, correction)

    def norm(self, p=2, dim=None, keepdim=False):
        if p == 2:
            return (self * self).sum(dim, keepdim).sqrt()
        if p == 1:
            return self.abs().sum(dim, keepdim)
        return (self.abs() ** p).sum(dim, keepdim) ** (1.0 / p)

    def softmax(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if _amp_active[0] and dtype is None:
            x = _amp.fp32_arg(x)
        o = c_void_p()
        st = _fast.tsr_softmax(x._h, c_int64(dim), byref(o))
        if st:
            _raise(st, "softmax")
        return _wrap_h(o)

    def log_softmax(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if _amp_active[0] and dtype is None:
            x = _amp.fp32_arg(x)
        o = c_void_p()
        st = _fast.tsr_log_softmax(x._h, c_int64(dim), byref(o))
        if st:
            _raise(st, "log_softmax")
        return _wrap_h(o)

    # -- linear algebra -----------------------------------------------------------------------------
    def matmul(self, other):
        if not isinstance(other, Tensor):
            raise TypeError(f"matmul(): argument 'other' must be Tensor, not {type(other).__name__}")
        if _amp_active[0]:
            self, other = _amp.lower_args(self, other)
        o = c_void_p()
        st = lib.tsr_matmul(self._h, other._h, byref(o))
        if st:
            _raise(st, "matmul")
        return _wrap_h(o)

    def __matmul__(self, other):
        if not isinstance(other, Tensor):
            return NotImplemented
        if _amp_active[0]:
            self, other = _amp.lower_args(self, other)
        o = c_void_p()
        st = lib.tsr_matmul(self._h, other._h, byref(o))
        if st:
            _raise(st, "matmul")
        return _wrap_h(o)

    def __rmatmul__(self, other):
        if not isinstance(other, Tensor):
            return NotImplemented
        return other.matmul(self)

    def mm(self, other):
        if self.ndim != 2 or other.ndim != 2:
            raise ValueError(f"mm: expected 2-D tensors, got shapes {list(self.shape)} and {list(other.shape)}")
        return self.matmul(other)

    def bmm(self, other):
        if self.ndim != 3 or other.ndim != 3:
            raise ValueError(f"bmm: expected 3-D tensors, got shapes {list(self.shape)} and {list(other.shape)}")
        return self.matmul(other)

    def mv(self, vec):
        return self.matmul(vec)

    def dot(self, other):
        return (self * other).sum()

    # -- selection ---------------------------------------------------------------------------------
    def clamp(self, min=None, max=None):
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            r = self
            if min is not None:
                r = r.maximum(min if isinstance(min, Tensor) else _as_tensor_like(min, self))
            if max is not None:
                r = r.minimum(max if isinstance(max, Tensor) else _as_tensor_like(max, self))
            return r
        if min is None and max is None:
            raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
        o = c_void_p()
        st = _fast.tsr_clamp(self._h, byref(_C.scalar(min)) if min is not None else None,
                             byref(_C.scalar(max)) if max is not None else None, byref(o))
        if st:
            _raise(st, "clamp")
        return _wrap_h(o)

    clip = clamp

    def clamp_(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp_: at least one of 'min' or 'max' must not be None")
        a = _C.attrs()
        if min is not None:
            a.scalar, a.has_scalar = _C.scalar(min), 1
        if max is not None:
            a.scalar2, a.has_scalar2 = _C.scalar(max), 1
        return _call("clamp", [self], self, a)

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    def where(self, condition, other):
        from . import _factories
        return _factories.where(condition, self, other)

    def masked_fill(self, mask, value):
        """value where mask (bool, broadcast with self) is True, self elsewhere, in self's dtype; value is a
        number or a 0-dim tensor (differentiable in both self and a tensor value)."""
        from . import _factories
        if not isinstance(mask, Tensor):
            raise TypeError(f"masked_fill(): argument 'mask' must be Tensor, not {type(mask).__name__}")
        if mask.dtype is not bool_:
            if mask.dtype is not uint8:
                raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype "
                                   f"{mask.dtype.name}")
            mask = mask != 0  # uint8 masks: deprecated in torch, still accepted
        if isinstance(value, Tensor):
            if value.ndim != 0:
                raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                                   f"{value.ndim} dimension(s).")
            value = value.to(self.device, self.dtype)  # (a 0-dim CPU value is fine for a CUDA self, as torch)
        else:
            dt = self.dtype
            value = bool(value) if dt is bool_ else value if dt.is_floating_point or isinstance(value, int) \
                else int(value)
        return _factories.where(mask, value, self)

    def masked_fill_(self, mask, value):
        return self.copy_(self.masked_fill(mask, value))

    # -- indexing ops (INDEX kind) --------------------------------------------------------------------
    def gather(self, dim, index, *, sparse_grad=False):
        """out[..i..] = self[..index[..i..]..] along dim (index: same ndim, sizes <= self's off dim)."""
        _index_tensor(index, "gather")
        return _call("gather", [self, index], None, _C.attrs(dim=int(dim)))

    def index_select(self, dim, index):
        """The slices of self at `index` (a 1-D or 0-dim integer tensor) along dim."""
        _index_tensor(index, "index_select")
        if index.ndim > 1:
            raise IndexError(f"index_select(): Index is supposed to be a vector, got shape {list(index.shape)}")
        if index.ndim == 0:
            index = index.reshape(1)
        return _call("index_select", [self, index], None, _C.attrs(dim=int(dim)))

    def triu(self, diagonal=0):
        return _call("triu", [self], None, _C.attrs(index=int(diagonal)))

    def tril(self, diagonal=0):
        return _call("tril", [self], None, _C.attrs(index=int(diagonal)))

    def triu_(self, diagonal=0):
        return self.copy_(self.triu(diagonal))

    def tril_(self, diagonal=0):
        return self.copy_(self.tril(diagonal))

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """(values, indices) of the k largest (smallest) elements along dim, always sorted; ties in index
        order, NaN counted largest. Differentiable in self through values."""
        a = _C.attrs(dim=int(dim), index=int(k), hp=(1.0 if largest else 0.0,))
        return _return_topk(*_call_n("topk", [self], 2, a))

    def multinomial(self, num_samples, replacement=False, *, generator=None):
        """int64 category indices drawn from the rows of self (weights [C] or [R, C], not necessarily
        normalized) from the seeded generator: [num_samples] or [R, num_samples]."""
        if not self.dtype.is_floating_point:
            raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got: {self.dtype.name}")
        if self.ndim not in (1, 2):
            raise RuntimeError(f"prob_dist must be 1 or 2 dim, got shape {list(self.shape)}")
        n = int(num_samples)
        if n <= 0:
            raise RuntimeError(f"cannot sample n_sample <= 0 samples (got {n})")
        if not replacement and n > self.shape[-1]:
            raise RuntimeError(f"cannot sample n_sample > prob_dist.size(-1) samples without replacement "
                               f"({n} > {self.shape[-1]})")
        return _call("multinomial", [self], None, _C.attrs(index=n, hp=(1.0 if replacement else 0.0,)))

    # -- arithmetic helpers with torch names ----------------------------------------------------------
    def add(self, other, *, alpha=1):
        return _arith("add", self, other, alpha)

    def sub(self, other, *, alpha=1):
        return _arith("sub", self, other, alpha)

    subtract = sub

    def add_(self, other, *, alpha=1):
        return _arith("add", self, other, alpha, out=self)

    def sub_(self, other, *, alpha=1):
        return _arith("sub", self, other, alpha, out=self)

    def div(self, other, *, rounding_mode=None):
        if rounding_mode is not None:
            raise NotImplementedError("div: rounding_mode is not supported yet")
        return _arith("div", self, other)

    divide = true_divide = div

    def square(self):
        return self * self

    def rsub(self, other, alpha=1):
        return _arith("sub", _as_tensor_like(other, self), self, alpha)

    def reciprocal(self):
        return 1.0 / self

    def lerp(self, end, weight):
        return self + (end - self) * weight

    def addmm(self, mat1, mat2, *, beta=1, alpha=1):
        return self * beta + mat1.matmul(mat2) * alpha

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def half(self):
        return self.to(float16)

    def bfloat16(self):
        return self.to(bfloat16)

    def long(self):
        return self.to(int64)

    def int(self):
        return self.to(int32)

    def bool(self):
        return self.to(bool_)

    def byte(self):
        return self.to(uint8)

    # -- DLPack --------------------------------------------------------------------------------------
    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        from . import _dlpack
        return _dlpack.to_capsule(self, stream)

    def __dlpack_device__(self):
        from . import _dlpack
        return _dlpack.device_of(self)


# ---- the operator fast paths ---------------------------------------------------------------------
def _binary_dunder(name, _byref=byref, _T=Tensor, _sc=scalar_or_none, _cv=c_void_p, _new=object.__new__):
    f = getattr(_fast, f"tsr_{name}")
    fs = getattr(_fast, f"tsr_{name}_scalar")

    def op(self, other):
        o = _cv()
        if isinstance(other, _T):
            st = f(self._h, other._h, _byref(o))
        else:
            s = _sc(other)
            if s is None:
                return NotImplemented
            st = fs(self._h, s, _byref(o))
        if st:
            _raise(st, name)
        t = _new(_T)
        t._h = o
        return t
    op.__name__ = name
    return op


def _binary_rdunder(name):
    def op(self, other):
        s = scalar_or_none(other)
        if s is None:
            return NotImplemented
        return _call_scalar(name, self, s, 0)
    return op


def _binary_idunder(name):
    def op(self, other):
        if isinstance(other, Tensor):
            return _call(name, [self, other], self)
        s = scalar_or_none(other)
        if s is None:
            return NotImplemented
        return _call_scalar(name, self, s, 1, out=self)
    return op


def _binary_method(name):
    dunder = _binary_dunder(name)

    def method(self, other):
        r = dunder(self, other)
        if r is NotImplemented:
            raise TypeError(f"{name}(): argument 'other' must be Tensor or Number, not {type(other).__name__}")
        return r
    method.__name__ = name
    return method


def _unary_method(name, _byref=byref, _T=Tensor, _cv=c_void_p, _new=object.__new__):
    f = getattr(_fast, f"tsr_{name}")

    def method(self):
        o = _cv()
        st = f(self._h, _byref(o))
        if st:
            _raise(st, name)
        t = _new(_T)
        t._h = o
        return t
    method.__name__ = name
    return method


def _unary_inplace(name):
    def method(self):
        return _call(name, [self], self)
    method.__name__ = name + "_"
    return method


def _arith(name, a, b, alpha=1, out=None):
    """add/sub with alpha and out (a is a Tensor)."""
    kw = {} if alpha == 1 else {"alpha": alpha}
    if isinstance(b, Tensor):
        if not kw and out is None:
            return (Tensor.__add__ if name == "add" else Tensor.__sub__)(a, b)
        return _call(name, [a, b], out, _C.attrs(**kw))
    s = scalar_or_none(b)
    if s is None:
        raise TypeError(f"{name}(): argument 'other' must be Tensor or Number, not {type(b).__name__}")
    return _call_scalar(name, a, s, 1, out, **kw)


_BINARY = [n for n, k in OP_KINDS.items() if k in ("BINARY", "COMPARE")]
_UNARY = [n for n, k in OP_KINDS.items() if k == "UNARY"]

for _n in _BINARY:
    if _n.endswith("_backward"):
        continue
    if _n not in Tensor.__dict__:
        setattr(Tensor, _n, _binary_method(_n))
    if _n not in ("add", "sub"):
        setattr(Tensor, _n + "_", _binary_idunder(_n))
for _n in _UNARY:
    if _n.endswith("_backward"):
        continue
    setattr(Tensor, _n, _unary_method(_n))
    setattr(Tensor, _n + "_", _unary_inplace(_n))



def _fp32_unary(name):
    """The unary method `name` under autocast's float32 policy (float16/bfloat16 inputs computed in float32)."""
    base = getattr(Tensor, name)

    def method(self):
        if _amp_active[0]:
            self = _amp.fp32_arg(self)
        return base(self)
    method.__name__ = name
    return method


for _n in ("exp", "log"):
    if _n in _UNARY:
        setattr(Tensor, _n, _fp32_unary(_n))

_DUNDERS = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "div", "pow": "pow",
            "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge"}
for _d, _n in _DUNDERS.items():
    setattr(Tensor, f"__{_d}__", _binary_dunder(_n))
for _d in ("add", "mul"):
    setattr(Tensor, f"__r{_d}__", getattr(Tensor, f"__{_d}__"))
for _d, _n in (("sub", "sub"), ("truediv", "div"), ("pow", "pow")):
    setattr(Tensor, f"__r{_d}__", _binary_rdunder(_n))
for _d, _n in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div"), ("pow", "pow")):
    setattr(Tensor, f"__i{_d}__", _binary_idunder(_n))
Tensor.__hash__ = lambda self: id(self)
Tensor.__neg__ = _unary_method("neg")
Tensor.__abs__ = _unary_method("abs")
Tensor.__pos__ = lambda self: self
Tensor.div_ = _binary_idunder("div")
Tensor.negative, Tensor.absolute, Tensor.multiply = Tensor.neg, Tensor.abs, Tensor.mul
Tensor.greater, Tensor.less, Tensor.greater_equal, Tensor.less_equal = Tensor.gt, Tensor.lt, Tensor.ge, Tensor.le
Tensor.not_equal = Tensor.ne


def _logical_not(self):
    return self == (False if self.dtype is bool_ else 0)


def _bool_only(name, fn):
    def op(self, other):
        if self.dtype is not bool_ or (isinstance(other, Tensor) and other.dtype is not bool_):
            raise TypeError(f"{name} is implemented for bool tensors only")
        return fn(self, other)
    return op


Tensor.logical_not = Tensor.__invert__ = _logical_not
Tensor.logical_and = Tensor.__and__ = _bool_only("&", lambda a, b: a * b)
Tensor.logical_or = Tensor.__or__ = _bool_only("|", lambda a, b: a.maximum(_as_tensor_like(b, a)))
Tensor.logical_xor = Tensor.__xor__ = _bool_only("^", lambda a, b: a != b)


def _reduce(f, name, x, dim, keepdim):
    o = c_void_p()
    if dim is None:
        st = f(x._h, None, 0, 1 if keepdim else 0, byref(o))
    else:
        if isinstance(dim, int):
            arr, n = (c_int64 * 1)(dim), 1
        else:
            arr, n = _i64(tuple(dim))
        st = f(x._h, arr if n else None, n, 1 if keepdim else 0, byref(o))
    if st:
        _raise(st, name)
    return _wrap_h(o)


def _var_std(name, x, dim, unbiased, keepdim, correction):
    if isinstance(dim, bool) and unbiased is None:  # var(unbiased) as a positional argument
        dim, unbiased = None, dim
    if correction is None:
        correction = 0 if unbiased is False else 1
    kw = {"keepdim": keepdim, "correction": correction}
    if dim is not None:
        kw["dims"] = _ints(dim)
    return _call(name, [x], None, _C.attrs(**kw))


# ---- numpy view helper and item readers -----------------------------------------------------------
class _ArrayRef:
    """Presents a tensor's memory through __array_interface__; the ndarray's base keeps the tensor alive."""
    __slots__ = ("__array_interface__", "tensor")

    def __init__(self, t, info, dt):
        n = info.ndim
        size = dt.itemsize
        self.tensor = t
        self.__array_interface__ = {
            "version": 3, "typestr": np.dtype(dt._np).str, "data": (info.data or 0, False),
            "shape": tuple(info.sizes[:n]), "strides": tuple(s * size for s in info.strides[:n]),
        }


def _bf16(raw):
    return struct.unpack("<f", b"\0\0" + raw)[0]


_ITEM_READERS = [
    lambda r: r != b"\0", lambda r: r[0], lambda r: struct.unpack("<i", r)[0], lambda r: struct.unpack("<q", r)[0],
    lambda r: struct.unpack("<e", r)[0], _bf16, lambda r: struct.unpack("<f", r)[0],
    lambda r: struct.unpack("<d", r)[0],
]


def rand_like_(t):
    from . import _factories
    return _factories.rand_like(t, dtype=float32 if not t.dtype.is_floating_point else t.dtype)


def _rebuild(array, dtype_name, requires_grad):
    from . import _factories
    return _factories.tensor(array, dtype=_DTYPE_NAMES[dtype_name], requires_grad=requires_grad)


class GradFn:
    """The node that made a tensor (tensor.grad_fn): its name(), e.g. 'mul_backward'."""
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def name(self):
        return self._name

    def __repr__(self):
        return f"<{self._name}>"

    def __eq__(self, other):
        return isinstance(other, GradFn) and other._name == self._name

    def __hash__(self):
        return hash(self._name)


# The indexing machinery (imported last: _indexing imports Tensor from here).
from ._indexing import _advanced_get, _advanced_set, _basic_index, _index_tensor, _is_advanced, _slice  # noqa: E402
