# Harness of the differential tests against PyTorch (test_ops_vs_torch.py): operand generators
# (random values per domain, non-contiguous layouts), a case runner that checks forward, backward
# and view geometry, and the per-dtype tolerances.
import ctypes
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

import tessera
from tessera import _C

FLOATS = ("float32", "float64")
INTS = ("uint8", "int32", "int64")

# (rtol, atol) per dtype. "ew": one rounding per element (elementwise ops, casts, views);
# "acc": results that accumulate (reductions, softmax, matmul, conv) and every gradient; its atol
# is scaled by the largest magnitude of the reference (errors of a sum scale with its terms).
# float32 kernels may use other polynomials and summation orders than ATen's; float64 ones
# must agree to a few ulps of an accumulation (a kernel that computed in float32 is ~1e-7 off).
TOL = {
    "float32": {"ew": (1e-5, 1e-6), "acc": (1e-4, 1e-5)},
    "float64": {"ew": (1e-10, 1e-12), "acc": (1e-9, 1e-11)},
}


def tsr_dtype(name):
    return getattr(tessera, name)


def torch_dtype(name):
    return getattr(torch, name)


def is_float(dtype):
    return dtype in FLOATS


# ---- values --------------------------------------------------------------------------------
def values(rng, shape, dtype, dom="any"):
    """Random numbers of a domain: any (normal), pos (0.5..2), nz (|x| in 0.5..2), unit (-0.9..0.9),
    small (integers -3..3, for ties), exp (integers 0..3, pow exponents)."""
    shape = tuple(shape)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype in INTS:
        lo, hi = {"pos": (1, 6), "exp": (0, 4), "small": (-3, 4), "nz": (1, 6)}.get(dom, (-5, 6))
        if dtype == "uint8":
            lo = max(lo, 0)
        v = rng.integers(lo, hi, size=shape)
        if dom == "nz" and dtype != "uint8":
            v = v * rng.choice([-1, 1], size=shape)
        return np.asarray(v, dtype=dtype)
    if dom == "pos":
        v = rng.uniform(0.5, 2.0, shape)
    elif dom == "nz":
        v = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], size=shape)
    elif dom == "unit":
        v = rng.uniform(-0.9, 0.9, shape)
    elif dom == "small":
        v = rng.integers(-3, 4, size=shape).astype(np.float64)
    elif dom == "exp":
        v = rng.integers(0, 4, size=shape).astype(np.float64)
    else:
        v = rng.standard_normal(shape)
    return np.asarray(v, dtype=dtype)  # (a 0-dim draw is a numpy scalar: made an array again)


# ---- operands ------------------------------------------------------------------------------
@dataclass
class T:
    """A tensor operand: its logical shape, dtype, layout and value domain. Layouts:
    contig; T (a permutation of a contiguous base: dims reversed); step (every other element of a
    base twice as large, offset 1); expand (a base with size-1 dims, expanded)."""
    shape: tuple
    dtype: str = "float32"
    layout: str = "contig"
    dom: str = "any"
    grad: Optional[bool] = None  # None: requires grad when floating and the case runs backward


def view_steps(rng, shape, layout):
    """The base shape and the view steps (applied to both libraries) that give `shape`."""
    shape, n = tuple(shape), len(shape)
    if layout == "T" and n >= 2:
        return shape[::-1], [("permute", tuple(range(n - 1, -1, -1)))]
    if layout == "step" and n >= 1:
        return tuple(2 * s + 1 for s in shape), [("slice", d, 1, 2 * shape[d] + 1, 2) for d in range(n)]
    if layout == "expand" and any(s != 1 for s in shape):
        lead = int(rng.integers(0, n)) if n > 1 else 0
        base = [1 if (s != 1 and rng.random() < 0.6) else s for s in shape[lead:]]
        if tuple(base) == shape[lead:] and lead == 0:
            base[[i for i, s in enumerate(shape) if s != 1][0]] = 1
        return tuple(base), [("expand", shape)]
    return shape, []


