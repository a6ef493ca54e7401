# The transformer ops (ops.def's NN, INDEX, SAMPLE, FOREACH and COMPOSITE kinds) against PyTorch,
# through their Python API (tessera.cat/stack, Tensor.gather/index_select/triu/tril/topk/masked_fill/
# multinomial, nn.functional.layer_norm/embedding/dropout/scaled_dot_product_attention/cross_entropy,
# nn.Embedding/LayerNorm/Dropout, nn.utils.clip_grad_norm_) and by op name (multi-output calls, the
# *_backward ops): forward and backward, float32 and float64, random shapes and non-contiguous layouts.
# SPECS follows test_ops_vs_torch.py's spec format (op name -> generator of Case/Check), so the same
# specs also run on CUDA (float32/float64 as written, and float16/bfloat16) through test_cuda.py's
# harness where a GPU is present. Set TESSERA_DIFF_SEED to explore other random cases.
import math
import os
import sys
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not importable: the differential tests against it "
                                            "need it (run them with /usr/bin/python3, which has torch 1.13)")
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tessera  # noqa: E402
import tessera.nn.functional as TF  # noqa: E402
from tessera import _C, nn  # noqa: E402

import torch_diff as H  # noqa: E402
from torch_diff import FLOATS, Case, Check, T  # noqa: E402

SEED = int(os.environ.get("TESSERA_DIFF_SEED", "0"))
N = 8  # random cases per op, besides the fixed ones

SPECS = {}  # op name -> generator(op, rng) of Case / Check (test_ops_vs_torch.py's format)
ON_CUDA = {"on": False}  # set by the CUDA run: a device kernel never fails on an index out of range (ops.def)
spec = H.registrar(SPECS)


def pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


def rshape(rng, ndim, lo=1, hi=5):
    return tuple(int(s) for s in rng.integers(lo, hi + 1, ndim))


def fdt(rng):
    return pick(rng, FLOATS)


def lay(rng):
    return pick(rng, ("contig", "contig", "T", "step"))


def tdesc(*args):
    return "(" + ", ".join(f"{a.dtype}{list(a.shape)}{'' if a.layout == 'contig' else ':' + a.layout}"
                           if isinstance(a, T) else repr(a) for a in args) + ")"


def idx_np(rng, hi, shape):
    """int64 indices in [0, hi) (repeats likely)."""
    return rng.integers(0, hi, size=shape).astype(np.int64)


def tt(a):
    """numpy -> torch (a copy)."""
    return torch.from_numpy(np.array(a, copy=True))


def xt(a):
    """numpy -> Tessera through the harness (so that the CUDA run places it on the GPU)."""
    return H.from_np(a)


def both(rng, shape, dtype, dom="any", grad=False):
    """(torch leaf, Tessera leaf) holding the same random values."""
    v = H.values(rng, shape, dtype, dom)
    return tt(v).requires_grad_(grad), H.from_np(v, requires_grad=grad)


def cmp(fails, what, got, ref, tol="acc", tol_dtype=None):
    """Appends H.mismatch of a Tessera tensor against a torch tensor (or arrays) to fails."""
    g = H.to_np(got) if isinstance(got, tessera.Tensor) else np.asarray(got)
    m = H.mismatch(what, g, H.t_np(ref), tol, tol_dtype)
    if m:
        fails.append(m)
    return fails


# ---- layer_norm ------------------------------------------------------------------------------------
def ln_args(rng, dt):
    lead = rshape(rng, int(rng.integers(0, 3)))
    norm = rshape(rng, int(rng.integers(1, 3)), 1, 6)
    if math.prod(norm) == 1:  # one element: y = (x - mean) * 1/sqrt(eps) amplifies torch's rounding
        norm = norm[:-1] + (2,)
    affine = pick(rng, ("", "w", "wb", "b"))
    args = [T(lead + norm, dt, lay(rng))]
    args += [T(norm, dt, pick(rng, ("contig", "step")))] * len(affine)
    return norm, affine, args


def ln_call(mod, norm, affine, eps):
    def fn(x, *p):
        w = p[0] if "w" in affine else None
        b = p[-1] if "b" in affine else None
        return mod.layer_norm(x, norm, w, b, eps)
    return fn


@spec("layer_norm")
def gen_layer_norm(op, rng):
    for i in range(N + 4):
        dt = fdt(rng)
        norm, affine, args = ln_args(rng, dt)
        eps = pick(rng, (1e-5, 1e-3, 0.1))
        desc = f"layer_norm{tdesc(*args)} normalized_shape={list(norm)} affine='{affine}' eps={eps}"
        if i % 2 and affine != "b":
            yield Case(desc + " [op]", args, ln_call(F, norm, affine, eps),
                       lambda *a, n=len(norm), e=eps: _C.call_op("layer_norm", list(a), dim=n, hp=(e,)),
                       backward=True, tol="acc")
        else:
            yield Case(desc, args, ln_call(F, norm, affine, eps), ln_call(TF, norm, affine, eps), backward=True,
                       tol="acc")
    yield Case("layer_norm of a constant row (var 0)", [T((3, 5), dom="small")],
               lambda x: F.layer_norm(x * 0 + 2, (5,)), lambda x: TF.layer_norm(x * 0 + 2, (5,)), tol="acc")
    yield Case("layer_norm with a normalized_shape that isn't x's tail", [T((3, 4))],
               lambda x: F.layer_norm(x, (3,)), lambda x: TF.layer_norm(x, (3,)), parity=True)
    yield Case("layer_norm with a weight of another shape", [T((3, 4)), T((3,))],
               lambda x, w: F.layer_norm(x, (4,), w), lambda x, w: TF.layer_norm(x, (4,), w), parity=True)
    yield Case("layer_norm by op name with a weight of another shape", [T((3, 4)), T((5,))], None,
               lambda x, w: _C.call_op("layer_norm", [x, w], dim=1, hp=(1e-5,)), error=(ValueError, RuntimeError))
    for dt in FLOATS:
        yield Check(f"layer_norm (y, mean, rstd) by op name, {dt}", lambda r, dt=dt: check_ln_stats(r, dt))


def check_ln_stats(rng, dt):
    """num_outputs=3: mean and rstd (= 1/sqrt(biased var + eps)) of each normalized row."""
    x_t, x = both(rng, (2, 3, 4, 5), dt)
    y, mean, rstd = _C.call_op("layer_norm", [x], dim=2, hp=(1e-5,), num_outputs=3)
    rows = x_t.reshape(6, 20)
    fails = cmp([], "layer_norm y", y, F.layer_norm(x_t, (4, 5)))
    cmp(fails, "layer_norm mean", H.to_np(mean).reshape(-1), rows.mean(1))
    return cmp(fails, "layer_norm rstd", H.to_np(rstd).reshape(-1), 1 / torch.sqrt(rows.var(1, unbiased=False) + 1e-5))


@spec("layer_norm_backward")
def gen_layer_norm_backward(op, rng):
    for i in range(N):
        yield Check("layer_norm_backward by op name", lambda r, i=i: check_ln_backward(r, fdt(r), i % 2 == 0))


