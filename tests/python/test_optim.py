# tessera.optim: SGD/Adam/AdamW trajectories against torch.optim (one fused op per parameter),
# param groups, state_dict round trips, bad options, and the lr schedules' sequences.
import math

import numpy as np
import pytest

import tessera
from tessera import _C
from tessera.optim import lr_scheduler

try:
    import torch
except ImportError:  # the comparisons skip; the rest still runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not importable: comparison against PyTorch skipped")

SHAPES = [(4, 3), (5,), (2, 3, 2)]


def _pairs(dtype, seed=0):
    """The same starting values as tessera Parameters and torch Parameters."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [tessera.nn.Parameter(tessera.from_numpy(a.copy())) for a in arrays]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays] if torch else None
    return ours, theirs


def _grad(values, k):
    """A gradient that depends on the current parameter value and the step."""
    return np.sin(values) + 0.1 * (k + 1) * np.cos(3 * values)


def _run(make_ours, make_theirs, dtype, steps=5, skip=None):
    ours, theirs = _pairs(dtype)
    opt, ref = make_ours(ours), make_theirs(theirs)
    for k in range(steps):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            if skip is not None and i == skip:
                p.grad, q.grad = None, None
                continue
            p.grad = tessera.from_numpy(_grad(p.detach().numpy(), k).astype(dtype))
            q.grad = torch.from_numpy(_grad(q.detach().numpy(), k).astype(dtype))
        opt.step()
        ref.step()
        for p, q in zip(ours, theirs):
            rtol = 1e-6 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=rtol,
                                       atol=rtol, err_msg=f"step {k}")
    return opt, ref, ours, theirs


SGD_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01, maximize=True),
    dict(lr=0.1, maximize=True),
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_matches_torch(options, dtype):
    _run(lambda ps: tessera.optim.SGD(ps, **options),
         lambda ps: torch.optim.SGD(ps, **options), dtype)


ADAM_OPTIONS = [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99)),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.02, eps=1e-3, maximize=True),
    dict(lr=0.01, betas=(0.5, 0.6), weight_decay=0.05, maximize=True),
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_adam_matches_torch(name, options, dtype):
    _run(lambda ps: getattr(tessera.optim, name)(ps, **options),
         lambda ps: getattr(torch.optim, name)(ps, **options), dtype)


def test_adamw_default_weight_decay():
    p = tessera.nn.Parameter(tessera.ones(2))
    assert tessera.optim.AdamW([p]).defaults["weight_decay"] == 0.01
    assert tessera.optim.Adam([p]).defaults["weight_decay"] == 0


@pytest.mark.parametrize("make", [
    lambda ps: (tessera.optim.SGD(ps, lr=0.1, momentum=0.9), lambda: None),
    lambda ps: (tessera.optim.AdamW(ps, lr=0.1), lambda: None),
])
def test_params_without_grad_are_skipped(make):
    ps, _ = _pairs(np.float32)
    opt, _ = make(ps)
    before = ps[1].detach().numpy().copy()
    ps[0].grad = tessera.ones(*SHAPES[0])
    opt.step()
    np.testing.assert_array_equal(ps[1].detach().numpy(), before)
    assert ps[1] not in opt.state and ps[0] in opt.state


@needs_torch
def test_skipped_param_keeps_trajectory():
    _run(lambda ps: tessera.optim.Adam(ps, lr=0.01),
         lambda ps: torch.optim.Adam(ps, lr=0.01), np.float64, skip=1)


@pytest.mark.parametrize("make", [lambda ps: tessera.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: tessera.optim.Adam(ps)])
def test_one_fused_op_per_parameter(monkeypatch, make):
    ps, _ = _pairs(np.float32)
    opt = make(ps)
    calls = []
    real = _C.call_op

    def spy(name, inputs, out=None, **kw):
        calls.append(name)
        return real(name, inputs, out=out, **kw)
    for p in ps:
        p.grad = tessera.ones(*p.shape)
    monkeypatch.setattr(_C, "call_op", spy)
    opt.step()
    calls = [c for c in calls if c.endswith("_step")]
    assert len(calls) == len(ps)


@needs_torch
def test_param_groups_have_their_own_options():
    ours, theirs = _pairs(np.float64)
    opt = tessera.optim.SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.5, "momentum": 0.9}],
                            lr=0.1)
    ref = torch.optim.SGD([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.5, "momentum": 0.9}],
                          lr=0.1)
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[1]["lr"] == 0.5
    for k in range(3):
        for p, q in zip(ours, theirs):
            p.grad = tessera.from_numpy(_grad(p.detach().numpy(), k))
            q.grad = torch.from_numpy(_grad(q.detach().numpy(), k))
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-12)


def test_zero_grad():
    p = tessera.nn.Parameter(tessera.ones(3))
    opt = tessera.optim.SGD([p], lr=0.1)
    p.grad = tessera.ones(3)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), [0, 0, 0])
    opt.zero_grad()
    assert p.grad is None


@needs_torch
def test_state_dict_structure_matches_torch():
    opt, ref, ours, theirs = _run(lambda ps: tessera.optim.Adam(ps, lr=0.01),
                                  lambda ps: torch.optim.Adam(ps, lr=0.01), np.float32, steps=2)
    sd, rsd = opt.state_dict(), ref.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == sorted(rsd["state"]) == [0, 1, 2]
    assert set(sd["state"][0]) == set(rsd["state"][0])
    assert sd["state"][0]["step"] == int(rsd["state"][0]["step"])
    for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "params"):
        assert sd["param_groups"][0][k] == rsd["param_groups"][0][k]
    np.testing.assert_allclose(sd["state"][2]["exp_avg"].numpy(),
                               rsd["state"][2]["exp_avg"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("name,options", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=0.01)),
                                          ("AdamW", dict(lr=0.01, weight_decay=0.1)),
                                          ("AdamW", dict(lr=0.01, weight_decay=0.1, capturable=True))])
@pytest.mark.parametrize("through_file", [False, True])
def test_state_dict_resume_is_exact(tmp_path, name, options, through_file):
    """3 steps, save, a fresh optimizer loads the state, 2 more steps == 5 uninterrupted steps."""
    straight, _ = _pairs(np.float64, seed=1)
    opt = getattr(tessera.optim, name)(straight, **options)
    resumed, _ = _pairs(np.float64, seed=1)
    first = getattr(tessera.optim, name)(resumed, **options)
    for k in range(5):
        if k == 3:
            sd = first.state_dict()
            if through_file:
                tessera.save(sd, tmp_path / "opt.safetensors")
                sd = tessera.load(tmp_path / "opt.safetensors")
            copies = [tessera.nn.Parameter(p.detach().clone()) for p in resumed]
            first = getattr(tessera.optim, name)(copies, lr=123.0)
            first.load_state_dict(sd)
            assert first.param_groups[0]["lr"] == options["lr"]
            resumed = copies
        for p in straight + resumed:
            p.grad = tessera.from_numpy(_grad(p.detach().numpy(), k))
        opt.step()
        first.step()
    for p, q in zip(straight, resumed):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


@needs_torch
def test_load_state_dict_from_torch_optimizer():
    _, ref, ours, theirs = _run(lambda ps: tessera.optim.Adam(ps, lr=0.01),
                                lambda ps: torch.optim.Adam(ps, lr=0.01), np.float32, steps=2)
    rsd = ref.state_dict()
    sd = {"param_groups": rsd["param_groups"],
          "state": {i: {k: (tessera.from_numpy(v.numpy()) if torch.is_tensor(v) else v)
                        for k, v in s.items()} for i, s in rsd["state"].items()}}
    opt = tessera.optim.Adam(ours, lr=0.5)
    opt.load_state_dict(sd)
    assert opt.state[ours[0]]["step"] == 2 and opt.param_groups[0]["lr"] == 0.01


def test_load_state_dict_mismatch():
    ps, _ = _pairs(np.float32)
    opt = tessera.optim.SGD(ps, lr=0.1)
    other = tessera.optim.SGD(ps[:2], lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size"):
        other.load_state_dict(opt.state_dict())
    two = tessera.optim.SGD([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        two.load_state_dict(opt.state_dict())


# ---- capturable Adam: the step count as a device tensor, read by the kernel ----------------------

def _steps(opt, params, steps=5, start=0):
    for k in range(start, start + steps):
        for p in params:
            p.grad = tessera.from_numpy(_grad(p.detach().numpy(), k))
        opt.step()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", [("Adam", dict(lr=0.01)),
                                          ("Adam", dict(lr=0.02, betas=(0.8, 0.95), weight_decay=0.1, maximize=True)),
                                          ("AdamW", dict(lr=0.01, weight_decay=0.1))])
def test_capturable_matches_host_step(name, options, dtype):
    ours, _ = _pairs(dtype)
    theirs, _ = _pairs(dtype)
    opt = getattr(tessera.optim, name)(ours, capturable=True, **options)
    ref = getattr(tessera.optim, name)(theirs, **options)
    _steps(opt, ours)
    _steps(ref, theirs)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
        step = opt.state[p]["step"]
        assert isinstance(step, tessera.Tensor) and step.shape == () and step.dtype == tessera.float32
        assert step.item() == 5 and ref.state[q]["step"] == 5
    assert opt.param_groups[0]["capturable"] is True and ref.param_groups[0]["capturable"] is False


def test_capturable_state_dict_round_trip(tmp_path):
    ps, _ = _pairs(np.float64)
    opt = tessera.optim.Adam(ps, lr=0.01, capturable=True)
    _steps(opt, ps, steps=3)
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["step"], tessera.Tensor) and sd["state"][0]["step"].item() == 3
    tessera.save(sd, tmp_path / "opt.safetensors")
    for saved in (sd, tessera.load(tmp_path / "opt.safetensors")):
        cap, plain = tessera.optim.Adam(ps, capturable=True), tessera.optim.Adam(ps)
        cap.load_state_dict(saved)
        plain.load_state_dict(saved)
        step = cap.state[ps[0]]["step"]
        assert isinstance(step, tessera.Tensor) and step.dtype == tessera.float32 and step.item() == 3
        assert step is not opt.state[ps[0]]["step"]
        assert plain.state[ps[0]]["step"] == 3 and type(plain.state[ps[0]]["step"]) is int
        assert cap.param_groups[0]["capturable"] and not plain.param_groups[0]["capturable"]
    # an int step loaded into a capturable optimizer becomes a tensor
    cap = tessera.optim.Adam(ps, capturable=True)
    cap.load_state_dict(plain.state_dict())
    assert isinstance(cap.state[ps[0]]["step"], tessera.Tensor) and cap.state[ps[0]]["step"].item() == 3


def test_adam_step_input_errors():
    p, g, m, v = (tessera.ones(2, 3) for _ in range(4))
    hp = (0.1, 0.9, 0.999, 1e-8, 0, float("nan"), 0, 0)  # hp[5] is not read with a step input
    step = tessera.full((), 2.0)
    before = step._version
    _C.call_op("adam_step", [g, m, v, step], out=p, hp=hp)
    assert step.item() == 2 and step._version == before and np.isfinite(p.numpy()).all()
    with pytest.raises(TypeError, match="step must be float32, got float64"):
        _C.call_op("adam_step", [g, m, v, tessera.full((), 2.0, dtype=tessera.float64)], out=p, hp=hp)
    with pytest.raises(ValueError, match="step must have one element, got 2"):
        _C.call_op("adam_step", [g, m, v, tessera.full((2,), 2.0)], out=p, hp=hp)
    with pytest.raises(ValueError, match="step shares memory with exp_avg"):
        _C.call_op("adam_step", [g, m, v, m.view(-1)[0]], out=p, hp=hp)
    with pytest.raises(ValueError, match="inputs"):
        _C.call_op("adam_step", [g, m, v, step, step], out=p, hp=hp)
    if tessera.cuda.is_available():
        with pytest.raises(ValueError, match="step must be on the param's device"):
            _C.call_op("adam_step", [g, m, v, tessera.full((), 2.0, device="cuda")], out=p, hp=hp)


def test_step_under_graph_capture_needs_capturable(monkeypatch):
    ps, _ = _pairs(np.float32)
    for p in ps:
        p.grad = tessera.ones(*p.shape)
    monkeypatch.setattr(tessera.cuda, "is_current_stream_capturing", lambda: True)
    for cls in (tessera.optim.Adam, tessera.optim.AdamW):
        with pytest.raises(RuntimeError, match=f"instance of {cls.__name__} but param_groups' capturable is False"):
            cls(ps).step()
    tessera.optim.Adam(ps, capturable=True).step()  # the CPU stands in for the device here


def test_bad_options():
    p = tessera.nn.Parameter(tessera.ones(2))
    with pytest.raises(ValueError, match="Invalid learning rate"):
        tessera.optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        tessera.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="required"):
        tessera.optim.SGD([p])
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        tessera.optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(NotImplementedError, match="amsgrad"):
        tessera.optim.Adam([p], amsgrad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        tessera.optim.Adam([])
    with pytest.raises(TypeError, match="iterable of Tensors"):
        tessera.optim.Adam(p)
    with pytest.raises(TypeError, match="only optimize Tensors"):
        tessera.optim.Adam([1.0])
    with pytest.raises(ValueError, match="non-leaf"):
        tessera.optim.Adam([p * 2])
    with pytest.raises(ValueError, match="more than one parameter group"):
        tessera.optim.Adam([{"params": [p]}, {"params": [p]}])


# ---- lr schedules ------------------------------------------------------------------------------

def _lrs(make_sched, opt_lr=0.1, groups=1, steps=30, cls="SGD"):
    p = [tessera.nn.Parameter(tessera.ones(1)) for _ in range(groups)]
    q = [torch.nn.Parameter(torch.ones(1)) for _ in range(groups)]
    opt = getattr(tessera.optim, cls)([{"params": [x], "lr": opt_lr * (i + 1)} for i, x in enumerate(p)])
    ref = getattr(torch.optim, cls)([{"params": [x], "lr": opt_lr * (i + 1)} for i, x in enumerate(q)])
    s, r = make_sched(opt, lr_scheduler), make_sched(ref, torch.optim.lr_scheduler)
    ours, theirs = [s.get_last_lr()], [r.get_last_lr()]
    for _ in range(steps):
        ref.step()
        s.step()
        r.step()
        ours.append(s.get_last_lr())
        theirs.append(r.get_last_lr())
    return ours, theirs, s


@needs_torch
@pytest.mark.parametrize("make", [
    lambda o, m: m.StepLR(o, step_size=3),
    lambda o, m: m.StepLR(o, step_size=7, gamma=0.5),
    lambda o, m: m.CosineAnnealingLR(o, T_max=10),
    lambda o, m: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
    lambda o, m: m.LambdaLR(o, lambda e: 0.95 ** e),
    lambda o, m: m.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: min(1.0, (e + 1) / 5)]),
], ids=["step3", "step7", "cos10", "cos7min", "lambda", "lambda-per-group"])
def test_schedule_matches_torch(make):
    ours, theirs, _ = _lrs(make, groups=2)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), f"step {k}"


@needs_torch
def test_scheduler_sets_group_lr_and_state_dict_round_trip():
    ours, _, s = _lrs(lambda o, m: m.CosineAnnealingLR(o, T_max=10), steps=4)
    assert s.optimizer.param_groups[0]["lr"] == ours[-1][0]
    sd = s.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 4 and sd["base_lrs"] == [0.1]
    p = tessera.nn.Parameter(tessera.ones(1))
    opt = tessera.optim.SGD([p], lr=0.1)
    s2 = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    s2.load_state_dict(sd)
    opt.param_groups[0]["lr"] = ours[-1][0]
    s.step()
    s2.step()
    assert s2.get_last_lr() == pytest.approx(s.get_last_lr(), rel=1e-15)


def test_lambda_state_dict_skips_functions():
    p = tessera.nn.Parameter(tessera.ones(1))
    s = lr_scheduler.LambdaLR(tessera.optim.SGD([p], lr=1.0), lambda e: 0.5 ** e)
    assert s.state_dict()["lr_lambdas"] == [None]
    assert s.get_last_lr() == [1.0]
    s.step()
    assert s.get_last_lr() == [0.5]


def test_scheduler_bad_input():
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=1)
    p = tessera.nn.Parameter(tessera.ones(1))
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(tessera.optim.SGD([p], lr=1.0), step_size=1, last_epoch=3)
    with pytest.raises(ValueError, match="Expected 1 lr_lambdas"):
        lr_scheduler.LambdaLR(tessera.optim.SGD([p], lr=1.0), [math.cos, math.sin])
