# DLPack both ways and from_numpy: zero copy (a write on one side shows on the other), dtypes, strides,
# 0-dim, capsule rules, and the producer's memory kept alive exactly as long as needed.
import gc
import sys
import weakref

import numpy as np
import pytest

import tessera

NP_DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_]


def np_supports_dlpack_dtype(dt):
    try:
        np.from_dlpack(np.zeros(1, dtype=dt))
        return True
    except (TypeError, BufferError, RuntimeError):
        return False


# ---- numpy -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", NP_DTYPES)
def test_from_numpy_shares_memory(dt):
    a = np.zeros((2, 3), dtype=dt)
    t = tessera.from_numpy(a)
    assert t.dtype.to_numpy() == np.dtype(dt) and t.shape == (2, 3)
    a[1, 2] = 1
    assert t[1, 2].item() == 1
    t[0, 0] = 1
    assert a[0, 0] == 1


def test_from_numpy_strided_and_0d():
    a = np.arange(24.0).reshape(4, 6)[::2, 1::2]
    t = tessera.from_numpy(a)
    assert t.stride() == (12, 2) and t.tolist() == a.tolist()
    z = tessera.from_numpy(np.array(3.5))
    assert z.shape == () and z.item() == 3.5
    e = tessera.from_numpy(np.zeros((0, 3), np.float32))
    assert e.shape == (0, 3)


def test_from_numpy_keeps_the_array_alive_until_the_last_view():
    a = np.arange(5.0)
    before = sys.getrefcount(a)
    t = tessera.from_numpy(a)
    v = t[1:]
    assert sys.getrefcount(a) == before + 1
    del t
    gc.collect()
    assert sys.getrefcount(a) == before + 1  # v still borrows it
    del v
    gc.collect()
    assert sys.getrefcount(a) == before


def test_from_numpy_refuses_what_it_cannot_share():
    with pytest.raises(TypeError, match="int16"):
        tessera.from_numpy(np.zeros(2, np.int16))
    with pytest.raises(ValueError, match="negative"):
        tessera.from_numpy(np.arange(4.0)[::-1])
    with pytest.raises(TypeError):
        tessera.from_numpy([1, 2])


@pytest.mark.parametrize("dt", NP_DTYPES)
def test_numpy_from_dlpack_of_tessera(dt):
    if not np_supports_dlpack_dtype(dt):
        pytest.skip(f"numpy {np.__version__} does not exchange {np.dtype(dt)} through DLPack")
    t = tessera.zeros(2, 3, dtype=tessera.to_dtype(dt) if hasattr(tessera, "to_dtype") else
                      tessera._types.to_dtype(dt))
    a = np.from_dlpack(t)  # numpy marks DLPack imports read-only: write on the tessera side
    assert a.dtype == np.dtype(dt) and a.shape == (2, 3)
    t[1, 2] = 1
    assert a[1, 2] == 1


@pytest.mark.parametrize("dt", NP_DTYPES)
def test_tessera_from_dlpack_of_numpy(dt):
    if not np_supports_dlpack_dtype(dt):
        pytest.skip(f"numpy {np.__version__} does not exchange {np.dtype(dt)} through DLPack")
    a = np.zeros((3, 2), dtype=dt)
    t = tessera.from_dlpack(a)
    assert t.dtype.to_numpy() == np.dtype(dt) and t.shape == (3, 2)
    a[2, 1] = 1
    assert t[2, 1].item() == 1


def test_numpy_round_trip_non_contiguous_and_0d():
    a = np.arange(24.0).reshape(2, 3, 4).transpose(2, 0, 1)[1:]
    t = tessera.from_dlpack(a)
    assert t.tolist() == a.tolist() and not t.is_contiguous()
    b = np.from_dlpack(t)
    assert b.strides == a.strides
    t[0, 0, 0] = -1
    assert a[0, 0, 0] == -1 and b[0, 0, 0] == -1
    s = tessera.from_dlpack(np.array(2.5))
    assert s.shape == () and np.from_dlpack(s).shape == ()
    v = tessera.arange(12).float().reshape(3, 4)[:, 1::2]
    assert np.from_dlpack(v).tolist() == v.tolist()


