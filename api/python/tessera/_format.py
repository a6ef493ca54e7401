# A torch-like repr for tensors: tensor([[1., 2.],\n        [3., 4.]], requires_grad=True).
import math

import numpy as np

from . import _tensor as T

LINEWIDTH, THRESHOLD, EDGEITEMS = 80, 1000, 3


class _Formatter:
    """One format for every element, by torch's rules (int mode, fixed 4 decimals or scientific; the width
    from the nonzero finite values)."""

    def __init__(self, values, floating):
        self.floating, self.int_mode, self.sci, self.width = floating, True, False, 1
        if not floating:
            self.width = max((len(str(v)) for v in values.tolist()), default=1)
            return
        v = values.astype(np.float64)
        nz = v[np.isfinite(v) & (v != 0)]
        if nz.size == 0:
            return
        lo, hi = np.abs(nz).min(), np.abs(nz).max()
        self.int_mode = bool(np.all(np.ceil(nz) == nz))
        self.sci = hi / lo > 1000.0 or hi > 1.0e8 or (not self.int_mode and lo < 1.0e-4)
        if self.sci:
            self.width = max(len(f"{x:.4e}") for x in nz.tolist())
        elif self.int_mode:
            self.width = max(len(f"{x:.0f}") + 1 for x in nz.tolist())
        else:
            self.width = max(len(f"{x:.4f}") for x in nz.tolist())

    def __call__(self, v):
        if not self.floating:
            s = str(v)
        elif self.sci:
            s = f"{float(v):{self.width}.4e}"
        elif self.int_mode:
            s = f"{float(v):.0f}"
            if not (math.isinf(v) or math.isnan(v)):
                s += "."
        else:
            s = f"{float(v):.4f}"
        return (self.width - len(s)) * " " + s


def _summarized(a):
    """The corner elements torch prints for big tensors (for the formatter's width)."""
    if a.ndim == 0:
        return a.reshape(1)
    if a.shape[0] > 2 * EDGEITEMS:
        parts = [a[:EDGEITEMS], a[-EDGEITEMS:]]
    else:
        parts = [a]
    return np.concatenate([_summarized(p[i]).ravel() for p in parts for i in range(p.shape[0])] or
                          [np.zeros(0, a.dtype)])


def _body(a, fmt, indent, summarize):
    if a.ndim == 0:
        return fmt(a.item())
    if a.ndim == 1:
        n = a.shape[0]
        if summarize and n > 2 * EDGEITEMS:
            items = [fmt(v) for v in a[:EDGEITEMS].tolist()] + [" ..."] + [fmt(v) for v in a[-EDGEITEMS:].tolist()]
        else:
            items = [fmt(v) for v in a.tolist()]
        per_line = max(1, math.floor((LINEWIDTH - indent) / (fmt.width + 2)))
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"
    n = a.shape[0]
    if summarize and n > 2 * EDGEITEMS:
        rows = [_body(a[i], fmt, indent + 1, summarize) for i in range(EDGEITEMS)] + ["..."] + \
               [_body(a[i], fmt, indent + 1, summarize) for i in range(n - EDGEITEMS, n)]
    else:
        rows = [_body(a[i], fmt, indent + 1, summarize) for i in range(n)]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def tensor_repr(t, prefix="tensor("):
    if not getattr(t, "_h", None):
        return "tensor(<null>)"
    dt = t.dtype
    a = t._host_copy()
    indent = len(prefix)
    suffixes = []
    dev = t.device
    if dev.type != "cpu":
        suffixes.append(f"device='{dev}'")
    if a.size == 0:
        body = "[]"
        if a.ndim != 1:
            suffixes.append(f"size={tuple(a.shape)}")
        if dt is not T.float32:
            suffixes.append(f"dtype=tessera.{dt.name}")
    else:
        summarize = a.size > THRESHOLD
        floating = dt.is_floating_point
        fmt = _Formatter(_summarized(a) if summarize else a.ravel(), floating)
        body = _body(a, fmt, indent, summarize)
        if dt not in (T.float32, T.int64, T.bool_):
            suffixes.append(f"dtype=tessera.{dt.name}")
    fn = t.grad_fn
    if fn is not None:
        suffixes.append(f"grad_fn={fn!r}")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    text = prefix + body
    last_len = len(text) - text.rfind("\n") + 1  # as torch counts it
    for s in suffixes:
        if last_len + len(s) + 2 > LINEWIDTH:
            text += ",\n" + " " * indent + s
            last_len = indent + len(s)
        else:
            text += ", " + s
            last_len += len(s) + 2
    return text + ")"
