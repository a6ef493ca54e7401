"""Tessera: a deep-learning runtime with a torch-like Python API over its C ABI (tessera.h, through ctypes)."""
from . import _C
from ._tensor import Tensor, GradFn
from ._types import (Size, bfloat16, device, dtype, float16, float32, float64, int8, int16, int32, int64,
                     uint8)
from ._types import bool_ as _bool_dtype
from ._factories import (arange, allclose, as_tensor, cat, concat, concatenate, empty, empty_like, equal, eye,
                         from_numpy, full, full_like, is_tensor, linspace, manual_seed, numel, ones, ones_like,
                         rand, rand_like, randint, randint_like, randn, randn_like, randperm, seed, stack, tensor,
                         where, zeros, zeros_like)
from . import _factories as _f
from ._dlpack import from_dlpack
from . import autograd
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from ._C import OutOfMemoryError
from . import amp, backends, cuda
from .amp import (autocast, clear_autocast_cache, get_autocast_cpu_dtype, get_autocast_dtype, get_autocast_gpu_dtype,
                  is_autocast_cache_enabled, is_autocast_cpu_enabled, is_autocast_enabled)

globals().update({k: v for k, v in _f.functions().items() if k not in globals()})

# Submodules owned by other parts of the package: a missing or broken one must not break `import tessera`.
import importlib as _importlib
import warnings as _warnings

for _name in ("nn", "optim", "utils"):
    try:
        globals()[_name] = _importlib.import_module(f".{_name}", __name__)
    except ImportError as _e:  # during development
        _warnings.warn(f"tessera.{_name} is unavailable: {_e}")
try:
    from .serialization import load, save
except ImportError as _e:
    _warnings.warn(f"tessera.save/load are unavailable: {_e}")

__version__ = "0.1.0"
abi_version = _C.abi_version
library_path = _C.library_path


def is_floating_point(input):
    return input.is_floating_point()


def get_default_dtype():
    return float32


def info():
    """The runtime's state (config, plugins, devices, ops) as a dict."""
    import json
    return json.loads(_C.info_json())


# torch's dtype aliases; set last so that `bool`, `int`, `float` stay the builtins inside this module.
globals().update({"bool": _bool_dtype, "float": float32, "double": float64, "half": float16, "long": int64,
                  "int": int32, "short": int16})
