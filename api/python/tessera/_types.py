# Dtypes, devices and Size: the value types tensors are described by (no dependency on Tensor).
import math

import numpy as np

from . import _C


# ---- dtypes --------------------------------------------------------------------------------------
class dtype:
    """An element type: tessera.float32 etc. (compared by identity)."""
    __slots__ = ("name", "_id", "itemsize", "is_floating_point", "is_signed", "_np")

    def __init__(self, name, id_, itemsize, is_float, is_signed, np_dtype):
        self.name, self._id, self.itemsize = name, id_, itemsize
        self.is_floating_point, self.is_signed, self._np = is_float, is_signed, np_dtype

    def __repr__(self):
        return f"tessera.{self.name}"

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))

    def to_numpy(self):
        if self._np is None:
            raise TypeError(f"tessera.{self.name} has no numpy dtype")
        return np.dtype(self._np)


bool_ = dtype("bool", 0, 1, False, False, "?")
uint8 = dtype("uint8", 1, 1, False, False, "u1")
int32 = dtype("int32", 2, 4, False, True, "<i4")
int64 = dtype("int64", 3, 8, False, True, "<i8")
float16 = dtype("float16", 4, 2, True, True, "<f2")
bfloat16 = dtype("bfloat16", 5, 2, True, True, None)
float32 = dtype("float32", 6, 4, True, True, "<f4")
float64 = dtype("float64", 7, 8, True, True, "<f8")
# Named for torch compatibility; the runtime has no such element types (TypeError when used).
int8 = dtype("int8", None, 1, False, True, "i1")
int16 = dtype("int16", None, 2, False, True, "<i2")
_DTYPES = (bool_, uint8, int32, int64, float16, bfloat16, float32, float64)
_DTYPE_NAMES = {d.name: d for d in _DTYPES + (int8, int16)}
_DTYPE_NAMES.update(float=float32, double=float64, half=float16, long=int64, int=int32, short=int16)
_NP_TO_DTYPE = {np.dtype(d._np): d for d in _DTYPES if d._np}


def _dtype_by_name(name):
    return _DTYPE_NAMES[name]


def to_dtype(d):
    """A tessera dtype from a dtype, its name, a numpy dtype or a Python type (float -> float64 as torch)."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str):
        try:
            return _DTYPE_NAMES[d.replace("tessera.", "").replace("torch.", "")]
        except KeyError:
            raise TypeError(f"unknown dtype '{d}'") from None
    if d is float:
        return float64
    if d is int:
        return int64
    if d is bool:
        return bool_
    try:
        nd = np.dtype(d)
    except TypeError:
        raise TypeError(f"expected a tessera dtype, got {d!r}") from None
    r = _NP_TO_DTYPE.get(nd.newbyteorder("=") if nd.byteorder == ">" else nd)
    if r is None:
        raise TypeError(f"numpy dtype {nd} has no tessera dtype (tessera has {', '.join(d.name for d in _DTYPES)})")
    return r


def _dtype_id(d):
    """The runtime's dtype number (-1 for None)."""
    if d is None:
        return -1
    d = to_dtype(d)
    if d._id is None:
        raise TypeError(f"tessera has no {d.name} tensors (supported: {', '.join(x.name for x in _DTYPES)})")
    return d._id


# ---- devices -------------------------------------------------------------------------------------
class device:
    """A device: tessera.device('cpu'), device('cuda', 0), device('cuda:1')."""
    __slots__ = ("type", "index", "_s")

    def __new__(cls, type_or_text="cpu", index=None):
        if isinstance(type_or_text, device):
            return type_or_text
        if isinstance(type_or_text, int) and not isinstance(type_or_text, bool):
            type_or_text, index = "cuda", type_or_text
        text = type_or_text if index is None else f"{type_or_text}:{index}"
        s = _C.device_struct(text)
        return _device_of(s.type, s.index)

    def __repr__(self):
        return f"device(type='{self.type}')" if self.type == "cpu" else \
            f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.type == "cpu" else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (ValueError, TypeError):
                return False
        return self is other

    def __hash__(self):
        return hash(str(self))

    def __reduce__(self):
        return (device, (str(self),))


_devices = {}


def _device_of(type_id, index):
    d = _devices.get((type_id, index))
    if d is None:
        d = object.__new__(device)
        name = _C.device_name(_C.Device(type_id, index))
        d.type = name.split(":")[0]
        d.index = None if d.type == "cpu" else index
        _devices[(type_id, index)] = d
    return d


cpu = _device_of(0, 0)


class Size(tuple):
    """A tensor's shape: a tuple of ints."""
    __slots__ = ()

    def numel(self):
        return math.prod(self)

    def __repr__(self):
        return f"tessera.Size({list(self)})"

    def __getitem__(self, i):
        r = tuple.__getitem__(self, i)
        return Size(r) if isinstance(i, slice) else r