def check_ln_backward(rng, dt, affine):
    """layer_norm_backward(grad, x, mean, rstd [, w]) -> dx [, dw, db] against torch's autograd."""
    R, C = int(rng.integers(1, 6)), int(rng.integers(1, 9))
    x_t, x = both(rng, (R, C), dt, grad=True)
    w_t, w = both(rng, (C,), dt, grad=True)
    b_t = tt(H.values(rng, (C,), dt)).requires_grad_(True)
    g_t, g = both(rng, (R, C), dt)
    F.layer_norm(x_t, (C,), w_t if affine else None, b_t if affine else None).backward(g_t)
    with tessera.no_grad():
        _, mean, rstd = _C.call_op("layer_norm", [x.detach()], dim=1, hp=(1e-5,), num_outputs=3)
        ins = [g, x.detach(), mean, rstd] + ([w.detach()] if affine else [])
        outs = _C.call_op("layer_norm_backward", ins, dim=1, hp=(1e-5,), num_outputs=3 if affine else 1)
    outs = outs if affine else (outs,)
    what = f"layer_norm_backward {dt} [{R}, {C}] affine={affine}"
    fails = cmp([], what + ": dx", outs[0], x_t.grad)
    if affine:
        cmp(fails, what + ": dw", outs[1], w_t.grad)
        cmp(fails, what + ": db", outs[2], b_t.grad)
    return fails


# ---- scaled_dot_product_attention ------------------------------------------------------------------
def torch_sdpa(q, k, v, attn_mask=None, dropout_mask=None, p=0.0, is_causal=False, scale=None):
    """The math of F.scaled_dot_product_attention (torch 1.13 has none): softmax(q k^T s + mask) [* drop] v."""
    s = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * s
    T_, S_ = scores.shape[-2:]
    if is_causal:
        scores = scores.masked_fill(~torch.ones(T_, S_, dtype=torch.bool).tril(), float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else \
            scores + attn_mask
    a = scores.softmax(-1)
    if dropout_mask is not None:
        a = a * dropout_mask / (1 - p)
    return a @ v


def sdpa_geometry(rng, raw=False):
    """(B, H, T, S, D, Dv); raw: for the op by name, whose CUDA kernel takes D in {16, 32, 64, 128} (F.sdpa
    goes through matmul/softmax for the others)."""
    B, Hh = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    Tq, S = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    D = pick(rng, (16, 32) if raw else (4, 8, 16, 32))
    Dv = D if rng.random() < 0.8 else pick(rng, (4, 8))
    return B, Hh, Tq, S, D, Dv


@spec("scaled_dot_product_attention")
def gen_sdpa(op, rng):
    for i in range(N + 4):
        B, Hh, Tq, S, D, Dv = sdpa_geometry(rng)
        dt = fdt(rng)
        causal = bool(rng.random() < 0.5)
        scale = None if rng.random() < 0.7 else float(rng.uniform(0.05, 1.0))
        kw = dict(is_causal=causal, scale=scale)
        form = pick(rng, ("4d", "4d", "heads", "3d", "step"))
        raw = i % 3 == 2 and form != "heads"
        if raw:  # (the op has one head dim; F.sdpa takes another Dv through matmul/softmax)
            D = Dv = pick(rng, (16, 32))
        desc = f"sdpa {form} B={B} H={Hh} T={Tq} S={S} D={D} Dv={Dv} causal={causal} scale={scale} {dt}"
        if form == "heads":  # q/k/v as [B, T, H, D] projections viewed as [B, H, T, D] (stride 1 on D)
            args = [T((B, Tq, Hh, D), dt), T((B, S, Hh, D), dt), T((B, S, Hh, Dv), dt)]
            ref = lambda q, k, v, kw=kw: torch_sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), **kw)
            fn = lambda q, k, v, kw=kw: TF.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                                         v.transpose(1, 2), **kw)
        else:
            lead = (B, Hh) if form != "3d" else (B * Hh,)
            layout = "step" if form == "step" else "contig"
            args = [T(lead + (Tq, D), dt, layout), T(lead + (S, D), dt, layout), T(lead + (S, Dv), dt)]
            ref = lambda q, k, v, kw=kw: torch_sdpa(q, k, v, **kw)
            if raw:
                sc = 0.0 if scale is None else scale
                fn = lambda q, k, v, sc=sc, c=causal: _C.call_op("scaled_dot_product_attention", [q, k, v],
                                                                  hp=(sc, 0.0, float(c)))
                desc += " [op]"
            else:
                fn = lambda q, k, v, kw=kw: TF.scaled_dot_product_attention(q, k, v, **kw)
        yield Case(desc, args, ref, fn, backward=True, tol="acc")
    for shape in ((5, 8), (2, 1, 2, 3, 8)):  # 2-D and 5-D: flattened to 3-D batches
        yield Case(f"sdpa of {len(shape)}-D inputs", [T(shape), T(shape), T(shape)], torch_sdpa,
                   TF.scaled_dot_product_attention, backward=True, tol="acc")
    for kind in ("bool", "float", "bool broadcast"):
        yield Check(f"sdpa with a {kind} attn_mask", lambda r, kind=kind: check_sdpa_mask(r, kind))
    yield Case("sdpa with attn_mask and is_causal", [T((1, 2, 4)), T((1, 2, 4)), T((1, 2, 4))], None,
               lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, tessera.ones(2, 2).bool(), is_causal=True),
               error=RuntimeError)
    yield Case("sdpa with mismatched head dims", [T((1, 2, 3, 4)), T((1, 2, 3, 5)), T((1, 2, 3, 4))], None,
               TF.scaled_dot_product_attention, error=(ValueError, RuntimeError))
    for dt in FLOATS:
        yield Check(f"sdpa dropout: the documented Philox mask, {dt}", lambda r, dt=dt: check_sdpa_dropout(r, dt))


def check_sdpa_mask(rng, kind):
    B, Hh, Tq, S, D = 2, 2, 5, 6, 8
    dt = fdt(rng)
    ts = [both(rng, (B, Hh, L, D), dt, grad=True) for L in (Tq, S, S)]
    if kind.startswith("bool"):
        m = rng.random((B, 1, Tq, S) if "broadcast" in kind else (Tq, S)) < 0.6
        m[..., 0] = True  # every query sees a key
    else:
        m = H.values(rng, (Tq, S), dt)
    ref = torch_sdpa(*[a for a, _ in ts], attn_mask=tt(m))
    got = TF.scaled_dot_product_attention(*[b for _, b in ts], attn_mask=xt(m))
    fails = cmp([], f"sdpa {kind} mask {dt}", got, ref)
    g = H.values(rng, tuple(ref.shape), dt)
    ref.backward(tt(g))
    got.backward(xt(g))
    for name, (a, b) in zip("qkv", ts):
        cmp(fails, f"sdpa {kind} mask {dt}: grad of {name}", b.grad, a.grad)
    return fails


