# The ctypes bindings of tessera.h: library lookup, argtypes, status -> exception, Attrs/Scalar, call_op.
import ctypes
import ctypes.util
import glob
import os
import struct
from ctypes import (POINTER, byref, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_uint32, c_uint64,
                    c_void_p)

MAX_DIMS = 8


# ---- status codes (common.h) -> Python exceptions ------------------------------------------------
class OutOfMemoryError(RuntimeError, MemoryError):
    """An allocation failed (TSR_ERR_OUT_OF_MEMORY), as torch.OutOfMemoryError; also a MemoryError."""


OK, INVALID_ARGUMENT, TYPE, INDEX, OUT_OF_MEMORY, RUNTIME, NOT_IMPLEMENTED, NOT_INITIALIZED, NULL_POINTER = range(9)
_EXCEPTIONS = {INVALID_ARGUMENT: ValueError, TYPE: TypeError, INDEX: IndexError, OUT_OF_MEMORY: OutOfMemoryError,
               NOT_IMPLEMENTED: NotImplementedError}

# ---- structs -----------------------------------------------------------------------------------
DIMS = c_int64 * MAX_DIMS


class Device(ctypes.Structure):
    _fields_ = [("type", c_int32), ("index", c_int32)]


class Scalar(ctypes.Structure):
    """TsrScalar: kind 0 bool, 1 int, 2 float. The union is declared as its int64 bits (a float's bits for
    kind 2): passed by value, a struct holding a union of double and int64 travels in integer registers,
    which ctypes gets wrong for a ctypes.Union member."""
    _fields_ = [("kind", c_int32), ("reserved", c_int32), ("bits", c_int64)]

    @property
    def value(self):
        if self.kind == 2:
            return _unpack_d(_pack_q(self.bits))[0]
        return bool(self.bits) if self.kind == 0 else self.bits


_pack_q = struct.Struct("<q").pack
_unpack_d = struct.Struct("<d").unpack
_pack_d = struct.Struct("<d").pack
_unpack_q = struct.Struct("<q").unpack
_pack_float_scalar = struct.Struct("<iid").pack
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class Attrs(ctypes.Structure):
    """TsrAttrs (528 bytes); build with attrs() for tsr_attrs_init's defaults."""
    _fields_ = [
        ("struct_size", c_uint32), ("ndims", c_int32), ("dims", DIMS),
        ("nshape", c_int32), ("reserved0", c_int32), ("shape", DIMS), ("strides", DIMS),
        ("dim", c_int64), ("dim2", c_int64), ("start", c_int64), ("end", c_int64), ("step", c_int64),
        ("index", c_int64), ("correction", c_int64),
        ("has_dim", c_int32), ("keepdim", c_int32), ("approximate", c_int32), ("dtype", c_int32),
        ("device", Device), ("scalar_arg", c_int32), ("has_scalar", c_int32), ("has_scalar2", c_int32),
        ("reserved1", c_int32), ("scalar", Scalar), ("scalar2", Scalar), ("scalar3", Scalar), ("alpha", Scalar),
        ("seed", c_uint64), ("offset", c_uint64),
        ("kernel", c_int64 * 2), ("stride2", c_int64 * 2), ("padding", c_int64 * 2), ("dilation", c_int64 * 2),
        ("groups", c_int64), ("ceil_mode", c_int32), ("reserved2", c_int32), ("hp", c_double * 8),
    ]


class TensorInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32), ("dtype", c_int32), ("device", Device), ("ndim", c_int32),
        ("is_contiguous", c_int32), ("sizes", DIMS), ("strides", DIMS), ("storage_offset", c_int64),
        ("numel", c_int64), ("data", c_void_p), ("version", c_uint64),
    ]


class MemoryStats(ctypes.Structure):
    """TsrMemoryStats (ABI 1.2): one device allocator's statistics, bytes unless named num_*."""
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32)] + [(name, c_int64) for name in (
        "allocated", "reserved_bytes", "peak_allocated", "peak_reserved", "num_allocs", "num_device_allocs",
        "num_ooms", "num_retries", "limit", "total")]


