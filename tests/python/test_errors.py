# Bad input: each error is a Python exception of the right class carrying the runtime's message, and
# status codes map as the contract says (tessera._C.check).
import numpy as np
import pytest

import tessera
from tessera import _C


def test_tensor_plus_string_is_type_error():
    t = tessera.ones(2)
    for bad in ("x", None, [1], object(), {}):
        with pytest.raises(TypeError):
            t + bad
        with pytest.raises(TypeError):
            bad + t if not isinstance(bad, list) else t * bad
    with pytest.raises(TypeError):
        t @ 3
    with pytest.raises(TypeError):
        tessera.add(t, "x")
    with pytest.raises(TypeError):
        t.mul("x")
    with pytest.raises(TypeError):
        t < "x"


def test_shape_mismatch_names_both_shapes():
    a, b = tessera.ones(2, 3), tessera.ones(4, 5)
    for fn in (lambda: a + b, lambda: a * b, lambda: tessera.maximum(a, b), lambda: a == b):
        with pytest.raises((ValueError, RuntimeError)) as e:
            fn()
        assert "[2, 3]" in str(e.value) and "[4, 5]" in str(e.value), str(e.value)
    with pytest.raises((ValueError, RuntimeError)) as e:
        a @ b
    assert "[2, 3]" in str(e.value) and "[4, 5]" in str(e.value)
    with pytest.raises((ValueError, RuntimeError)) as e:
        a.view(4, 2)
    assert "6" in str(e.value) or "[2, 3]" in str(e.value)
    with pytest.raises((ValueError, RuntimeError)):
        a.expand(4, 3)


def test_index_errors():
    t = tessera.zeros(3, 4)
    with pytest.raises(IndexError) as e:
        t[3]
    assert "3" in str(e.value)
    with pytest.raises(IndexError):
        t.select(1, -5)
    with pytest.raises(IndexError):
        t.sum(2)
    with pytest.raises(IndexError):
        t.softmax(5)
    with pytest.raises(IndexError):
        t.transpose(0, 3)
    with pytest.raises(IndexError):
        t.size(2)


def test_requires_grad_on_int_tensor():
    with pytest.raises((TypeError, RuntimeError, ValueError)) as e:
        tessera.ones(2, dtype=tessera.int64, requires_grad=True)
    assert "int64" in str(e.value) or "float" in str(e.value)
    with pytest.raises((TypeError, RuntimeError, ValueError)):
        tessera.arange(3).requires_grad = True


def test_bad_dtypes_and_values():
    with pytest.raises(TypeError):
        tessera.zeros(2, dtype="complex64")
    with pytest.raises(TypeError, match="int16"):
        tessera.zeros(2, dtype=tessera.int16)
    with pytest.raises(TypeError):
        tessera.tensor(["a", "b"])
    with pytest.raises((TypeError, ValueError)):
        tessera.tensor([[1], [2, 3]])
    with pytest.raises(OverflowError):
        tessera.ones(1) + (1 << 70)
    with pytest.raises((ValueError, RuntimeError)):
        tessera.zeros(-1)
    with pytest.raises(TypeError):
        tessera.ones(2, dtype=tessera.bool) - tessera.ones(2, dtype=tessera.bool)


def test_item_and_bool_of_many_elements():
    with pytest.raises(RuntimeError, match="2 elements"):
        tessera.ones(2).item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(tessera.ones(2))
    with pytest.raises(TypeError):
        [0][tessera.tensor(0.5)]


def test_devices():
    with pytest.raises(ValueError):
        tessera.device("tpu")
    with pytest.raises(ValueError):
        tessera.device("cuda:x")


def test_status_mapping():
    for status, cls in ((_C.INVALID_ARGUMENT, ValueError), (_C.TYPE, TypeError), (_C.INDEX, IndexError),
                        (_C.OUT_OF_MEMORY, MemoryError), (_C.NOT_IMPLEMENTED, NotImplementedError),
                        (_C.RUNTIME, RuntimeError), (_C.NOT_INITIALIZED, RuntimeError),
                        (_C.NULL_POINTER, RuntimeError)):
        with pytest.raises(cls):
            _C.check(status)
    _C.check(_C.OK)


def test_error_text_is_the_runtimes():
    try:
        tessera.ones(2, 3) + tessera.ones(4)
    except (ValueError, RuntimeError) as e:
        text = str(e)
    assert text.startswith("[") and "]" in text  # "[add] ..." as the runtime wrote it


def test_call_op_errors():
    with pytest.raises(ValueError, match="unknown op"):
        _C.call_op("no_such_op", [tessera.ones(1)])
    with pytest.raises(TypeError, match="unknown op attribute"):
        _C.call_op("sum", [tessera.ones(1)], bogus=1)
    r = _C.call_op("sum", [tessera.ones(2, 3)], dims=(1,), keepdim=True)
    assert r.shape == (2, 1) and r.tolist() == [[3.0], [3.0]]
    out = tessera.empty(2, 3)
    assert _C.call_op("add", [tessera.ones(2, 3), tessera.ones(3)], out=out) is out
    assert out.tolist() == [[2.0] * 3] * 2
    assert _C.call_op("mul", [tessera.ones(2)], scalar=3, scalar_arg=1).tolist() == [3.0, 3.0]


def test_numpy_errors():
    with pytest.raises(TypeError):
        tessera.from_numpy(np.zeros(2, dtype=np.complex64))
    with pytest.raises(TypeError):
        tessera.tensor(np.zeros(2, dtype=np.complex64))


def test_where_and_chunk_refuse_bad_arguments():
    x = tessera.ones(2)
    with pytest.raises(TypeError, match="condition must be a Tensor"):
        tessera.where(None, x, x)
    with pytest.raises(ValueError, match="greater than 0"):
        x.chunk(0)
