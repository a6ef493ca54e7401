# Indexing: ints, slices with steps, None, ..., negative indices (views, checked against numpy),
# __setitem__, integer-tensor / bool-mask reads and writes (gathered through numpy), and bad indices.
import numpy as np
import pytest

import tessera

A = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)

KEYS = [
    0, -1, 1, slice(None), slice(1, None), slice(None, -1), slice(None, None, 2), slice(-3, None, 2),
    slice(5, 10), slice(-100, 100), slice(2, 1),
    (0, 1), (-1, -2, -3, -4), (slice(None), 0), (Ellipsis, 0), (Ellipsis, slice(1, 3)), (0, Ellipsis, -1),
    (None,), (None, 0), (slice(None), None, 1), (Ellipsis, None), (0, None, Ellipsis, None, 2),
    (slice(None, None, 3), slice(1, None, 2), slice(None, None, 4)), (1, slice(None), slice(3, 0)),
    (slice(None), slice(None), slice(None), slice(None)), (), Ellipsis,
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_basic_indexing_matches_numpy(key):
    t = tessera.tensor(A)
    r = t[key]
    expected = A[key]
    assert tuple(r.shape) == expected.shape
    np.testing.assert_array_equal(r.numpy(), expected)


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_basic_indexing_is_a_view(key):
    t = tessera.tensor(A)
    r = t[key]
    if r.numel() == 0:
        return
    r.fill_(-1)
    b = A.copy()
    b[key] = -1
    np.testing.assert_array_equal(t.numpy(), b)


def test_index_a_view_of_a_view():
    t = tessera.arange(60).reshape(3, 4, 5)
    v = t[1:, ::2][..., 1::2][-1]
    np.testing.assert_array_equal(v.numpy(), np.arange(60).reshape(3, 4, 5)[1:, ::2][..., 1::2][-1])


def test_tensor_and_numpy_ints_as_indices():
    t = tessera.tensor(A)
    assert t[tessera.tensor(1)].shape == (3, 4, 5)
    assert t[np.int64(1), np.int32(2)].shape == (4, 5)
    np.testing.assert_array_equal(t[tessera.tensor(1), 2].numpy(), A[1, 2])


def test_setitem_scalars_and_tensors():
    t = tessera.zeros(3, 4)
    t[0] = 1
    t[1, 1:3] = tessera.tensor([5.0, 6.0])
    t[2, ::2] = 2.5
    t[:, -1] = tessera.tensor([7.0, 8.0, 9.0])
    t[..., 0] = tessera.tensor(3.0)  # broadcast
    t[2, 1] = True
    expected = np.array([[3, 1, 1, 7], [3, 5, 6, 8], [3, 1, 2.5, 9]], dtype=np.float32)
    np.testing.assert_array_equal(t.numpy(), expected)
    t[1:] = [[1, 2, 3, 4]]
    np.testing.assert_array_equal(t[1:].numpy(), [[1, 2, 3, 4], [1, 2, 3, 4]])
    i = tessera.zeros(2, dtype=tessera.int32)
    i[0] = 7
    assert i.tolist() == [7, 0]


def test_setitem_shape_mismatch_names_both_shapes():
    t = tessera.zeros(3, 4)
    with pytest.raises((ValueError, RuntimeError), match=r"\[4\].*\[3\]|\[3\].*\[4\]"):
        t[0] = tessera.ones(3)


def test_integer_tensor_and_mask_reads():
    t = tessera.tensor(A)
    idx = tessera.tensor([1, 0, 1])
    np.testing.assert_array_equal(t[idx].numpy(), A[[1, 0, 1]])
    np.testing.assert_array_equal(t[0, [2, 0]].numpy(), A[0, [2, 0]])
    np.testing.assert_array_equal(t[:, tessera.tensor([0, 2])].numpy(), A[:, [0, 2]])
    mask = t > 100
    np.testing.assert_array_equal(t[mask].numpy(), A[A > 100])
    np.testing.assert_array_equal(t[0][t[0, :, 0, 0] > 25].numpy(), A[0][A[0, :, 0, 0] > 25])
    assert t[idx].dtype is tessera.float32


def test_mask_and_integer_writes():
    t = tessera.arange(6).float()
    t[t > 3] = 0
    assert t.tolist() == [0, 1, 2, 3, 0, 0]
    t[tessera.tensor([0, 1])] = tessera.tensor([9.0, 8.0])
    assert t.tolist() == [9, 8, 2, 3, 0, 0]


def test_negative_step_is_refused_like_torch():
    t = tessera.arange(5)
    with pytest.raises(ValueError, match="step must be greater than zero"):
        t[::-1]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        t[::0]


def test_index_past_the_end_is_index_error_with_the_runtime_message():
    t = tessera.zeros(3, 4)
    with pytest.raises(IndexError, match="5") as e:
        t[5]
    assert "[" in str(e.value)  # the runtime's "[op] ..." text
    with pytest.raises(IndexError):
        t[0, 4]
    with pytest.raises(IndexError):
        t[-4]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(IndexError):
        t[..., ...]
    with pytest.raises(IndexError):
        t[tessera.tensor([0, 3])]
    with pytest.raises(IndexError):
        t[5] = 1.0


def test_bad_index_types():
    t = tessera.zeros(3)
    with pytest.raises(TypeError):
        t["a"]
    with pytest.raises(TypeError):
        t[1.5]
    with pytest.raises(IndexError):
        t[tessera.tensor([0.5])]


def test_len_iter_and_0d():
    t = tessera.arange(6).reshape(3, 2)
    assert len(t) == 3
    assert [r.tolist() for r in t] == [[0, 1], [2, 3], [4, 5]]
    s = tessera.tensor(5)
    assert s[...].item() == 5 and s[None].shape == (1,)
    with pytest.raises(TypeError):
        len(s)
    with pytest.raises(IndexError):
        s[0]


def test_indexing_matches_torch(torch):
    t = tessera.tensor(A)
    ta = torch.from_numpy(A)
    for key in KEYS:
        assert tuple(t[key].shape) == tuple(ta[key].shape), key


def test_advanced_index_read_keeps_the_gradient():
    a = tessera.tensor([1.0, 2.0, 3.0], dtype=tessera.float64, requires_grad=True)
    (a[tessera.tensor([0, 0, 2])] * tessera.tensor([1.0, 2.0, 3.0], dtype=tessera.float64)).sum().backward()
    assert a.grad.tolist() == [3.0, 0.0, 3.0]
    a.grad = None
    a[a > 1.5].sum().backward()
    assert a.grad.tolist() == [0.0, 1.0, 1.0]


def test_zero_dim_int_tensor_indexes_like_an_int():
    a = tessera.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a[tessera.tensor(1)].backward()
    assert a.grad.tolist() == [0.0, 1.0, 0.0]


def test_advanced_index_write_bumps_version_and_refuses_grad():
    a = tessera.tensor([1.0, 2.0, 3.0], dtype=tessera.float64, requires_grad=True)
    x = a * 1
    y = (x * x).sum()
    with pytest.raises(NotImplementedError, match="index_put"):
        x[[0]] = 5.0
    with pytest.raises(NotImplementedError):
        a[[0]] = 5.0
    b = tessera.zeros(3)
    b[[0, 2]] = 7.0
    assert b.tolist() == [7.0, 0.0, 7.0]
    with tessera.no_grad():
        a[[1]] = 9.0
    assert a.tolist() == [1.0, 9.0, 3.0]
    with pytest.raises(RuntimeError, match="modified"):
        c = a * 1
        z = (c * c).sum()
        with tessera.no_grad():
            c[[0]] = 0.0
        z.backward()
