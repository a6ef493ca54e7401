# The CUDA device from Python (skipped, "no CUDA device", where tessera.cuda.is_available() is False): every op of
# the op table on CUDA against PyTorch (the specs of test_ops_vs_torch.py with their operands on cuda:0, as written
# and with float16/bfloat16 in place of float32), device moves of every dtype, mixed-device errors, out-of-memory,
# memory statistics, streams and events, CUDA graphs, modules, optimizers and tools/tessera-train on CUDA.
try:
    import torch  # first: its CUDA libraries load before the Tessera CUDA plugin's
except ImportError:
    torch = None
import copy
import gzip
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tessera
import tessera.nn.functional as F
from tessera import _C, nn
from tessera._tensor import OP_KINDS

if not tessera.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
CUDA = tessera.device("cuda:0")
TORCH_CUDA = torch is not None and torch.cuda.is_available()
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not importable")
needs_torch_cuda = pytest.mark.skipif(not TORCH_CUDA, reason="torch has no CUDA device")
MiB = 1 << 20


@pytest.fixture(autouse=True)
def no_tf32():
    """float32 matmul/conv exact (the default), whatever a failed test left behind."""
    tessera.backends.cuda.matmul.allow_tf32 = False
    yield
    tessera.backends.cuda.matmul.allow_tf32 = False


def host(t):
    """A tensor's values as a numpy array (bfloat16/float16 as float32)."""
    t = t.detach().cpu()
    return (t.float() if t.dtype in (tessera.float16, tessera.bfloat16) else t).numpy().copy()


# ---- every op of the table against torch: the differential specs, on CUDA -------------------------------
if torch is not None:
    import test_ops_vs_torch as D
    import test_transformer_ops
    import torch_diff as H
    OPS = D.OPS
else:
    OPS = []

# float16/bfloat16 runs: Tessera's float32 operands become `half`, torch computes in float32 on the same (rounded)
# values and its float32 results are rounded to `half`: what is left is the half kernels' own error.
HALF_TOL = {"float16": {"ew": (2e-3, 1e-5), "acc": (8e-3, 2e-3)},
            "bfloat16": {"ew": (1.6e-2, 1e-6), "acc": (4e-2, 1.6e-2)}}
HALF_SKIPS = {"VIEW": "views don't depend on the dtype (the float32 run checks them)",
              "OPTIM": "optimizer steps on half parameters: test_optimizer_half_params"}


def run_specs_on_cuda(monkeypatch, op, half=None):
    """D.run_spec(op) with the harness pointed at CUDA: Tessera's operands, and the factories the specs call by op
    name, on cuda:0 (torch's reference stays on the CPU); `half`: see HALF_TOL."""
    half_t = getattr(tessera, half) if half else None
    half_torch = getattr(torch, half) if half else None
    values, call_op = H.values, _C.call_op

    def from_np(arr, requires_grad=False):
        arr = np.array(arr, copy=True, order="C")
        dt = half_t if half and arr.dtype == np.float32 else H.tsr_dtype(arr.dtype.name)
        return tessera.tensor(arr, dtype=dt, device=CUDA, requires_grad=requires_grad)

    def factory_on_cuda(name, inputs, out=None, **kw):
        if not inputs and out is None:
            kw.setdefault("device", CUDA)
        return call_op(name, inputs, out=out, **kw)

    monkeypatch.setattr(H, "from_np", from_np)
    monkeypatch.setattr(H, "to_np", host)
    monkeypatch.setattr(_C, "call_op", factory_on_cuda)
    # ops.def: a device kernel never reads out of bounds for a bad index but does not raise either (that would
    # need a host read); the CPU raises. The specs leave those index-out-of-range error cases out on CUDA.
    monkeypatch.setitem(test_transformer_ops.ON_CUDA, "on", True)
    if half:
        def rounded(rng, shape, dtype, dom="any"):
            v = values(rng, shape, dtype, dom)
            return torch.from_numpy(np.array(v)).to(half_torch).float().numpy() if dtype == "float32" else v

        def t_np(t):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                t = t.detach().to(half_torch).float()
            return t.detach().numpy().copy() if isinstance(t, torch.Tensor) else np.asarray(t)
        monkeypatch.setattr(H, "values", rounded)
        monkeypatch.setattr(H, "t_np", t_np)
        monkeypatch.setitem(H.TOL, "float32", HALF_TOL[half])
    return D.run_spec(op)


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])  # float32: the specs as written (f32, f64, ints)
@pytest.mark.parametrize("op", OPS)
def test_op_matches_torch_on_cuda(op, dtype, monkeypatch):
    if dtype != "float32" and OP_KINDS.get(op) in HALF_SKIPS:
        pytest.skip(HALF_SKIPS[OP_KINDS[op]])
    count, fails = run_specs_on_cuda(monkeypatch, op, None if dtype == "float32" else dtype)
    shown = "\n".join(fails[:12]) + (f"\n... and {len(fails) - 12} more" if len(fails) > 12 else "")
    assert not fails, f"{op} on cuda ({dtype} run): {len(fails)} of {count} checks failed:\n{shown}"


