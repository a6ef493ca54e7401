"""tessera.save / tessera.load: state dicts in the safetensors format, written atomically.

File layout (https://github.com/huggingface/safetensors):
    [8 bytes]  N, little-endian u64: the header's length
    [N bytes]  JSON header {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
               "__metadata__": {str: str}} (optional), padded with spaces to 8-byte alignment
    [...]      the tensors' bytes, row-major, offsets relative to the end of the header

A plain {str: Tensor} dict is stored as is. Anything else (an optimizer's state dict, a checkpoint
{"model": ..., "optimizer": ..., "epoch": 3}) is flattened: each tensor leaf becomes a dotted key
("optimizer.state.0.exp_avg") and the rest of the structure goes into __metadata__["tessera.structure"]
as JSON, so that load() rebuilds the same object and other readers still see plain tensors.
"""
import ctypes
import json
import os
import struct
import tempfile

import numpy as np

__all__ = ["save", "load"]

_STRUCTURE_KEY = "tessera.structure"
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit

# safetensors dtype code -> (tessera dtype name, itemsize, numpy dtype of the stored bytes)
_CODES = {
    "BOOL": ("bool", 1, np.bool_),
    "U8": ("uint8", 1, np.uint8),
    "I8": ("int32", 1, np.int8),      # no int8 in the runtime: widened on load
    "I16": ("int32", 2, np.int16),    # widened
    "U16": ("int32", 2, np.uint16),   # widened
    "I32": ("int32", 4, np.int32),
    "U32": ("int64", 4, np.uint32),   # widened
    "I64": ("int64", 8, np.int64),
    "F16": ("float16", 2, np.float16),
    "BF16": ("bfloat16", 2, None),
    "F32": ("float32", 4, np.float32),
    "F64": ("float64", 8, np.float64),
}
_WIDENED = ("I8", "I16", "U16", "U32")
_NAME_TO_CODE = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "int32": "I32",
                 "int64": "I64", "float16": "F16", "bfloat16": "BF16", "float32": "F32",
                 "float64": "F64"}


def _tessera():
    import tessera
    return tessera


def _is_tensor(x):
    return isinstance(x, _tessera().Tensor)


# ---- tensor <-> bytes ---------------------------------------------------------------------

def _tensor_bytes(t):
    """(code, shape, bytes-like) of a tensor: its elements row-major on the host."""
    name = t.dtype.name
    if name not in _NAME_TO_CODE:
        raise TypeError(f"tessera.save: dtype {t.dtype} has no safetensors code")
    code = _NAME_TO_CODE[name]
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    shape = [int(s) for s in t.shape]
    nbytes = _CODES[code][1] * int(np.prod(shape, dtype=np.int64))
    buf = np.empty(nbytes, dtype=np.uint8)  # buf is (nbytes,)
    if nbytes:
        from tessera import _C
        _C.check(_C.lib.tsr_copy_to_host(t._h, buf.ctypes.data_as(ctypes.c_void_p), nbytes))
    return code, shape, buf


def _tensor_from_bytes(code, shape, data):
    """A tessera tensor of safetensors dtype `code` and `shape` from its row-major bytes."""
    tessera = _tessera()
    name, _, np_dtype = _CODES[code]
    dtype = getattr(tessera, name)
    if code in _WIDENED:
        arr = np.frombuffer(data, dtype=np_dtype).reshape(shape).astype(np.dtype(name))
        return tessera.from_numpy(arr)
    t = tessera.empty(shape, dtype=dtype)
    if len(data):
        ctypes.memmove(t.data_ptr(), np.frombuffer(data, dtype=np.uint8).ctypes.data, len(data))
    return t


# ---- nested structures <-> flat tensors ----------------------------------------------------

def _flatten(obj, prefix, tensors):
    """JSON-able skeleton of obj; its tensors go into `tensors` under dotted keys."""
    if _is_tensor(obj):
        if prefix in tensors:
            raise ValueError(f"tessera.save: two tensors flatten to the same key {prefix!r}")
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        items = [(k, _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors))
                 for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return dict(items)
        return {"__dict__": [[_flatten_key(k), v] for k, v in items]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"tessera.save: cannot store a value of type {type(obj).__name__} "
                    f"at {prefix!r} (tensors, dicts, lists, tuples, numbers, str and None only)")


def _flatten_key(k):
    if isinstance(k, (str, int, float, bool)) or k is None:
        return k
    raise TypeError(f"tessera.save: dict key {k!r} of type {type(k).__name__} cannot be stored")


def _unflatten(skel, tensors, where):
    if isinstance(skel, list):
        return [_unflatten(v, tensors, where) for v in skel]
    if not isinstance(skel, dict):
        return skel
    if "__tensor__" in skel:
        key = skel["__tensor__"]
        if key not in tensors:
            raise ValueError(f"{where}: the structure in __metadata__ names tensor {key!r}, "
                             "which the file does not hold")
        return tensors[key]
    if "__tuple__" in skel:
        return tuple(_unflatten(v, tensors, where) for v in skel["__tuple__"])
    if "__dict__" in skel:
        return {k: _unflatten(v, tensors, where) for k, v in skel["__dict__"]}
    return {k: _unflatten(v, tensors, where) for k, v in skel.items()}


