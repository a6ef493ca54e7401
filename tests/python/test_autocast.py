# tessera.autocast (and the tessera.amp / tessera.cuda.amp aliases): the region's state (nesting, threads,
# decorators, errors), the op policy (which ops run in the region's dtype, which in float32, which in their
# inputs'), gradients through the casts (float32 master weights get float32 grads), the cast cache of a region,
# and a small model's loss and gradients against torch.autocast. On the CPU with bfloat16; on CUDA with float16
# and bfloat16 where a GPU is present.
import threading
import warnings

import numpy as np
import pytest

import tessera
import tessera.nn.functional as F
from tessera import amp, nn

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not importable: comparison against PyTorch skipped")

CASES = [("cpu", tessera.bfloat16), ("cuda", tessera.float16), ("cuda", tessera.bfloat16)]


def region_params():
    return [pytest.param(d, dt, id=f"{d}-{dt.name}",
                         marks=pytest.mark.skipif(d == "cuda" and not tessera.cuda.is_available(),
                                                  reason="no CUDA device")) for d, dt in CASES]


def randn(*shape, device="cpu", dtype=tessera.float32, requires_grad=False, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return tessera.tensor(a, dtype=dtype, device=device, requires_grad=requires_grad)


# ---- the region's state --------------------------------------------------------------------------
def test_state_nesting_and_restore():
    assert not tessera.is_autocast_enabled("cpu") and not tessera.is_autocast_enabled()
    with tessera.autocast("cpu"):
        assert tessera.is_autocast_enabled("cpu") and tessera.is_autocast_cpu_enabled()
        assert tessera.get_autocast_dtype("cpu") is tessera.bfloat16 and not tessera.is_autocast_enabled("cuda")
        with tessera.autocast("cpu", enabled=False):
            assert not tessera.is_autocast_enabled("cpu")
            assert (randn(2, 3) @ randn(3, 2)).dtype is tessera.float32
        assert tessera.is_autocast_enabled("cpu")
        with pytest.raises(ZeroDivisionError):
            with tessera.autocast("cpu", enabled=False):
                1 / 0
        assert tessera.is_autocast_enabled("cpu")
    assert not tessera.is_autocast_enabled("cpu") and amp._active[0] == 0
    assert tessera.get_autocast_dtype("cuda") is tessera.float16  # torch's default for cuda
    with tessera.autocast("cuda", dtype=tessera.bfloat16):
        assert tessera.is_autocast_enabled() and tessera.get_autocast_gpu_dtype() is tessera.bfloat16
        assert (randn(2, 3) @ randn(3, 2)).dtype is tessera.float32  # a cuda region leaves cpu ops alone
    assert tessera.get_autocast_gpu_dtype() is tessera.float16


def test_aliases_decorator_and_threads():
    assert tessera.amp.autocast is tessera.autocast
    with tessera.cuda.amp.autocast(dtype=tessera.bfloat16) as region:
        assert tessera.is_autocast_enabled("cuda") and region.fast_dtype is tessera.bfloat16
    import tessera.cuda.amp as cuda_amp  # importable as a module, as torch.cuda.amp
    assert cuda_amp.autocast().fast_dtype is tessera.float16

    @tessera.autocast("cpu")
    def inside():
        return tessera.is_autocast_enabled("cpu"), (randn(2, 2) @ randn(2, 2)).dtype

    assert inside() == (True, tessera.bfloat16) and not tessera.is_autocast_enabled("cpu")
    seen = []
    with tessera.autocast("cpu"):
        t = threading.Thread(target=lambda: seen.append(tessera.is_autocast_enabled("cpu")))
        t.start()
        t.join()
    assert seen == [False]  # the state is per thread, as torch's


def test_bad_arguments():
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'xpu'"):
        tessera.autocast("xpu")
    with pytest.warns(UserWarning, match="Disabling autocast"):
        region = tessera.autocast("cpu", dtype=tessera.float16)
    with region:
        assert not tessera.is_autocast_enabled("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tessera.autocast("cpu", enabled=False, dtype=tessera.float16)  # disabled: no complaint


# ---- the op policy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("device, dt", region_params())
def test_policy_output_dtypes(device, dt):
    x = randn(4, 8, device=device)
    w = randn(6, 8, device=device, requires_grad=True)
    lin = nn.Linear(8, 6).to(device)
    img, kernel = randn(1, 2, 5, 5, device=device), randn(3, 2, 3, 3, device=device)
    q = randn(1, 2, 4, 8, device=device)
    target = tessera.tensor([0, 1, 2, 3], device=device)
    with tessera.autocast(device, dtype=dt):
        lower = {"matmul": x.matmul(w.t()), "@": x @ w.t(), "mm": x.mm(w.t()),
                 "bmm": x.unsqueeze(0).bmm(w.t().unsqueeze(0)), "F.linear": F.linear(x, w), "nn.Linear": lin(x),
                 "conv2d": F.conv2d(img, kernel), "sdpa": F.scaled_dot_product_attention(q, q, q),
                 "sdpa with mask": F.scaled_dot_product_attention(q, q, q, tessera.ones(4, 4, device=device).bool())}
        h = x.to(dt)
        fp32 = {"layer_norm": F.layer_norm(h, (8,)), "nn.LayerNorm": nn.LayerNorm(8).to(device)(h),
                "softmax": h.softmax(-1), "log_softmax": F.log_softmax(h, -1), "sum": h.sum(), "prod": h.prod(1),
                "exp": h.exp(), "log": h.abs().log(), "cross_entropy": F.cross_entropy(h, target),
                "nll_loss": F.nll_loss(h, target), "mse_loss": F.mse_loss(h, h)}
        same = {"relu": h.relu(), "gelu": F.gelu(h), "dropout": F.dropout(h, 0.5), "mean": h.mean(),
                "index_select": h.index_select(0, target), "cat": tessera.cat([h, h])}
        promoted = {"add": h + x, "cat of two dtypes": tessera.cat([h, x])}
        f64 = {"matmul of float64": x.double() @ w.t().double(), "sum of float64": x.double().sum()}
    for name, r in lower.items():
        assert r.dtype is dt, f"{name}: {r.dtype}, expected {dt} under autocast"
    for name, r in fp32.items():
        assert r.dtype is tessera.float32, f"{name}: {r.dtype}, expected float32 under autocast"
    for name, r in same.items():
        assert r.dtype is dt, f"{name}: {r.dtype}, expected the input's {dt}"
    for name, r in promoted.items():
        assert r.dtype is tessera.float32, f"{name}: {r.dtype}, expected float32 (promotion)"
    for name, r in f64.items():
        assert r.dtype is tessera.float64, f"{name}: {r.dtype}, float64 is left alone"
    assert (x @ w.t()).dtype is tessera.float32 and h.sum().dtype is dt  # outside: no policy


@pytest.mark.parametrize("device, dt", region_params())
def test_grads_of_float32_weights_stay_float32(device, dt):
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4)).to(device)
    x = randn(5, 8, device=device, seed=1)
    target = tessera.tensor([0, 1, 2, 3, 1], device=device)
    with tessera.autocast(device, dtype=dt):
        logits = model(x)
        loss = F.cross_entropy(logits, target)
    assert logits.dtype is dt and loss.dtype is tessera.float32
    loss.backward()
    low = {n: p.grad for n, p in model.named_parameters()}
    for n, g in low.items():
        assert g is not None and g.dtype is tessera.float32, f"{n}: grad {None if g is None else g.dtype}"
    model.zero_grad()
    F.cross_entropy(model(x), target).backward()  # the float32 reference: close, within the low precision
    for n, p in model.named_parameters():
        ref = p.grad.cpu().numpy()
        err = np.abs(low[n].cpu().numpy() - ref).max()
        assert err <= 0.05 * max(1.0, np.abs(ref).max()), f"{n}: grad off by {err} from float32's"