assert ctypes.sizeof(Attrs) == 528 and ctypes.sizeof(Scalar) == 16 and ctypes.sizeof(TensorInfo) == 184
assert ctypes.sizeof(MemoryStats) == 88


# ---- finding and loading the library ------------------------------------------------------------
def _candidates():
    """Where libtessera.so is looked for when $TESSERA_LIBRARY is unset, in order (the package contract)."""
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    yield os.path.join(repo, "build", "runtime", "libtessera.so")
    yield ctypes.util.find_library("tessera") or "ctypes.util.find_library('tessera') (not found)"
    # Installed: <prefix>/lib*/python3*/site-packages/tessera -> <prefix>/lib*[/<multiarch>]/libtessera.so*
    for up in (3, 4):
        prefix = here
        for _ in range(up):
            prefix = os.path.dirname(prefix)
        for pattern in (os.path.join(prefix, "lib*", "libtessera.so*"),
                        os.path.join(prefix, "lib*", "*", "libtessera.so*")):
            yield from sorted(glob.glob(pattern)) or [pattern]


def _load():
    env = os.environ.get("TESSERA_LIBRARY")
    if env:  # explicit: no silent fallback to another build
        try:
            return ctypes.CDLL(env), env
        except OSError as e:
            raise ImportError(f"tessera: cannot load $TESSERA_LIBRARY={env}: {e}") from None
    searched = []
    for path in _candidates():
        searched.append(path)
        if "*" in path or " " in path or (os.sep in path and not os.path.exists(path)):
            continue  # a pattern with no match, or nothing found
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            searched[-1] = f"{path} ({e})"
    raise ImportError("tessera: cannot find libtessera.so; build it (meson setup build && ninja -C build) or set "
                      "TESSERA_LIBRARY to its path. Searched:\n  " + "\n  ".join(searched or ["(nothing)"]))


lib, library_path = _load()
# The same library through PyDLL, no argtypes: the lean calls of the operator path (the GIL stays held;
# arguments must be ctypes objects: handles, byref(), Scalar, c_int64 arrays, or Python ints for int32).
fast = ctypes.PyDLL(library_path)

_major, _minor = c_uint32(), c_uint32()
lib.tsr_abi_version(byref(_major), byref(_minor))
abi_version = (_major.value, _minor.value)
if abi_version[0] != 1 or abi_version[1] < 1:
    raise ImportError(f"tessera: {library_path} has ABI {abi_version[0]}.{abi_version[1]}; this package needs 1.1 "
                      f"or a later 1.x (rebuild the library)")

# ---- signatures --------------------------------------------------------------------------------
T = c_void_p  # TsrTensor
PT = POINTER(c_void_p)  # TsrTensor*
P64 = POINTER(c_int64)
I32 = c_int32
_S = Scalar
_SIGS = {
    "tsr_abi_version": [POINTER(c_uint32), POINTER(c_uint32)],
    "tsr_init": [c_char_p], "tsr_shutdown": [], "tsr_info_json": [POINTER(c_char_p)],
    "tsr_dtype_parse": [c_char_p, POINTER(c_int32)], "tsr_dtype_itemsize": [I32, POINTER(c_size_t)],
    "tsr_device_parse": [c_char_p, POINTER(Device)], "tsr_device_name": [Device, c_char_p, c_size_t],
    "tsr_device_count": [c_char_p, POINTER(c_int32)], "tsr_synchronize": [Device],
    "tsr_tensor_info": [T, POINTER(TensorInfo)], "tsr_retain": [T], "tsr_release": [T],
    "tsr_empty": [P64, I32, I32, Device, PT], "tsr_full": [P64, I32, I32, Device, _S, PT],
    "tsr_from_buffer": [c_void_p, P64, I32, I32, Device, PT],
    "tsr_from_borrowed": [c_void_p, P64, P64, I32, I32, Device, c_void_p, c_void_p, PT],
    "tsr_copy_to_host": [T, c_void_p, c_size_t], "tsr_to": [T, Device, I32, PT],
    "tsr_contiguous": [T, PT], "tsr_clone": [T, PT], "tsr_manual_seed": [c_uint64],
    "tsr_view": [T, P64, I32, PT], "tsr_reshape": [T, P64, I32, PT], "tsr_permute": [T, P64, I32, PT],
    "tsr_transpose": [T, c_int64, c_int64, PT], "tsr_t": [T, PT],
    "tsr_slice": [T, c_int64, c_int64, c_int64, c_int64, PT], "tsr_narrow": [T, c_int64, c_int64, c_int64, PT],
    "tsr_select": [T, c_int64, c_int64, PT], "tsr_expand": [T, P64, I32, PT], "tsr_squeeze": [T, P64, I32, PT],
    "tsr_unsqueeze": [T, c_int64, PT], "tsr_flatten": [T, c_int64, c_int64, PT],
    "tsr_as_strided": [T, P64, P64, I32, c_int64, PT],
    "tsr_op_count": [], "tsr_op_lookup": [c_char_p, POINTER(c_int32)],
    "tsr_call": [I32, c_void_p, I32, c_void_p, c_void_p, I32],  # ctypes arrays / byref
    # autograd (ABI 1.1)
    "tsr_set_requires_grad": [T, I32], "tsr_requires_grad": [T, POINTER(c_int32)],
    "tsr_is_leaf": [T, POINTER(c_int32)], "tsr_grad": [T, PT], "tsr_set_grad": [T, T], "tsr_retain_grad": [T],
    "tsr_detach": [T, PT], "tsr_grad_fn_name": [T, POINTER(c_char_p)],
    "tsr_backward": [PT, PT, I32, I32], "tsr_autograd_grad": [PT, PT, I32, PT, I32, I32, I32, PT],
    "tsr_set_grad_enabled": [I32], "tsr_is_grad_enabled": [],
}