def _is_plain_state_dict(obj):
    return isinstance(obj, dict) and all(isinstance(k, str) and _is_tensor(v) for k, v in obj.items())


# ---- save ------------------------------------------------------------------------------------

def save(obj, f, metadata=None):
    """Writes obj (a {str: Tensor} state dict, or a nested dict/list holding tensors) to the path
    `f` in the safetensors format. The file is written beside the target, fsync'd and renamed over
    it, so a failure never leaves a half-written file where a good one was. `metadata` is an
    optional {str: str} stored in the header's __metadata__."""
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError("tessera.save: metadata must be a dict of str to str")
    meta = dict(metadata or {})
    if _is_plain_state_dict(obj):
        tensors = dict(obj)
    else:
        tensors = {}
        meta[_STRUCTURE_KEY] = json.dumps(_flatten(obj, "", tensors))
    blob = _serialize(tensors, meta)
    if hasattr(f, "write"):
        for part in blob:
            f.write(part)
        return
    _atomic_write(os.fspath(f), blob)


def _serialize(tensors, meta):
    """The file as a list of byte chunks: length, header, then each tensor's bytes."""
    entries = [(name, *_tensor_bytes(t)) for name, t in tensors.items()]
    # lay the data out by alignment (largest itemsize first) so every tensor is aligned
    order = sorted(range(len(entries)), key=lambda i: -_CODES[entries[i][1]][1])
    offsets, pos = {}, 0
    for i in order:
        offsets[i] = (pos, pos + entries[i][3].nbytes)
        pos += entries[i][3].nbytes
    header = {}
    if meta:
        header["__metadata__"] = meta
    for i, (name, code, shape, _) in enumerate(entries):
        if not isinstance(name, str):
            raise TypeError(f"tessera.save: keys must be str, got {name!r}")
        header[name] = {"dtype": code, "shape": shape, "data_offsets": list(offsets[i])}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return [struct.pack("<Q", len(text)), text] + [entries[i][3].data for i in order]


def _atomic_write(path, chunks):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# ---- load ------------------------------------------------------------------------------------

def load(f, device="cpu", map_location=None):
    """Reads a safetensors file (ours or any other writer's). Returns the {name: Tensor} dict,
    or the nested object that save() flattened. A truncated or corrupt file raises ValueError
    naming the file and the problem."""
    device = map_location if map_location is not None else device
    if hasattr(f, "read"):
        data = f.read()
        where = getattr(f, "name", "<stream>")
    else:
        where = os.fspath(f)
        with open(where, "rb") as fh:
            data = fh.read()
    tensors, meta = _parse(memoryview(data), f"tessera.load({where!r})")
    if device is not None and str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    if _STRUCTURE_KEY in meta:
        try:
            skel = json.loads(meta[_STRUCTURE_KEY])
        except ValueError as e:
            raise ValueError(f"tessera.load({where!r}): __metadata__[{_STRUCTURE_KEY!r}] is not "
                             f"valid JSON ({e})") from None
        return _unflatten(skel, tensors, f"tessera.load({where!r})")
    return tensors


def _parse(data, where):
    """Validates the file in `data` and returns ({name: Tensor} in header order, metadata)."""
    size = len(data)
    if size < 8:
        raise ValueError(f"{where}: file is {size} bytes, too short for the 8-byte header length "
                         "(truncated or not a safetensors file)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > size:
        raise ValueError(f"{where}: header length {n} exceeds the file's {size - 8} bytes after "
                         "the length field (truncated or not a safetensors file)")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{where}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: header is a JSON {type(header).__name__}, not an object")
    body = data[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError(f"{where}: __metadata__ must be an object of str to str")
    specs = [(name, _check_entry(name, e, len(body), where)) for name, e in header.items()]
    spans = sorted((s[2], s[3], name) for name, s in specs if s[3] > s[2])
    for (b0, e0, a), (b1, _, b) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{where}: data of tensors {a!r} [{b0}, {e0}) and {b!r} "
                             f"[{b1}, ...) overlap")
    tensors = {name: _tensor_from_bytes(code, shape, body[b:e])
               for name, (code, shape, b, e) in specs}
    return tensors, meta


def _check_entry(name, e, body_size, where):
    if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
        raise ValueError(f"{where}: entry {name!r} needs dtype, shape and data_offsets, got {e!r}")
    code, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
    if code not in _CODES:
        raise ValueError(f"{where}: tensor {name!r} has unknown or unsupported dtype {code!r} "
                         f"(known: {', '.join(_CODES)})")
    if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ValueError(f"{where}: tensor {name!r} has invalid shape {shape!r}")
    if (not isinstance(offs, list) or len(offs) != 2 or
            not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
        raise ValueError(f"{where}: tensor {name!r} has invalid data_offsets {offs!r}")
    b, end = offs
    if not 0 <= b <= end <= body_size:
        raise ValueError(f"{where}: tensor {name!r} has data_offsets [{b}, {end}] outside the "
                         f"{body_size} data bytes of the file (truncated?)")
    numel = 1
    for s in shape:
        numel *= s
    if numel * _CODES[code][1] != end - b:
        raise ValueError(f"{where}: tensor {name!r} of dtype {code} and shape {shape} needs "
                         f"{numel * _CODES[code][1]} bytes but data_offsets [{b}, {end}] span "
                         f"{end - b}")
    return code, shape, b, end