def test_numpy_memory_lives_while_tessera_holds_it():
    a = np.arange(6.0)
    r = weakref.ref(a.base) if a.base is not None else None
    before = sys.getrefcount(a)
    t = tessera.from_dlpack(a)
    assert sys.getrefcount(a) > before
    del t
    gc.collect()
    assert sys.getrefcount(a) == before
    del r


def test_capsule_protocol():
    t = tessera.arange(4).float()
    dev = t.__dlpack_device__()
    assert dev == (1, 0)
    cap = t.__dlpack__()
    u = tessera.from_dlpack(cap)
    u[0] = 9
    assert t[0].item() == 9
    with pytest.raises(ValueError, match="consumed|dltensor"):
        tessera.from_dlpack(cap)  # a capsule is used once
    unconsumed = t.__dlpack__()
    del unconsumed  # its destructor runs the deleter
    gc.collect()
    assert not tessera._dlpack._exports or all(v[3] is not None for v in tessera._dlpack._exports.values())
    with pytest.raises(TypeError):
        tessera.from_dlpack(42)


@pytest.mark.parametrize("name", ["bool", "bfloat16", "float16", "uint8", "int32"])
def test_tessera_round_trip_every_dtype(name):
    t = tessera.zeros(2, 3, dtype=getattr(tessera, name))[:, 1:]
    u = tessera.from_dlpack(t)
    assert u.dtype is t.dtype and u.shape == (2, 2) and u.stride() == t.stride()
    u[1, 1] = 1
    assert t[1, 1].item() == 1


def test_export_refuses_tensors_that_require_grad():
    t = tessera.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.__dlpack__()
    assert np.from_dlpack(t.detach()).tolist() == [1.0, 1.0]


def test_exports_are_released():
    t = tessera.ones(3)
    n = len(tessera._dlpack._exports)
    a = np.from_dlpack(t)
    assert len(tessera._dlpack._exports) == n + 1
    del a
    gc.collect()
    assert len(tessera._dlpack._exports) == n


# ---- torch ---------------------------------------------------------------------------------------
TORCH_DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "bool"]


@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_torch_to_tessera_shares_memory(torch, name):
    x = torch.zeros(2, 3, dtype=getattr(torch, name))
    try:
        t = tessera.from_dlpack(x)
    except (TypeError, RuntimeError) as e:
        pytest.skip(f"torch {torch.__version__} exports {name} in a form DLPack consumers can't read: {e}")
    assert t.dtype.name == name and t.shape == (2, 3)
    x[1, 1] = 1
    assert t[1, 1].item() == 1
    t[0, 2] = 1
    assert x[0, 2].item() == 1


@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_tessera_to_torch_shares_memory(torch, name):
    from torch.utils.dlpack import from_dlpack as torch_from_dlpack
    t = tessera.zeros(2, 3, dtype=getattr(tessera, name))
    try:
        x = torch_from_dlpack(t)
    except (RuntimeError, TypeError, BufferError) as e:
        pytest.skip(f"torch {torch.__version__} cannot import {name} through DLPack: {e}")
    assert str(x.dtype) == f"torch.{name}" and tuple(x.shape) == (2, 3)
    x[1, 0] = 1
    assert t[1, 0].item() == 1
    t[0, 1] = 1
    assert x[0, 1].item() == 1


def test_torch_round_trip_strides_0d_and_lifetime(torch):
    from torch.utils.dlpack import from_dlpack as torch_from_dlpack
    x = torch.arange(24.0).reshape(2, 3, 4).permute(2, 1, 0)[:, 1:]
    t = tessera.from_dlpack(x)
    assert t.stride() == x.stride() and t.tolist() == x.tolist()
    y = torch_from_dlpack(t)
    assert y.stride() == x.stride()
    y[0, 0, 0] = -5
    assert x[0, 0, 0].item() == -5
    s = tessera.from_dlpack(torch.tensor(1.5))
    assert s.shape == () and s.item() == 1.5
    assert torch_from_dlpack(tessera.tensor(2.5)).item() == 2.5
    # torch memory outlives the torch tensor while tessera holds it
    z = torch.full((1000,), 3.0)
    u = tessera.from_dlpack(z)
    del z
    gc.collect()
    assert u.sum().item() == 3000.0


def test_torch_compare_values(torch):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5)).astype(np.float32)
    x = torch.from_numpy(a.copy())
    t = tessera.from_dlpack(x)
    np.testing.assert_array_equal((t * 2).numpy(), (x * 2).numpy())