def _bind(name, argtypes, restype=c_int32):
    """Sets lib.<name>'s signature."""
    try:
        fn = getattr(lib, name)
    except AttributeError:
        raise ImportError(f"tessera: {library_path} has no {name}: it is older than this Python package "
                          f"(rebuild it)") from None
    fn.argtypes = argtypes
    fn.restype = restype


for _name, _args in _SIGS.items():
    _bind(_name, _args)
_bind("tsr_last_error", [], c_char_p)
_bind("tsr_dtype_name", [I32], c_char_p)
_bind("tsr_op_name", [I32], c_char_p)
_bind("tsr_attrs_init", [POINTER(Attrs)], None)
_last_error = lib.tsr_last_error


# ABI 1.2 (streams, events, memory, graphs, device options): bound on first use, so that this package still
# imports with an older library; calling one that the library lacks raises RuntimeError.
H = c_void_p  # TsrStream / TsrEvent / TsrGraph
_SIGS_1_2 = {
    "tsr_stream_create": [Device, I32, POINTER(c_void_p)], "tsr_stream_destroy": [Device, H],
    "tsr_stream_synchronize": [Device, H], "tsr_stream_query": [Device, H, POINTER(c_int32)],
    "tsr_stream_wait_event": [Device, H, H], "tsr_set_current_stream": [Device, H],
    "tsr_current_stream": [Device, POINTER(c_void_p)],
    "tsr_event_create": [Device, I32, POINTER(c_void_p)], "tsr_event_destroy": [Device, H],
    "tsr_event_record": [Device, H, H], "tsr_event_synchronize": [Device, H],
    "tsr_event_query": [Device, H, POINTER(c_int32)], "tsr_event_elapsed_time": [Device, H, H, POINTER(c_float)],
    "tsr_record_stream": [T, H],
    "tsr_memory_stats": [Device, POINTER(MemoryStats)], "tsr_reset_peak_memory_stats": [Device],
    "tsr_empty_cache": [Device], "tsr_set_memory_fraction": [Device, c_double],
    "tsr_memory_snapshot": [Device, POINTER(c_char_p)],
    "tsr_graph_capture_begin": [Device, H], "tsr_graph_capture_end": [Device, H, POINTER(c_void_p)],
    "tsr_graph_replay": [Device, H, H], "tsr_graph_destroy": [Device, H],
    "tsr_device_set_option": [c_char_p, c_char_p, c_int64], "tsr_device_get_option": [c_char_p, c_char_p, P64],
}
_bound_1_2 = {}