def check_sdpa_dropout(rng, dt):
    """Dropout on the softmax keeps element ((b*H + h)*T + i)*S + j iff bernoulli_(1 - p) at the same seed keeps
    it; the backward uses the same mask; the same seed gives the same result bit for bit."""
    B, Hh, Tq, S, D, p = 2, 2, 5, 7, 16, 0.3  # (D 16: the fused op on CUDA too, not the composite fallback)
    ts = [both(rng, (B, Hh, L, D), dt, grad=True) for L in (Tq, S, S)]
    tessera.manual_seed(1234)
    keep = tessera.empty(B, Hh, Tq, S, dtype=tessera.float32, device=ts[0][1].device).bernoulli_(1 - p)
    tessera.manual_seed(1234)
    got = TF.scaled_dot_product_attention(*[b for _, b in ts], dropout_p=p, is_causal=True)
    tessera.manual_seed(1234)
    again = TF.scaled_dot_product_attention(*[b.detach() for _, b in ts], dropout_p=p, is_causal=True)
    ref = torch_sdpa(*[a for a, _ in ts], dropout_mask=tt(H.to_np(keep)).to(ts[0][0].dtype), p=p, is_causal=True)
    fails = cmp([], f"sdpa dropout {dt}", got, ref)
    if not np.array_equal(H.to_np(got), H.to_np(again)):
        fails.append(f"sdpa dropout {dt}: the same seed gave another result")
    g = H.values(rng, tuple(ref.shape), dt)
    ref.backward(tt(g))
    got.backward(xt(g))
    for name, (a, b) in zip("qkv", ts):
        cmp(fails, f"sdpa dropout {dt}: grad of {name}", b.grad, a.grad)
    return fails


@spec("scaled_dot_product_attention_backward")
def gen_sdpa_backward(op, rng):
    for i in range(N):
        yield Check("sdpa (out, lse) and sdpa_backward by op name", lambda r: check_sdpa_backward(r, fdt(r)))


def check_sdpa_backward(rng, dt):
    B, Hh, Tq, S, D, _ = sdpa_geometry(rng, raw=True)
    causal = bool(rng.random() < 0.5)
    scale = pick(rng, (0.0, 0.3))
    ts = [both(rng, (B, Hh, L, D), dt, grad=True) for L in (Tq, S, S)]
    s = scale or 1 / math.sqrt(D)
    ref = torch_sdpa(*[a for a, _ in ts], is_causal=causal, scale=s)
    hp = (scale, 0.0, float(causal))
    with tessera.no_grad():
        q, k, v = (b.detach() for _, b in ts)
        out, lse = _C.call_op("scaled_dot_product_attention", [q, k, v], hp=hp, num_outputs=2)
        g_np = H.values(rng, tuple(ref.shape), dt)
        dq, dk, dv = _C.call_op("scaled_dot_product_attention_backward", [xt(g_np), q, k, v, out, lse], hp=hp,
                                num_outputs=3)
    what = f"sdpa_backward {dt} B={B} H={Hh} T={Tq} S={S} D={D} causal={causal} scale={scale}"
    fails = cmp([], what + ": out", out, ref)
    scores = ts[0][0] @ ts[1][0].transpose(-2, -1) * s
    if causal:
        scores = scores.masked_fill(~torch.ones(Tq, S, dtype=torch.bool).tril(), float("-inf"))
    cmp(fails, what + ": lse", lse, torch.logsumexp(scores, -1))
    ref.backward(tt(g_np))
    for name, got, (a, _) in zip("qkv", (dq, dk, dv), ts):
        cmp(fails, f"{what}: d{name}", got, a.grad)
    return fails


# ---- cross_entropy ---------------------------------------------------------------------------------
def ce_target(rng, shape, C, ignore):
    t = idx_np(rng, C, shape)
    if ignore is not None and t.size:
        t[rng.random(shape) < 0.3] = ignore
    return t


@spec("cross_entropy")
def gen_cross_entropy(op, rng):
    for i in range(N + 6):
        dt = fdt(rng)
        C = int(rng.integers(1, 7))
        form = pick(rng, ("2d", "2d", "spatial", "1d"))
        N_ = int(rng.integers(1, 6))
        xshape = {"2d": (N_, C), "spatial": (N_, C) + rshape(rng, int(rng.integers(1, 3)), 1, 3), "1d": (C,)}[form]
        tshape = () if form == "1d" else (xshape[0],) + xshape[2:]
        ignore = pick(rng, (None, -100, 1 % C))
        eps = pick(rng, (0.0, 0.0, 0.1, 0.4))
        red = pick(rng, ("mean", "sum", "none"))
        tdt = pick(rng, (np.int64, np.int64, np.int32))
        t = ce_target(rng, tshape, C, ignore if form != "1d" else None).astype(tdt)
        kw = dict(reduction=red, label_smoothing=eps)
        if ignore is not None:
            kw["ignore_index"] = ignore
        desc = f"cross_entropy x{list(xshape)} {dt} target{list(tshape)} {np.dtype(tdt).name} {kw}"
        ref = lambda x, t=t, kw=kw: F.cross_entropy(x, tt(t).long(), **kw)
        if i % 3 == 2 and form == "2d":  # by op name: per-sample losses
            ign = -100 if ignore is None else ignore
            ref = lambda x, t=t, ign=ign, eps=eps: F.cross_entropy(x, tt(t).long(), ignore_index=ign,
                                                                   label_smoothing=eps, reduction="none")
            fn = lambda x, t=t, ign=ign, eps=eps: _C.call_op("cross_entropy", [x, xt(t)], hp=(float(ign), eps))
            desc += " [op]"
        else:
            fn = lambda x, t=t, kw=kw: TF.cross_entropy(x, xt(t), **kw)
        yield Case(desc, [T(xshape, dt, lay(rng))], ref, fn, backward=True, tol="acc")
    t_all = np.full((3,), -100, dtype=np.int64)
    yield Case("cross_entropy with every target ignored (mean: nan, as torch)", [T((3, 4))],
               lambda x: F.cross_entropy(x, tt(t_all)), lambda x: TF.cross_entropy(x, xt(t_all)), tol="acc")
    bad = np.array([0, 4, 1], dtype=np.int64)
    if not ON_CUDA["on"]:
        yield Case("cross_entropy with a target out of range", [T((3, 4))], None,
                   lambda x: TF.cross_entropy(x, xt(bad)), error=IndexError)
    yield Case("cross_entropy with a target of another batch size", [T((3, 4))], None,
               lambda x: TF.cross_entropy(x, xt(bad[:2])), error=ValueError)
    w, t5 = np.array([0.5, 2.0, 1.0, 1.5]), np.array([0, 3, 1, 0, 2], dtype=np.int64)
    for dt in FLOATS:  # the composite path stays for weight= and probability targets
        yield Case(f"cross_entropy with weight= {dt}", [T((5, 4), dt)],
                   lambda x, dt=dt: F.cross_entropy(x, tt(t5), tt(w.astype(dt)), label_smoothing=0.2),
                   lambda x, dt=dt: TF.cross_entropy(x, xt(t5), xt(w.astype(dt)), label_smoothing=0.2),
                   backward=True, tol="acc")
        probs = T((3, 4), dt, dom="pos", grad=False)
        yield Case(f"cross_entropy with probability targets {dt}", [T((3, 4), dt), probs],
                   lambda x, p: F.cross_entropy(x, p / p.sum(1, keepdim=True)),
                   lambda x, p: TF.cross_entropy(x, p / p.sum(1, keepdim=True)), backward=True, tol="acc")


