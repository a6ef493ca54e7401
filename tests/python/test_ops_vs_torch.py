# Differential tests against PyTorch: every op of the op table (read from the library, so a new op
# without a spec here fails), forward and backward, on random shapes, non-contiguous layouts,
# broadcasts, 0-dim and scalar operands, float32/float64 and integer/bool dtypes.
# Set TESSERA_DIFF_SEED to explore other random cases; a failure names its case.
import math
import operator
import os
import sys
import zlib

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not importable: the differential tests against it "
                                            "need it (run them with /usr/bin/python3, which has torch 1.13)")
import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import tessera  # noqa: E402
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "api", "python"))
    import tessera  # noqa: E402
from tessera import _C  # noqa: E402

import torch_diff as H  # noqa: E402
from torch_diff import FLOATS, INTS, Case, Check, T  # noqa: E402

SEED = int(os.environ.get("TESSERA_DIFF_SEED", "0"))
N = 20  # random cases per op, besides the fixed edge cases
OPS = [_C.lib.tsr_op_name(i).decode() for i in range(_C.lib.tsr_op_count())]

SPECS = {}  # op name -> generator(op, rng) of Case / Check
spec = H.registrar(SPECS)

# The transformer ops' specs live beside their other tests; run here with every op's.
from test_transformer_ops import SPECS as _TRANSFORMER_SPECS  # noqa: E402
SPECS.update(_TRANSFORMER_SPECS)


def is_num(v):
    return isinstance(v, (bool, int, float))


def call(name, **attrs):
    """Tessera's side of a case: the op by name; a Python number among the operands becomes
    attrs.scalar at its operand position (scalar_arg)."""
    def fn(*args, out=None):
        kw = dict(attrs)
        tensors = []
        for i, a in enumerate(args):
            if is_num(a):
                kw.update(scalar=a, scalar_arg=i)
            else:
                tensors.append(a)
        return _C.call_op(name, tensors, out=out, **kw)
    return fn


BINARY_OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
                    "pow": operator.pow, "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
                    "gt": operator.gt, "ge": operator.ge, "matmul": operator.matmul}


def public_api(op, a):
    """The torch-like public form (functions, methods, operators, indexing, tessera.nn.functional) of `op`
    called with attrs `a`; None where the op has none."""
    import tessera.nn.functional as TF  # here: a broken tessera.nn fails only the ops that use it
    dims = a.get("dims") or None
    if op == "gelu":
        return lambda x: TF.gelu(x, approximate="tanh" if a.get("approximate") else "none")
    if op in ("add", "sub") and "alpha" in a:
        return lambda x, y: call(op, **a)(x, y) if is_num(x) else getattr(tessera, op)(x, y, alpha=a["alpha"])
    if op in BINARY_OPERATORS:
        return BINARY_OPERATORS[op]
    if op in UNARY or op in ("maximum", "minimum", "where"):
        return getattr(tessera, op)
    if op == "clamp":
        return lambda x: tessera.clamp(x, min=a.get("scalar"), max=a.get("scalar2"))
    if op in ("sum", "mean", "prod"):
        return lambda x: getattr(x, op)(dims, keepdim=bool(a["keepdim"]))
    if op in ("max", "min"):
        return lambda x: getattr(tessera, "a" + op)(x, dims or (), keepdim=bool(a["keepdim"]))
    if op in ("var", "std"):
        return lambda x: getattr(x, op)(dims, correction=a["correction"], keepdim=bool(a["keepdim"]))
    if op in ("argmax", "argmin"):
        return lambda x: getattr(x, op)(a["dim"] if a["has_dim"] else None, keepdim=bool(a["keepdim"]))
    if op in ("softmax", "log_softmax"):
        return lambda x: getattr(x, op)(a["dim"])
    if op in ("view", "reshape", "expand"):
        return lambda x: getattr(x, op)(a["shape"])
    if op == "permute":
        return lambda x: x.permute(a["dims"])
    if op == "transpose":
        return lambda x: x.transpose(a["dim"], a["dim2"])
    if op == "slice":
        return lambda x: x[(slice(None),) * (a["dim"] % x.ndim) + (slice(a["start"], a["end"], a["step"]),)]
    if op == "narrow":
        return lambda x: x.narrow(a["dim"], a["start"], a["end"])
    if op == "select":
        return lambda x: x.select(a["dim"], a["index"])
    if op == "squeeze":
        return lambda x: x.squeeze(a["dim"] if a.get("has_dim") else a.get("dims"))
    if op == "unsqueeze":
        return lambda x: x.unsqueeze(a["dim"])
    if op == "flatten":
        return lambda x: x.flatten(a["dim"], a["dim2"])
    if op == "as_strided":
        return lambda x: x.as_strided(a["shape"], a["strides"], a["index"])
    if op == "copy":
        return (lambda x: x.to(a["dtype"])) if "dtype" in a else (lambda x: x.clone())
    if op == "conv2d":
        return lambda x, w, b=None: TF.conv2d(x, w, b, a.get("stride2", 1), a.get("padding", 0),
                                              a.get("dilation", 1), a.get("groups", 1))
    if op == "max_pool2d":
        return lambda x: TF.max_pool2d(x, a["kernel"], None if a["stride2"] == (0, 0) else a["stride2"],
                                       a["padding"], a["dilation"], bool(a["ceil_mode"]))
    return None


def route(i, op, attrs, desc, out=None):
    """(desc, Tessera's callable): odd cases go through the public API where it has the op (and no out=
    check is asked for), even ones through the op by name."""
    api = public_api(op, attrs) if i % 2 and out is None else None
    return (desc + " [api]", api) if api else (desc, call(op, **attrs))


def pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


def rshape(rng, ndim=None, lo=1, hi=5):
    if ndim is None:
        ndim = int(rng.integers(0, 5))
    return tuple(int(s) for s in rng.integers(lo, hi + 1, ndim))


def bshape(rng, shape):
    """A shape that broadcasts to `shape` (leading dims dropped, some dims 1)."""
    lead = int(rng.integers(0, len(shape) + 1)) if rng.random() < 0.4 else 0
    return tuple(1 if rng.random() < 0.3 else s for s in shape[lead:])


def layout(rng):
    return pick(rng, ("contig", "contig", "T", "step", "expand"))


def fdtype(rng, extra=()):
    """Mostly float32/float64, sometimes one of `extra` (forward-only dtypes)."""
    return pick(rng, FLOATS * 3 + tuple(extra))


def tdesc(*args):
    parts = []
    for a in args:
        parts.append(f"{a.dtype}{list(a.shape)}{'' if a.layout == 'contig' else ':' + a.layout}"
                     if isinstance(a, T) else repr(a))
    return "(" + ", ".join(parts) + ")"


def on_float(fn):
    """torch 1.13 has no integer kernels for this op; Tessera's FLOAT rule computes integer and bool
    inputs in float32 (as torch does for exp, sin, ...), so the reference is the op on float32 copies."""
    def ref(*args):
        return fn(*[a.float() if isinstance(a, torch.Tensor) and not a.is_floating_point() else a for a in args])
    return ref


def with_tensor_scalars(fn):
    """For torch ops that take no Python numbers: a number becomes a 0-dim tensor of the dtype
    torch.result_type gives it (so type promotion stays that of a wrapped number)."""
    def ref(*args):
        t = next(a for a in args if isinstance(a, torch.Tensor))
        return fn(*[torch.tensor(a, dtype=torch.result_type(t, a)) if is_num(a) else a for a in args])
    return ref


# ---- unary ----------------------------------------------------------------------------------
UNARY = {  # op: (torch reference, value domain, torch has integer kernels)
    "neg": (torch.neg, "any", True), "abs": (torch.abs, "nz", True), "exp": (torch.exp, "any", True),
    "log": (torch.log, "pos", True), "sqrt": (torch.sqrt, "pos", True), "rsqrt": (torch.rsqrt, "pos", True),
    "sin": (torch.sin, "any", True), "cos": (torch.cos, "any", True), "tanh": (torch.tanh, "any", True),
    "sigmoid": (torch.sigmoid, "any", True), "relu": (torch.relu, "nz", True),
    "gelu": (F.gelu, "any", False), "silu": (F.silu, "any", False),
}
NUM_ONLY = {"neg", "abs", "relu", "sub", "pow", "clamp", "argmax", "argmin", "matmul"}  # reject bool