def abi12(name, *args):
    """Calls ABI 1.2 function `name` with args; raises the mapped exception on a failed status."""
    fn = _bound_1_2.get(name)
    if fn is None:
        fn = getattr(lib, name, None)
        if fn is None:
            raise RuntimeError(f"tessera: {library_path} (ABI {abi_version[0]}.{abi_version[1]}) has no {name}: "
                               f"streams, events, memory statistics and graphs need ABI 1.2 (rebuild the library)")
        fn.argtypes, fn.restype = _SIGS_1_2[name], c_int32
        _bound_1_2[name] = fn
    check(fn(*args), name)


def error(status, where=None):
    """The exception for a failed call: its class from the status, its text from tsr_last_error()."""
    msg = _last_error()
    msg = msg.decode("utf-8", "replace") if msg else f"tessera error {status}"
    if where and not msg.startswith("["):
        msg = f"[{where}] {msg}"
    return _EXCEPTIONS.get(status, RuntimeError)(msg)


def check(status, where=None):
    if status:
        raise error(status, where)


# ---- init --------------------------------------------------------------------------------------
_st = lib.tsr_init(None)
if _st:
    raise ImportError(f"tessera: tsr_init failed for {library_path}: {error(_st)}")


def info_json():
    out = c_char_p()
    check(lib.tsr_info_json(byref(out)))
    return out.value.decode()


# ---- scalars, dims, attrs ------------------------------------------------------------------------
def scalar_or_none(value, _from=Scalar.from_buffer_copy, _pack=_pack_float_scalar):
    """A Python bool/int/float (or a numpy scalar) as a TsrScalar; None for anything else."""
    tv = type(value)
    if tv is float:
        return _from(_pack(2, 0, value))
    if tv is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return Scalar(1, 0, value)
        raise OverflowError(f"value {value} does not fit in int64")
    if tv is bool:
        return Scalar(0, 0, value)
    if isinstance(value, (bool, int, float)):  # subclasses (IntEnum, ...)
        return scalar_or_none(bool(value) if isinstance(value, bool) else
                              int(value) if isinstance(value, int) else float(value))
    kind = getattr(getattr(value, "dtype", None), "kind", None)  # numpy scalars, 0-d arrays
    if kind is not None and getattr(value, "ndim", 0) == 0:
        if kind == "b":
            return Scalar(0, 0, bool(value))
        if kind in ("i", "u"):
            return scalar_or_none(int(value))
        if kind == "f":
            return _from(_pack(2, 0, float(value)))
    return None


def scalar(value):
    """A Python bool/int/float (or a numpy scalar) as a TsrScalar; TypeError for anything else."""
    s = scalar_or_none(value)
    if s is None:
        raise TypeError(f"expected a number (bool, int or float), got {type(value).__name__}")
    return s


def int64s(values):
    """A sequence of ints as (c_int64 array, count)."""
    n = len(values)
    return (c_int64 * n)(*values), n


def attrs(**kw):
    """A TsrAttrs with tsr_attrs_init's defaults and the given fields (sequences fill arrays and set the
    matching count: dims -> ndims, shape -> nshape; scalar values are Python numbers)."""
    a = Attrs()
    lib.tsr_attrs_init(byref(a))
    for key, value in kw.items():
        if key in ("dims", "shape", "strides"):
            if isinstance(value, int):
                value = (value,)
            if len(value) > MAX_DIMS:
                raise ValueError(f"{key} has {len(value)} entries, at most {MAX_DIMS} allowed")
            getattr(a, key)[:len(value)] = list(value)
            if key == "dims":
                a.ndims = len(value)
            elif key == "shape":
                a.nshape = len(value)
        elif key in ("kernel", "stride2", "padding", "dilation"):
            value = (value, value) if isinstance(value, int) else tuple(value)
            getattr(a, key)[:] = list(value)
        elif key == "hp":
            if len(value) > 8:
                raise ValueError(f"hp has {len(value)} entries, at most 8 allowed")
            a.hp[:len(value)] = [float(v) for v in value]
        elif key in ("scalar", "scalar2", "scalar3", "alpha"):
            setattr(a, key, value if isinstance(value, Scalar) else scalar(value))
        elif key == "dtype":
            a.dtype = -1 if value is None else int(getattr(value, "_id", value))
        elif key == "device":
            a.device = device_struct(value)
        elif key in _ATTR_FIELDS:
            setattr(a, key, int(value))
        else:
            raise TypeError(f"unknown op attribute '{key}' (TsrAttrs has {', '.join(sorted(_ATTR_FIELDS))})")
    return a