def test_cast_cache_is_per_region_and_version():
    w = randn(4, 4, requires_grad=True)
    x = randn(2, 4)
    with tessera.autocast("cpu"):
        a, b = amp.lower_args(w, w), amp.lower_args(w)
        assert a[0] is a[1] is b[0]  # one cast of the parameter for the region
        assert len(amp._tls.s.cache) == 1
        y1 = F.linear(x, w)
        with tessera.no_grad():
            w.add_(1.0)  # a new version: a new cast, with the new values
        y2 = F.linear(x, w)
        assert amp.lower_args(w)[0] is not a[0]
        np.testing.assert_allclose((y2 - y1).float().detach().numpy(), x.sum(1, keepdim=True).expand(2, 4).numpy(),
                                   rtol=0.05, atol=0.05)
        nonleaf = w * 1.0
        assert amp.lower_args(nonleaf)[0] is not amp.lower_args(nonleaf)[0]  # only leaves are cached
    assert amp._tls.s.cache == {}  # dropped on exit
    with tessera.autocast("cpu", cache_enabled=False):
        assert amp.lower_args(w)[0] is not amp.lower_args(w)[0] and not amp._tls.s.cache
    with tessera.autocast("cpu"):
        (F.linear(x, w).float().sum() + F.linear(x, w).float().sum()).backward()  # a cached cast used twice
    np.testing.assert_allclose(w.grad.numpy(), 2 * x.sum(0).expand(4, 4).numpy(), rtol=0.02, atol=0.02)


# ---- against torch.autocast --------------------------------------------------------------------------
@needs_torch
def test_model_matches_torch_cpu_autocast():
    """A Linear-GELU-Linear model with cross entropy under bfloat16 autocast on the CPU in both libraries:
    loss and float32 grads agree within bfloat16's precision (the two may round at different points)."""
    rng = np.random.default_rng(3)
    w1, b1 = rng.standard_normal((16, 8)) * 0.3, rng.standard_normal(16) * 0.1
    w2, b2 = rng.standard_normal((4, 16)) * 0.3, rng.standard_normal(4) * 0.1
    x, t = rng.standard_normal((6, 8)), rng.integers(0, 4, 6)
    ours = [tessera.tensor(a, dtype=tessera.float32, requires_grad=True) for a in (w1, b1, w2, b2)]
    theirs = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in (w1, b1, w2, b2)]
    with tessera.autocast("cpu", dtype=tessera.bfloat16):
        lo = F.cross_entropy(F.linear(F.gelu(F.linear(tessera.tensor(x, dtype=tessera.float32), *ours[:2])),
                                      *ours[2:]), tessera.tensor(t))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lt = torch.nn.functional.cross_entropy(torch.nn.functional.linear(torch.nn.functional.gelu(
            torch.nn.functional.linear(torch.tensor(x, dtype=torch.float32), *theirs[:2])), *theirs[2:]),
            torch.tensor(t))
    assert lo.dtype is tessera.float32 and lt.dtype == torch.float32
    np.testing.assert_allclose(lo.item(), lt.item(), rtol=2e-2)
    lo.backward()
    lt.backward()
    for a, b in zip(ours, theirs):
        assert a.grad.dtype is tessera.float32
        ref = b.grad.numpy()
        np.testing.assert_allclose(a.grad.numpy(), ref, rtol=0, atol=0.03 * max(1.0, np.abs(ref).max()))
