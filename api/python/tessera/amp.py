"""Automatic mixed precision: tessera.autocast (torch.autocast's API and op policy), its thread-local state and
the cast cache of a region.

Policy (as torch's; the same for 'cuda' and 'cpu'):
- lower precision (the region's dtype: float16 or bfloat16): matmul, mm, bmm, @, linear, conv2d,
  scaled_dot_product_attention. Their floating inputs are cast (float64 ones are left alone, as torch).
- float32: layer_norm, softmax, log_softmax, cross_entropy, nll_loss, mse_loss, sum, prod, exp, log: float16/
  bfloat16 inputs are cast to float32 first.
- everything else runs in its inputs' dtype (binary ops promote, cat promotes).
The casts are ordinary differentiable ops, so float32 master weights get float32 gradients. Casts of leaves that
require grad (parameters) are cached for the region, keyed by the tensor, its version counter and the grad mode;
the cache is dropped when the outermost region of the thread exits.
"""
import functools
import inspect
import sys
import threading
import types
import warnings

from ._types import bfloat16, float16, float32

__all__ = ["autocast", "is_autocast_enabled", "is_autocast_cpu_enabled", "get_autocast_dtype",
           "get_autocast_gpu_dtype", "get_autocast_cpu_dtype", "is_autocast_cache_enabled", "clear_autocast_cache"]

_DEVICE_TYPES = ("cuda", "cpu")
_DEFAULT_DTYPE = {"cuda": float16, "cpu": bfloat16}  # torch's defaults
_SUPPORTED = {"cuda": (float16, bfloat16), "cpu": (bfloat16,)}
_HALF = (float16, bfloat16)

# Enabled regions entered, every thread together: the ops' one-load check before they look at this thread's state.
_active = [0]
_tls = threading.local()


class _State:
    """One thread's autocast state."""
    __slots__ = ("enabled", "dtype", "cache_enabled", "depth", "cache")

    def __init__(self):
        self.enabled = {"cuda": False, "cpu": False}
        self.dtype = dict(_DEFAULT_DTYPE)
        self.cache_enabled = True
        self.depth = 0  # autocast regions entered (enabled or not)
        self.cache = {}  # (handle, dtype id, grad mode) -> (version, source tensor, cast)


def _state():
    s = getattr(_tls, "s", None)
    if s is None:
        s = _tls.s = _State()
    return s


# ---- the op side ---------------------------------------------------------------------------------
def region_dtype(t):
    """The autocast dtype for ops on t's device in this thread; None outside an enabled region."""
    s = getattr(_tls, "s", None)
    if s is None:
        return None
    dev = t.device.type
    return s.dtype[dev] if s.enabled.get(dev) else None


def _cast_lower(t, dt, s):
    """t cast to dt when it is a float32/float16/bfloat16 tensor of another dtype (cached for parameters)."""
    if t is None or t.dtype is dt or not t.dtype.is_floating_point or t.dtype.itemsize == 8:
        return t
    from .autograd import is_grad_enabled
    if not (s.cache_enabled and t.requires_grad and t.is_leaf):
        return t.to(dt)
    grad = is_grad_enabled()
    key = (t._h.value, dt._id, grad)
    version = t._version
    hit = s.cache.get(key)
    if hit is not None and hit[0] == version and hit[1] is t:
        return hit[2]
    cast = t.to(dt)
    s.cache[key] = (version, t, cast)  # holding t keeps its handle (the key) from being reused
    return cast


def lower_args(*tensors):
    """The lower-precision policy: under autocast for the first tensor's device, the tensors (None allowed)
    cast to the region's dtype; otherwise the tensors as they are. Returns a tuple."""
    dt = region_dtype(tensors[0])
    if dt is None:
        return tensors
    s = _tls.s
    return tuple(_cast_lower(t, dt, s) for t in tensors)


def fp32_args(*tensors):
    """The float32 policy: under autocast for the first tensor's device, float16/bfloat16 tensors cast to
    float32; otherwise the tensors as they are. Returns a tuple."""
    if region_dtype(tensors[0]) is None:
        return tensors
    return tuple(t.to(float32) if t is not None and t.dtype in _HALF else t for t in tensors)


def fp32_arg(t):
    return fp32_args(t)[0]