@spec("cross_entropy_backward")
def gen_cross_entropy_backward(op, rng):
    for i in range(N):
        yield Check("cross_entropy (loss, lse) and cross_entropy_backward by op name",
                    lambda r: check_ce_backward(r, fdt(r)))


def check_ce_backward(rng, dt):
    N_, C = int(rng.integers(1, 6)), int(rng.integers(1, 7))
    eps = pick(rng, (0.0, 0.2))
    t = ce_target(rng, (N_,), C, 0)
    x_t, x = both(rng, (N_, C), dt, grad=True)
    ref = F.cross_entropy(x_t, tt(t), ignore_index=0, label_smoothing=eps, reduction="none")
    g = H.values(rng, (N_,), dt)
    ref.backward(tt(g))
    with tessera.no_grad():
        loss, lse = _C.call_op("cross_entropy", [x.detach(), xt(t)], hp=(0.0, eps), num_outputs=2)
        dx = _C.call_op("cross_entropy_backward", [xt(g), x.detach(), xt(t), lse], hp=(0.0, eps))
    what = f"cross_entropy_backward {dt} [{N_}, {C}] eps={eps}"
    fails = cmp([], what + ": loss", loss, ref)
    cmp(fails, what + ": lse", lse, torch.logsumexp(x_t, 1))
    return cmp(fails, what + ": dlogits", dx, x_t.grad)


# ---- index_select / gather / embedding ---------------------------------------------------------------
ANY_DTYPES = FLOATS * 3 + ("int64", "int32", "uint8", "bool")


@spec("index_select")
def gen_index_select(op, rng):
    for i in range(N + 4):
        dt = pick(rng, ANY_DTYPES)
        shape = rshape(rng, int(rng.integers(1, 4)))
        d = int(rng.integers(-len(shape), len(shape)))
        idx = idx_np(rng, shape[d], (int(rng.integers(0, 7)),) if i else ())
        x = T(shape, dt, lay(rng))
        desc = f"index_select{tdesc(x)} dim={d} index={idx.tolist()}"
        if i % 2:
            fn = lambda x, d=d, idx=idx: _C.call_op("index_select", [x, xt(idx)], dim=d)
            desc += " [op]"
        else:
            fn = lambda x, d=d, idx=idx: x.index_select(d, xt(idx))
        ref = lambda x, d=d, idx=idx: x.index_select(d, tt(idx))
        yield Case(desc, [x], ref, fn, backward=dt in FLOATS, tol="acc")
    for dt in FLOATS:
        yield Check(f"embedding and nn.Embedding (padding_idx) {dt}", lambda r, dt=dt: check_embedding(r, dt))
    oob = np.array([0, 3], dtype=np.int64)
    if not ON_CUDA["on"]:
        yield Case("index_select with an index out of range", [T((3, 2))], lambda x: x.index_select(0, tt(oob)),
                   lambda x: x.index_select(0, xt(oob)), parity=True)
        yield Case("embedding with an index out of range", [T((3, 2))], None,
                   lambda w: TF.embedding(xt(np.array([[1, 3]])), w), error=IndexError)
    yield Case("index_select with a float index", [T((3, 2))], None,
               lambda x: x.index_select(0, xt(np.zeros(2))), error=RuntimeError)


def check_embedding(rng, dt):
    V, D = int(rng.integers(2, 8)), int(rng.integers(1, 5))
    idx = idx_np(rng, V, rshape(rng, int(rng.integers(1, 3))))
    pad = int(idx.flat[0])
    fails = []
    for padding_idx in (None, pad, pad - V):
        w_t, w = both(rng, (V, D), dt, grad=True)
        ref = F.embedding(tt(idx), w_t, padding_idx=padding_idx)
        got = TF.embedding(xt(idx), w, padding_idx=padding_idx)
        what = f"embedding {dt} V={V} D={D} idx{list(idx.shape)} padding_idx={padding_idx}"
        cmp(fails, what, got, ref, "ew")
        g = H.values(rng, tuple(ref.shape), dt)
        ref.backward(tt(g))
        got.backward(xt(g))
        cmp(fails, what + ": grad", w.grad, w_t.grad)
    m, mt = nn.Embedding(V, D, padding_idx=pad), torch.nn.Embedding(V, D, padding_idx=pad)
    if not np.all(H.to_np(m.weight)[pad] == 0):
        fails.append("nn.Embedding: the padding_idx row is not zero")
    if repr(m) != repr(mt):
        fails.append(f"nn.Embedding repr {repr(m)!r}, torch {repr(mt)!r}")
    return fails


@spec("gather")
def gen_gather(op, rng):
    for i in range(N + 4):
        dt = pick(rng, ANY_DTYPES)
        shape = rshape(rng, int(rng.integers(1, 4)))
        d = int(rng.integers(-len(shape), len(shape)))
        ishape = tuple(int(rng.integers(1, s + 1)) for s in shape)
        ishape = ishape[:d % len(shape)] + (int(rng.integers(1, 6)),) + ishape[d % len(shape) + 1:]
        idx = idx_np(rng, shape[d], ishape)
        x = T(shape, dt, lay(rng))
        desc = f"gather{tdesc(x)} dim={d} index{list(ishape)}"
        if i % 2:
            fn = lambda x, d=d, idx=idx: _C.call_op("gather", [x, xt(idx)], dim=d)
            desc += " [op]"
        else:
            fn = lambda x, d=d, idx=idx: x.gather(d, xt(idx))
        yield Case(desc, [x], lambda x, d=d, idx=idx: x.gather(d, tt(idx)), fn, backward=dt in FLOATS, tol="acc")
    oob = np.array([[0, 3]], dtype=np.int64)
    if not ON_CUDA["on"]:
        yield Case("gather with an index out of range", [T((3, 2))], lambda x: x.gather(0, tt(oob)),
                   lambda x: x.gather(0, xt(oob)), parity=True)
    yield Case("gather with an index of another ndim", [T((3, 2))], lambda x: x.gather(0, tt(oob[0])),
               lambda x: x.gather(0, xt(oob[0])), parity=True)


@spec("index_select_backward", "gather_backward")
def gen_scatter_backward(op, rng):
    for i in range(N):
        yield Check(f"{op} by op name", lambda r, i=i: check_scatter_backward(r, op, fdt(r), i % 2 == 1))