@needs_torch
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name, kw", [("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}),
                                      ("Adam", {"lr": 0.1}), ("AdamW", {"lr": 0.1, "weight_decay": 0.1})])
def test_optimizer_half_params(name, kw, dtype):
    """Half parameters, gradients and states on CUDA against torch.optim in float32 on the same values: within
    a few units in the last place of the half parameter (one rounding per step)."""
    rng = np.random.default_rng(1)
    dt, tdt = getattr(tessera, dtype), getattr(torch, dtype)
    as_half = lambda a: torch.from_numpy(a).to(tdt).float()  # noqa: E731
    p0 = as_half(rng.standard_normal((8, 16)).astype(np.float32))
    tp = p0.clone().requires_grad_(True)
    xp = tessera.tensor(p0.numpy(), dtype=dt, device=CUDA, requires_grad=True)
    topt, xopt = getattr(torch.optim, name)([tp], **kw), getattr(tessera.optim, name)([xp], **kw)
    ulp = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}[dtype]
    for _ in range(3):
        g = as_half(rng.standard_normal((8, 16)).astype(np.float32))
        tp.grad, xp.grad = g.clone(), tessera.tensor(g.numpy(), dtype=dt, device=CUDA)
        topt.step()
        xopt.step()
    ref = tp.detach().numpy()
    np.testing.assert_allclose(host(xp), ref, rtol=0, atol=4 * ulp * max(1.0, float(np.abs(ref).max())))
    assert all(v.is_cuda and v.dtype is dt for v in xopt.state[xp].values() if isinstance(v, tessera.Tensor))


# ---- devices, factories, moves -------------------------------------------------------------------------
FACTORIES = {
    "zeros": lambda **k: tessera.zeros(2, 3, **k), "ones": lambda **k: tessera.ones(2, 3, **k),
    "empty": lambda **k: tessera.empty(2, 3, **k), "full": lambda **k: tessera.full((2, 3), 1.5, **k),
    "rand": lambda **k: tessera.rand(2, 3, **k), "randn": lambda **k: tessera.randn(2, 3, **k),
    "randint": lambda **k: tessera.randint(0, 5, (2, 3), **k), "arange": lambda **k: tessera.arange(1, 7, 2, **k),
    "tensor": lambda **k: tessera.tensor([[1, 2], [3, 4]], **k),
    "tensor_bf16": lambda **k: tessera.tensor([1.5, -2.25], dtype=tessera.bfloat16, **k),
    "eye": lambda **k: tessera.eye(3, **k), "linspace": lambda **k: tessera.linspace(0, 1, 5, **k),
    "zeros_like": lambda **k: tessera.zeros_like(tessera.ones(2), **k),
}
RANDOM = {"empty", "rand", "randn", "randint"}


@pytest.mark.parametrize("device", ["cuda", "cuda:0", tessera.device("cuda"), 0])
@pytest.mark.parametrize("name", FACTORIES)
def test_factories_on_cuda(name, device):
    t, ref = FACTORIES[name](device=device), FACTORIES[name]()
    assert t.device == CUDA and t.device == "cuda:0" and str(t.device) == "cuda:0" and t.is_cuda and not t.is_cpu
    assert (t.device.type, t.device.index) == ("cuda", 0)
    assert t.dtype is ref.dtype and t.shape == ref.shape
    if name not in RANDOM:
        np.testing.assert_array_equal(host(t), host(ref))


