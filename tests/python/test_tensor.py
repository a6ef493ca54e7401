# The core Tensor API: creation and dtype inference, operators and scalar promotion, reductions, views,
# numpy/item/tolist, repr, devices, in-place ops, cat/stack, copies. Compared with PyTorch where importable.
import copy
import pickle

import numpy as np
import pytest

import tessera

FLOAT_DTYPES = [tessera.float32, tessera.float64]


def close(t, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(t.tolist() if isinstance(t, tessera.Tensor) else t, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=tol, atol=tol)


def torch_of(torch, t):
    return torch.from_numpy(np.array(t._host_copy()))


# ---- creation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("data, dtype, shape", [
    (3, tessera.int64, ()), (2.5, tessera.float32, ()), (True, tessera.bool, ()),
    ([1, 2, 3], tessera.int64, (3,)), ([[1.0, 2], [3, 4]], tessera.float32, (2, 2)),
    ([True, False], tessera.bool, (2,)), ([], tessera.float32, (0,)),
    (np.arange(6, dtype=np.float64).reshape(2, 3), tessera.float64, (2, 3)),
    (np.arange(3, dtype=np.int32), tessera.int32, (3,)), (np.float64(1.5), tessera.float64, ()),
    (np.array([1, 2], dtype=np.uint8), tessera.uint8, (2,)),
])
def test_tensor_infers_dtype_like_torch(data, dtype, shape):
    t = tessera.tensor(data)
    assert t.dtype is dtype
    assert t.shape == shape
    assert t.tolist() == np.asarray(data).tolist()


def test_tensor_infers_dtype_same_as_torch(torch):
    for data in (1, 1.5, True, [1, 2], [1.5, 2], [[True]], np.arange(3.0), np.arange(3, dtype=np.int32)):
        assert tessera.tensor(data).dtype.name == str(torch.tensor(data).dtype).replace("torch.", "")


def test_tensor_with_dtype_and_requires_grad():
    t = tessera.tensor([1, 2], dtype=tessera.float64)
    assert t.dtype is tessera.float64 and t.tolist() == [1.0, 2.0]
    b = tessera.tensor([1.5, 2.5], dtype=tessera.bfloat16)
    assert b.dtype is tessera.bfloat16 and b.tolist() == [1.5, 2.5]
    assert tessera.tensor([1.0], dtype="float16").dtype is tessera.float16
    assert tessera.tensor([0.5]).requires_grad is False


def test_tensor_copies_its_data():
    a = np.zeros(3)
    t = tessera.tensor(a)
    a[0] = 5
    assert t.tolist() == [0, 0, 0]
    u = tessera.tensor(t)
    t[1] = 7
    assert u.tolist() == [0, 0, 0]


@pytest.mark.parametrize("fn, value", [(tessera.zeros, 0), (tessera.ones, 1)])
def test_zeros_ones(fn, value):
    for t in (fn(2, 3), fn((2, 3)), fn([2, 3])):
        assert t.shape == (2, 3) and t.dtype is tessera.float32
        assert (t.numpy() == value).all()
    assert fn(4, dtype=tessera.int32).dtype is tessera.int32
    assert fn(()).shape == ()


def test_full_empty_arange():
    assert tessera.full((2, 2), 3).dtype is tessera.int64
    assert tessera.full((2,), 1.5).tolist() == [1.5, 1.5]
    assert tessera.full((1,), True).dtype is tessera.bool
    assert tessera.empty(3, 4).shape == (3, 4)
    assert tessera.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert tessera.arange(5).dtype is tessera.int64
    assert tessera.arange(1, 2, 0.25).tolist() == [1.0, 1.25, 1.5, 1.75]
    assert tessera.arange(0, 10, 3, dtype=tessera.float64).tolist() == [0.0, 3.0, 6.0, 9.0]


def test_random_factories_and_seed():
    tessera.manual_seed(123)
    a = tessera.rand(1000)
    tessera.manual_seed(123)
    b = tessera.rand(1000)
    assert a.tolist() == b.tolist()
    assert 0 <= a.min().item() and a.max().item() < 1
    n = tessera.randn(20000, dtype=tessera.float64)
    assert abs(n.mean().item()) < 0.05 and abs(n.std().item() - 1) < 0.05
    r = tessera.randint(3, 7, (2000,))
    assert r.dtype is tessera.int64 and r.min().item() == 3 and r.max().item() == 6
    assert tessera.randint(5, (3,)).shape == (3,)
    assert sorted(tessera.randperm(6).tolist()) == list(range(6))


