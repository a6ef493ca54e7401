# tessera.autograd: backward, grad and the grad-mode scopes (wrappers of tessera.h's autograd section).
import functools
import inspect
from ctypes import c_void_p

from . import _C
from ._tensor import Tensor, _raise, _wrap

_lib = _C.lib

_set_enabled = _C.fast.tsr_set_grad_enabled
_is_enabled = _C.fast.tsr_is_grad_enabled

__all__ = ["backward", "grad", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


def _tensors(x, what):
    if isinstance(x, Tensor):
        return [x]
    x = list(x)
    for t in x:
        if not isinstance(t, Tensor):
            raise TypeError(f"{what} must be Tensors, got {type(t).__name__}")
    return x


def _grads(grads, roots):
    """The seed array for tsr_backward/tsr_autograd_grad (None: NULL, i.e. 1 for one-element roots)."""
    if grads is None:
        return None
    grads = [grads] if isinstance(grads, Tensor) or not isinstance(grads, (list, tuple)) else list(grads)
    if len(grads) != len(roots):
        raise ValueError(f"got {len(grads)} gradients for {len(roots)} outputs")
    out = []
    for g, r in zip(grads, roots):
        if g is not None and not isinstance(g, Tensor):
            from ._factories import tensor
            g = tensor(g, dtype=r.dtype, device=r.device)
        out.append(g)
    return (c_void_p * len(out))(*[g._h.value if g is not None else None for g in out]), out


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
             inputs=None):
    """Accumulates the gradients of `tensors` into the .grad of the leaves they depend on."""
    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported")
    if grad_tensors is None:
        grad_tensors = grad_variables
    if inputs is not None:
        ins = _tensors(inputs, "inputs")
        gs = grad(tensors, ins, grad_tensors, retain_graph, allow_unused=True)
        for t, g in zip(ins, gs):
            if g is not None:
                t.grad = g if t.grad is None else t.grad + g
        return
    if isinstance(tensors, Tensor):
        if grad_tensors is None:  # the hot path: one root, seed 1
            st = _lib.tsr_backward(_C.ctypes.byref(tensors._h), None, 1, 1 if retain_graph else 0)
            if st:
                _raise(st, "backward")
            return
        roots = [tensors]
    else:
        roots = _tensors(tensors, "tensors")
    n = len(roots)
    arr = (c_void_p * n)(*[t._h.value for t in roots])
    seeds = _grads(grad_tensors, roots)
    st = _lib.tsr_backward(arr, seeds[0] if seeds else None, n, 1 if retain_graph else 0)
    if st:
        _raise(st, "backward")


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=False, is_grads_batched=False):
    """The gradients of `outputs` with respect to each of `inputs` (a tuple; None for unused inputs when
    allow_unused), without touching any .grad."""
    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported")
    roots = _tensors(outputs, "outputs")
    ins = _tensors(inputs, "inputs")
    n, m = len(roots), len(ins)
    arr = (c_void_p * n)(*[t._h.value for t in roots])
    in_arr = (c_void_p * m)(*[t._h.value for t in ins])
    out = (c_void_p * m)()
    seeds = _grads(grad_outputs, roots)
    st = _lib.tsr_autograd_grad(arr, seeds[0] if seeds else None, n, in_arr, m, 1 if retain_graph else 0,
                                1 if allow_unused else 0, out)
    if st:
        _raise(st, "grad")
    res = []
    for h in out:
        if h:
            res.append(_wrap(h))
        else:
            res.append(None)
    return tuple(res)


def is_grad_enabled():
    return bool(_is_enabled())


def _in_mode(func, mode_cls):
    """func run inside a mode_cls() scope; a generator function gets the scope around each resume."""
    if not inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def wrapper(*a, **kw):
            with mode_cls():
                return func(*a, **kw)
        return wrapper

    @functools.wraps(func)
    def gen_wrapper(*a, **kw):
        gen = func(*a, **kw)
        try:
            with mode_cls():
                response = gen.send(None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    with mode_cls():
                        gen.close()
                    raise
                except BaseException as e:
                    with mode_cls():
                        response = gen.throw(e)
                else:
                    with mode_cls():
                        response = gen.send(request)
        except StopIteration as stop:
            return stop.value
    return gen_wrapper


class _GradMode:
    """A grad-mode scope: a context manager, and a decorator (with or without parentheses) of
    functions and generator functions."""
    _mode = True

    def __init__(self, func=None):
        self._prev = []
        self._func = None if func is None else _in_mode(func, type(self))
        if func is not None:
            functools.update_wrapper(self, func)

    def __enter__(self):
        self._prev.append(_set_enabled(1 if self._mode else 0))
        return self

    def __exit__(self, *exc):
        _set_enabled(self._prev.pop())
        return False

    def __call__(self, *args, **kwargs):
        if self._func is not None:
            return self._func(*args, **kwargs)
        return _in_mode(args[0], type(self))


class no_grad(_GradMode):
    """Disables graph recording in its scope (this thread)."""
    _mode = False


class enable_grad(_GradMode):
    """Enables graph recording in its scope (this thread)."""
    _mode = True


class set_grad_enabled:
    """set_grad_enabled(mode): sets grad mode now; used as a context manager it restores the previous mode."""

    def __init__(self, mode):
        self._prev = _set_enabled(1 if mode else 0)
        self._mode = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set_enabled(self._prev)
        return False

    def __call__(self, func):
        mode = self._mode
        _set_enabled(self._prev)

        @functools.wraps(func)
        def wrapper(*a, **kw):
            with set_grad_enabled(mode):
                return func(*a, **kw)
        return wrapper


class inference_mode(no_grad):
    def __init__(self, mode=True):
        super().__init__()
        self._mode = not mode