def test_device_basics():
    assert tessera.cuda.device_count() >= 1 and tessera.cuda.current_device() == 0
    assert repr(CUDA) == "device(type='cuda', index=0)" and tessera.device("cuda") is CUDA
    tessera.cuda.synchronize()
    tessera.cuda.synchronize(0)
    with pytest.raises(ValueError):
        tessera.cuda.synchronize("cpu")


ALL_DTYPES = ["bool", "uint8", "int32", "int64", "float16", "bfloat16", "float32", "float64"]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_to_and_back_every_dtype_and_layout(dtype):
    dt = getattr(tessera, dtype)
    base = tessera.tensor(np.arange(60).reshape(6, 10) % 5, dtype=dt)
    views = {"contiguous": base, "transposed": base.t(), "stepped": base[::2, 1::3],
             "expanded": base[:1].expand(4, 10), "0-d": base[2, 3], "empty": base[:0]}
    for what, v in views.items():
        g = v.to("cuda")
        assert g.device == CUDA and g.dtype is dt and g.shape == v.shape, what
        back = g.cpu()
        assert back.device == "cpu" and back.dtype is dt, what
        np.testing.assert_array_equal(host(back), host(v), err_msg=what)
    g = base.cuda()
    assert g.cuda() is g and g.to("cuda:0") is g and g.to(CUDA, dt) is g and base.cpu() is base
    np.testing.assert_array_equal(host(g.t()), host(base.t()))  # a strided view of device memory, copied out
    np.testing.assert_array_equal(host(g[1::2, ::3].contiguous()), host(base[1::2, ::3]))
    for other in ALL_DTYPES:  # casts on the device are the CPU's
        odt = getattr(tessera, other)
        for cast in (base.to("cuda", odt), base.to(device="cuda", dtype=odt), g.to(odt),
                     base.to(tessera.empty(1, dtype=odt, device="cuda"))):
            assert cast.device == CUDA and cast.dtype is odt
            np.testing.assert_array_equal(host(cast), host(base.to(odt)), err_msg=f"{dtype} -> {other}")


def test_host_access():
    x = tessera.tensor([[1.5, 2.0], [3.0, 4.0]], device="cuda")
    with pytest.raises(TypeError, match=r"can't convert cuda:0 device type tensor to numpy\. Use Tensor\.cpu\(\)"):
        x.numpy()
    assert x[1, 0].item() == 3.0 and float(x[0, 0]) == 1.5 and x.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert np.array_equal(np.asarray(x), [[1.5, 2.0], [3.0, 4.0]])
    assert repr(x) == "tensor([[1.5000, 2.0000],\n        [3.0000, 4.0000]], device='cuda:0')"
    assert repr(tessera.ones(2, dtype=tessera.bfloat16, device="cuda")) == \
        "tensor([1., 1.], device='cuda:0', dtype=tessera.bfloat16)"
    assert tessera.tensor([2.5], dtype=tessera.bfloat16, device="cuda").item() == 2.5
    assert x.sum().item() == 10.5 and bool((x > 1).all())


@needs_torch_cuda
def test_dlpack_with_torch_cuda():
    x = tessera.arange(12, dtype=tessera.float32, device="cuda").reshape(3, 4)
    assert x.__dlpack_device__() == (2, 0)
    t = torch.from_dlpack(x)
    assert t.device == torch.device("cuda:0") and t.data_ptr() == x.data_ptr()
    assert torch.equal(t.cpu(), torch.arange(12.0).reshape(3, 4))
    a = torch.randn(5, 6, device="cuda")
    b = tessera.from_dlpack(a)
    assert b.device == CUDA and b.data_ptr() == a.data_ptr()
    np.testing.assert_array_equal(host(b), a.cpu().numpy())
    a.mul_(2)  # shared memory: Tessera sees torch's write
    torch.cuda.synchronize()
    np.testing.assert_array_equal(host(b), a.cpu().numpy())
    np.testing.assert_array_equal(host(tessera.from_dlpack(a.t())), a.t().cpu().numpy())
    c = tessera.from_dlpack(x.t())  # Tessera to Tessera
    assert c.device == CUDA and c.data_ptr() == x.data_ptr() and c.tolist() == x.t().tolist()