def test_like_factories():
    x = tessera.ones(2, 3, dtype=tessera.float64)
    for fn in (tessera.zeros_like, tessera.ones_like, tessera.empty_like, tessera.rand_like, tessera.randn_like):
        y = fn(x)
        assert y.shape == (2, 3) and y.dtype is tessera.float64
    assert tessera.full_like(x, 7).tolist() == [[7.0] * 3] * 2
    assert tessera.zeros_like(x, dtype=tessera.int32).dtype is tessera.int32


# ---- metadata ----------------------------------------------------------------------------------
def test_metadata():
    t = tessera.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.dim() == 3 and t.ndim == 3 and t.numel() == 24 and len(t) == 2
    assert t.dtype is tessera.float32 and t.element_size() == 4
    assert t.device == tessera.device("cpu") and str(t.device) == "cpu" and t.device == "cpu"
    assert t.is_contiguous() and t.stride() == (12, 4, 1)
    assert repr(t.shape) == "tessera.Size([2, 3, 4])" and t.shape.numel() == 24
    assert repr(tessera.float32) == "tessera.float32"
    assert tessera.float16.is_floating_point and not tessera.int32.is_floating_point
    assert tessera.float64.itemsize == 8


def test_devices():
    assert repr(tessera.device("cpu")) == "device(type='cpu')"
    d = tessera.device("cuda:1")
    assert d.type == "cuda" and d.index == 1 and str(d) == "cuda:1"
    t = tessera.ones(2)
    assert t.to("cpu") is t and t.cpu() is t
    assert t.to(tessera.float64).dtype is tessera.float64
    assert t.to("cpu", tessera.int32).dtype is tessera.int32
    assert t.to(dtype=tessera.float16).dtype is tessera.float16
    assert t.to(tessera.zeros(1, dtype=tessera.int64)).dtype is tessera.int64
    assert t.to("cpu", copy=True) is not t


# ---- operators -----------------------------------------------------------------------------------
def test_arithmetic_operators():
    a = tessera.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = tessera.tensor([10.0, 20.0])
    close(a + b, [[11, 22], [13, 24]])
    close(a - b, [[-9, -18], [-7, -16]])
    close(a * b, [[10, 40], [30, 80]])
    close(a / b, [[0.1, 0.1], [0.3, 0.2]])
    close(a ** 2, [[1, 4], [9, 16]])
    close(2 ** a, [[2, 4], [8, 16]])
    close(-a, [[-1, -2], [-3, -4]])
    close(abs(-a), a.tolist())
    close(1 - a, [[0, -1], [-2, -3]])
    close(1 / a, [[1, 0.5], [1 / 3, 0.25]])
    close(3 * a, [[3, 6], [9, 12]])
    close(a @ a, [[7, 10], [15, 22]])
    close(a @ b, [50, 110])
    assert (a == a).numpy().all()
    assert (a > 2).tolist() == [[False, False], [True, True]]
    assert (a <= 2).tolist() == [[True, True], [False, False]]
    assert (a != 1).tolist() == [[False, True], [True, True]]
    assert (2 < a).tolist() == [[False, False], [True, True]]


def test_inplace_operators_keep_the_object():
    a = tessera.ones(2, 2)
    b = a
    a += 1
    a *= 3
    a -= tessera.ones(2)
    a /= 5
    assert a is b
    close(a, [[1, 1], [1, 1]])
    a.add_(1, alpha=2)
    close(a, [[3, 3], [3, 3]])
    a.mul_(tessera.tensor([1.0, 2.0])).sub_(1)
    close(a, [[2, 5], [2, 5]])
    a.zero_()
    close(a, [[0, 0], [0, 0]])
    a.fill_(2.5).exp_()
    close(a, np.full((2, 2), np.exp(2.5)))
    a.clamp_(max=3)
    close(a, [[3, 3], [3, 3]])


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64", "bool", "uint8"])
@pytest.mark.parametrize("scalar", [2, 2.5, True])
@pytest.mark.parametrize("op", ["add", "mul", "sub", "div"])
def test_scalar_promotion_matches_torch(torch, dtype, scalar, op):
    if op == "sub" and (dtype == "bool" or scalar is True):
        pytest.skip("torch refuses subtraction with bools")
    x = tessera.tensor([1, 0, 3]).to(getattr(tessera, dtype))
    tx = torch.tensor([1, 0, 3]).to(getattr(torch, dtype))
    r = getattr(x, op)(scalar)
    tr = getattr(tx, op)(scalar)
    assert r.dtype.name == str(tr.dtype).replace("torch.", "")
    close(r.double(), tr.double().numpy())