def check_scatter_backward(rng, op, dt, deterministic):
    """index_select_backward(grad, index) / gather_backward(grad, index): zeros(attrs.shape) scatter-added
    (repeated indices accumulate), bitwise the same twice with hp[0] = 1."""
    shape = rshape(rng, int(rng.integers(1, 4)))
    d = int(rng.integers(0, len(shape)))
    if op == "index_select_backward":
        idx = idx_np(rng, shape[d], (int(rng.integers(1, 9)),))
        gshape = shape[:d] + (len(idx),) + shape[d + 1:]
        ref = lambda g: torch.zeros(shape, dtype=g.dtype).index_add_(d, tt(idx), g)
    else:
        gshape = shape[:d] + (int(rng.integers(1, 6)),) + shape[d + 1:]
        idx = idx_np(rng, shape[d], gshape)
        ref = lambda g: torch.zeros(shape, dtype=g.dtype).scatter_add_(d, tt(idx), g)
    g_t, g = both(rng, gshape, dt)
    hp = (1.0 if deterministic else 0.0,)
    got = _C.call_op(op, [g, xt(idx)], dim=d, shape=shape, hp=hp)
    fails = cmp([], f"{op} {dt} shape={list(shape)} dim={d} grad{list(gshape)}", got, ref(g_t))
    if deterministic and not np.array_equal(H.to_np(got), H.to_np(_C.call_op(op, [g, xt(idx)], dim=d, shape=shape,
                                                                               hp=hp))):
        fails.append(f"{op}: deterministic mode gave two different results")
    return fails


# ---- triu / tril / topk ----------------------------------------------------------------------------
@spec("triu", "tril")
def gen_tri(op, rng):
    for i in range(N + 4):
        dt = pick(rng, ANY_DTYPES)
        shape = rshape(rng, int(rng.integers(2, 5)), 1, 6)
        k = int(rng.integers(-4, 5))
        x = T(shape, dt, lay(rng))
        desc = f"{op}{tdesc(x)} diagonal={k}"
        ref = lambda x, k=k: getattr(x, op)(k)
        if i % 3 == 0:
            fn = lambda x, k=k: _C.call_op(op, [x], index=k)
            desc += " [op]"
        elif i % 3 == 1:
            fn = lambda x, k=k: getattr(tessera, op)(x, k)
        else:
            fn = lambda x, k=k: getattr(x, op)(diagonal=k)
        yield Case(desc, [x], ref, fn, backward=dt in FLOATS)
    yield Case(f"{op} of a 1-D tensor", [T((4,))], lambda x: getattr(x, op)(), lambda x: getattr(x, op)(),
               parity=True)
    yield Case(f"{op}_ in place", [T((3, 4), grad=False)], lambda x: getattr(x.clone(), op + "_")(1),
               lambda x: getattr(x.clone(), op + "_")(1))


@spec("topk")
def gen_topk(op, rng):
    for i in range(N + 4):
        dt = pick(rng, FLOATS * 3 + ("int64", "int32", "uint8"))
        shape = rshape(rng, int(rng.integers(1, 4)), 1, 7)
        d = int(rng.integers(-len(shape), len(shape)))
        k = int(rng.integers(0, shape[d] + 1))
        largest = bool(rng.random() < 0.6)
        x = T(shape, dt, lay(rng))
        desc = f"topk{tdesc(x)} k={k} dim={d} largest={largest}"
        ref = lambda x, k=k, d=d, lg=largest: x.topk(k, d, lg).values
        if i % 2:
            fn = lambda x, k=k, d=d, lg=largest: _C.call_op("topk", [x], dim=d, index=k, hp=(float(lg),),
                                                            num_outputs=2)[0]
            desc += " [op]"
        else:
            fn = lambda x, k=k, d=d, lg=largest: x.topk(k, d, lg).values
        yield Case(desc + " values", [x], ref, fn, backward=dt in FLOATS)
        if dt in FLOATS:  # distinct values (normal draws): the indices are unique
            yield Case(desc + " indices", [x], lambda x, k=k, d=d, lg=largest: x.topk(k, d, lg).indices,
                       lambda x, k=k, d=d, lg=largest: tessera.topk(x, k, dim=d, largest=lg)[1])
    ties = np.array([[1.0, 3.0, 3.0, 1.0, 2.0, 3.0]])
    yield Check("topk ties in index order, NaN largest, the (values, indices) tuple", check_topk_ties(ties))
    yield Case("topk with k larger than the dim", [T((2, 3))], lambda x: x.topk(4).values,
               lambda x: x.topk(4).values, parity=True)


def check_topk_ties(ties):
    def fn(rng):
        fails = []
        r = xt(ties).topk(4)
        values, indices = r
        if r.values is not values or H.to_np(indices).tolist() != [[1, 2, 5, 4]]:
            fails.append(f"topk of {ties.tolist()}: indices {H.to_np(indices).tolist()}, expected [[1, 2, 5, 4]]")
        lo = xt(ties).topk(3, largest=False).indices
        if H.to_np(lo).tolist() != [[0, 3, 4]]:
            fails.append(f"topk(largest=False) of {ties.tolist()}: indices {H.to_np(lo).tolist()}, "
                         f"expected [[0, 3, 4]]")
        nan = xt(np.array([1.0, np.nan, 2.0])).topk(2)
        if H.to_np(nan.indices).tolist() != [1, 2]:
            fails.append(f"topk of [1, nan, 2]: indices {H.to_np(nan.indices).tolist()}, expected NaN first: [1, 2]")
        if H.to_np(indices).dtype != np.int64:
            fails.append(f"topk indices dtype {H.to_np(indices).dtype}")
        return fails
    return fn


# ---- dropout / multinomial -------------------------------------------------------------------------
@spec("dropout")
def gen_dropout(op, rng):
    for dt in FLOATS:
        for p in (0.1, 0.5, 0.9):
            yield Check(f"dropout p={p} {dt}: the bernoulli_ mask, scale, backward, seed",
                        lambda r, dt=dt, p=p: check_dropout(r, dt, p))
    yield Check("dropout p=0, p=1, eval, in place, nn.Dropout", check_dropout_edges)
    yield Case("dropout with p > 1", [T((3,))], None, lambda x: TF.dropout(x, 1.5), error=ValueError)


def check_dropout(rng, dt, p):
    shape = (int(rng.integers(50, 120)), int(rng.integers(3, 9)))
    x_t, x = both(rng, shape, dt, grad=True)
    tessera.manual_seed(77)
    keep = H.to_np(tessera.empty(*shape, dtype=tessera.float32, device=x.device).bernoulli_(1 - p))
    tessera.manual_seed(77)
    y = TF.dropout(x, p)
    tessera.manual_seed(77)
    y2 = _C.call_op("dropout", [x.detach()], hp=(p,))
    what = f"dropout p={p} {dt} {list(shape)}"
    fails = cmp([], what + " vs x * bernoulli_(1-p) / (1-p)", y, x_t * tt(keep).to(x_t.dtype) / (1 - p), "ew")
    if not np.array_equal(H.to_np(y), H.to_np(y2)):
        fails.append(f"{what}: the same seed gave another result")
    frac = keep.mean()
    if abs(frac - (1 - p)) > 5 * math.sqrt(p * (1 - p) / keep.size) + 1e-9:
        fails.append(f"{what}: kept fraction {frac:.3f}, expected about {1 - p}")
    g = H.values(rng, shape, dt)
    y.backward(xt(g))
    return cmp(fails, what + ": grad", x.grad, tt(g) * tt(keep).to(x_t.dtype) / (1 - p), "ew")