def test_mixed_devices_raise_naming_both():
    a, b = tessera.ones(3), tessera.ones(3, device="cuda")
    calls = {"a + b": lambda: a + b, "b * a": lambda: b * a, "maximum": lambda: tessera.maximum(b, a),
             "where": lambda: tessera.where(b > 0, a, b), "matmul": lambda: b @ a, "b.add_(a)": lambda: b.add_(a),
             "out on cpu": lambda: tessera.add(b, b, out=tessera.empty(3)), "cat": lambda: tessera.cat([a, b])}
    for what, fn in calls.items():
        with pytest.raises((ValueError, RuntimeError)) as e:
            fn()
        assert "cpu" in str(e.value) and "cuda:0" in str(e.value), (what, str(e.value))
    assert a.device == "cpu" and b.device == CUDA and b.tolist() == [1.0, 1.0, 1.0]  # nothing copied or changed
    b.copy_(tessera.full((3,), 2.0))  # copy_ is the explicit copy between devices, as torch's
    assert b.tolist() == [2.0, 2.0, 2.0]


# ---- memory ----------------------------------------------------------------------------------------------
def test_out_of_memory_is_clean():
    keep = tessera.arange(1000, dtype=tessera.float32, device="cuda")
    before = tessera.cuda.memory_stats()["num_ooms"]
    for what, fn in (("empty", lambda: tessera.empty(1 << 43, device="cuda")),  # 32 TiB of float32
                     ("op output", lambda: tessera.ones(1, device="cuda").expand(1 << 43).contiguous())):
        with pytest.raises(tessera.cuda.OutOfMemoryError) as e:
            fn()
        assert isinstance(e.value, MemoryError) and isinstance(e.value, RuntimeError) and str(e.value), what
    assert tessera.OutOfMemoryError is tessera.cuda.OutOfMemoryError
    assert tessera.cuda.memory_stats()["num_ooms"] >= before + 2
    np.testing.assert_array_equal(host(keep), np.arange(1000, dtype=np.float32))
    assert tessera.ones(1 << 20, device="cuda").sum().item() == 1 << 20


def test_memory_stats_follow_allocations():
    stats = tessera.cuda.memory_stats
    tessera.cuda.synchronize()
    tessera.cuda.empty_cache()
    s0 = stats()
    assert set(s0) >= {"allocated_bytes.all.current", "allocated_bytes.all.peak", "reserved_bytes.all.current",
                       "reserved_bytes.all.peak", "num_alloc_retries", "num_ooms", "num_allocs", "num_device_allocs",
                       "limit", "total"}
    assert all(isinstance(v, int) for v in s0.values()) and s0["total"] > 0
    x = tessera.empty(16 * MiB, device="cuda")  # 64 MiB
    s1 = stats()
    assert s1["allocated_bytes.all.current"] >= s0["allocated_bytes.all.current"] + 64 * MiB
    assert s1["reserved_bytes.all.current"] >= s1["allocated_bytes.all.current"]
    assert s1["allocated_bytes.all.peak"] >= s1["allocated_bytes.all.current"]
    assert s1["num_allocs"] > s0["num_allocs"] and s1["num_device_allocs"] > s0["num_device_allocs"]
    assert tessera.cuda.memory_allocated() == s1["allocated_bytes.all.current"]
    assert tessera.cuda.memory_reserved() == s1["reserved_bytes.all.current"]
    del x
    s2 = stats()
    assert s2["allocated_bytes.all.current"] <= s1["allocated_bytes.all.current"] - 64 * MiB
    assert s2["reserved_bytes.all.current"] == s1["reserved_bytes.all.current"]  # kept in the cache
    assert tessera.cuda.max_memory_allocated() >= s1["allocated_bytes.all.current"]
    y = tessera.empty(16 * MiB, device="cuda")  # served from the cache
    assert stats()["num_device_allocs"] == s2["num_device_allocs"]
    del y
    tessera.cuda.empty_cache()
    assert tessera.cuda.memory_reserved() <= s2["reserved_bytes.all.current"] - 64 * MiB
    tessera.cuda.reset_peak_memory_stats()
    assert tessera.cuda.max_memory_allocated() == tessera.cuda.memory_allocated()
    assert tessera.cuda.max_memory_reserved() == tessera.cuda.memory_reserved()
    assert isinstance(tessera.cuda.memory_snapshot(), (list, dict))