def test_tensor_promotion_matches_torch(torch):
    names = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]
    for a in names:
        for b in names:
            x = tessera.ones(2, dtype=getattr(tessera, a)) + tessera.ones(2, dtype=getattr(tessera, b))
            y = torch.ones(2, dtype=getattr(torch, a)) + torch.ones(2, dtype=getattr(torch, b))
            assert x.dtype.name == str(y.dtype).replace("torch.", ""), (a, b)


def test_unary_and_binary_ops_vs_torch(torch):
    x = tessera.tensor([[0.5, -1.5, 2.0], [3.0, -0.25, 1.0]])
    tx = torch_of(torch, x)
    for name in ("exp", "abs", "neg", "tanh", "sigmoid", "relu", "sin", "cos", "silu", "gelu"):
        ref = getattr(torch.nn.functional, name) if name in ("silu", "gelu") else getattr(torch, name)
        close(getattr(x, name)(), ref(tx).numpy())
        close(getattr(tessera, name)(x), ref(tx).numpy())
    p = x.abs() + 0.1
    tp = tx.abs() + 0.1
    for name in ("log", "sqrt", "rsqrt"):
        close(getattr(p, name)(), getattr(torch, name)(tp).numpy())
    y = tessera.tensor([1.0, 0.0, -2.0])
    for name in ("maximum", "minimum", "pow", "eq", "lt", "ge"):
        close(getattr(tessera, name)(p, y.abs()), getattr(torch, name)(tp, torch_of(torch, y).abs()).double().numpy())


def test_every_op_of_the_table_is_a_function():
    for name in tessera._C.op_names:
        assert callable(getattr(tessera, name, None)), name


def test_where_clamp_maximum():
    x = tessera.tensor([-2.0, 0.5, 3.0])
    close(tessera.where(x > 0, x, tessera.zeros(3)), [0, 0.5, 3])
    close(tessera.where(x > 0, x, 0.0), [0, 0.5, 3])
    close(tessera.where(x > 0, 1.0, x), [-2, 1, 1])
    close(x.where(x < 1, tessera.tensor(9.0)), [-2, 0.5, 9])
    close(x.clamp(-1, 1), [-1, 0.5, 1])
    close(x.clamp(min=0), [0, 0.5, 3])
    close(tessera.clamp(x, max=0), [-2, 0, 0])
    close(x.clamp(min=tessera.tensor([0.0, 1.0, 0.0])), [0, 1, 3])
    close(tessera.maximum(x, tessera.tensor(0.0)), [0, 0.5, 3])


# ---- reductions ---------------------------------------------------------------------------------
def test_reductions_vs_numpy():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
    t = tessera.tensor(a)
    close(t.sum(), a.sum())
    close(t.sum(1), a.sum(1))
    close(t.sum((0, 2)), a.sum((0, 2)))
    assert t.sum(1, keepdim=True).shape == (2, 1, 4)
    assert t.sum(dim=(0, 2), keepdim=True).shape == (1, 3, 1)
    close(t.mean(-1), a.mean(-1))
    close(t.prod(2), a.prod(2))
    close(t.max(), a.max())
    close(t.min(), a.min())
    assert t.argmax().item() == 23 and t.argmin().item() == 0
    assert t.argmax(1).tolist() == a.argmax(1).tolist()
    close(t.var(), a.var(ddof=1))
    close(t.var(1), a.var(1, ddof=1))
    close(t.var(1, unbiased=False), a.var(1))
    close(t.std(0, correction=0), a.std(0))
    close(t.std(dim=2, keepdim=True), a.std(2, ddof=1, keepdims=True))
    close(t.amax((0, 1)), a.max((0, 1)))
    close(tessera.sum(t, 0), a.sum(0))
    close(tessera.mean(t), a.mean())