def check_dropout_edges(rng):
    fails = []
    x = H.from_np(H.values(rng, (4, 5), "float32"), requires_grad=True)
    if TF.dropout(x, 0.0) is not x or TF.dropout(x, 0.5, training=False) is not x:
        fails.append("dropout with p=0 or training=False is not the identity")
    z = TF.dropout(x, 1.0)
    if H.to_np(z).any() or not z.requires_grad:
        fails.append("dropout p=1: not zeros with a graph")
    y = H.from_np(np.ones((50, 4), np.float32))
    tessera.manual_seed(5)
    ref = H.to_np(TF.dropout(y, 0.4))
    tessera.manual_seed(5)
    TF.dropout(y, 0.4, inplace=True)
    if not np.array_equal(H.to_np(y), ref):
        fails.append("dropout(inplace=True) differs from dropout at the same seed")
    d = nn.Dropout(0.4)
    tessera.manual_seed(5)
    if not np.array_equal(H.to_np(d(H.from_np(np.ones((50, 4), np.float32)))), ref):
        fails.append("nn.Dropout differs from F.dropout at the same seed")
    return fails


@spec("multinomial")
def gen_multinomial(op, rng):
    for dt in FLOATS:
        yield Check(f"multinomial {dt}: frequencies, zero weights, without replacement, seed",
                    lambda r, dt=dt: check_multinomial(r, dt))
    yield Case("multinomial without replacement of more samples than categories", [T((3,), dom="pos")],
               lambda p: p.multinomial(4), lambda p: p.multinomial(4), parity=True)
    yield Case("multinomial of integer weights", [T((3,), "int64", dom="pos")],
               lambda p: p.multinomial(1), lambda p: p.multinomial(1), parity=True)
    yield Case("multinomial of a 3-D input", [T((2, 2, 2), dom="pos")],
               lambda p: p.multinomial(1), lambda p: p.multinomial(1), parity=True)


def check_multinomial(rng, dt):
    fails = []
    w = np.array([[1.0, 0.0, 3.0, 4.0, 2.0], [0.0, 0.0, 0.5, 0.0, 0.5]], dtype=dt)  # rows need not sum to 1
    n = 4000
    tessera.manual_seed(11)
    s = tessera.multinomial(xt(w), n, replacement=True)
    tessera.manual_seed(11)
    s2 = _C.call_op("multinomial", [xt(w)], index=n, hp=(1.0,))
    a = H.to_np(s)
    if a.shape != (2, n) or a.dtype != np.int64:
        return [f"multinomial: shape {a.shape} dtype {a.dtype}, expected (2, {n}) int64"]
    if not np.array_equal(a, H.to_np(s2)):
        fails.append("multinomial: the same seed gave other samples")
    for r in range(2):
        freq = np.bincount(a[r], minlength=5) / n
        want = w[r] / w[r].sum()
        if np.any(freq[want == 0] > 0):
            fails.append(f"multinomial row {r}: a zero-weight category was drawn ({freq})")
        if np.abs(freq - want).max() > 5 * math.sqrt(0.25 / n):
            fails.append(f"multinomial row {r}: frequencies {freq.round(3)}, expected {want.round(3)}")
    for _ in range(5):  # without replacement: distinct, never a zero weight, all the positive ones when k = 3
        b = H.to_np(xt(w[0]).multinomial(4))
        if len(set(b.tolist())) != 4 or 1 in b.tolist():
            fails.append(f"multinomial without replacement: {b.tolist()} (distinct, never category 1)")
        c = H.to_np(xt(w[1]).multinomial(2))
        if sorted(c.tolist()) != [2, 4]:
            fails.append(f"multinomial without replacement of [0, 0, .5, 0, .5], k=2: {c.tolist()}")
    one = xt(w[0]).multinomial(1)
    if tuple(one.shape) != (1,):
        fails.append(f"multinomial of a 1-D input: shape {tuple(one.shape)}, expected (1,)")
    return fails


# ---- grad_norm / clip_grad_scale / clip_grad_norm_ ---------------------------------------------------
@spec("grad_norm")
def gen_grad_norm(op, rng):
    for i in range(N):
        yield Check("grad_norm by op name", check_grad_norm)


def check_grad_norm(rng):
    n = int(rng.integers(1, 6))
    dts = [fdt(rng) if rng.random() < 0.3 else "float32" for _ in range(n)]
    arrs = [H.values(rng, rshape(rng, int(rng.integers(0, 3)), 1, 40), dt) for dt in dts]
    norm = pick(rng, (2.0, math.inf))
    got = _C.call_op("grad_norm", [xt(a) for a in arrs], hp=(norm,))
    flat = torch.cat([tt(a).double().reshape(-1) for a in arrs])
    want_dt = torch.float64 if "float64" in dts else torch.float32
    ref = torch.linalg.vector_norm(flat, norm).to(want_dt)
    return cmp([], f"grad_norm of {[a.shape for a in arrs]} {dts} norm={norm}", got, ref, "acc",
               "float32" if want_dt == torch.float32 else None)


@spec("clip_grad_scale")
def gen_clip_grad_scale(op, rng):
    for i in range(N):
        yield Check("clip_grad_scale by op name", check_clip_grad_scale)
    for norm_type in (2.0, math.inf, 1.0):
        for max_norm in (0.5, 100.0):
            yield Check(f"nn.utils.clip_grad_norm_ norm_type={norm_type} max_norm={max_norm}",
                        lambda r, nt=norm_type, mn=max_norm: check_clip_grad_norm(r, nt, mn))
    yield Check("nn.utils.clip_grad_norm_ error_if_nonfinite, no grads; clip_grad_value_", check_clip_edges)


def check_clip_grad_scale(rng):
    dt = fdt(rng)
    arrs = [H.values(rng, rshape(rng, int(rng.integers(1, 3))), dt) for _ in range(int(rng.integers(1, 4)))]
    total, max_norm = float(rng.uniform(0.1, 5)), float(rng.uniform(0.1, 5))
    ts = [xt(a) for a in arrs]
    out = _C.call_op("clip_grad_scale", [xt(np.array(total, dtype=dt))], out=ts, hp=(max_norm,))
    coef = min(max_norm / (total + 1e-6), 1.0)
    fails = [] if all(o is t for o, t in zip(out, ts)) else ["clip_grad_scale: out= did not return the given tensors"]
    for k, (t, a) in enumerate(zip(ts, arrs)):
        cmp(fails, f"clip_grad_scale {dt} total={total} max_norm={max_norm}: tensor {k}", t, a * coef, "ew")
    return fails