def test_memory_fraction():
    tessera.cuda.empty_cache()
    total = tessera.cuda.memory_stats()["total"]
    tessera.cuda.set_per_process_memory_fraction(0.01)
    try:
        assert tessera.cuda.memory_stats()["limit"] == pytest.approx(0.01 * total, rel=0.01)
        with pytest.raises(tessera.cuda.OutOfMemoryError):
            tessera.empty(512 * MiB, device="cuda")  # 2 GiB
        assert tessera.ones(MiB, device="cuda").sum().item() == MiB  # small ones still fit
    finally:
        tessera.cuda.set_per_process_memory_fraction(1.0)
    x = tessera.empty(512 * MiB, device="cuda")
    del x
    with pytest.raises(ValueError):
        tessera.cuda.set_per_process_memory_fraction(1.5)


# ---- streams and events -------------------------------------------------------------------------------
def test_stream_context_and_queries():
    main = tessera.cuda.current_stream()
    assert main == tessera.cuda.default_stream() and main.cuda_stream == 0 and main.device == CUDA
    s = tessera.cuda.Stream()
    assert s.cuda_stream != 0 and s != main
    with tessera.cuda.stream(s):
        assert tessera.cuda.current_stream() == s
        x = tessera.ones(1000, device="cuda") * 3
    assert tessera.cuda.current_stream() == main
    with tessera.cuda.stream(None):
        assert tessera.cuda.current_stream() == main
    s.synchronize()
    assert s.query() and x.sum().item() == 3000
    e = s.record_event()
    e.synchronize()
    assert e.query() and tessera.cuda.Event().query()  # an event never recorded counts as done
    x.record_stream(s)  # explicit form of what the runtime records itself


