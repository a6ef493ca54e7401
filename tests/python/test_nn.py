# tessera.nn: Module bookkeeping, state_dict/load_state_dict (and their errors), repr, modes,
# and every layer and loss against torch.nn with copied weights (forward and gradients).
import math

import numpy as np
import pytest

import tessera
from tessera import nn
from tessera.nn import functional as F

try:
    import torch
except ImportError:  # the comparisons skip; the rest still runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not importable: comparison against PyTorch skipped")

RTOL, ATOL = 1e-5, 1e-6


def _t(a, requires_grad=False):
    t = tessera.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_() if requires_grad else t


def _copy_weights(ours, theirs):
    ours.load_state_dict({k: _t(v.detach().numpy().copy()) for k, v in theirs.state_dict().items()})


def _close(a, b, rtol=RTOL, atol=ATOL):
    """a (tessera) and b (torch) equal within tolerances; atol scales with b's largest magnitude (float32
    sums of products carry rounding relative to their terms, not to each small result: torch 2.x's conv
    sums in another order than 1.13's)."""
    bn = b.detach().numpy()
    scale = max(1.0, float(np.abs(bn).max())) if bn.size else 1.0
    np.testing.assert_allclose(a.detach().numpy(), bn, rtol=rtol, atol=atol * scale)


def _compare_module(ours, theirs, x, target_fn=None):
    """Forward and backward of ours vs theirs with the same weights and input."""
    _copy_weights(ours, theirs)
    xo, xt = _t(x, True), torch.from_numpy(x.copy()).requires_grad_()
    yo, yt = ours(xo), theirs(xt)
    _close(yo, yt)
    g = np.random.default_rng(1).standard_normal(tuple(yt.shape)).astype(x.dtype)
    (yo * _t(g)).sum().backward()
    (yt * torch.from_numpy(g)).sum().backward()
    _close(xo.grad, xt.grad)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad, theirs_params[name].grad)


# ---- Module bookkeeping --------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.scale = nn.Parameter(tessera.ones(3))
        self.register_buffer("running", tessera.zeros(3))
        self.register_buffer("scratch", tessera.zeros(2), persistent=False)
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.plain = 5

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)) * self.scale)


def test_registration_and_traversal():
    m = Block()
    assert [n for n, _ in m.named_parameters()] == ["scale", "fc1.weight", "fc1.bias", "fc2.weight"]
    assert len(list(m.parameters())) == 4
    assert [n for n, _ in m.named_buffers()] == ["running", "scratch"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "fc2"]
    assert list(m.children())[0] is m.fc1 and m.get_submodule("fc2") is m.fc2
    assert m.fc2.bias is None and m.plain == 5
    assert isinstance(m.scale, tessera.Tensor) and m.scale.requires_grad
    assert list(m.state_dict()) == ["scale", "running", "fc1.weight", "fc1.bias", "fc2.weight"]
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'nope'"):
        m.nope
    with pytest.raises(TypeError, match="parameter 'scale'"):
        m.scale = tessera.ones(3)
    m.scale = None
    assert "scale" not in dict(m.named_parameters())
    del m.fc1
    assert [n for n, _ in m.named_children()] == ["act", "fc2"]


def test_shared_parameters_counted_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_assign_before_init_is_an_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tessera.ones(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_parameter_is_a_leaf_tensor():
    p = nn.Parameter(tessera.randn(2, 3))
    assert isinstance(p, tessera.Tensor) and p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:")
    q = nn.Parameter(tessera.ones(2), requires_grad=False)
    assert not q.requires_grad
    (p * 2).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.full((2, 3), 2.0, np.float32))


def test_train_eval_and_zero_grad():
    m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    assert m.training and m[1].training
    m.eval()
    assert not m.training and not m[1].training
    x = tessera.randn(4, 3)
    np.testing.assert_array_equal(m(x).detach().numpy(), m[0](x).detach().numpy())  # identity
    m.train()
    assert m[1].training
    m(x).sum().backward()
    assert m[0].weight.grad is not None
    m.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(m[0].weight.grad.numpy(), np.zeros((3, 3), np.float32))
    m.zero_grad()
    assert m[0].weight.grad is None


def test_to_dtype_and_apply():
    m = Block()
    w = m.fc1.weight
    m(tessera.randn(2, 4)).sum().backward()
    m.to(tessera.float64)
    assert m.fc1.weight is w  # same Parameter object: optimizers holding it keep working
    assert w.grad.dtype == tessera.float64 and w.is_leaf
    assert all(p.dtype == tessera.float64 for p in m.parameters())
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    assert m.running.dtype == tessera.float64
    out = m(tessera.randn(2, 4, dtype=tessera.float64))
    assert out.dtype == tessera.float64
    p_before = list(m.parameters())
    m.to("cpu")
    assert all(a is b for a, b in zip(p_before, m.parameters()))  # nothing changed, same objects
    with pytest.raises(TypeError, match="floating point"):
        m.to(tessera.int64)
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Block"]