@spec(*UNARY)
def gen_unary(op, rng):
    tref, dom, has_int = UNARY[op]
    for i in range(N + 4):
        dtype = fdtype(rng, INTS + ("bool",))
        x = T(rshape(rng), dtype, layout(rng), dom)
        if i == N:
            x = T((), pick(rng, FLOATS), "contig", dom)
        elif i == N + 1:
            x = T((0, 3), "float32", "contig", dom)
        attrs, ref = {}, tref
        if op == "gelu":
            approx = int(rng.integers(0, 2))
            attrs["approximate"] = approx
            ref = (lambda a: lambda x: F.gelu(x, approximate="tanh" if a else "none"))(approx)
        desc = f"{op}{tdesc(x)} {attrs or ''}"
        dtype = x.dtype
        if dtype == "bool" and op in NUM_ONLY:
            yield Case(desc, [x], ref, call(op, **attrs), error=TypeError)
            continue
        if not H.is_float(dtype) and not has_int:
            ref = on_float(ref)
        out_layout = "step" if i == N + 2 else "T" if i == N + 3 else None
        desc, fn = route(i, op, attrs, desc, out_layout)
        yield Case(desc, [x], ref, fn, backward=H.is_float(dtype), out=out_layout)


# ---- binary and comparisons -------------------------------------------------------------------
def bool_as_promoted(fn):
    """torch refuses `-` with any bool operand (and pow's backward with a bool exponent), whatever the
    promoted dtype; Tessera's NUM rule refuses only a bool *promoted* dtype (ops.def), so the reference
    is the op on the operands converted to torch.result_type of the pair."""
    def ref(a, b):
        if not any(v.dtype == torch.bool if isinstance(v, torch.Tensor) else isinstance(v, bool) for v in (a, b)):
            return fn(a, b)
        dt = torch.result_type(a, b)
        if dt == torch.bool:
            return fn(a, b)
        conv = [v.to(dt) if isinstance(v, torch.Tensor) else (float(v) if dt.is_floating_point else int(v))
                for v in (a, b)]
        return fn(*conv)
    return ref