def test_side_stream_with_event_wait():
    main, side = tessera.cuda.current_stream(), tessera.cuda.Stream()
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    x = tessera.tensor(a, device="cuda")  # written on the main stream
    side.wait_stream(main)
    with tessera.cuda.stream(side):
        y = (x @ x).relu()
    main.wait_event(side.record_event())
    z = y.sum(1)  # on the main stream, after the side stream's work
    np.testing.assert_allclose(host(z), np.maximum(a.astype(np.float64) @ a, 0).sum(1), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("home", ["main", "side"])
def test_memory_used_on_another_stream_is_not_reused_early(home):
    """A tensor allocated on one stream, read by a long chain of kernels on the other and freed right away by the
    host: its memory must not be handed out (and overwritten) before that chain has run."""
    main, side = tessera.cuda.current_stream(), tessera.cuda.Stream()
    a = (np.random.default_rng(1).standard_normal((2048, 2048)) / np.sqrt(2048)).astype(np.float32)  # norm ~2
    alloc, use = (main, side) if home == "main" else (side, main)
    with tessera.cuda.stream(alloc):
        t = tessera.tensor(a, device="cuda")
    use.wait_stream(alloc)
    with tessera.cuda.stream(use):
        y = t
        for _ in range(16):
            y = (y @ t).tanh()
    del t  # freed while the chain still runs
    with tessera.cuda.stream(alloc):
        junk = [tessera.full((2048, 2048), 1e4, device="cuda") for _ in range(4)]  # would land on t's memory
    alloc.wait_stream(use)
    tessera.cuda.synchronize()
    ref = a.astype(np.float64)
    r = ref
    for _ in range(16):
        r = np.tanh(r @ ref)
    np.testing.assert_allclose(host(y), r, rtol=0, atol=1e-3)  # tanh keeps |y| < 1; corruption shows as O(1)
    assert all(j.max().item() == 1e4 for j in junk)


def test_event_timing():
    start, end = tessera.cuda.Event(enable_timing=True), tessera.cuda.Event(enable_timing=True)
    x = tessera.randn(1024, 1024, device="cuda")
    start.record()
    for _ in range(10):
        x = (x @ x).tanh()
    end.record()
    end.synchronize()
    assert end.query() and start.elapsed_time(end) > 0
    with pytest.raises(RuntimeError):
        start.elapsed_time(tessera.cuda.Event(enable_timing=True))  # never recorded


def test_tf32_switch():
    m = tessera.backends.cuda.matmul
    assert m.allow_tf32 is False and tessera.backends.cudnn.allow_tf32 is False
    m.allow_tf32 = True
    assert m.allow_tf32 is True and tessera.backends.cudnn.allow_tf32 is True
    from ctypes import byref, c_int64
    v = c_int64()
    _C.abi12("tsr_device_get_option", b"cuda", b"allow_tf32", byref(v))
    assert v.value == 1
    a = tessera.randn(256, 256, device="cuda")
    np.testing.assert_allclose(host(a @ a), host(a).astype(np.float64) @ host(a), rtol=0, atol=0.1)
    m.allow_tf32 = False
    assert not m.allow_tf32


# ---- graphs ------------------------------------------------------------------------------------------
def warm_up(fn, times=3):
    """Runs fn on a side stream a few times before a capture, as torch advises (lazy one-time work: library handles,
    workspaces, .grad tensors, optimizer state, all outside the graph)."""
    side, main = tessera.cuda.Stream(), tessera.cuda.current_stream()
    side.wait_stream(main)
    with tessera.cuda.stream(side):
        for _ in range(times):
            fn()
    main.wait_stream(side)


def test_graph_replays_captured_ops():
    assert tessera.cuda.Graph is tessera.cuda.CUDAGraph
    w = tessera.randn(64, 32, device="cuda")
    static_x = tessera.zeros(16, 64, device="cuda")

    def f(x):
        return ((x @ w).relu() * 2 + 1).softmax(1).sum(0)
    warm_up(lambda: f(static_x))
    g = tessera.cuda.CUDAGraph()
    with pytest.raises(RuntimeError):
        g.replay()  # nothing captured yet
    with tessera.cuda.graph(g):
        assert tessera.cuda.is_current_stream_capturing()
        static_y = f(static_x)
    assert not tessera.cuda.is_current_stream_capturing()
    for _ in range(3):
        x = tessera.randn(16, 64, device="cuda")
        static_x.copy_(x)
        g.replay()
        np.testing.assert_allclose(host(static_y), host(f(x)), rtol=1e-6, atol=1e-6)
    del static_y
    g.reset()
    with pytest.raises(RuntimeError, match="default stream"):
        tessera.cuda.CUDAGraph().capture_begin()  # the default stream can't be captured


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_graph_of_a_whole_training_step(opt_name):
    """Forward, loss, backward and optimizer.step of an MLP captured once and replayed with new data copied into
    the static inputs: the same parameters and losses as eager steps. Gradients are zeroed in place (they exist
    from the warm-up); the loss takes class indices (checked on the device, not read back during capture)."""
    tessera.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5)).cuda()
    ref = copy.deepcopy(model)
    # The captured Adam keeps its step count on the device (capturable=True); the eager reference
    # is the default Adam, so the two must agree step for step.
    make = {"SGD": lambda p, cap: tessera.optim.SGD(p, lr=0.1, momentum=0.9),
            "Adam": lambda p, cap: tessera.optim.Adam(p, lr=1e-2, capturable=cap)}[opt_name]
    opt, ref_opt = make(model.parameters(), True), make(ref.parameters(), False)
    labels = np.random.default_rng(0).integers(0, 5, size=(7, 32))
    data = [(tessera.randn(32, 20, device="cuda"), tessera.tensor(labels[i], device="cuda")) for i in range(7)]
    static_x = tessera.zeros(32, 20, device="cuda")
    static_t = tessera.zeros(32, dtype=tessera.int64, device="cuda")  # class indices

    def step(m, o, x, t):
        o.zero_grad(set_to_none=False)
        loss = F.cross_entropy(m(x), t)
        loss.backward()
        o.step()
        return loss
    feed = iter(data[:3])

    def warm():
        x, t = next(feed)
        static_x.copy_(x)
        static_t.copy_(t)
        step(model, opt, static_x, static_t)
    warm_up(warm, 3)
    for x, t in data[:3]:
        step(ref, ref_opt, x, t)
    g = tessera.cuda.CUDAGraph()
    with tessera.cuda.graph(g):
        static_loss = step(model, opt, static_x, static_t)
    for x, t in data[3:]:
        static_x.copy_(x)
        static_t.copy_(t)
        g.replay()
        loss = step(ref, ref_opt, x, t)
        np.testing.assert_allclose(host(static_loss), host(loss), rtol=1e-5, atol=1e-6)
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(host(p), host(q), rtol=1e-5, atol=1e-6)
    del static_loss
    g.reset()