def test_deepcopy_and_pickle():
    import copy
    import pickle
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert isinstance(clone[0].weight, nn.Parameter) and clone[0].weight.requires_grad
        assert clone[0].weight is not m[0].weight
        np.testing.assert_array_equal(clone[0].weight.detach().numpy(), m[0].weight.detach().numpy())
        assert repr(clone) == repr(m)


def test_sequential_and_module_list():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and list(seq.state_dict())[-1] == "2.bias"
    with pytest.raises(IndexError):
        seq[4]
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    ml.append(nn.ReLU())
    ml.insert(0, nn.Tanh())
    assert [type(m).__name__ for m in ml] == ["Tanh", "Linear", "Linear", "Linear", "ReLU"]
    assert [n for n, _ in ml.named_parameters()][:2] == ["1.weight", "1.bias"]
    ml += [nn.GELU()]
    assert len(ml) == 6 and isinstance(ml[-1], nn.GELU)
    with pytest.raises(NotImplementedError, match="forward"):
        ml(tessera.ones(1))


@needs_torch
def test_repr_matches_torch():
    def both(build):
        return repr(build(nn)), repr(build(torch.nn))
    builds = [
        lambda m: m.Sequential(m.Flatten(), m.Linear(784, 256), m.ReLU(), m.Dropout(0.1),
                               m.Linear(256, 10, bias=False), m.GELU(approximate="tanh"),
                               m.SiLU(), m.Tanh(), m.Sigmoid()),
        lambda m: m.Sequential(m.Conv2d(1, 32, 3, padding=1), m.MaxPool2d(2),
                               m.Conv2d(32, 64, (3, 5), stride=2, dilation=2, groups=2, bias=False),
                               m.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
        lambda m: m.ModuleList([m.Linear(1, 2), m.ReLU(inplace=True)]),
        lambda m: m.CrossEntropyLoss(label_smoothing=0.1),
        lambda m: m.MSELoss(),
    ]
    for build in builds:
        ours, theirs = both(build)
        assert ours == theirs


# ---- state dicts ---------------------------------------------------------------------------------

def _mlp(m, hidden=128):
    return m.Sequential(m.Flatten(), m.Linear(784, hidden), m.ReLU(), m.Linear(hidden, 10))


@needs_torch
def test_state_dict_round_trip_and_from_torch():
    a, b = _mlp(nn), _mlp(nn)
    b.load_state_dict(a.state_dict())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert not a.state_dict()["1.weight"].requires_grad
    assert a.state_dict(keep_vars=True)["1.weight"] is a[1].weight
    t = _mlp(torch.nn)
    _copy_weights(a, t)
    np.testing.assert_array_equal(a[3].bias.detach().numpy(), t[3].bias.detach().numpy())


def test_load_state_dict_errors_name_the_keys():
    m = _mlp(nn)
    sd = m.state_dict()
    sd["1.wieght"] = sd.pop("1.weight")
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert 'Unexpected key(s) in state_dict: "1.wieght"' in msg
    assert 'Missing key(s) in state_dict: "1.weight"' in msg
    result = m.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["1.weight"] and result.unexpected_keys == ["1.wieght"]


def test_load_state_dict_shape_mismatch_message():
    m = nn.Sequential()
    m.fc1 = nn.Linear(784, 128)
    other = nn.Sequential()
    other.fc1 = nn.Linear(784, 256)
    with pytest.raises(RuntimeError, match=re_escape(
            "size mismatch for fc1.weight: copying a param with shape [256, 784] from checkpoint, "
            "the shape in current model is [128, 784].")):
        m.load_state_dict(other.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch for fc1.weight"):
        m.load_state_dict(other.state_dict(), strict=False)
    with pytest.raises(RuntimeError, match='"fc1.bias".*expected a tessera Tensor'):
        m.load_state_dict({"fc1.weight": m.fc1.weight.detach(), "fc1.bias": [0.0] * 128})


def re_escape(s):
    import re
    return re.escape(s)


def test_load_state_dict_casts_and_keeps_parameters():
    m = nn.Linear(3, 2)
    w = m.weight
    m.load_state_dict({"weight": tessera.ones(2, 3, dtype=tessera.float64), "bias": tessera.zeros(2)})
    assert m.weight is w and m.weight.dtype == tessera.float32 and m.weight.requires_grad
    np.testing.assert_array_equal(m.weight.detach().numpy(), np.ones((2, 3)))


def test_buffers_in_state_dict():
    m = Block()
    sd = m.state_dict()
    assert "running" in sd and "scratch" not in sd
    sd["running"] = tessera.full((3,), 7.0)
    m.load_state_dict(sd)
    np.testing.assert_array_equal(m.running.numpy(), [7, 7, 7])


# ---- layers vs torch -----------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
def test_linear_matches_torch(bias, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    _compare_module(nn.Linear(7, 4, bias=bias), torch.nn.Linear(7, 4, bias=bias), x)


CONV_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=2, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(in_channels=4, out_channels=4, kernel_size=3, dilation=2, padding=2, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, stride=2),
    dict(in_channels=3, out_channels=3, kernel_size=5, padding="same"),
]


@needs_torch
@pytest.mark.parametrize("kw", CONV_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_conv2d_matches_torch(kw):
    x = np.random.default_rng(0).standard_normal((2, kw["in_channels"], 9, 8)).astype(np.float32)
    _compare_module(nn.Conv2d(**kw), torch.nn.Conv2d(**kw), x)


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(2, 1), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
]


@needs_torch
@pytest.mark.parametrize("kw", POOL_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_max_pool2d_matches_torch(kw):
    # distinct values so that the gradient's routing to the maximum is unambiguous
    x = np.random.default_rng(0).permutation(2 * 3 * 9 * 10).reshape(2, 3, 9, 10).astype(np.float32)
    _compare_module(nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw), x / 10)


@needs_torch
@pytest.mark.parametrize("name,kw", [("ReLU", {}), ("GELU", {}), ("GELU", {"approximate": "tanh"}),
                                     ("SiLU", {}), ("Tanh", {}), ("Sigmoid", {}),
                                     ("Flatten", {}), ("Flatten", {"start_dim": 0, "end_dim": 1}),
                                     ("Softmax", {"dim": 1}), ("LogSoftmax", {"dim": -1})])
def test_activations_match_torch(name, kw):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    _compare_module(getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw), x)


def test_dropout():
    x = tessera.ones(200, 50).requires_grad_()
    d = nn.Dropout(0.3)
    y = d(x)
    vals = y.detach().numpy()
    kept = vals != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(vals[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), vals, rtol=1e-6)  # the grad is the scaled mask
    d.eval()
    assert d(x) is x
    np.testing.assert_array_equal(nn.Dropout(1.0)(tessera.ones(3)).numpy(), [0, 0, 0])
    np.testing.assert_array_equal(nn.Dropout(0.0)(tessera.ones(3)).numpy(), [1, 1, 1])
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@needs_torch
def test_dropout_eval_matches_torch():
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    _compare_module(nn.Dropout(0.5).eval(), torch.nn.Dropout(0.5).eval(), x)


# ---- losses vs torch -----------------------------------------------------------------------------

def _loss_case(ours, theirs, x, target, target_t=None):
    xo, xt = _t(x, True), torch.from_numpy(x.copy()).requires_grad_()
    lo = ours(xo, _t(target))
    lt = theirs(xt, torch.from_numpy(target.copy()) if target_t is None else target_t)
    _close(lo, lt)
    g = np.random.default_rng(2).standard_normal(tuple(lt.shape)).astype(np.float32)
    (lo * _t(g)).sum().backward()
    (lt * torch.from_numpy(g)).sum().backward()
    _close(xo.grad, xt.grad)


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(reduction, smoothing, weighted):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5)).astype(np.float32) * 3
    target = rng.integers(0, 5, 8)
    w = rng.uniform(0.5, 2.0, 5).astype(np.float32) if weighted else None
    ours = nn.CrossEntropyLoss(weight=None if w is None else _t(w), reduction=reduction,
                               label_smoothing=smoothing)
    theirs = torch.nn.CrossEntropyLoss(weight=None if w is None else torch.from_numpy(w),
                                       reduction=reduction, label_smoothing=smoothing)
    _loss_case(ours, theirs, x, target)