_ATTR_FIELDS = {f[0] for f in Attrs._fields_} - {"struct_size"}

# ---- devices -----------------------------------------------------------------------------------
_device_cache = {}


def device_struct(dev):
    """A Device struct from 'cpu', 'cuda:1', a tessera.device, a CUDA ordinal (int) or a Device (None: cpu)."""
    if dev is None:
        return Device(0, 0)
    if isinstance(dev, Device):
        return dev
    if isinstance(dev, int) and not isinstance(dev, bool):
        dev = f"cuda:{dev}"
    text = dev if isinstance(dev, str) else str(dev)
    d = _device_cache.get(text)
    if d is None:
        d = Device()
        check(lib.tsr_device_parse(text.encode(), byref(d)))
        _device_cache[text] = d
    return Device(d.type, d.index)


def device_name(dev):
    buf = ctypes.create_string_buffer(64)
    check(lib.tsr_device_name(dev, buf, 64))
    return buf.value.decode()


# ---- ops ---------------------------------------------------------------------------------------
_op_ids = {}
for _i in range(lib.tsr_op_count()):
    _op_ids[lib.tsr_op_name(_i).decode()] = _i
op_names = tuple(_op_ids)


def op_id(name):
    try:
        return _op_ids[name]
    except KeyError:
        raise ValueError(f"unknown op '{name}' (the op table has {', '.join(op_names)})") from None


def call_op(name, inputs, out=None, num_outputs=None, **kw):
    """Calls any op of ops.def through tsr_call: inputs a list of Tensors (any number), attrs as TsrAttrs
    field names (dims=(...), shape=(...), kernel=(kh, kw), hp=(...), scalar=<number>, ...).
    Outputs: one by default (a new Tensor is returned); num_outputs=n > 1 returns a tuple of n new Tensors
    (layer_norm's (y, mean, rstd), topk's (values, indices)). With out= (a Tensor, or a list/tuple of
    Tensors for several outputs, None entries allocated) the op writes into those tensors in place and
    returns out (a tuple where several were given)."""
    from ._tensor import _wrap
    several = isinstance(out, (list, tuple))
    given = list(out) if several else [out]
    if num_outputs is None:
        num_outputs = len(given)
    elif len(given) < num_outputs:
        given += [None] * (num_outputs - len(given))
    elif several and len(given) > num_outputs:
        raise ValueError(f"[{name}] {len(given)} outputs given for num_outputs={num_outputs}")
    n = len(inputs)
    ins = (c_void_p * max(n, 1))(*[t._h for t in inputs])
    outs = (c_void_p * max(num_outputs, 1))(*[o._h if o is not None else None for o in given])
    a = attrs(**kw) if kw else None
    check(lib.tsr_call(op_id(name), ins, n, byref(a) if a is not None else None, outs, num_outputs), name)
    res = tuple(o if o is not None else _wrap(outs[i]) for i, o in enumerate(given))
    return res if several or num_outputs != 1 else res[0]


# ---- deterministic mode (ABI 1.3) -----------------------------------------------------------------
def _abi13(name, argtypes, restype=c_int32):
    """lib.<name> with its signature, bound on first use (RuntimeError naming the function when the library
    is older than ABI 1.3)."""
    fn = getattr(lib, name, None)
    if fn is None:
        raise RuntimeError(f"tessera: {library_path} (ABI {abi_version[0]}.{abi_version[1]}) has no {name}: "
                           f"deterministic mode needs ABI 1.3 (rebuild the library)")
    fn.argtypes, fn.restype = argtypes, restype
    return fn


def use_deterministic_algorithms(on):
    check(_abi13("tsr_use_deterministic_algorithms", [I32])(1 if on else 0), "use_deterministic_algorithms")


def deterministic_algorithms_enabled():
    return bool(_abi13("tsr_deterministic_algorithms_enabled", [], c_int32)())
