# DLPack both ways (capsules over DLManagedTensor in ctypes) and zero-copy from_numpy.
import ctypes
import itertools
from ctypes import (CFUNCTYPE, POINTER, PYFUNCTYPE, Structure, byref, c_char_p, c_int, c_int32, c_int64, c_uint8,
                    c_uint16, c_uint64, c_void_p, py_object)

import numpy as np

from . import _C
from ._tensor import _raise, _wrap_h
from ._types import _DTYPES

kDLCPU, kDLCUDA, kDLCUDAHost = 1, 2, 3
kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool = 0, 1, 2, 4, 6


class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class DLManagedTensor(Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


# runtime dtype id <-> (code, bits)
_TO_DL = {0: (kDLBool, 8), 1: (kDLUInt, 8), 2: (kDLInt, 32), 3: (kDLInt, 64), 4: (kDLFloat, 16),
          5: (kDLBfloat, 16), 6: (kDLFloat, 32), 7: (kDLFloat, 64)}
_FROM_DL = {v: k for k, v in _TO_DL.items()}

# The C API of capsules, called with raw pointers (a capsule being destroyed must not be touched as an object).
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = py_object
_api.PyCapsule_New.argtypes = [c_void_p, c_char_p, c_void_p]
_api.PyCapsule_IsValid.restype = c_int
_api.PyCapsule_IsValid.argtypes = [c_void_p, c_char_p]
_api.PyCapsule_GetPointer.restype = c_void_p
_api.PyCapsule_GetPointer.argtypes = [c_void_p, c_char_p]
_api.PyCapsule_SetName.restype = c_int
_api.PyCapsule_SetName.argtypes = [py_object, c_char_p]
# Capsule names must outlive every capsule: module-level buffers.
_DLTENSOR = ctypes.create_string_buffer(b"dltensor")
_USED = ctypes.create_string_buffer(b"used_dltensor")

_VOID_FN = CFUNCTYPE(None, c_void_p)
_exports = {}  # address of a DLManagedTensor we made -> (struct, shape, strides, tensor): kept alive until deleted


@_VOID_FN
def _export_deleter(managed):
    """DLManagedTensor.deleter of our exports: drops the struct and the tensor (releasing its handle)."""
    _exports.pop(managed, None)


@_VOID_FN
def _capsule_destructor(capsule):
    """An export nobody consumed: run its deleter (a consumer renames the capsule 'used_dltensor')."""
    if _api.PyCapsule_IsValid(capsule, _DLTENSOR):
        _exports.pop(_api.PyCapsule_GetPointer(capsule, _DLTENSOR), None)


def device_of(t):
    d = t._info().device
    if d.type == 0:
        return (kDLCPU, 0)
    if d.type == 1:
        return (kDLCUDA, d.index)
    raise TypeError(f"__dlpack_device__: DLPack has no device type for {t.device}")


def to_capsule(t, stream=None):
    """t.__dlpack__(): a 'dltensor' capsule sharing t's memory."""
    if t.requires_grad:
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
    info = t._info()
    dev_type, dev_id = device_of(t)
    if dev_type == kDLCUDA and stream != -1:  # the consumer's stream may read it: finish what writes it
        _C.check(_C.lib.tsr_synchronize(info.device))
    n = info.ndim
    shape = (c_int64 * max(n, 1))(*info.sizes[:n])
    strides = (c_int64 * max(n, 1))(*info.strides[:n])
    m = DLManagedTensor()
    dl = m.dl_tensor
    dl.data = info.data
    dl.device = DLDevice(dev_type, dev_id)
    dl.ndim = n
    code, bits = _TO_DL[info.dtype]
    dl.dtype = DLDataType(code, bits, 1)
    dl.shape = ctypes.cast(shape, POINTER(c_int64))
    dl.strides = ctypes.cast(strides, POINTER(c_int64))
    dl.byte_offset = 0
    m.deleter = ctypes.cast(_export_deleter, c_void_p).value
    addr = ctypes.addressof(m)
    m.manager_ctx = addr
    _exports[addr] = (m, shape, strides, t.detach())
    return _api.PyCapsule_New(addr, _DLTENSOR, ctypes.cast(_capsule_destructor, c_void_p).value)


_call_producer_deleter = {}


@_VOID_FN
def _import_deleter(managed):
    """tsr_from_borrowed's deleter for imports: the producer's DLManagedTensor.deleter, called with the GIL
    held (numpy's deleter touches Python objects; Tessera may drop its last reference from any call)."""
    fn = DLManagedTensor.from_address(managed).deleter
    if fn:
        PYFUNCTYPE(None, c_void_p)(fn)(managed)


def _consumer_stream(device_id):
    """Our current stream on cuda:device_id as DLPack's stream number (1: the legacy default stream), on which
    the producer orders its pending writes."""
    try:
        from . import cuda
        return cuda.current_stream(device_id).cuda_stream or 1
    except RuntimeError:  # a library without streams: ops run on the default stream
        return 1


def from_dlpack(obj):
    """A tensor sharing the memory of `obj`: anything with __dlpack__ (numpy >= 1.22, torch, tessera) or a
    'dltensor' capsule. Zero copy; the producer's deleter runs when the last tessera view is gone."""
    if hasattr(obj, "__dlpack__"):
        dev, dev_id = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (kDLCPU, 0)
        capsule = obj.__dlpack__(stream=_consumer_stream(dev_id)) if dev == kDLCUDA else obj.__dlpack__()
    else:
        capsule = obj
    if type(capsule).__name__ != "PyCapsule":
        raise TypeError(f"from_dlpack: expected an object with __dlpack__ or a DLPack capsule, "
                        f"got {type(obj).__name__}")
    ptr = _api.PyCapsule_GetPointer(id(capsule), _DLTENSOR) if _api.PyCapsule_IsValid(id(capsule), _DLTENSOR) \
        else None
    if not ptr:
        raise ValueError("from_dlpack: the capsule is not a 'dltensor' (already consumed? a DLPack capsule can "
                         "be used only once)")
    m = DLManagedTensor.from_address(ptr)
    dl = m.dl_tensor
    key = (dl.dtype.code, dl.dtype.bits)
    if dl.dtype.lanes != 1 or key not in _FROM_DL:
        raise TypeError(f"from_dlpack: unsupported DLPack dtype (code {dl.dtype.code}, bits {dl.dtype.bits}, "
                        f"lanes {dl.dtype.lanes})")
    if dl.device.device_type in (kDLCPU, kDLCUDAHost):
        device = _C.Device(0, 0)
    elif dl.device.device_type == kDLCUDA:
        device = _C.Device(1, dl.device.device_id)
    else:
        raise TypeError(f"from_dlpack: unsupported DLPack device type {dl.device.device_type}")
    n = dl.ndim
    sizes = (c_int64 * max(n, 1))(*dl.shape[:n])
    strides = (c_int64 * max(n, 1))(*dl.strides[:n]) if n and dl.strides else None
    o = c_void_p()
    data = (dl.data or 0) + dl.byte_offset
    if not data:  # empty tensors may carry no data pointer: nothing to share
        _C.check(_C.lib.tsr_empty(sizes, n, _FROM_DL[key], device, byref(o)), "from_dlpack")
        _api.PyCapsule_SetName(capsule, _USED)
        _import_deleter(ptr)
        return _wrap_h(o)
    st = _C.lib.tsr_from_borrowed(data, sizes, strides, n, _FROM_DL[key], device,
                                  ctypes.cast(_import_deleter, c_void_p).value, ptr, byref(o))
    if st:
        _raise(st, "from_dlpack")
    _api.PyCapsule_SetName(capsule, _USED)
    return _wrap_h(o)


# ---- numpy ---------------------------------------------------------------------------------------
_borrowed = {}  # key -> the ndarray a tensor borrows
_keys = itertools.count(1)


@_VOID_FN
def _numpy_deleter(key):
    _borrowed.pop(key, None)


_NP_IDS = {np.dtype(d._np): d._id for d in _DTYPES if d._np}


def from_numpy(a):
    """A tensor sharing ndarray a's memory (torch.from_numpy)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(a).__name__})")
    dt = a.dtype
    rid = _NP_IDS.get(dt)
    if rid is None:
        raise TypeError(f"can't convert np.ndarray of type numpy.{dt} (tessera supports bool, uint8, int32, "
                        f"int64, float16, float32 and float64)")
    size = dt.itemsize
    if any(s < 0 for s in a.strides):
        raise ValueError("At least one stride in the given numpy array is negative, and tensors with negative "
                         "strides are not currently supported. (You can probably work around this by making a "
                         "copy of your array with array.copy().)")
    if any(s % size for s in a.strides):
        raise ValueError("given numpy array strides are not a multiple of the element byte size. "
                         "Copy the numpy array to reallocate the memory.")
    n = a.ndim
    sizes = (c_int64 * max(n, 1))(*a.shape)
    strides = (c_int64 * max(n, 1))(*[s // size for s in a.strides])
    o = c_void_p()
    if a.size == 0 or not a.ctypes.data:
        _C.check(_C.lib.tsr_empty(sizes, n, rid, _C.Device(0, 0), byref(o)), "from_numpy")
        return _wrap_h(o)
    key = next(_keys)
    _borrowed[key] = a
    st = _C.lib.tsr_from_borrowed(a.ctypes.data, sizes, strides, n, rid, _C.Device(0, 0),
                                  ctypes.cast(_numpy_deleter, c_void_p).value, key, byref(o))
    if st:
        _borrowed.pop(key, None)
        _raise(st, "from_numpy")
    return _wrap_h(o)