def torch_binary(op):
    return {
        "add": lambda a, b: a + b, "sub": bool_as_promoted(lambda a, b: a - b), "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b, "pow": bool_as_promoted(lambda a, b: a ** b),
        "maximum": with_tensor_scalars(torch.maximum), "minimum": with_tensor_scalars(torch.minimum),
        "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    }[op]


DTYPE_PAIRS = [("float32", "float32")] * 4 + [("float64", "float64")] * 3 + [
    ("float32", "float64"), ("int64", "float32"), ("float64", "int32"), ("int32", "int64"), ("uint8", "int64"),
    ("int64", "int64"), ("uint8", "uint8"), ("bool", "bool"), ("bool", "float32"), ("int32", "bool")]
SCALARS = (2, -3, 0.5, 1.25, -2.0, True)


def binary_operands(rng, op, compare):
    """Two operands of `op`: tensors that broadcast together, or a tensor and a Python number."""
    da, db = pick(rng, DTYPE_PAIRS)
    if rng.random() < 0.5:
        da, db = db, da
    out = rshape(rng)
    dom_a, dom_b = ("small", "small") if compare else ("any", "any")
    if op == "div":
        dom_b = "nz"
    if op == "pow":
        dom_a, dom_b = ("pos", "unit") if H.is_float(da) or H.is_float(db) else ("small", "exp")
    a = T(bshape(rng, out), da, layout(rng), dom_a)
    b = T(bshape(rng, out), db, layout(rng), dom_b)
    r = rng.random()
    if r < 0.12:
        a = T((), da, "contig", dom_a)  # a 0-dim tensor takes part in promotion less than a dimensioned one
    elif r < 0.3:
        if op != "pow":
            s = pick(rng, SCALARS)
            return (a, s) if rng.random() < 0.5 else (s, b)
        if rng.random() < 0.6:  # tensor ** number
            s = pick(rng, (2, 3, 0.5, -1.5, 2.0))
            if not (isinstance(s, int) and s >= 0):
                a.dom = "pos"  # a fractional power of a negative number is NaN, a negative one of 0 int is refused
            return a, s
        return pick(rng, (2.0, 0.5, 3)), b  # number ** tensor
    return a, b


@spec("add", "sub", "mul", "div", "pow", "maximum", "minimum")
def gen_binary(op, rng):
    ref0 = torch_binary(op)
    for i in range(N + 8):
        a, b = binary_operands(rng, op, False)
        attrs, ref = {}, ref0
        ints = not any(isinstance(v, T) and H.is_float(v.dtype) or isinstance(v, float) for v in (a, b))
        if op in ("add", "sub") and rng.random() < 0.3 and not any(
                isinstance(v, bool) or isinstance(v, T) and v.dtype == "bool" for v in (a, b)):
            alpha = pick(rng, (2, -1)) if ints else pick(rng, (2, -0.5))
            attrs["alpha"] = alpha
            ref = (lambda al, sub: lambda x, y: (torch.sub if sub else torch.add)(x, y, alpha=al)
                   if isinstance(x, torch.Tensor) else (x - y * al if sub else x + y * al))(alpha, op == "sub")
        if i == N:  # a float alpha with integer operands is refused, as torch does
            if op not in ("add", "sub"):
                continue
            a, b, attrs = T((2, 3), "int64"), T((3,), "int64"), {"alpha": 0.5}
        if i == N + 1:  # shapes that don't broadcast
            a, b = T((2, 3), "float32"), T((4,), "float32")
        if i == N + 2 and op == "pow":  # integers to negative integer powers are refused
            a, b = T((3,), "int64", dom="pos"), -1
        if i == N + 5:  # a wrapped number takes the tensor's dtype: uint8 - 3 wraps, max(uint8, -3) is 253
            a, b = T((2, 3), "uint8", dom="small"), -3
        if i == N + 6:  # a 0-dim float64 with a dimensioned integer operand: float64 math throughout
            a, b = T((), "float64", dom="pos"), T((1, 4), "int32", dom="exp" if op == "pow" else "nz")
        desc = f"{op}{tdesc(a, b)} {attrs or ''}"
        if i in (N, N + 1) or i == N + 2 and op == "pow":
            err = TypeError if i == N else (ValueError, RuntimeError) if i == N + 1 else RuntimeError
            yield Case(desc, [a, b], ref, call(op, **attrs), error=err)
            continue
        out_layout = "step" if i == N + 3 else "T" if i == N + 4 else None
        desc, fn = route(i, op, attrs, desc, out_layout)
        yield Case(desc, [a, b], ref, fn, backward=True, parity=True, out=out_layout)


@spec("eq", "ne", "lt", "le", "gt", "ge")
def gen_compare(op, rng):
    ref = torch_binary(op)
    for i in range(N + 3):
        a, b = binary_operands(rng, op, True)
        if i == N:
            a, b = T((3, 4), "float32", "T", "small"), 0.5
        if i == N + 1:
            a, b = T((2, 3), "int64", dom="small"), T((4, 1, 3), "float64", "expand", "small")
        if i == N + 2:  # compared in the promoted dtype (ops.def), uint8: -3 is 253 there, as in torch
            a, b = T((2, 3), "uint8", dom="small"), -3
        desc, fn = route(i, op, {}, f"{op}{tdesc(a, b)}", "step" if i == N else None)
        yield Case(desc, [a, b], ref, fn, parity=True, out="step" if i == N else None)


# ---- where, clamp ---------------------------------------------------------------------------------
@spec("where")
def gen_where(op, rng):
    for i in range(N + 2):
        out = rshape(rng)
        da, db = pick(rng, DTYPE_PAIRS)
        c = T(bshape(rng, out), "bool", layout(rng))
        a, b = T(bshape(rng, out), da, layout(rng)), T(bshape(rng, out), db, layout(rng))
        r = rng.random()
        if r < 0.15:
            a = pick(rng, SCALARS)
        elif r < 0.3:
            b = pick(rng, SCALARS)
        if i == N:  # cond must be bool
            yield Case("where with a float cond", [T((3,)), T((3,)), T((3,))], None, call(op), error=TypeError)
            continue
        desc, fn = route(i, op, {}, f"where{tdesc(c, a, b)}", "T" if i == N + 1 else None)
        yield Case(desc, [c, a, b], torch.where, fn, backward=True,
                   out="T" if i == N + 1 else None)


@spec("clamp")
def gen_clamp(op, rng):
    for i in range(N + 3):
        dtype = fdtype(rng, INTS + ("bool",))
        x = T(rshape(rng), dtype, layout(rng))
        if H.is_float(dtype) or rng.random() < 0.3:
            lo, hi = pick(rng, ((-0.5, 0.7), (None, 0.25), (-0.25, None), (-1, 1)))
        else:
            lo, hi = pick(rng, ((-2, 3), (None, 1), (0, None), (-1, 2.5)))
        if i == N:  # min > max: every element becomes max (torch's rule)
            x, lo, hi = T((3, 4), "float32"), 1.0, -1.0
        if i == N + 1:
            yield Case("clamp without bounds", [T((3,))], None, call(op), error=ValueError)
            continue
        attrs = {}
        if lo is not None:
            attrs.update(scalar=lo, has_scalar=1)
        if hi is not None:
            attrs.update(scalar2=hi, has_scalar2=1)
        ref = (lambda lo, hi: lambda t: torch.clamp(t, min=lo, max=hi))(lo, hi)
        desc = f"clamp{tdesc(x)} min={lo} max={hi}"
        if dtype == "bool" and lo is None or dtype == "bool" and isinstance(lo, float):
            yield Case(desc, [x], ref, call(op, **attrs), parity=True)
            continue
        desc, fn = route(i, op, attrs, desc, "step" if i == N + 2 else None)
        yield Case(desc, [x], ref, fn, backward=i != N, out="step" if i == N + 2 else None)


# ---- copy, fill, arange -----------------------------------------------------------------------------
ALL_DTYPES = FLOATS + INTS + ("bool",)


@spec("copy")
def gen_copy(op, rng):
    for i in range(N):
        src_dt, dst_dt = pick(rng, ALL_DTYPES), pick(rng, ALL_DTYPES)
        dom = "pos" if dst_dt == "uint8" else "any"  # negative floats into uint8 are undefined in C++
        x = T(rshape(rng), src_dt, layout(rng), dom)
        if i % 3 == 0:  # clone
            desc, fn = route(i // 3, op, {}, f"copy{tdesc(x)} (clone)")
            yield Case(desc, [x], lambda t: t.clone(), fn, backward=True)
        elif i % 3 == 1:  # cast: attrs.dtype
            desc, fn = route(i // 3, op, {"dtype": H.tsr_dtype(dst_dt)}, f"copy{tdesc(x)} -> {dst_dt}")
            yield Case(desc, [x], (lambda d: lambda t: t.to(H.torch_dtype(d)))(dst_dt), fn, backward=True)
        else:  # into a given (non-contiguous) output, src broadcast to it
            dst = T(rshape(rng, ndim=len(x.shape)), dst_dt, pick(rng, ("contig", "T", "step")))
            src = T(bshape(rng, dst.shape), src_dt, layout(rng), dom)
            api = bool(i % 2)
            yield Check(f"copy{tdesc(src)} into {tdesc(dst)}" + " [api: copy_]" * api,
                        (lambda s, d, api: lambda r: copy_into(r, s, d, api))(src, dst, api))
    yield Case("copy of a shape that doesn't broadcast", [T((3,)), T((2,))], None,
               lambda s, d: _C.call_op("copy", [s], out=d), error=ValueError)


def copy_into(rng, src, dst, api):
    s, d = H.make_operand(rng, src, False), H.make_operand(rng, dst, False)
    with torch.no_grad():
        d.t.copy_(s.t)
    d.x.copy_(s.x) if api else _C.call_op("copy", [s.x], out=d.x)
    return [m for m in [H.mismatch("destination's base", H.to_np(d.x_base), H.t_np(d.t_base))] if m]


@spec("fill")
def gen_fill(op, rng):
    for i in range(N):
        dtype = pick(rng, ALL_DTYPES)
        v = pick(rng, (0, 7, True) if dtype in ("uint8", "bool") else (0, 3, -2, 1.5, -2.75, True, False))
        if dtype in INTS and isinstance(v, float):
            v = 2.7  # torch truncates toward zero
        if i % 2:
            dst = T(rshape(rng), dtype, pick(rng, ("contig", "T", "step")))
            api = bool(i % 4 == 1)
            yield Check(f"fill {tdesc(dst)} with {v!r}" + " [api: fill_]" * api,
                        (lambda d, v, api: lambda r: fill_into(r, d, v, api))(dst, v, api))
        else:  # factory: shape, dtype (or the scalar's default dtype)
            shape, dt = rshape(rng), dtype if rng.random() < 0.6 else None
            kw = {"dtype": H.tsr_dtype(dt)} if dt else {}
            tkw = {"dtype": H.torch_dtype(dt)} if dt else {}
            api = i % 4 == 2
            tsr = (lambda s, v, k: lambda: tessera.full(s, v, **k)) if api else (
                lambda s, v, k: lambda: _C.call_op("fill", [], shape=s, scalar=v, **k))
            yield Case(f"fill factory {shape} {dt} {v!r}" + " [api: full]" * api, [],
                       (lambda s, v, k: lambda: torch.full(s, v, **k))(shape, v, tkw), tsr(shape, v, kw))
    yield Case("fill uint8 with 300 (overflow)", [], None,
               lambda: _C.call_op("fill", [], shape=(2,), scalar=300, dtype=tessera.uint8), error=RuntimeError)


def fill_into(rng, dst, v, api):
    d = H.make_operand(rng, dst, False)
    with torch.no_grad():
        d.t.fill_(v)
    d.x.fill_(v) if api else _C.call_op("fill", [], out=d.x, scalar=v)
    return [m for m in [H.mismatch("filled base", H.to_np(d.x_base), H.t_np(d.t_base))] if m]


@spec("arange")
def gen_arange(op, rng):
    cases = [(0, 5, 1, None), (2, 11, 3, None), (5, 0, -1, None), (-3, 4, 2, None), (0, 1, 0.1, None),
             (-1.5, 2.25, 0.5, None), (0, 10, 3, "float64"), (1, 10, 2, "int32"), (0.0, 1.0, 0.3, "float64"),
             (10, 2, -2.5, "float32"), (0, 7, 1, "uint8"), (3, 3, 1, None)]
    def by_name(a, b, c, k):
        return lambda: _C.call_op("arange", [], scalar=a, scalar2=b, scalar3=c, **k)

    def by_api(a, b, c, k):
        return lambda: tessera.arange(a, b, c, **k)

    for i, (start, end, step, dt) in enumerate(cases):
        kw = {"dtype": H.tsr_dtype(dt)} if dt else {}
        tkw = {"dtype": H.torch_dtype(dt)} if dt else {}
        yield Case(f"arange({start}, {end}, {step}, {dt})" + " [api]" * (i % 2), [],
                   (lambda a, b, c, k: lambda: torch.arange(a, b, c, **k))(start, end, step, tkw),
                   (by_api if i % 2 else by_name)(start, end, step, kw))
    for start, end, step in ((0, 5, 0), (0, 5, -1), (0.0, math.inf, 1.0)):
        yield Case(f"arange({start}, {end}, {step}) is refused", [], None, by_name(start, end, step, {}),
                   error=ValueError)


# ---- reductions, softmax ------------------------------------------------------------------------------
def torch_reduce(op, dims, keepdim, correction=1):
    def ref(x):
        ds = tuple(dims) if dims else tuple(range(x.dim()))
        if op in ("mean", "var", "std") and not x.is_floating_point():
            x = x.float()  # torch 1.13 refuses integer mean/var/std; Tessera's FLOAT rule computes them in float32
        if op == "sum":
            return torch.sum(x, dim=ds, keepdim=keepdim)
        if op == "mean":
            return torch.mean(x, dim=ds, keepdim=keepdim)
        if op in ("max", "min"):
            return (torch.amax if op == "max" else torch.amin)(x, dim=ds, keepdim=keepdim)
        if op in ("var", "std"):
            return getattr(torch, op)(x, dim=ds or None, correction=correction, keepdim=keepdim)
        if op == "prod":  # torch.prod takes one dim: the listed ones in turn, kept, then dropped
            if x.dim() == 0:
                return torch.prod(x)
            wrapped = sorted({d % x.dim() for d in ds})
            for d in wrapped:
                x = torch.prod(x, d, keepdim=True)
            return x if keepdim else x.reshape([s for d, s in enumerate(x.shape) if d not in wrapped])
        fn = torch.argmax if op == "argmax" else torch.argmin
        return fn(x, dim=dims[0], keepdim=keepdim) if dims else fn(x, keepdim=keepdim)
    return ref


def reduce_dims(rng, ndim, one=False):
    """() for all dims, else a few distinct dims (some negative)."""
    if ndim == 0 or rng.random() < 0.25:
        return ()
    k = 1 if one else int(rng.integers(1, ndim + 1))
    ds = [int(d) for d in rng.permutation(ndim)[:k]]
    return tuple(d - ndim if rng.random() < 0.3 else d for d in ds)


@spec("sum", "mean", "max", "min", "prod", "var", "std", "argmax", "argmin")
def gen_reduce(op, rng):
    arg = op in ("argmax", "argmin")
    for i in range(N + 5):
        extra = INTS + ("bool",) if op in ("sum", "prod", "max", "min") else INTS
        dtype = fdtype(rng, extra)
        dom = "small" if arg and rng.random() < 0.5 else "unit" if op == "prod" else "any"
        lay = layout(rng)
        if op in ("max", "min", "var", "std") and lay == "expand":
            lay = "step"  # expand repeats values: ties (see the tie case below), or a zero deviation
        x = T(rshape(rng), dtype, lay, dom)
        if op == "prod" and H.is_float(dtype):
            x.dom = "nz"
        dims, keepdim = reduce_dims(rng, len(x.shape), one=arg), bool(rng.random() < 0.4)
        corr = int(pick(rng, (0, 1, 1, 2))) if op in ("var", "std") else 1
        if i == N:
            x, dims = T((), pick(rng, FLOATS)), pick(rng, ((), (0,), (-1,)))
        if i == N + 1:
            x, dims = T((0, 3), "float32"), (0,)
            if op in ("max", "min", "argmax", "argmin"):  # torch raises IndexError; Tessera INVALID_ARGUMENT
                yield Case(f"{op} over a zero-size dim", [x], None, call(op, dims=(0,), has_dim=1, dim=0),
                           error=ValueError)
                continue
        n = math.prod((x.shape or (1,))[d] for d in dims) if dims else math.prod(x.shape)
        if op in ("var", "std"):
            corr = min(corr, max(n - 1, 0))
        attrs = {"keepdim": int(keepdim)}
        if arg:
            attrs.update(has_dim=int(bool(dims)), dim=dims[0] if dims else 0)
        else:
            attrs["dims"] = dims
        if op in ("var", "std"):
            attrs["correction"] = corr
        desc = f"{op}{tdesc(x)} dims={dims} keepdim={keepdim}" + f" correction={corr}" * (op in ("var", "std"))
        out = "T" if i in (N + 2, N + 3) and len(x.shape) >= 2 and x.shape[0] > 0 else None
        desc, fn = route(i, op, attrs, desc, out)
        # std's gradient at a zero deviation (one element) is a convention: see the constant case below.
        backward = not arg and not (op == "std" and n < 2)
        yield Case(desc, [x], torch_reduce(op, dims, keepdim, corr), fn, backward=backward, tol="acc", out=out)
    if op in ("max", "min"):
        # Ties: torch.amax/amin spread the gradient evenly over the equal maxima.
        x = T((3, 4), "float64", "contig", "small")
        yield Case(f"{op} with ties{tdesc(x)} dims=(1,)", [x], torch_reduce(op, (1,), False),
                   call(op, dims=(1,)), backward=True, tol="acc")
    if op == "std":
        # A zero deviation: d std/dx is 0/0 there; torch defines the gradient as 0 (not NaN).
        yield Case("std of equal values: gradient 0 (torch's convention)", [T((1,), "float64")],
                   lambda t: torch.std(t.expand(4)), lambda x: _C.call_op("std", [x.expand(4)]), backward=True)
    if op in ("sum", "mean", "prod", "var", "std", "max", "min"):
        yield Case(f"{op} with a repeated dim", [T((2, 3))], None, call(op, dims=(1, -1)), error=ValueError)
    yield Case(f"{op} over dim 5 of a 2-D tensor", [T((2, 3))], None, call(op, dims=(5,), has_dim=1, dim=5),
               error=IndexError)


@spec("softmax", "log_softmax")
def gen_softmax(op, rng):
    tref = torch.softmax if op == "softmax" else torch.log_softmax
    for i in range(N + 2):
        x = T(rshape(rng), fdtype(rng, INTS), layout(rng), pick(rng, ("any", "small")))
        if i == N:
            x = T((), "float64")
        nd = max(len(x.shape), 1)
        dim = int(rng.integers(-nd, nd))
        ref = (lambda d: on_float(lambda t: tref(t, d)))(dim)  # integer inputs: see on_float
        desc, fn = route(i, op, {"dim": dim}, f"{op}{tdesc(x)} dim={dim}", "step" if i == N + 1 else None)
        yield Case(desc, [x], ref, fn, backward=True, tol="acc", out="step" if i == N + 1 else None)
    yield Case(f"{op} of large logits", [T((2, 50), "float32", dom="small")], lambda t: tref(t * 40, 1),
               lambda t: _C.call_op(op, [_C.call_op("mul", [t], scalar=40, scalar_arg=1)], dim=1),
               backward=True, tol="acc")
    yield Case(f"{op} over dim 2 of a 2-D tensor", [T((2, 3))], None, call(op, dim=2), error=IndexError)


# ---- matmul ---------------------------------------------------------------------------------------------
def matmul_shapes(rng):
    m, k, n, b, c = (int(v) for v in rng.integers(1, 5, 5))
    return pick(rng, [((k,), (k,)), ((k,), (k, n)), ((m, k), (k,)), ((m, k), (k, n)), ((m, k), (k, n)),
                      ((b, m, k), (k, n)), ((m, k), (b, k, n)), ((b, 1, m, k), (c, k, n)), ((b, m, k), (b, k, n)),
                      ((k,), (b, k, n)), ((b, m, k), (k,)), ((1, b, m, k), (b, k, n))])


@spec("matmul")
def gen_matmul(op, rng):
    for i in range(N + 5):
        sa, sb = matmul_shapes(rng)
        dt = fdtype(rng, ("int64", "int32"))
        da = db = dt
        a, b = T(sa, da, layout(rng)), T(sb, db, layout(rng))
        ref = torch.matmul
        if i == N:  # K = 0: zeros
            a, b = T((3, 0), "float32"), T((0, 2), "float32")
        if i == N + 1:
            # torch.matmul refuses mixed dtypes; Tessera promotes them like its other binary ops.
            a, b = T((2, 3), "float32", "T"), T((3, 4), "float64")
            ref = lambda x, y: torch.matmul(x.double(), y)  # noqa: E731
        if i == N + 2:
            yield Case("matmul with mismatched inner dims", [T((2, 3)), T((4, 2))], None, call(op), error=ValueError)
            continue
        if i == N + 3:
            yield Case("matmul of a 0-dim tensor", [T(()), T((2,))], None, call(op), error=ValueError)
            continue
        out = "T" if i == N + 4 and len(sa) + len(sb) >= 3 else None
        desc, fn = route(i, op, {}, f"matmul{tdesc(a, b)}", out)
        yield Case(desc, [a, b], ref, fn, backward=True, tol="acc", out=out)


# ---- random fills ---------------------------------------------------------------------------------------
def ks_stat(sample, cdf):
    """Kolmogorov-Smirnov distance between a sample and a CDF (a function of a float64 tensor)."""
    x = torch.sort(torch.from_numpy(np.asarray(sample, dtype=np.float64).ravel())).values
    n = x.numel()
    c = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.max(torch.maximum(i / n - c, c - (i - 1) / n)))


RANDOM = {  # op: (parameter sets, CDF(params) or None)
    "uniform": ([(0.0, 1.0), (-2.0, 3.0)], lambda lo, hi: lambda x: ((x - lo) / (hi - lo)).clamp(0, 1)),
    "normal": ([(0.0, 1.0), (1.5, 0.25)],
               lambda mu, sd: lambda x: 0.5 * (1 + torch.erf((x - mu) / (sd * math.sqrt(2))))),
    "bernoulli": ([(0.3, 0.0), (0.0, 0.0), (1.0, 0.0)], None),
}


def draw(op, p, dtype="float32", shape=(20000,), out=None):
    if out is None:
        return _C.call_op(op, [], shape=shape, dtype=H.tsr_dtype(dtype), scalar=p[0], scalar2=p[1])
    return _C.call_op(op, [], out=out, scalar=p[0], scalar2=p[1])


def check_distribution(op, p, dtype):
    """Samples lie in the support, and follow the distribution (KS test at alpha = 0.001, and the
    mean within 5 standard errors); torch's sampler passes the same test."""
    fails = []
    x = draw(op, p, dtype)
    v = H.to_np(x).astype(np.float64)
    if x.dtype != H.tsr_dtype(dtype) or v.shape != (20000,):
        return [f"{op}: got {x.dtype}{list(v.shape)}, wanted {dtype}[20000]"]
    n = v.size
    if not np.isfinite(v).all():
        return [f"{op}{p} {dtype}: non-finite samples"]
    if op == "bernoulli":
        if not np.isin(v, (0, 1)).all():
            fails.append(f"bernoulli({p[0]}) {dtype}: values other than 0 and 1")
        sd = math.sqrt(p[0] * (1 - p[0]) / n)
        if abs(v.mean() - p[0]) > 5 * sd + 1e-12:
            fails.append(f"bernoulli({p[0]}) {dtype}: mean {v.mean():.4f}")
        return fails
    if op == "uniform" and not (v.min() >= p[0] and v.max() <= p[1]):
        fails.append(f"uniform{p} {dtype}: samples outside [{p[0]}, {p[1]}]: {v.min()}..{v.max()}")
    mean, var = ((p[0] + p[1]) / 2, (p[1] - p[0]) ** 2 / 12) if op == "uniform" else (p[0], p[1] ** 2)
    if abs(v.mean() - mean) > 5 * math.sqrt(var / n):
        fails.append(f"{op}{p} {dtype}: mean {v.mean():.5f}, expected {mean}")
    cdf = RANDOM[op][1](*p)
    ref_sample = (torch.empty(n, dtype=torch.float64).uniform_(*p) if op == "uniform"
                  else torch.empty(n, dtype=torch.float64).normal_(*p))
    limit = 1.95 / math.sqrt(n)
    d, d_torch = ks_stat(v, cdf), ks_stat(ref_sample.numpy(), cdf)
    if d > limit:
        fails.append(f"{op}{p} {dtype}: KS distance {d:.4f} > {limit:.4f} (torch's sample: {d_torch:.4f})")
    return fails


def check_seeding(op, p):
    tessera.manual_seed(1234)
    a = H.to_np(draw(op, p, shape=(1000,)))
    tessera.manual_seed(1234)
    b, c = H.to_np(draw(op, p, shape=(1000,))), H.to_np(draw(op, p, shape=(1000,)))
    tessera.manual_seed(1235)
    d = H.to_np(draw(op, p, shape=(1000,)))
    fails = []
    if not np.array_equal(a, b):
        fails.append(f"{op}: two draws after manual_seed(1234) differ")
    if np.array_equal(b, c) or np.array_equal(a, d):
        fails.append(f"{op}: the next draw, or a draw with another seed, repeats the first")
    return fails


def check_random_into_view(rng, op, p, dtype, lay):
    """Only the view's elements change; the base's others keep their values."""
    o = H.make_operand(rng, T((6, 5), dtype, lay), False)
    sentinel = np.full(o.base_np.shape, 7, dtype=o.base_np.dtype)
    _C.call_op("copy", [H.from_np(sentinel)], out=o.x_base)
    draw(op, p, out=o.x)
    base, view = H.to_np(o.x_base), H.to_np(o.x)
    with torch.no_grad():
        mask = torch.zeros(o.base_np.shape, dtype=torch.bool)
        H.apply_torch(mask, o.steps).fill_(True)
    fails = []
    if not (base[~mask.numpy()] == sentinel[~mask.numpy()]).all():
        fails.append(f"{op} into a {lay} view of {dtype}: elements outside the view changed")
    in_support = ((view >= p[0]) & (view <= p[1])).all() if op == "uniform" else (
        np.isin(view, (0, 1)).all() if op == "bernoulli" else np.isfinite(view).all())
    if not in_support:
        fails.append(f"{op} into a {lay} view of {dtype}: values outside the support")
    return fails


@spec("uniform", "normal", "bernoulli")
def gen_random(op, rng):
    params = RANDOM[op][0]
    dtypes = FLOATS + (("int64", "bool", "uint8") if op == "bernoulli" else ())
    for p in params:
        for dt in dtypes:
            yield Check(f"{op}{p} {dt}: distribution", (lambda p, dt: lambda r: check_distribution(op, p, dt))(p, dt))
    yield Check(f"{op}: seeding", lambda r: check_seeding(op, params[0]))
    for lay in ("T", "step"):
        yield Check(f"{op} into a {lay} view", (lambda lay: lambda r: check_random_into_view(
            r, op, params[0], pick(r, dtypes), lay))(lay))
    bad = {"uniform": (2.0, 1.0), "normal": (0.0, -1.0), "bernoulli": (1.5, 0.0)}[op]
    yield Case(f"{op}{bad} is refused", [], None, lambda: draw(op, bad, shape=(3,)), error=ValueError)
    if op != "bernoulli":
        yield Case(f"{op} into int64 is refused", [], None, lambda: draw(op, params[0], "int64", (3,)),
                   error=TypeError)


# ---- views --------------------------------------------------------------------------------------------
def factorize(rng, n):
    """A random shape with n elements (1 to 4 dims)."""
    if n == 0:
        return (0, int(rng.integers(1, 4)))
    primes, k, m = [], 2, n
    while m > 1:
        while m % k == 0:
            primes.append(k)
            m //= k
        k += 1
    bins = [1] * int(rng.integers(1, 5))
    for q in primes:
        bins[int(rng.integers(0, len(bins)))] *= q
    return tuple(bins)


def view_shape_case(rng):
    nd = int(rng.integers(0, 5))
    x = T(rshape(rng, nd), pick(rng, ALL_DTYPES), pick(rng, ("contig", "contig", "T", "step", "expand")))
    target = list(factorize(rng, math.prod(x.shape)))
    if rng.random() < 0.4 and math.prod(x.shape):
        target[int(rng.integers(0, len(target)))] = -1
    return x, tuple(target)


def rdim(rng, nd):
    """A dim of an nd-dim tensor (a 0-dim one takes 0 and -1), maybe negative."""
    n = max(nd, 1)
    return int(rng.integers(-n, n))


@spec("view", "reshape", "permute", "transpose", "slice", "narrow", "select", "expand", "squeeze", "unsqueeze",
      "flatten", "as_strided")
def gen_view(op, rng):
    for i in range(N):
        x = T(rshape(rng, hi=2 if op == "squeeze" else 4), pick(rng, FLOATS * 2 + ALL_DTYPES), layout(rng))
        nd = len(x.shape)
        if op in ("view", "reshape"):
            x, target = view_shape_case(rng)
            ref, attrs = (lambda s: lambda t: getattr(t, op)(s))(target), {"shape": target}
        elif op == "permute":
            perm = tuple(int(d) - nd if rng.random() < 0.3 else int(d) for d in rng.permutation(nd))
            ref, attrs = (lambda p: lambda t: t.permute(p))(perm), {"dims": perm}
        elif op == "transpose":
            d0, d1 = rdim(rng, nd), rdim(rng, nd)
            ref, attrs = (lambda a, b: lambda t: t.transpose(a, b))(d0, d1), {"dim": d0, "dim2": d1}
        elif op in ("slice", "narrow", "select"):
            if nd == 0:
                x = T((4, 3), x.dtype, x.layout)
                nd = 2
            d = rdim(rng, nd)
            size = x.shape[d]
            if op == "slice":
                start = pick(rng, (0, 1, -2, -100, 100, 2))
                end = pick(rng, (2 ** 62, 3, -1, -100, 100, 1))
                step = int(rng.integers(1, 4))
                ref = (lambda d, a, b, s: lambda t: t[(slice(None),) * (d % t.dim()) + (slice(a, b, s),)])(
                    d, start, end, step)
                attrs = {"dim": d, "start": start, "end": end, "step": step}
            elif op == "narrow":
                start = int(rng.integers(-size, size + 1))
                length = int(rng.integers(0, size - (start if start >= 0 else start + size) + 1))
                ref = (lambda d, a, n: lambda t: t.narrow(d, a, n))(d, start, length)
                attrs = {"dim": d, "start": start, "end": length}
            else:
                idx = int(rng.integers(-size, size))
                ref, attrs = (lambda d, k: lambda t: t.select(d, k))(d, idx), {"dim": d, "index": idx}
        elif op == "expand":
            base = tuple(1 if rng.random() < 0.5 else s for s in x.shape)
            x = T(base, x.dtype, x.layout if x.layout != "expand" else "contig")
            target = [int(rng.integers(1, 4)) if s == 1 else (-1 if rng.random() < 0.3 else s) for s in base]
            target = tuple([int(v) for v in rng.integers(1, 3, int(rng.integers(0, 3)))] + target)
            ref, attrs = (lambda s: lambda t: t.expand(s))(target), {"shape": target}
        elif op == "squeeze":
            mode = pick(rng, ("all", "one", "dims")) if nd else "all"
            if mode == "all":
                ref, attrs = (lambda t: t.squeeze()), {}
            elif mode == "one":
                d = rdim(rng, nd)
                ref, attrs = (lambda d: lambda t: t.squeeze(d))(d), {"has_dim": 1, "dim": d}
            else:
                ds = tuple(int(v) for v in rng.permutation(nd)[:int(rng.integers(1, nd + 1))])
                ref = (lambda ds: lambda t: squeeze_dims(t, ds))(ds)
                attrs = {"dims": ds}
        elif op == "unsqueeze":
            d = rdim(rng, nd + 1) if nd else pick(rng, (0, -1))
            ref, attrs = (lambda d: lambda t: t.unsqueeze(d))(d), {"dim": d}
        elif op == "flatten":
            a, b = sorted((rdim(rng, nd) % max(nd, 1), rdim(rng, nd) % max(nd, 1)))
            a, b = a - max(nd, 1) if rng.random() < 0.3 else a, b - max(nd, 1) if rng.random() < 0.3 else b
            ref, attrs = (lambda a, b: lambda t: t.flatten(a, b))(a, b), {"dim": a, "dim2": b}
        else:  # as_strided: over the input's storage (contiguous input: its backward is well defined)
            x = T(rshape(rng, int(rng.integers(1, 4)), 2, 5), x.dtype, "contig" if i % 3 else "T")
            total = math.prod(x.shape)
            sizes = tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(1, 4))))
            strides = tuple(int(v) for v in rng.integers(0, 4, len(sizes)))
            span = sum((n - 1) * s for n, s in zip(sizes, strides))
            if span >= total:
                strides = tuple(0 for _ in sizes)
                span = 0
            off = int(rng.integers(0, total - span))
            ref = (lambda a, b, c: lambda t: torch.as_strided(t, a, b, c))(sizes, strides, off)
            attrs = {"shape": sizes, "strides": strides, "index": off}
            x.grad = None if x.layout == "contig" else False
        desc, fn = route(i, op, attrs, f"{op}{tdesc(x)} {attrs}")
        yield Case(desc, [x], ref, fn, backward=True, view=True, parity=True)
    for args, attrs, err in VIEW_ERRORS.get(op, ()):
        yield Case(f"{op}{tdesc(*args)} {attrs} is refused", args, None, call(op, **attrs), error=err)