def test_max_min_with_dim_return_values_and_indices(torch):
    a = np.array([[1.0, 5.0, 3.0], [7.0, 2.0, 9.0]])
    t = tessera.tensor(a)
    r = t.max(1)
    assert r.values.tolist() == [5.0, 9.0] and r.indices.tolist() == [1, 2]
    values, indices = t.min(dim=0, keepdim=True)
    assert values.tolist() == [[1.0, 2.0, 3.0]] and indices.tolist() == [[0, 1, 0]]
    tr = torch.tensor(a).max(1)
    assert r.indices.tolist() == tr.indices.tolist() and type(r).__name__ == "max"
    assert t.max(tessera.tensor(4.0)).tolist() == [[4.0, 5.0, 4.0], [7.0, 4.0, 9.0]]


def test_softmax():
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = tessera.tensor(a)
    e = np.exp(a - a.max(1, keepdims=True))
    close(t.softmax(1), e / e.sum(1, keepdims=True))
    close(tessera.log_softmax(t, dim=-1), np.log(e / e.sum(1, keepdims=True)))
    close(t.softmax(0).sum(0), [1, 1, 1])


def test_matmul_family():
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(12.0).reshape(3, 4)
    close(tessera.tensor(a).mm(tessera.tensor(b)), a @ b)
    close(tessera.matmul(tessera.tensor(a), tessera.tensor(b)), a @ b)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y = np.random.default_rng(1).standard_normal((5, 3, 4))
    close(tessera.tensor(x).bmm(tessera.tensor(y)), x @ y)
    close(tessera.tensor(x) @ tessera.tensor(y[0]), x @ y[0])


# ---- views ---------------------------------------------------------------------------------------
def test_views_share_memory():
    t = tessera.arange(24).float().reshape(2, 3, 4)
    v = t.view(6, 4)
    v[0, 0] = 100
    assert t[0, 0, 0].item() == 100
    assert t.view(-1).shape == (24,) and t.reshape(4, -1).shape == (4, 6)
    assert t.permute(2, 0, 1).shape == (4, 2, 3) and t.permute((2, 0, 1)).stride() == (1, 12, 4)
    assert t.transpose(0, 2).shape == (4, 3, 2)
    assert t[0].t().shape == (4, 3) and t.T.shape == (4, 3, 2)
    assert t.unsqueeze(1).shape == (2, 1, 3, 4) and t.unsqueeze(-1).shape == (2, 3, 4, 1)
    assert t.unsqueeze(0).squeeze().shape == (2, 3, 4) and t.unsqueeze(0).squeeze(0).shape == (2, 3, 4)
    assert t.flatten().shape == (24,) and t.flatten(1).shape == (2, 12)
    assert t[:, :1].expand(2, 5, 4).shape == (2, 5, 4) and t[:, :1].expand(-1, 3, -1).shape == (2, 3, 4)
    assert t.narrow(2, 1, 2).shape == (2, 3, 2) and t.select(1, 2).shape == (2, 4)
    assert t.as_strided((2, 2), (1, 4)).tolist() == [[100.0, 4.0], [1.0, 5.0]]
    assert t.view_as(tessera.zeros(4, 6)).shape == (4, 6) and t.expand_as(tessera.zeros(3, 2, 3, 4)).ndim == 4
    assert [p.shape for p in t.split(1, 2)] == [(2, 3, 1)] * 4 and len(t.chunk(2, 1)) == 2
    assert len(t.unbind(0)) == 2


def test_contiguous_clone():
    t = tessera.arange(6).reshape(2, 3)
    assert t.contiguous() is t
    u = t.t()
    assert not u.is_contiguous()
    c = u.contiguous()
    assert c.is_contiguous() and c.tolist() == u.tolist()
    k = t.clone()
    k[0, 0] = 9
    assert t[0, 0].item() == 0


# ---- host conversions ------------------------------------------------------------------------------
def test_numpy_is_zero_copy_and_keeps_the_tensor_alive():
    t = tessera.zeros(2, 3)
    a = t.numpy()
    a[1, 2] = 5
    assert t[1, 2].item() == 5
    t[0, 0] = 3
    assert a[0, 0] == 3
    del t
    assert a.sum() == 8  # the ndarray keeps the memory alive
    s = tessera.arange(12).reshape(3, 4).t()[1:]
    assert s.numpy().tolist() == np.arange(12).reshape(3, 4).T[1:].tolist()