def apply_torch(t, steps):
    for s in steps:
        if s[0] == "permute":
            t = t.permute(*s[1])
        elif s[0] == "slice":
            idx = [slice(None)] * t.dim()
            idx[s[1]] = slice(s[2], s[3], s[4])
            t = t[tuple(idx)]
        else:
            t = t.expand(*s[1])
    return t


def apply_tsr(t, steps):
    """The same views through the op table (the harness doesn't depend on the Python view methods)."""
    for s in steps:
        if s[0] == "permute":
            t = _C.call_op("permute", [t], dims=s[1])
        elif s[0] == "slice":
            t = _C.call_op("slice", [t], dim=s[1], start=s[2], end=s[3], step=s[4])
        else:
            t = _C.call_op("expand", [t], shape=s[1])
    return t


def from_np(arr, requires_grad=False):
    """A new Tessera tensor holding a copy of arr (its dtype kept)."""
    arr = np.array(arr, copy=True, order="C")  # (np.ascontiguousarray makes 0-dim arrays 1-dim)
    t = tessera.tensor(arr, dtype=tsr_dtype(arr.dtype.name))
    if requires_grad:
        t.requires_grad_(True)
    return t


def to_np(t):
    """The values of a Tessera tensor as a new numpy array (any strides)."""
    return np.array(t.detach().numpy(), copy=True)


def info(t):
    i = _C.TensorInfo()
    i.struct_size = ctypes.sizeof(i)
    _C.check(_C.lib.tsr_tensor_info(t._h, ctypes.byref(i)))
    return i


@dataclass(eq=False)
class Operand:
    spec: Any
    base_np: Any = None
    steps: list = field(default_factory=list)
    t_base: Any = None  # torch leaf
    t: Any = None  # torch operand (a view of t_base, or a Python number)
    x_base: Any = None  # Tessera leaf
    x: Any = None


def make_operand(rng, spec, want_grad, like=None):
    """Both libraries' operand for a T spec (or a number); `like`: reuse that operand's layout."""
    op = Operand(spec)
    if not isinstance(spec, T):  # a Python number, passed as is to both
        op.t = op.x = spec
        return op
    base_shape, op.steps = (like.base_np.shape, like.steps) if like else view_steps(rng, spec.shape, spec.layout)
    op.base_np = values(rng, base_shape, spec.dtype, spec.dom)
    rg = want_grad and is_float(spec.dtype) if spec.grad is None else spec.grad
    op.t_base = torch.from_numpy(op.base_np.copy()).requires_grad_(rg)
    op.x_base = from_np(op.base_np, requires_grad=rg)
    op.t = apply_torch(op.t_base, op.steps)
    op.x = apply_tsr(op.x_base, op.steps)
    return op


# ---- comparisons ---------------------------------------------------------------------------
def mismatch(what, got, ref, tol="ew", tol_dtype=None):
    """None when the numpy arrays agree in shape, dtype and values (within TOL of tol_dtype, by default
    the result's; "acc" scales atol by the largest magnitude), else a message."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return f"{what}: shape {got.shape}, torch {ref.shape}"
    if got.dtype != ref.dtype:
        return f"{what}: dtype {got.dtype}, torch {ref.dtype}"
    if ref.dtype.name in TOL:
        rtol, atol = TOL[tol_dtype or ref.dtype.name][tol]
        finite = np.abs(ref[np.isfinite(ref)])
        if tol == "acc" and finite.size:
            atol *= max(1.0, float(finite.max()))
        if np.allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True):
            return None
        with np.errstate(invalid="ignore"):
            err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            bad = ~np.isclose(got, ref, rtol=rtol, atol=atol, equal_nan=True)
        worst = np.argmax(np.where(bad, np.nan_to_num(err, nan=np.inf), -1))
        i = np.unravel_index(worst, ref.shape) if ref.ndim else ()
        return (f"{what}: {int(bad.sum())}/{ref.size} values off (rtol {rtol}, atol {atol}); "
                f"at {tuple(int(k) for k in i)}: {got[i]!r} vs torch {ref[i]!r}")
    if np.array_equal(got, ref):
        return None
    bad = got != ref
    i = tuple(int(k) for k in np.argwhere(bad)[0]) if ref.ndim else ()
    return f"{what}: {int(bad.sum())}/{ref.size} values differ; at {i}: {got[i]!r} vs torch {ref[i]!r}"


def t_np(t):
    return t.detach().numpy().copy() if isinstance(t, torch.Tensor) else np.asarray(t)


# ---- cases ---------------------------------------------------------------------------------
ERRORS = (ValueError, TypeError, IndexError, RuntimeError)


@dataclass
class Case:
    """One differential check. `args` are T operands or Python numbers; `ref(*torch_args)` and
    `tsr(*tessera_args)` compute the op. backward: seed both outputs with the same random gradient
    and compare every leaf's .grad. error: Tessera must raise this (torch raising too is expected).
    parity: where torch raises, Tessera must raise too (a ValueError, TypeError, IndexError or
    RuntimeError). view: also check that the result shares storage (geometry and write-through)
    like torch's. out: also write the result into a given output of this layout (tsr(..., out=))."""
    desc: str
    args: list
    ref: Optional[Callable]
    tsr: Callable
    backward: bool = False
    tol: str = "ew"
    error: Any = None
    parity: bool = False
    view: bool = False
    out: Optional[str] = None