def check_clip_grad_norm(rng, norm_type, max_norm):
    dt = fdt(rng)
    shapes = [rshape(rng, int(rng.integers(1, 3))) for _ in range(3)]
    ps_t = [torch.nn.Parameter(tt(H.values(rng, s, dt))) for s in shapes]
    ps = [nn.Parameter(xt(H.to_np(p.detach()))) for p in ps_t]
    for p_t, p in zip(ps_t[:2], ps[:2]):  # the third has no grad
        g = H.values(rng, tuple(p_t.shape), dt)
        p_t.grad, p.grad = tt(g), xt(g)
    ref = torch.nn.utils.clip_grad_norm_(ps_t, max_norm, norm_type)
    got = nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
    what = f"clip_grad_norm_ {dt} norm_type={norm_type} max_norm={max_norm}"
    fails = cmp([], what + ": total norm", got, ref)
    for k in range(2):
        cmp(fails, f"{what}: grad {k}", ps[k].grad, ps_t[k].grad)
    return fails


def check_clip_edges(rng):
    fails = []
    p = nn.Parameter(xt(np.ones(3, np.float32)))
    p.grad = xt(np.array([1.0, np.inf, 0.0], np.float32))
    try:
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
        fails.append("clip_grad_norm_(error_if_nonfinite=True) of an inf gradient did not raise")
    except RuntimeError:
        pass
    q = nn.Parameter(xt(np.ones(2, np.float32)))
    if nn.utils.clip_grad_norm_([q], 1.0).item() != 0.0:
        fails.append("clip_grad_norm_ without gradients: not 0")
    q.grad = xt(np.array([-3.0, 0.5], np.float32))
    nn.utils.clip_grad_value_([q], 1.0)
    if H.to_np(q.grad).tolist() != [-1.0, 0.5]:
        fails.append(f"clip_grad_value_: {H.to_np(q.grad).tolist()}")
    return fails


# ---- cat (stack, split, chunk) -----------------------------------------------------------------------
@spec("cat")
def gen_cat(op, rng):
    for i in range(N + 4):
        shape = list(rshape(rng, int(rng.integers(1, 4))))
        d = int(rng.integers(-len(shape), len(shape)))
        args = []
        for _ in range(int(rng.integers(1, 5))):
            s = list(shape)
            s[d] = int(rng.integers(0, 4))
            dt = pick(rng, FLOATS * 3 + ("int64", "bool")) if i % 4 == 3 else pick(rng, FLOATS)
            args.append(T(tuple(s), dt, lay(rng)))
        desc = f"cat{tdesc(*args)} dim={d}"
        fwd_only = not all(a.dtype in FLOATS for a in args) or len({a.dtype for a in args}) > 1
        if i % 2:
            fn = lambda *xs, d=d: _C.call_op("cat", list(xs), dim=d)
            desc += " [op]"
        else:
            fn = lambda *xs, d=d: tessera.cat(xs, d)
        yield Case(desc, args, lambda *xs, d=d: torch.cat(xs, d), fn, backward=not fwd_only)
    many = [T((1, 2)) for _ in range(70)]
    yield Case("cat of 70 tensors (more than the op's 64)", many, lambda *xs: torch.cat(xs),
               lambda *xs: tessera.cat(xs), backward=True)
    yield Case("cat skipping 1-D empty tensors", [T((2, 3)), T((0,), grad=False)], lambda a, b: torch.cat([a, b]),
               lambda a, b: tessera.cat([a, b]), backward=True)
    yield Case("stack", [T((2, 3)), T((2, 3), layout="T"), T((2, 3))], lambda *xs: torch.stack(xs, 1),
               lambda *xs: tessera.stack(xs, 1), backward=True)
    yield Case("cat of mismatched shapes", [T((2, 3)), T((2, 2))], None, lambda a, b: tessera.cat([a, b]),
               error=ValueError)
    yield Case("cat with a dim out of range", [T((2, 3)), T((2, 3))], lambda a, b: torch.cat([a, b], 2),
               lambda a, b: tessera.cat([a, b], 2), parity=True)
    yield Check("cat out=, split/chunk stay views", check_cat_out_and_views)


def check_cat_out_and_views(rng):
    fails = []
    a, b = xt(np.ones((2, 3), np.float32)), xt(np.zeros((1, 3), np.float32))
    out = xt(np.full((3, 3), 7.0, np.float32))
    if tessera.cat([a, b], out=out) is not out or H.to_np(out).tolist() != [[1.0] * 3] * 2 + [[0.0] * 3]:
        fails.append("cat(out=) did not write into out")
    x = xt(np.arange(12, dtype=np.float32).reshape(4, 3))
    for piece in x.split(3) + x.chunk(2, 1):
        if not (x.data_ptr() <= piece.data_ptr() < x.data_ptr() + 48):
            fails.append("split/chunk returned a copy, not a view")
    return fails


# ---- the tests ------------------------------------------------------------------------------------
def run_spec(op):
    """Every case of one op; returns (number of checks, failure messages)."""
    rng = np.random.default_rng([SEED, zlib.crc32(op.encode())])
    fails, count = [], 0
    tessera.manual_seed(0)
    for case in SPECS[op](op, rng):
        count += 1
        try:
            got = H.run_case(case, rng) if isinstance(case, Case) else case.fn(rng)
        except Exception as e:  # noqa: BLE001 - a crash in one case must not hide the others
            got = [f"{case.desc}: {type(e).__name__}: {e}"]
        fails += got
    return count, fails


def report(op, count, fails, where=""):
    shown = "\n".join(fails[:12]) + (f"\n... and {len(fails) - 12} more" if len(fails) > 12 else "")
    return f"{op}{where}: {len(fails)} of {count} checks failed (TESSERA_DIFF_SEED={SEED}):\n{shown}"


def test_specs_cover_the_transformer_ops():
    """Every op of the NN/INDEX/SAMPLE/FOREACH/COMPOSITE kinds has a spec here."""
    from tessera._tensor import OP_KINDS
    new = {n for n, k in OP_KINDS.items() if k in ("NN", "INDEX", "SAMPLE", "FOREACH", "COMPOSITE")}
    assert new == set(SPECS), f"ops without a spec: {sorted(new - set(SPECS))}; specs of no op: " \
                              f"{sorted(set(SPECS) - new)}"


def taken_in(op):
    """Whether test_ops_vs_torch.py has taken this file's spec of op into its own SPECS (then it runs it, on the
    CPU and, through test_cuda.py, on CUDA)."""
    import test_ops_vs_torch as D
    return D.SPECS.get(op) is SPECS[op]


@pytest.mark.parametrize("op", sorted(SPECS))
def test_op_matches_torch(op):
    if taken_in(op):
        pytest.skip(f"test_ops_vs_torch.py runs this spec of {op}")
    count, fails = run_spec(op)
    assert not fails, report(op, count, fails)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("op", sorted(SPECS))
