"""Golden parity with PyTorch of whole training steps, on the networks of configs/fashion-*.json
(built by tools/tessera_train for both libraries, dropout off): from the same float32 weights
and batch, the loss and every parameter's gradient agree within 1e-5 relative, and 5 AdamW
steps give losses that track PyTorch's within 1e-4 relative.

"Relative" is per tensor, in the max norm: max|tessera - torch| <= tol * max|torch|. (Element
by element would fail on gradients that are ~0 up to rounding: the two sum in other orders.)"""
import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "api", "python"))
sys.path.insert(0, os.path.join(REPO, "tools"))
torch = pytest.importorskip("torch", reason="PyTorch is not importable (Debian: python3-torch): no golden parity")
import tessera  # noqa: E402
from tessera_train import models  # noqa: E402

GRAD_TOL = 1e-5
ADAMW_TOL = 1e-4
BATCH = {"mlp": 64, "cnn": 16}


def model_config(name):
    with open(os.path.join(REPO, "configs", f"fashion-{name}.json")) as f:
        model = json.load(f)["model"]
    return dict(model, dropout=0.0)


def twin_models(name):
    """(torch model, tessera model) of config `name` with the torch model's initial weights."""
    cfg = model_config(name)
    torch.manual_seed(0)
    ref = models.build_model(torch, cfg)
    model = models.build_model(tessera, cfg)
    model.load_state_dict({k: tessera.from_numpy(v.detach().numpy().copy())
                           for k, v in ref.state_dict().items()})
    return ref, model


def batch(name, seed):
    """A random float32 batch shaped for model `name` and int64 labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    n = BATCH[name]
    x = rng.standard_normal((n, *models.input_shape(model_config(name)))).astype(np.float32)
    return x, rng.integers(0, 10, n).astype(np.int64)


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def loss_of(T, model, x, y):
    return T.nn.functional.cross_entropy(model(T.from_numpy(x.copy())), T.from_numpy(y.copy()))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_loss_and_every_gradient_match_torch(name):
    ref, model = twin_models(name)
    x, y = batch(name, 1)
    ref_loss, loss = loss_of(torch, ref, x, y), loss_of(tessera, model, x, y)
    ref_loss.backward()
    loss.backward()
    assert rel_err(np.float64(loss.item()), np.float64(ref_loss.item())) <= GRAD_TOL, (loss.item(), ref_loss.item())
    ref_params = dict(ref.named_parameters())
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(ref_params)
    for key, p in params.items():
        assert p.grad is not None, f"{key} has no gradient"
        got, want = p.grad.numpy(), ref_params[key].grad.numpy()
        assert got.shape == want.shape, key
        assert rel_err(got, want) <= GRAD_TOL, f"{name} {key}: gradient off by {rel_err(got, want):.2e} relative"


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_adamw_steps_track_torch(name):
    ref, model = twin_models(name)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.01)
    opt = tessera.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ref_losses, losses = [], []
    for step in range(5):
        x, y = batch(name, 100 + step)
        for T, net, o, out in ((torch, ref, ref_opt, ref_losses), (tessera, model, opt, losses)):
            o.zero_grad()
            loss = loss_of(T, net, x, y)
            loss.backward()
            o.step()
            out.append(loss.item())
    for step, (got, want) in enumerate(zip(losses, ref_losses)):
        assert abs(got - want) <= ADAMW_TOL * abs(want), f"step {step}: loss {got} vs torch {want}"