class Check:
    """A check that isn't one op call against one torch call: fn(rng) returns failure messages."""

    def __init__(self, desc, fn):
        self.desc, self.fn = desc, fn


def registrar(specs):
    """The @spec(*op_names) decorator that files a spec generator (op, rng) -> Case / Check
    under each name in `specs`."""
    def spec(*names):
        def register(gen):
            for n in names:
                specs[n] = gen
            return gen
        return register
    return spec


def run_case(case, rng):
    """Runs one case; returns a list of failure messages (empty when it passes)."""
    ops = [make_operand(rng, a, case.backward) for a in case.args]
    if case.error is not None:
        try:
            case.tsr(*[o.x for o in ops])
        except case.error:
            return []
        except Exception as e:  # noqa: BLE001 - reported as a failure
            return [f"{case.desc}: expected {case.error}, got {type(e).__name__}: {e}"]
        return [f"{case.desc}: expected {case.error}, Tessera returned a result"]
    try:
        ref = case.ref(*[o.t for o in ops])
    except Exception as e:  # noqa: BLE001
        if not case.parity:
            return [f"{case.desc}: the torch reference raised {type(e).__name__}: {e} (bad case)"]
        try:
            case.tsr(*[o.x for o in ops])
        except ERRORS:
            return []
        except Exception as e2:  # noqa: BLE001
            return [f"{case.desc}: torch raises ({e}), Tessera raised {type(e2).__name__}: {e2}"]
        return [f"{case.desc}: torch raises ({type(e).__name__}: {e}), Tessera returned a result"]
    try:
        out = case.tsr(*[o.x for o in ops])
    except Exception as e:  # noqa: BLE001
        return [f"{case.desc}: Tessera raised {type(e).__name__}: {e}"]
    fails = []
    m = mismatch(f"{case.desc}: forward", to_np(out), t_np(ref), case.tol)
    if m:
        return [m]
    if out.requires_grad != ref.requires_grad:  # the graph is recorded exactly when torch records one
        fails.append(f"{case.desc}: result requires_grad={out.requires_grad}, torch's {ref.requires_grad}")
    if case.view:
        fails += check_view(case, rng, ops)
    if case.out:
        fails += check_out(case, rng, ops)
    leaves = [o for o in ops if isinstance(o.spec, T) and o.t_base.requires_grad]
    if case.backward and leaves and ref.requires_grad:
        g = values(rng, ref.shape, ref.dtype.__repr__().split(".")[-1])
        try:
            ref.backward(torch.from_numpy(g.copy()))
            out.backward(from_np(g))
        except Exception as e:  # noqa: BLE001
            return fails + [f"{case.desc}: backward raised {type(e).__name__}: {e}"]
        dtypes = {ref.dtype} | {o.t.dtype for o in ops if isinstance(o.t, torch.Tensor)}
        for k, o in enumerate(ops):
            if not any(o is leaf for leaf in leaves):
                continue
            xg = o.x_base.grad
            if xg is None:
                fails.append(f"{case.desc}: input {k} has no .grad after backward")
                continue
            # A gradient is no more precise than what it is computed from: a float64 input whose result,
            # or other operand, is float32 gets float32 intermediates (torch's too, in another order).
            coarse = "float32" if torch.float32 in dtypes else None
            m = mismatch(f"{case.desc}: grad of input {k}", to_np(xg), t_np(o.t_base.grad), "acc", coarse)
            if m:
                fails.append(m)
    return fails