@pytest.mark.parametrize("what", ["random op", "copy to the host"])
def test_graph_capture_refuses_clearly(what):
    x = tessera.zeros(8, device="cuda")
    warm_up(lambda: x.sum())
    g = tessera.cuda.CUDAGraph()
    with pytest.raises((RuntimeError, ValueError), match="(?i)captur"):
        with tessera.cuda.graph(g):
            x.uniform_() if what == "random op" else x.sum().item()
    assert not tessera.cuda.is_current_stream_capturing() and tessera.cuda.current_stream().cuda_stream == 0
    assert (tessera.ones(4, device="cuda") * 2).sum().item() == 8  # the device goes on working


# ---- autograd, modules, training ------------------------------------------------------------------------
def test_gradcheck_float64():
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal((4, 2))]

    def f(x, w):
        return ((x @ w).tanh() * x.sum(1, keepdim=True)).log_softmax(1).exp().pow(2).sum()
    inputs = [tessera.tensor(a, dtype=tessera.float64, device="cuda", requires_grad=True) for a in arrays]
    f(*inputs).backward()
    eps = 1e-6
    for k, a in enumerate(arrays):
        numeric = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            vals = []
            for sign in (1, -1):
                moved = [b.copy() for b in arrays]
                moved[k][i] += sign * eps
                vals.append(f(*[tessera.tensor(b, device="cuda") for b in moved]).item())
            numeric[i] = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(host(inputs[k].grad), numeric, rtol=1e-6, atol=1e-8)


class _WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
        self.register_buffer("scale", tessera.full((3,), 0.5))

    def forward(self, x):
        return self.net(x) * self.scale


def test_module_cuda_training_matches_cpu():
    tessera.manual_seed(0)
    cpu_model = _WithBuffer()
    gpu_model = copy.deepcopy(cpu_model)
    params = list(gpu_model.parameters())
    opt_gpu = tessera.optim.Adam(gpu_model.parameters(), lr=1e-2)  # before the move: its state comes lazily
    assert gpu_model.cuda() is gpu_model
    assert all(p is q for p, q in zip(params, gpu_model.parameters())) and all(p.is_cuda for p in params)
    assert gpu_model.scale.is_cuda and all(p.requires_grad and p.is_leaf for p in params)
    opt_cpu = tessera.optim.Adam(cpu_model.parameters(), lr=1e-2)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x, y = rng.standard_normal((16, 10)).astype(np.float32), rng.integers(0, 3, 16)
        for model, opt, dev in ((cpu_model, opt_cpu, "cpu"), (gpu_model, opt_gpu, "cuda")):
            opt.zero_grad()
            loss = F.cross_entropy(model(tessera.tensor(x, device=dev)), tessera.tensor(y, device=dev))
            loss.backward()
            opt.step()
    for (name, p), q in zip(gpu_model.named_parameters(), cpu_model.parameters()):
        np.testing.assert_allclose(host(p), host(q), rtol=1e-4, atol=1e-5, err_msg=name)
        assert p.grad.is_cuda and all(v.is_cuda for v in opt_gpu.state[p].values() if isinstance(v, tessera.Tensor))
    assert gpu_model.to("cpu") is gpu_model and all(p is q for p, q in zip(params, gpu_model.parameters()))
    assert all(p.device == "cpu" and p.grad.device == "cpu" for p in params) and gpu_model.scale.device == "cpu"
    gpu_model.cuda(0)
    assert all(p.is_cuda for p in params)