def squeeze_dims(t, ds):
    for d in sorted((d % t.dim() for d in ds), reverse=True):
        t = t.squeeze(d)
    return t


VIEW_ERRORS = {
    "view": [([T((4, 3), layout="T")], {"shape": (12,)}, ValueError), ([T((4, 3))], {"shape": (5, -1)}, ValueError)],
    "reshape": [([T((4, 3))], {"shape": (-1, -1)}, ValueError)],
    "permute": [([T((2, 3))], {"dims": (0, 0)}, ValueError), ([T((2, 3))], {"dims": (0,)}, ValueError)],
    "transpose": [([T((2, 3))], {"dim": 0, "dim2": 2}, IndexError)],
    "slice": [([T((2, 3))], {"dim": 0, "start": 0, "end": 2, "step": 0}, ValueError), ([T(())], {}, IndexError)],
    "narrow": [([T((2, 3))], {"dim": 1, "start": 2, "end": 2}, ValueError)],
    "select": [([T((2, 3))], {"dim": 1, "index": 3}, IndexError), ([T((2, 3))], {"dim": 0, "index": -3}, IndexError)],
    "expand": [([T((2, 3))], {"shape": (3, 3)}, ValueError), ([T((2, 3))], {"shape": (3,)}, ValueError)],
    "unsqueeze": [([T((2, 3))], {"dim": 3}, IndexError)],
    "flatten": [([T((2, 3, 4))], {"dim": 2, "dim2": 1}, ValueError)],
    "as_strided": [([T((2, 3))], {"shape": (3, 3), "strides": (3, 1), "index": 0}, ValueError)],
    "squeeze": [([T((2, 3))], {"has_dim": 1, "dim": 2}, IndexError)],
}