def test_numpy_dtypes():
    for dt in (tessera.bool, tessera.uint8, tessera.int32, tessera.int64, tessera.float16, tessera.float32,
               tessera.float64):
        assert tessera.zeros(2, dtype=dt).numpy().dtype == dt.to_numpy()
    with pytest.raises(TypeError, match="BFloat16|bfloat16"):
        tessera.zeros(2, dtype=tessera.bfloat16).numpy()
    assert np.asarray(tessera.zeros(2, dtype=tessera.bfloat16)).dtype == np.float32


def test_item_tolist():
    assert tessera.tensor(2.5).item() == 2.5 and isinstance(tessera.tensor(3).item(), int)
    assert tessera.tensor([True]).item() is True
    assert tessera.tensor([[1.5]], dtype=tessera.bfloat16).item() == 1.5
    assert tessera.tensor(0.5, dtype=tessera.float16).item() == 0.5
    assert tessera.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert tessera.tensor(7).tolist() == 7
    assert float(tessera.tensor(1.5)) == 1.5 and int(tessera.tensor(4)) == 4 and bool(tessera.tensor(1))
    assert [1, 2, 3][tessera.tensor(1)] == 2
    assert [x.item() for x in tessera.tensor([4, 5])] == [4, 5]
    assert np.asarray(tessera.ones(2, 2)).shape == (2, 2)


# ---- repr --------------------------------------------------------------------------------------------
def test_repr_like_torch():
    assert repr(tessera.tensor([[1.0, 2.0], [3.0, 4.0]])) == "tensor([[1., 2.],\n        [3., 4.]])"
    assert repr(tessera.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(tessera.tensor([1, 2], dtype=tessera.int32)) == "tensor([1, 2], dtype=tessera.int32)"
    assert repr(tessera.tensor(0.5)) == "tensor(0.5000)"
    assert repr(tessera.tensor([True, False])) == "tensor([ True, False])"
    assert repr(tessera.tensor([1.5], dtype=tessera.float64)) == "tensor([1.5000], dtype=tessera.float64)"
    assert repr(tessera.zeros(0, 3)) == "tensor([], size=(0, 3))"
    assert "..." in repr(tessera.zeros(2000))


def test_repr_matches_torch_text(torch):
    rng = np.random.default_rng(0)
    for a in (rng.standard_normal((3, 4)).astype(np.float32), np.array([1e-5, 1.0], np.float32),
              np.array([1e10, 1.0], np.float32), np.arange(30, dtype=np.int64).reshape(3, 10),
              np.array([np.nan, 1.0, np.inf], np.float32), rng.standard_normal((40, 40)).astype(np.float32),
              np.array(3.25, np.float32), rng.standard_normal((2, 3, 4)).astype(np.float32)):
        assert repr(tessera.tensor(a)) == repr(torch.tensor(a)), a


def test_repr_autograd_suffixes():
    x = tessera.ones(2, 2, requires_grad=True)
    assert repr(x) == "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)"
    assert repr(x * 2).endswith("grad_fn=<mul_backward>)")


# ---- composition helpers and copies ----------------------------------------------------------------------
def test_cat_stack():
    a, b = tessera.ones(2, 3), tessera.zeros(1, 3)
    assert tessera.cat([a, b]).tolist() == [[1.0] * 3] * 2 + [[0.0] * 3]
    assert tessera.cat([a, tessera.zeros(2, 1)], dim=1).shape == (2, 4)
    assert tessera.cat((a, b), -2).shape == (3, 3)
    assert tessera.stack([a, a]).shape == (2, 2, 3) and tessera.stack([a, a], dim=2).shape == (2, 3, 2)
    assert tessera.cat([tessera.tensor([1]), tessera.tensor([2.5])]).dtype is tessera.float32
    with pytest.raises(ValueError, match=r"\[2, 3\].*\[2, 2\]"):
        tessera.cat([a, tessera.zeros(2, 2)])


def test_pickle_and_deepcopy():
    t = tessera.tensor([[1.0, 2.0]], dtype=tessera.float64)
    u = pickle.loads(pickle.dumps(t))
    assert u.tolist() == t.tolist() and u.dtype is tessera.float64
    c = copy.deepcopy(t)
    c[0, 0] = 5
    assert t[0, 0].item() == 1.0
    assert pickle.loads(pickle.dumps(tessera.float16)) is tessera.float16