@needs_torch
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_ignore_index_matches_torch(smoothing, weighted, reduction):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    target = np.array([0, -100, 3, 2, -100, 1])
    w = rng.uniform(0.5, 2.0, 4).astype(np.float32) if weighted else None
    ours = nn.CrossEntropyLoss(weight=None if w is None else _t(w), label_smoothing=smoothing,
                               reduction=reduction)
    theirs = torch.nn.CrossEntropyLoss(weight=None if w is None else torch.from_numpy(w),
                                       label_smoothing=smoothing, reduction=reduction)
    _loss_case(ours, theirs, x, target)


@needs_torch
def test_cross_entropy_spatial_and_probabilities_match_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    _loss_case(nn.CrossEntropyLoss(label_smoothing=0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1),
               x, rng.integers(0, 3, (2, 4, 5)))
    probs = rng.dirichlet(np.ones(3), 6).astype(np.float32)
    x2 = rng.standard_normal((6, 3)).astype(np.float32)
    _loss_case(nn.CrossEntropyLoss(label_smoothing=0.2), torch.nn.CrossEntropyLoss(label_smoothing=0.2),
               x2, probs)


@needs_torch
def test_nll_loss_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 4)).astype(np.float32)
    _loss_case(nn.NLLLoss(), torch.nn.NLLLoss(), x, rng.integers(0, 4, 7))