# ---- gelu_backward ---------------------------------------------------------------------------------------
def torch_gelu_grad(approx):
    """d gelu(x)/dx * grad, from torch's autograd of F.gelu (operands broadcast and promoted first)."""
    def ref(g, x):
        if is_num(g):
            g = torch.full_like(x if x.is_floating_point() else x.float(), g)
        dt = torch.promote_types(torch.result_type(g, x), torch.float32)
        g, x = (t.to(dt).contiguous() for t in torch.broadcast_tensors(g, x))
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            y = F.gelu(x, approximate="tanh" if approx else "none")
            return torch.autograd.grad(y, x, g)[0]
    return ref


@spec("gelu_backward")
def gen_gelu_backward(op, rng):
    for i in range(N):
        out = rshape(rng)
        dt = fdtype(rng)
        g, x = T(bshape(rng, out), dt, layout(rng)), T(bshape(rng, out), dt, layout(rng), pick(rng, ("any", "small")))
        if i == 0:
            g = 1.5
        if i == 1:
            g, x = T(out, "float32"), T(out, "float64")
        if i == 2:
            x = T(out, "int64", dom="small")  # integers: computed in float32 (the FLOAT rule)
        approx = int(rng.integers(0, 2))
        yield Case(f"gelu_backward{tdesc(g, x)} approximate={approx}", [g, x], torch_gelu_grad(approx),
                   call(op, approximate=approx), tol="acc")


