"""Checkpoints as one flat {name: tensor} dict, the form tessera.save writes as safetensors; tensors are
saved from the CPU, so a checkpoint loads on any device.

Model weights go in as "model.<name>"; the optimizer's and scheduler's nested state dicts are
split into their tensors ("optimizer.<n>", "scheduler.<n>") and a JSON tree that points at them;
that tree, the epoch, the config and the history travel as JSON bytes in the uint8 tensor
"meta". Files are written beside the target, fsync'ed and renamed over it (the folder fsync'ed
after), so a crash never leaves a half-written checkpoint in place of a good one."""
import json
import os

import numpy as np

FORMAT = "tessera-train checkpoint 1"


def _encode(obj, prefix, flat, T):
    """obj as JSON with each tensor replaced by {"$t": key} and stored in flat[key]."""
    if isinstance(obj, T.Tensor):
        key = f"{prefix}{len(flat)}"  # unique: flat grows with every tensor
        flat[key] = obj.detach().cpu()
        return {"$t": key}
    if isinstance(obj, dict):  # keys may be ints (optimizer state): keep them as pairs
        return {"$d": [[k, _encode(v, prefix, flat, T)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, prefix, flat, T) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, prefix, flat, T) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj, flat):
    if isinstance(obj, list):
        return [_decode(v, flat) for v in obj]
    if isinstance(obj, dict):
        if "$t" in obj:
            return flat[obj["$t"]]
        if "$d" in obj:
            return {k: _decode(v, flat) for k, v in obj["$d"]}
        if "$tuple" in obj:
            return tuple(_decode(v, flat) for v in obj["$tuple"])
    return obj


def save(T, path, model, optimizer, scheduler, meta):
    """Writes model/optimizer/scheduler state and the JSON-able `meta` dict to path, atomically."""
    flat = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    meta = dict(meta, format=FORMAT,
                optimizer=_encode(optimizer.state_dict(), "optimizer.", flat, T),
                scheduler=_encode(scheduler.state_dict(), "scheduler.", flat, T) if scheduler else None)
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8).copy()
    flat["meta"] = T.from_numpy(blob)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        T.save(flat, tmp)
        _fsync(tmp)           # the bytes are on disk before the name points at them
        os.replace(tmp, path)
        _fsync(os.path.dirname(os.path.abspath(path)))  # and so is the rename
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync(path):
    """fsync of a file, or of a folder where the file system allows it (an error on a file
    propagates: the checkpoint is then not renamed into place)."""
    is_dir = os.path.isdir(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if is_dir:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not is_dir:
            raise
    finally:
        os.close(fd)


def read_meta(T, path):
    """(flat dict, meta dict) of a checkpoint file; ValueError naming the file if it is not one."""
    try:
        flat = T.load(path)
    except Exception as e:  # the loader's own message says what is wrong with the file
        raise ValueError(f"{path}: cannot load the checkpoint: {e}") from None
    if not isinstance(flat, dict) or "meta" not in flat:
        raise ValueError(f"{path}: not a tessera-train checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(bytes(flat["meta"].numpy().astype(np.uint8)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: the checkpoint's 'meta' entry is not JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    return flat, meta


def restore(flat, meta, model, optimizer, scheduler):
    """Loads the states that save() wrote into model, optimizer and scheduler (each tensor copied onto the
    device of the parameter it belongs to)."""
    model.load_state_dict({k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")})
    optimizer.load_state_dict(_decode(meta["optimizer"], flat))
    if scheduler is not None:
        scheduler.load_state_dict(_decode(meta["scheduler"], flat))