def test_cross_entropy_bad_input():
    loss = nn.CrossEntropyLoss()
    x = tessera.randn(4, 3)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        loss(x, tessera.tensor([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"expected target of shape \[4\]"):
        loss(x, tessera.tensor([0, 1]))
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=2.0)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.CrossEntropyLoss(reduction="avg")


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(reduction):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = rng.standard_normal((4, 3)).astype(np.float32)
    _loss_case(nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), x, y)


# ---- init ------------------------------------------------------------------------------------------

def test_default_init_bounds_like_torch():
    tessera.manual_seed(0)
    lin = nn.Linear(400, 300)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    bound = 1 / math.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert np.abs(b).max() <= bound and abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    conv = nn.Conv2d(8, 16, 3, groups=2)
    fan_in = 4 * 9
    assert np.abs(conv.weight.detach().numpy()).max() <= 1 / math.sqrt(fan_in)
    assert np.abs(conv.bias.detach().numpy()).max() <= 1 / math.sqrt(fan_in)
    assert not any(p.grad_fn is not None for p in lin.parameters())


def test_init_functions():
    t = tessera.empty(500, 400)
    nn.init.kaiming_normal_(t, nonlinearity="relu")
    assert abs(t.numpy().std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    nn.init.xavier_uniform_(t, gain=nn.init.calculate_gain("tanh"))
    assert np.abs(t.numpy()).max() <= 5 / 3 * math.sqrt(6 / 900) + 1e-6
    nn.init.xavier_normal_(t)
    assert abs(t.numpy().std() - math.sqrt(2 / 900)) < 0.02 * math.sqrt(2 / 900)
    nn.init.trunc_normal_(t, std=1.0, a=-1.0, b=0.5)
    assert t.numpy().min() >= -1.0 and t.numpy().max() <= 0.5
    nn.init.constant_(t, 0.25)
    assert (t.numpy() == 0.25).all()
    nn.init.zeros_(t)
    assert (t.numpy() == 0).all()
    nn.init.ones_(t)
    assert (t.numpy() == 1).all()
    p = nn.Parameter(tessera.empty(3, 3))
    nn.init.kaiming_uniform_(p, a=math.sqrt(5))  # in place on a leaf that requires grad
    assert p.is_leaf and p.requires_grad
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(tessera.empty(3))
    assert nn.init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))


# ---- whole steps -----------------------------------------------------------------------------------

def _cnn(m):
    return m.Sequential(m.Conv2d(1, 8, 3, padding=1), m.ReLU(), m.MaxPool2d(2),
                        m.Conv2d(8, 16, 3, padding=1), m.GELU(), m.MaxPool2d(2),
                        m.Flatten(), m.Linear(16 * 7 * 7, 32), m.SiLU(), m.Dropout(0.0),
                        m.Linear(32, 10))


@needs_torch
@pytest.mark.parametrize("build", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_training_steps_track_torch(build):
    """Same weights and batches: the loss and every gradient of the first step within 1e-5,
    and 5 AdamW steps whose losses track torch's."""
    torch.manual_seed(0)
    theirs, ours = build(torch.nn), build(nn)
    _copy_weights(ours, theirs)
    opt = tessera.optim.AdamW(ours.parameters(), lr=1e-3)
    ref = torch.optim.AdamW(theirs.parameters(), lr=1e-3)
    loss_o, loss_t = nn.CrossEntropyLoss(label_smoothing=0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    rng = np.random.default_rng(0)
    for step in range(5):
        x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, 16)
        lo = loss_o(ours(_t(x)), _t(y))
        lt = loss_t(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        ref.zero_grad()
        lo.backward()
        lt.backward()
        assert lo.item() == pytest.approx(lt.item(), rel=1e-4), f"step {step}"
        if step == 0:
            theirs_params = dict(theirs.named_parameters())
            for name, p in ours.named_parameters():
                _close(p.grad, theirs_params[name].grad, rtol=1e-5, atol=1e-7)
        opt.step()
        ref.step()


def test_functional_bad_input():
    x = tessera.randn(1, 2, 6, 6)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(NotImplementedError, match="return_indices"):
        F.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(NotImplementedError, match="asymmetric"):
        F.conv2d(x, tessera.randn(3, 2, 2, 2), padding="same")
    with pytest.raises(ValueError, match="padding string"):
        F.conv2d(x, tessera.randn(3, 2, 3, 3), padding="full")
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 2.0)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(TypeError, match="class indices"):
        F.cross_entropy(tessera.randn(2, 3), tessera.tensor([True, False]))
    assert F.dropout(x, 0.5, training=False) is x