# ---- conv2d and max_pool2d ----------------------------------------------------------------------------
def conv_geometry(rng):
    g = pick(rng, (1, 1, 1, 2, 3))
    c, o = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    sh, sw = (int(v) for v in rng.integers(1, 3, 2))
    ph, pw = (int(v) for v in rng.integers(0, 3, 2))
    dh, dw = (int(v) for v in rng.integers(1, 3, 2))
    h = max(dh * (kh - 1) + 1 - 2 * ph, 1) + int(rng.integers(0, 5))
    w = max(dw * (kw - 1) + 1 - 2 * pw, 1) + int(rng.integers(0, 5))
    n = int(rng.integers(1, 3))
    return dict(x=(n, c, h, w), w=(o, c // g, kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                groups=g)


def conv_attrs(geo):
    return dict(stride2=geo["stride"], padding=geo["padding"], dilation=geo["dilation"], groups=geo["groups"])


def torch_conv(geo):
    return lambda x, w, b=None: F.conv2d(x, w, b, geo["stride"], geo["padding"], geo["dilation"], geo["groups"])


def conv_out_shape(geo):
    (n, _, h, w), (o, _, kh, kw) = geo["x"], geo["w"]
    (sh, sw), (ph, pw), (dh, dw) = geo["stride"], geo["padding"], geo["dilation"]
    return (n, o, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def torch_conv_grad(geo, wrt):
    """conv2d's gradient w.r.t. x (wrt 0) or w (wrt 1) by torch's autograd; the other operand given."""
    def ref(g, other):
        z = torch.zeros(geo["x" if wrt == 0 else "w"], dtype=g.dtype, requires_grad=True)
        with torch.enable_grad():
            y = torch_conv(geo)(z, other) if wrt == 0 else torch_conv(geo)(other, z)
            return torch.autograd.grad(y, z, g)[0]
    return ref


@spec("conv2d", "conv2d_backward_input", "conv2d_backward_weight")
def gen_conv(op, rng):
    for i in range(N):
        geo = conv_geometry(rng)
        if op == "conv2d" and i == 0:  # zeros in attrs: the defaults (stride 1, no padding, dilation 1)
            (n, c, h, w), (kh, kw) = geo["x"], geo["w"][2:]
            geo.update(x=(n, c, max(h, kh), max(w, kw)), stride=(1, 1), padding=(0, 0), dilation=(1, 1))
        dt = fdtype(rng)
        lay = pick(rng, ("contig", "contig", "T", "step"))
        desc = f"{op} x{list(geo['x'])} w{list(geo['w'])} stride={geo['stride']} padding={geo['padding']} " \
               f"dilation={geo['dilation']} groups={geo['groups']} {dt} {lay}"
        if op == "conv2d":
            args = [T(geo["x"], dt, lay), T(geo["w"], dt, pick(rng, ("contig", "T")))]
            if rng.random() < 0.5:
                args.append(T((geo["w"][0],), dt, pick(rng, ("contig", "step"))))
            attrs = conv_attrs(geo) if i else {"groups": geo["groups"]}
            if not i:
                desc = f"conv2d with default attrs x{list(geo['x'])} w{list(geo['w'])} groups={geo['groups']}"
            desc, fn = route(i, op, attrs, desc + f" bias={len(args) == 3}")
            yield Case(desc, args, torch_conv(geo), fn, backward=True, tol="acc")
        else:
            wrt = 0 if op == "conv2d_backward_input" else 1
            args = [T(conv_out_shape(geo), dt, lay), T(geo["w" if wrt == 0 else "x"], dt)]
            yield Case(desc, args, torch_conv_grad(geo, wrt),
                       call(op, shape=geo["x" if wrt == 0 else "w"], **conv_attrs(geo)), tol="acc")
    if op == "conv2d":
        yield Case("conv2d with mismatched channels", [T((1, 3, 5, 5)), T((2, 2, 3, 3))], None, call(op),
                   error=ValueError)
        yield Case("conv2d with a kernel larger than the input", [T((1, 1, 2, 2)), T((1, 1, 3, 3))], None, call(op),
                   error=ValueError)
        yield Case("conv2d with groups that don't divide the channels", [T((1, 4, 5, 5)), T((3, 2, 3, 3))], None,
                   call(op, groups=2), error=ValueError)


def pool_out_size(n, k, s, p, d, ceil_mode):
    """torch's pooling output size (ceil_mode: the last window must start in the input or its left padding)."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def windows_hit_input(n, k, s, p, d, ceil_mode):
    """Whether every window holds an input element: torch 1.13's CPU kernel writes out of bounds in its
    backward for a window that lies wholly in the padding (Tessera's gives it -inf and no gradient)."""
    outs = range(pool_out_size(n, k, s, p, d, ceil_mode))
    return all(any(0 <= o * s - p + d * j < n for j in range(k)) for o in outs)


def pool_geometry(rng):
    while True:
        geo = pool_geometry_try(rng)
        strides = [s or k for s, k in zip(geo["stride"], geo["kernel"])]
        if all(windows_hit_input(n, k, s, p, d, geo["ceil_mode"]) for n, k, s, p, d in
               zip(geo["x"][2:], geo["kernel"], strides, geo["padding"], geo["dilation"])):
            return geo


def pool_geometry_try(rng):
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    stride = (0, 0) if rng.random() < 0.3 else tuple(int(v) for v in rng.integers(1, 4, 2))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    dh, dw = (int(v) for v in rng.integers(1, 3, 2))
    h = max(dh * (kh - 1) + 1 - 2 * ph, 1) + int(rng.integers(0, 5))
    w = max(dw * (kw - 1) + 1 - 2 * pw, 1) + int(rng.integers(0, 5))
    return dict(x=(int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w), kernel=(kh, kw), stride=stride,
                padding=(ph, pw), dilation=(dh, dw), ceil_mode=bool(rng.random() < 0.4))


def torch_pool(geo):
    stride = None if geo["stride"] == (0, 0) else geo["stride"]  # Tessera: 0 = the window
    return lambda x: F.max_pool2d(x, geo["kernel"], stride, geo["padding"], geo["dilation"], geo["ceil_mode"])


def pool_attrs(geo):
    return dict(kernel=geo["kernel"], stride2=geo["stride"], padding=geo["padding"], dilation=geo["dilation"],
                ceil_mode=int(geo["ceil_mode"]))


def torch_pool_grad(geo):
    def ref(g, x):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            return torch.autograd.grad(torch_pool(geo)(x), x, g)[0]
    return ref


@spec("max_pool2d", "max_pool2d_backward")
def gen_pool(op, rng):
    for i in range(N + 2):
        geo = pool_geometry(rng)
        if i == N:  # ties: torch's CPU kernel and Tessera's contract both pick the first maximum (row-major)
            geo.update(x=(2, 2, 6, 6), kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1))
        if i == N + 1:  # ceil_mode: the last window must start inside the input or its left padding
            geo.update(x=(1, 1, 5, 5), kernel=(2, 2), stride=(2, 2), padding=(1, 1), dilation=(1, 1), ceil_mode=True)
        dt = fdtype(rng)
        dom = "small" if i == N or rng.random() < 0.2 else "any"
        lay = pick(rng, ("contig", "contig", "T", "step"))
        desc = f"{op} x{list(geo['x'])} kernel={geo['kernel']} stride={geo['stride']} padding={geo['padding']} " \
               f"dilation={geo['dilation']} ceil_mode={geo['ceil_mode']} {dt} {lay} {dom}"
        if op == "max_pool2d":
            desc, fn = route(i, op, pool_attrs(geo), desc)
            yield Case(desc, [T(geo["x"], dt, lay, dom)], torch_pool(geo), fn, backward=True, tol="acc")
        else:
            out_shape = tuple(torch_pool(geo)(torch.zeros(geo["x"])).shape)
            yield Case(desc, [T(out_shape, dt, lay), T(geo["x"], dt, "contig", dom)], torch_pool_grad(geo),
                       call(op, **pool_attrs(geo)), tol="acc")
    # Windows wholly in the padding: -inf (as torch's forward) and no gradient (torch's backward writes
    # out of bounds there, so the expectation is Tessera's contract: zeros).
    empty = dict(kernel=(2, 1), stride2=(1, 1), padding=(1, 0), dilation=(2, 1))
    if op == "max_pool2d":
        yield Case("max_pool2d with windows wholly in the padding", [T((1, 2, 1, 3))],
                   lambda x: F.max_pool2d(x, (2, 1), (1, 1), (1, 0), (2, 1)), call(op, **empty))
    else:
        yield Case("max_pool2d_backward with windows wholly in the padding", [T((1, 2, 1, 3)), T((1, 2, 1, 3))],
                   lambda g, x: torch.zeros_like(x), call(op, **empty))
    if op == "max_pool2d":
        yield Case("max_pool2d of a 2-D tensor", [T((4, 4))], None, call(op, kernel=(2, 2)), error=ValueError)
        yield Case("max_pool2d with a window larger than the padded input", [T((1, 1, 2, 2))], None,
                   call(op, kernel=(5, 5)), error=ValueError)


# ---- fused optimizer steps ------------------------------------------------------------------------------
def step_mismatch(what, new, old, ref_new, dtype):
    """The parameter and its update (new - old, compared relatively: an update is ~lr, far below the
    parameter's own rounding tolerance)."""
    m = H.mismatch(f"{what}: parameter", new, ref_new)
    if m:
        return [m]
    rtol, atol = (2e-3, 1e-6) if dtype == "float32" else (1e-9, 1e-13)
    d, ref_d = new.astype(np.float64) - old, ref_new.astype(np.float64) - old
    if not np.allclose(d, ref_d, rtol=rtol, atol=atol):
        i = np.unravel_index(np.argmax(np.abs(d - ref_d)), d.shape) if d.ndim else ()
        return [f"{what}: update {d[i]!r}, torch {ref_d[i]!r} at {tuple(int(k) for k in i)}"]
    return []


def check_sgd(rng, dtype, shape, lr, momentum, dampening, wd, nesterov, maximize, new_buffer, requires_grad):
    what = (f"sgd_step {dtype}{list(shape)} lr={lr} momentum={momentum} dampening={dampening} weight_decay={wd} "
            f"nesterov={nesterov} maximize={maximize} new_buffer={new_buffer}")
    p0, g0, b0 = (H.values(rng, shape, dtype) for _ in range(3))
    p = torch.from_numpy(p0.copy()).requires_grad_(True)
    p.grad = torch.from_numpy(g0.copy())
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd, nesterov=nesterov,
                          maximize=maximize)
    if momentum and not new_buffer:
        opt.state[p]["momentum_buffer"] = torch.from_numpy(b0.copy())
    opt.step()
    xp, xg = H.from_np(p0, requires_grad=requires_grad), H.from_np(g0)
    # A new buffer's contents must be ignored: NaNs would show through.
    xb = H.from_np(np.full_like(b0, np.nan) if new_buffer else b0)
    hp = (lr, momentum, dampening, wd, int(nesterov), int(maximize), int(new_buffer))
    with tessera.no_grad():
        _C.call_op("sgd_step", [xg, xb] if momentum else [xg], out=xp, hp=hp)
    fails = step_mismatch(what, H.to_np(xp), p0, H.t_np(p), dtype)
    if momentum:
        m = H.mismatch(f"{what}: momentum buffer", H.to_np(xb), H.t_np(opt.state[p]["momentum_buffer"]))
        fails += [m] if m else []
    m = H.mismatch(f"{what}: gradient (unchanged)", H.to_np(xg), g0)
    return fails + ([m] if m else [])


def check_adam(rng, dtype, shape, lr, betas, eps, wd, step, decoupled, maximize):
    what = (f"adam_step {dtype}{list(shape)} lr={lr} betas={betas} eps={eps} weight_decay={wd} step={step} "
            f"decoupled={decoupled} maximize={maximize}")
    p0, g0 = H.values(rng, shape, dtype), H.values(rng, shape, dtype)
    m0 = np.asarray(H.values(rng, shape, dtype) * 0.1 if step > 1 else np.zeros(shape, dtype), dtype)
    v0 = np.asarray(np.abs(H.values(rng, shape, dtype)) * 0.01 if step > 1 else np.zeros(shape, dtype), dtype)
    p = torch.from_numpy(p0.copy()).requires_grad_(True)
    p.grad = torch.from_numpy(g0.copy())
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)(
        [p], lr=lr, betas=betas, eps=eps, weight_decay=wd, maximize=maximize)
    opt.state[p] = {"step": torch.tensor(float(step - 1)), "exp_avg": torch.from_numpy(m0.copy()),
                    "exp_avg_sq": torch.from_numpy(v0.copy())}
    opt.step()
    xp, xg, xm, xv = (H.from_np(a) for a in (p0, g0, m0, v0))
    _C.call_op("adam_step", [xg, xm, xv], out=xp, hp=(lr, betas[0], betas[1], eps, wd, step, int(decoupled),
                                                       int(maximize)))
    fails = step_mismatch(what, H.to_np(xp), p0, H.t_np(p), dtype)
    for name, x, key in (("exp_avg", xm, "exp_avg"), ("exp_avg_sq", xv, "exp_avg_sq")):
        m = H.mismatch(f"{what}: {name}", H.to_np(x), H.t_np(opt.state[p][key]))
        fails += [m] if m else []
    return fails


def check_optimizer(rng, name, kw, dtype, steps=3):
    """tessera.optim.<name> against torch.optim.<name>: the same parameter and gradients, a few steps."""
    shape = rshape(rng, 2)
    p0 = H.values(rng, shape, dtype)
    p = torch.from_numpy(p0.copy()).requires_grad_(True)
    xp = H.from_np(p0, requires_grad=True)
    opt, xopt = getattr(torch.optim, name)([p], **kw), getattr(tessera.optim, name)([xp], **kw)
    for k in range(steps):
        g = H.values(rng, shape, dtype)
        p.grad, xp.grad = torch.from_numpy(g.copy()), H.from_np(g)
        old = H.to_np(xp)
        opt.step()
        xopt.step()
        fails = step_mismatch(f"tessera.optim.{name}({kw}) {dtype}, step {k + 1}", H.to_np(xp), old, H.t_np(p), dtype)
        if fails:
            return fails
    return []


@spec("sgd_step")
def gen_sgd(op, rng):
    for i in range(N + 2):
        momentum = pick(rng, (0.0, 0.9, 0.5))
        dampening = pick(rng, (0.0, 0.1)) if momentum else 0.0
        nesterov = bool(momentum and not dampening and rng.random() < 0.5)
        args = (pick(rng, FLOATS), rshape(rng), pick(rng, (0.1, 0.01, 0.5)), momentum, dampening,
                pick(rng, (0.0, 0.0, 1e-2)), nesterov, bool(rng.random() < 0.25), bool(momentum and rng.random() < 0.3),
                i == N)
        yield Check("sgd_step", (lambda a: lambda r: check_sgd(r, *a))(args))
    for kw in ({"lr": 0.1}, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2},
               {"lr": 0.05, "momentum": 0.9, "nesterov": True}, {"lr": 0.1, "momentum": 0.5, "dampening": 0.1}):
        yield Check(f"tessera.optim.SGD({kw})",
                    (lambda kw: lambda r: check_optimizer(r, "SGD", kw, pick(r, FLOATS)))(kw))
    yield Case("sgd_step with a gradient of another shape", [T((2, 3)), T((3, 2))], None,
               lambda p, g: _C.call_op("sgd_step", [g], out=p, hp=(0.1,)), error=ValueError)
    yield Case("sgd_step with a gradient of another dtype", [T((2, 3)), T((2, 3), "float64")], None,
               lambda p, g: _C.call_op("sgd_step", [g], out=p, hp=(0.1,)), error=(TypeError, ValueError))


