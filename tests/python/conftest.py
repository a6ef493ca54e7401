# pytest setup for the Python tests: `import tessera` from this checkout (api/python) with no environment
# variables; the package finds libtessera.so itself ($TESSERA_LIBRARY, else <repo>/build/runtime, else installed).
import os
import sys

import pytest

# PyTorch (where importable) before any test imports tessera: its CUDA libraries (cuBLAS, ...) must be the ones
# loaded when Tessera's CUDA plugin loads (test_cuda.py uses both on one GPU).
try:
    import torch as _torch_first  # noqa: F401
except ImportError:
    pass

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PKG = os.path.join(_REPO, "api", "python")
if _PKG not in sys.path:
    sys.path.insert(0, _PKG)


@pytest.fixture
def torch():
    """PyTorch for differential checks; the test is skipped (saying so) where it is not importable."""
    try:
        import torch as t
    except ImportError:
        pytest.skip("torch is not importable: comparison against PyTorch skipped")
    return t