@needs_torch_cuda
def test_mlp_step_matches_torch_cuda():
    rng = np.random.default_rng(4)
    w1, b1, w2, b2 = (rng.standard_normal(s).astype(np.float32) * 0.3 for s in ((32, 10), (32,), (3, 32), (3,)))
    x, y = rng.standard_normal((16, 10)).astype(np.float32), rng.integers(0, 3, 16)
    tw = [torch.tensor(a, device="cuda", requires_grad=True) for a in (w1, b1, w2, b2)]
    xw = [tessera.tensor(a, device="cuda", requires_grad=True) for a in (w1, b1, w2, b2)]
    for lib, ws, X, Y, Fn in ((torch, tw, torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda"),
                               torch.nn.functional),
                              (tessera, xw, tessera.tensor(x, device="cuda"), tessera.tensor(y, device="cuda"), F)):
        Fn.cross_entropy(Fn.linear(Fn.relu(Fn.linear(X, ws[0], ws[1])), ws[2], ws[3]), Y).backward()
    for t, w in zip(tw, xw):
        np.testing.assert_allclose(host(w.grad), t.grad.cpu().numpy(), rtol=1e-4, atol=1e-6)


# ---- tools/tessera-train on CUDA ------------------------------------------------------------------------
_config_numbers = itertools.count()


def fake_fashion_mnist(path, rng, n_train=512, n_test=128):
    """Gzip'd IDX files in Fashion-MNIST's layout (random pixels, labels from the mean brightness)."""
    os.makedirs(path, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (images.mean((1, 2)) * 10 // 256).astype(np.uint8) % 10
        for kind, arr, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            header = magic.to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in arr.shape)
            with open(os.path.join(path, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
                f.write(gzip.compress(header + arr.tobytes()))


def train(tmp_path, *args, **cfg_changes):
    """The JSON line of tools/tessera-train on a tiny MLP run over the fake data in tmp_path/data."""
    cfg = {"model": {"type": "mlp", "sizes": [784, 32, 10]}, "data": {"path": str(tmp_path / "data")},
           "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "epochs": 2, "batch_size": 64,
           "eval_batch_size": 64, "seed": 1, "checkpoint": str(tmp_path / "run" / "ckpt.safetensors")}
    cfg.update(cfg_changes)
    path = tmp_path / f"cfg-{next(_config_numbers)}.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([sys.executable, os.path.join(REPO, "tools", "tessera-train"), str(path), *args],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_tessera_train_on_cuda(tmp_path):
    fake_fashion_mnist(str(tmp_path / "data"), np.random.default_rng(5))
    cpu = train(tmp_path, checkpoint=str(tmp_path / "cpu" / "ckpt.safetensors"))
    gpu = train(tmp_path, device="cuda")
    assert gpu["device"] == "cuda" and cpu["device"] == "cpu"
    for key in ("train_loss", "test_loss"):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-3), key
    saved = tessera.load(gpu["checkpoint"])  # device-independent: loads onto the CPU
    assert all(t.device == "cpu" for t in saved.values())
    # a CUDA run cut after epoch 1 and resumed on the CPU ends as the CUDA run (within float32 noise)
    cut = str(tmp_path / "cut" / "ckpt.safetensors")
    train(tmp_path, "--stop-after", "1", device="cuda", checkpoint=cut)
    resumed = train(tmp_path, "--resume", "--device", "cpu", device="cuda", checkpoint=cut)
    assert resumed["resumed_from_epoch"] == 1 and resumed["test_loss"] == pytest.approx(gpu["test_loss"], rel=1e-3)


@pytest.mark.parametrize("device, code, message", [
    (f"cuda:{tessera.cuda.device_count()}", 1, f"device 'cuda:{tessera.cuda.device_count()}' is not available"),
    ("gpu", 2, 'device must be "cpu", "cuda" or "cuda:N", got "gpu"')])
def test_tessera_train_refuses_a_bad_device(tmp_path, device, code, message):
    fake_fashion_mnist(str(tmp_path / "data"), np.random.default_rng(6), 64, 64)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"type": "mlp"}, "data": {"path": str(tmp_path / "data")},
                               "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 1, "batch_size": 32,
                               "device": device}))
    p = subprocess.run([sys.executable, os.path.join(REPO, "tools", "tessera-train"), str(cfg)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == code and f"{cfg}: {message}" in p.stderr and "Traceback" not in p.stderr, p.stderr