@spec("adam_step")
def gen_adam(op, rng):
    for i in range(N + 2):
        args = (pick(rng, FLOATS), rshape(rng), pick(rng, (1e-3, 1e-2, 0.1)), pick(rng, ((0.9, 0.999), (0.8, 0.9))),
                pick(rng, (1e-8, 1e-3)), pick(rng, (0.0, 1e-2, 0.1)), pick(rng, (1, 1, 2, 10, 1000)),
                bool(rng.random() < 0.5), bool(rng.random() < 0.2))
        yield Check("adam_step", (lambda a: lambda r: check_adam(r, *a))(args))
    for name, kw in (("Adam", {"lr": 1e-2}), ("Adam", {"lr": 1e-2, "weight_decay": 0.1, "betas": (0.8, 0.9)}),
                     ("AdamW", {"lr": 1e-2}), ("AdamW", {"lr": 0.1, "weight_decay": 0.1, "eps": 1e-3})):
        yield Check(f"tessera.optim.{name}({kw})",
                    (lambda n, kw: lambda r: check_optimizer(r, n, kw, pick(r, FLOATS)))(name, kw))
    yield Case("adam_step with two state tensors", [T((2, 3)), T((2, 3)), T((2, 3))], None,
               lambda p, g, m: _C.call_op("adam_step", [g, m], out=p, hp=(0.1, 0.9, 0.999, 1e-8, 0, 1, 0, 0)),
               error=ValueError)