def test_op_matches_torch_on_cuda(op, dtype, monkeypatch):
    """The same specs with Tessera's operands on cuda:0 (test_cuda.py's harness: float32 as written, and with
    float16/bfloat16 in place of float32). Where test_ops_vs_torch.py has taken these specs in, test_cuda.py
    runs them itself."""
    if not tessera.cuda.is_available():
        pytest.skip("no CUDA device")
    if taken_in(op):
        pytest.skip(f"test_cuda.py runs this spec of {op}")
    import test_cuda as C
    import test_ops_vs_torch as D
    monkeypatch.setitem(D.SPECS, op, SPECS[op])
    monkeypatch.setitem(ON_CUDA, "on", True)
    count, fails = C.run_specs_on_cuda(monkeypatch, op, None if dtype == "float32" else dtype)
    assert not fails, report(op, count, fails, f" on cuda ({dtype} run)")


# ---- the API around the ops ---------------------------------------------------------------------------
def test_masked_fill_matches_torch():
    rng = np.random.default_rng(SEED)
    mask = rng.random((3, 4)) < 0.5
    cases = [
        Case("masked_fill(number)", [T((3, 4))], lambda x: x.masked_fill(tt(mask), -2.5),
             lambda x: x.masked_fill(xt(mask), -2.5), backward=True),
        Case("masked_fill(-inf), broadcast mask", [T((2, 3, 4), "float64")],
             lambda x: x.masked_fill(tt(mask), float("-inf")), lambda x: x.masked_fill(xt(mask), float("-inf")),
             backward=True),
        Case("masked_fill(0-dim tensor value)", [T((3, 4)), T(())], lambda x, v: x.masked_fill(tt(mask), v),
             lambda x, v: x.masked_fill(xt(mask), v), backward=True),
        Case("masked_fill of an int tensor with a float", [T((3, 4), "int64")],
             lambda x: x.masked_fill(tt(mask), 1.7), lambda x: x.masked_fill(xt(mask), 1.7)),
        Case("masked_fill with a float mask", [T((3, 4))], None,
             lambda x: x.masked_fill(xt(mask.astype(np.float32)), 1.0), error=RuntimeError),
        Case("masked_fill_", [T((3, 4), grad=False)], lambda x: x.clone().masked_fill_(tt(mask), 3.0),
             lambda x: x.clone().masked_fill_(xt(mask), 3.0)),
    ]
    fails = sum((H.run_case(c, rng) for c in cases), [])
    assert not fails, "\n".join(fails)


@pytest.mark.parametrize("dtype", FLOATS)
def test_gelu_tanh_matches_torch(dtype):
    rng = np.random.default_rng(SEED)
    c = Case("gelu(approximate='tanh')", [T((4, 7), dtype)], lambda x: F.gelu(x, approximate="tanh"),
             lambda x: TF.gelu(x, approximate="tanh"), backward=True, tol="acc")
    fails = H.run_case(c, rng)
    assert not fails, "\n".join(fails)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, False)])
def test_layer_norm_module_matches_torch(affine, bias, dtype):
    rng = np.random.default_rng(SEED)
    m = nn.LayerNorm((3, 4), eps=1e-4, elementwise_affine=affine, bias=bias, dtype=getattr(tessera, dtype))
    mt = torch.nn.LayerNorm((3, 4), eps=1e-4, elementwise_affine=affine, dtype=getattr(torch, dtype))
    assert repr(m) == repr(mt)
    assert [n for n, _ in m.named_parameters()] == (["weight", "bias"] if bias else ["weight"] if affine else [])
    with torch.no_grad():
        if affine:
            mt.weight.copy_(tt(H.values(rng, (3, 4), dtype)))
            mt.bias.copy_(tt(H.values(rng, (3, 4), dtype)) if bias else torch.zeros(3, 4))
            m.weight.data = xt(mt.weight.detach().numpy())
            if bias:
                m.bias.data = xt(mt.bias.detach().numpy())
    x_t, x = both(rng, (2, 3, 4), dtype, grad=True)
    y_t, y = mt(x_t), m(x)
    fails = cmp([], "LayerNorm", y, y_t)
    g = H.values(rng, (2, 3, 4), dtype)
    y_t.backward(tt(g))
    y.backward(xt(g))
    cmp(fails, "LayerNorm: grad of x", x.grad, x_t.grad)
    if affine:
        cmp(fails, "LayerNorm: grad of weight", m.weight.grad, mt.weight.grad)
    if bias:
        cmp(fails, "LayerNorm: grad of bias", m.bias.grad, mt.bias.grad)
    assert not fails, "\n".join(fails)


def test_cross_entropy_module_and_legacy_arguments():
    rng = np.random.default_rng(SEED)
    x_np = H.values(rng, (6, 5), "float32")
    t_np = idx_np(rng, 5, (6,))
    t_np[2] = 3
    ours = nn.CrossEntropyLoss(ignore_index=3, label_smoothing=0.1)(xt(x_np), xt(t_np))
    theirs = torch.nn.CrossEntropyLoss(ignore_index=3, label_smoothing=0.1)(tt(x_np), tt(t_np))
    assert not cmp([], "CrossEntropyLoss", ours, theirs)
    summed = TF.cross_entropy(xt(x_np), xt(t_np), size_average=False)
    ref = F.cross_entropy(tt(x_np), tt(t_np), reduction="sum")
    assert not cmp([], "cross_entropy(size_average=False)", summed, ref)


def test_topk_gather_index_select_functions_and_methods():
    x = tessera.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    v, i = tessera.topk(x, 2)
    assert v.tolist() == [[3.0, 2.0], [5.0, 4.0]] and i.tolist() == [[0, 2], [1, 2]]
    assert tessera.gather(x, 1, i).tolist() == v.tolist()
    assert tessera.index_select(x, 0, tessera.tensor([1, 1])).tolist() == [[0.0, 5.0, 4.0]] * 2
    assert x.index_select(1, tessera.tensor(2)).tolist() == [[2.0], [4.0]]  # a 0-dim index: one slice
    assert tessera.triu(x).tolist() == [[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]]
    assert tessera.tril(x, -1).tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_deterministic_algorithms_switch():
    before = tessera.are_deterministic_algorithms_enabled()
    try:
        tessera.use_deterministic_algorithms(True)
        assert tessera.are_deterministic_algorithms_enabled()
        tessera.use_deterministic_algorithms(False)
        assert not tessera.are_deterministic_algorithms_enabled()
    finally:
        tessera.use_deterministic_algorithms(before)


def test_embedding_module_api():
    w = tessera.randn(5, 3)
    e = nn.Embedding.from_pretrained(w, padding_idx=1)
    assert not e.weight.requires_grad and e.weight.tolist() == w.tolist()
    assert e(tessera.tensor([[4, 1]])).shape == (1, 2, 3)
    with pytest.raises(AssertionError, match="Padding_idx"):
        nn.Embedding(3, 2, padding_idx=3)
    with pytest.raises(RuntimeError, match="Long, Int"):
        e(tessera.tensor([0.0]))
    with pytest.raises(NotImplementedError, match="max_norm"):
        TF.embedding(tessera.tensor([0]), w, max_norm=1.0)