# ---- the user side ---------------------------------------------------------------------------------
def _check_device_type(device_type):
    if device_type not in _DEVICE_TYPES:
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}' "
                           f"(tessera supports {', '.join(repr(d) for d in _DEVICE_TYPES)})")


class autocast:
    """autocast(device_type, dtype=None, enabled=True, cache_enabled=None): a region (context manager, or a
    decorator of functions) in which the ops on `device_type` tensors run by the mixed-precision policy of
    this module. dtype None: float16 for 'cuda', bfloat16 for 'cpu' (torch's defaults); 'cpu' supports
    bfloat16 only, 'cuda' float16 and bfloat16 (another dtype warns and disables the region, as torch).
    Regions nest; the state is per thread."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        _check_device_type(device_type)
        self.device = device_type
        self.fast_dtype = _DEFAULT_DTYPE[device_type] if dtype is None else dtype
        self._enabled = bool(enabled)
        self._cache_enabled = True if cache_enabled is None else bool(cache_enabled)
        if self._enabled and self.fast_dtype not in _SUPPORTED[device_type]:
            names = " and ".join(f"tessera.{d.name}" for d in _SUPPORTED[device_type])
            warnings.warn(f"In {device_type} autocast, but the target dtype {self.fast_dtype} is not supported "
                          f"(supported: {names}). Disabling autocast.")
            self._enabled = False
        self._saved = []

    def __enter__(self):
        s = _state()
        dev = self.device
        self._saved.append((s.enabled[dev], s.dtype[dev], s.cache_enabled))
        s.enabled[dev] = self._enabled
        s.dtype[dev] = self.fast_dtype
        s.cache_enabled = self._cache_enabled
        s.depth += 1
        if self._enabled:
            _active[0] += 1
        return self

    def __exit__(self, *exc):
        s = _state()
        s.enabled[self.device], s.dtype[self.device], s.cache_enabled = self._saved.pop()
        s.depth -= 1
        if s.depth == 0:
            s.cache.clear()
        if self._enabled:
            _active[0] -= 1
        return False

    def __call__(self, func):
        args = (self.device, self.fast_dtype, self._enabled, self._cache_enabled)
        if inspect.isgeneratorfunction(func):
            raise TypeError("autocast cannot decorate a generator function")

        @functools.wraps(func)
        def wrapper(*a, **kw):
            with autocast(*args):
                return func(*a, **kw)
        return wrapper

    def __repr__(self):
        return (f"autocast(device_type={self.device!r}, dtype=tessera.{self.fast_dtype.name}, "
                f"enabled={self._enabled}, cache_enabled={self._cache_enabled})")


def is_autocast_enabled(device_type="cuda"):
    _check_device_type(device_type)
    s = getattr(_tls, "s", None)
    return bool(s and s.enabled[device_type])


def is_autocast_cpu_enabled():
    return is_autocast_enabled("cpu")


def get_autocast_dtype(device_type):
    _check_device_type(device_type)
    s = getattr(_tls, "s", None)
    return s.dtype[device_type] if s else _DEFAULT_DTYPE[device_type]


def get_autocast_gpu_dtype():
    return get_autocast_dtype("cuda")


def get_autocast_cpu_dtype():
    return get_autocast_dtype("cpu")


def is_autocast_cache_enabled():
    s = getattr(_tls, "s", None)
    return s.cache_enabled if s else True


def clear_autocast_cache():
    s = getattr(_tls, "s", None)
    if s is not None:
        s.cache.clear()


def _device_amp(device_type, default_dtype):
    """The module tessera.<device_type>.amp: its autocast(enabled=True, dtype=<default>, cache_enabled=True)."""
    mod = types.ModuleType(f"tessera.{device_type}.amp", f"tessera.{device_type}.amp: autocast for '{device_type}'.")

    def device_autocast(enabled=True, dtype=default_dtype, cache_enabled=True):
        return autocast(device_type, dtype, enabled, cache_enabled)
    device_autocast.__name__ = device_autocast.__qualname__ = "autocast"
    device_autocast.__module__ = mod.__name__
    mod.autocast = device_autocast
    sys.modules[mod.__name__] = mod
    return mod


cuda_amp = _device_amp("cuda", float16)