# ---- the tests ------------------------------------------------------------------------------------------
def op_rng(op):
    return np.random.default_rng([SEED, zlib.crc32(op.encode())])


def run_spec(op):
    """Every case of one op; returns (number of checks, failure messages)."""
    rng = op_rng(op)
    fails, count = [], 0
    tessera.manual_seed(0)
    for case in SPECS[op](op, rng):
        count += 1
        try:
            got = case.fn(rng) if isinstance(case, Check) else H.run_case(case, rng)
        except Exception as e:  # noqa: BLE001 - a crash in one case must not hide the others
            got = [f"{case.desc}: {type(e).__name__}: {e}"]
        fails += got
    return count, fails


def test_every_op_has_a_spec():
    """The op table comes from the library: a new op needs a spec here, and a removed one goes."""
    assert not set(OPS) - set(SPECS), f"ops without a differential spec: {sorted(set(OPS) - set(SPECS))}"
    assert not set(SPECS) - set(OPS), f"specs of ops the library doesn't have: {sorted(set(SPECS) - set(OPS))}"


@pytest.mark.parametrize("op", OPS)
def test_op_matches_torch(op):
    if op not in SPECS:
        pytest.fail(f"op '{op}' has no differential spec in {os.path.basename(__file__)}")
    count, fails = run_spec(op)
    shown = "\n".join(fails[:12]) + (f"\n... and {len(fails) - 12} more" if len(fails) > 12 else "")
    assert not fails, f"{op}: {len(fails)} of {count} checks failed (TESSERA_DIFF_SEED={SEED}):\n{shown}"
