# The autograd API: requires_grad, .grad, grad_fn, is_leaf, backward (seeds, retain_graph, accumulation),
# autograd.grad, detach, retain_grad, and the grad-mode scopes (no_grad, enable_grad, set_grad_enabled).
import threading

import numpy as np
import pytest

import tessera
from tessera import autograd

def test_requires_grad_flag_and_leaves():
    x = tessera.ones(3)
    assert x.requires_grad is False and x.is_leaf and x.grad_fn is None
    x.requires_grad = True
    assert x.requires_grad and x.is_leaf
    y = x * 2
    assert y.requires_grad and not y.is_leaf
    assert y.grad_fn.name() == "mul_backward" and repr(y.grad_fn) == "<mul_backward>"
    assert tessera.ones(2, requires_grad=True).requires_grad
    assert x.requires_grad_(False) is x and not x.requires_grad


def test_backward_accumulates_into_leaves():
    a = tessera.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = tessera.tensor([4.0, 5.0, 6.0], requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.tolist() == [4.0, 5.0, 6.0] and b.grad.tolist() == [1.0, 2.0, 3.0]
    (a * b).sum().backward()
    assert a.grad.tolist() == [8.0, 10.0, 12.0]
    a.grad = None
    assert a.grad is None
    a.grad = tessera.zeros(3)
    (a * 3).sum().backward()
    assert a.grad.tolist() == [3.0, 3.0, 3.0]


def test_backward_of_non_scalar_needs_gradient():
    x = tessera.ones(2, 2, requires_grad=True)
    y = x * 3
    with pytest.raises((RuntimeError, ValueError)):
        y.backward()
    y.backward(tessera.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert x.grad.tolist() == [[3.0, 6.0], [9.0, 12.0]]


def test_retain_graph():
    x = tessera.tensor(2.0, requires_grad=True)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == 8.0
    z = x * x
    z.backward()
    with pytest.raises(RuntimeError):
        z.backward()


def test_autograd_grad_leaves_dot_grad_alone():
    x = tessera.tensor([1.0, 2.0], requires_grad=True)
    w = tessera.tensor([3.0, 4.0], requires_grad=True)
    y = (x * w).sum()
    gx, gw = autograd.grad(y, [x, w])
    assert gx.tolist() == [3.0, 4.0] and gw.tolist() == [1.0, 2.0]
    assert x.grad is None and w.grad is None
    unused = tessera.ones(2, requires_grad=True)
    y = (x * 2).sum()
    with pytest.raises((RuntimeError, ValueError)):
        autograd.grad(y, [x, unused], retain_graph=True)
    gx, gu = autograd.grad(y, [x, unused], allow_unused=True)
    assert gx.tolist() == [2.0, 2.0] and gu is None
    y = x * 2
    (g,) = autograd.grad([y], [x], grad_outputs=[tessera.tensor([1.0, -1.0])])
    assert g.tolist() == [2.0, -2.0]


def test_autograd_backward_function():
    x = tessera.tensor([1.0, 2.0], requires_grad=True)
    autograd.backward([(x * x).sum(), (x * 3).sum()])
    assert x.grad.tolist() == [5.0, 7.0]


def test_detach_and_retain_grad():
    x = tessera.ones(2, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    assert y.grad.tolist() == [4.0, 4.0] and x.grad.tolist() == [8.0, 8.0]
    v = tessera.zeros(2)
    w = v.detach()
    w[0] = 5
    assert v[0].item() == 5  # shares storage
    x2 = (x * 1).detach_()
    assert not x2.requires_grad


def test_no_grad_context_and_decorator():
    x = tessera.ones(2, requires_grad=True)
    with tessera.no_grad():
        assert not tessera.is_grad_enabled()
        y = x * 2
        with tessera.enable_grad():
            assert (x * 2).requires_grad
        assert not tessera.is_grad_enabled()
    assert tessera.is_grad_enabled()
    assert not y.requires_grad

    @tessera.no_grad()
    def f(t):
        return t * 2

    @tessera.no_grad
    def g(t):
        return t * 2
    assert not f(x).requires_grad and not g(x).requires_grad and tessera.is_grad_enabled()
    assert f.__name__ == "f"


def test_set_grad_enabled():
    x = tessera.ones(1, requires_grad=True)
    tessera.set_grad_enabled(False)
    try:
        assert not (x * 2).requires_grad
    finally:
        tessera.set_grad_enabled(True)
    with tessera.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with tessera.no_grad():
        with tessera.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not tessera.is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = []
    with tessera.no_grad():
        t = threading.Thread(target=lambda: seen.append(tessera.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_views_and_ops_backward_vs_torch(torch):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((4, 2))
    x = tessera.tensor(a, requires_grad=True)
    w = tessera.tensor(b, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    tw = torch.tensor(b, requires_grad=True)
    loss = ((x[:, 1:] @ w[1:]).relu() * 2 - x.sum(1, keepdim=True).exp()).softmax(1).log().mean()
    tloss = ((tx[:, 1:] @ tw[1:]).relu() * 2 - tx.sum(1, keepdim=True).exp()).softmax(1).log().mean()
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_cat_stack_backward():
    a = tessera.ones(2, 2, requires_grad=True)
    b = tessera.ones(1, 2, requires_grad=True)
    c = tessera.cat([a, b * 2])
    assert c.tolist() == [[1, 1], [1, 1], [2, 2]]
    (c * tessera.tensor([[1.0], [2.0], [3.0]])).sum().backward()
    assert a.grad.tolist() == [[1, 1], [2, 2]] and b.grad.tolist() == [[6, 6]]
    s = tessera.stack([a, a], 1)
    assert s.shape == (2, 2, 2) and s.requires_grad


def test_numpy_of_requires_grad_and_int_requires_grad():
    x = tessera.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Use tensor.detach\(\).numpy\(\)"):
        x.numpy()
    assert x.detach().numpy().tolist() == [1.0, 1.0]
    with pytest.raises((TypeError, RuntimeError, ValueError)):
        tessera.ones(2, dtype=tessera.int64).requires_grad_()


def test_no_grad_decorates_generators():
    @tessera.no_grad()
    def gen():
        a = tessera.tensor([1.0], requires_grad=True)
        yield (a * 2).requires_grad
        yield tessera.is_grad_enabled()

    @tessera.no_grad
    def gen_bare():
        yield tessera.is_grad_enabled()

    assert list(gen()) == [False, False]
    assert list(gen_bare()) == [False]
    assert tessera.is_grad_enabled()