def check_view(case, rng, like):
    """On fresh operands without grad: a view's geometry matches torch's (strides of dims > 1,
    storage offset) and it shares its input's storage both ways: a write into the base shows in
    the view, and one into the view shows in the base (skipped where torch's view has elements
    that share memory)."""
    fails = []
    ops = [make_operand(rng, a, False, p) for a, p in zip(case.args, like)]
    o = ops[0]
    ref = case.ref(*[p.t for p in ops])
    out = case.tsr(*[p.x for p in ops])
    with torch.no_grad():
        shares = ref.numel() == 0 or ref.storage().data_ptr() == o.t_base.storage().data_ptr()
    if ref.numel() > 0:
        xi, bi = info(out), info(o.x_base)
        item = o.base_np.itemsize
        x_off = (xi.data - bi.data) // item if xi.data and bi.data else None
        x_shares = x_off is not None and 0 <= x_off < o.base_np.size
        if shares != x_shares:
            fails.append(f"{case.desc}: torch's result {'is' if shares else 'is not'} a view of the input, "
                         f"Tessera's {'is' if x_shares else 'is not'}")
        elif shares:
            strides = [xi.strides[d] for d in range(xi.ndim) if xi.sizes[d] > 1]
            want = [s for s, n in zip(ref.stride(), ref.shape) if n > 1]
            if strides != want or x_off != ref.storage_offset():
                fails.append(f"{case.desc}: view strides {strides} offset {x_off}, torch {want} "
                             f"offset {ref.storage_offset()}")
    if fails:
        return fails
    # Write through the base, read the view.
    new = values(np.random.default_rng(7), o.base_np.shape, o.base_np.dtype.name)
    with torch.no_grad():
        o.t_base.copy_(torch.from_numpy(new))
    with tessera.no_grad():
        _C.call_op("copy", [from_np(new)], out=o.x_base)
    m = mismatch(f"{case.desc}: view after writing its base", to_np(out), t_np(ref))
    if m:
        return [m]
    overlapping = any(s == 0 and n > 1 for s, n in zip(ref.stride(), ref.shape)) or (
        ref.numel() > 0 and shares and len({ref.storage_offset() + sum(i * s for i, s in zip(ix, ref.stride()))
                                            for ix in np.ndindex(*ref.shape)}) < ref.numel())
    if not overlapping and ref.numel() > 0:
        with torch.no_grad():
            ref.fill_(5)
        with tessera.no_grad():
            _C.call_op("fill", [], out=out, scalar=5)
        m = mismatch(f"{case.desc}: base after writing the view", to_np(o.x_base), t_np(o.t_base))
        if m:
            return [m]
    return []


def check_out(case, rng, like):
    """tsr(..., out=o) with o a view of a `case.out` layout over a base of sentinels: o holds the
    result (cast to o's dtype), the base's other elements are untouched."""
    ops = [make_operand(rng, a, False, p) for a, p in zip(case.args, like)]
    ref = case.ref(*[p.t for p in ops]).detach()
    o = make_operand(rng, T(tuple(ref.shape), str(ref.dtype).split(".")[-1], case.out), False)
    with torch.no_grad():
        o.t.copy_(ref)
    with tessera.no_grad():
        got = case.tsr(*[p.x for p in ops], out=o.x)
    m = mismatch(f"{case.desc}: out= into a {case.out} view, its base", to_np(o.x_base), t_np(o.t_base), case.tol)
    if m:
        return [m]
    if got is not o.x and got._h != o.x._h:
        return [f"{case.desc}: out= returned another tensor than the given output"]
    return []
