"""tessera.nn.utils: gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_), through the
FOREACH ops: one grad_norm kernel per device over all its gradients, one clip_grad_scale kernel that scales
them in place reading the total norm on the device (no copy to the host unless error_if_nonfinite)."""
import math

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters):
    from .._tensor import Tensor
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _by_device(grads):
    """{device: [grads on it]}, in first-seen order."""
    groups = {}
    for g in grads:
        groups.setdefault(g.device, []).append(g)
    return groups


def _device_norm(grads, norm_type):
    """The norm_type-norm of every element of `grads` (one device) as a 0-dim tensor there."""
    from .. import _C
    if norm_type in (2.0, math.inf):
        return _C.call_op("grad_norm", grads, hp=(norm_type,))
    # other norms: composed (sum |g|^p)^(1/p), in float32 (float64 if a gradient is)
    from .. import float32, float64
    dt = float64 if any(g.dtype is float64 for g in grads) else float32
    total = None
    for g in grads:
        g = g.detach().to(dt).abs()
        part = (g.max() if norm_type == math.inf else g.pow(norm_type).sum()) if norm_type else \
            (g != 0).to(dt).sum()
        total = part if total is None else total + part
    return total if norm_type in (0.0, math.inf) else total ** (1.0 / norm_type)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scales the .grad of `parameters` (a tensor or an iterable) in place so that their total norm_type-norm
    (all gradients as one vector) is at most max_norm: each g *= min(max_norm / (total + 1e-6), 1).
    Returns the total norm (before clipping) as a 0-dim tensor on the first gradient's device."""
    import tessera
    norm_type = float(norm_type)
    max_norm = float(max_norm)
    grads = _grads(parameters)
    if not grads:
        return tessera.tensor(0.0)
    with tessera.no_grad():
        groups = _by_device(grads)
        norms = [_device_norm(gs, norm_type) for gs in groups.values()]
        first = grads[0].device
        if len(norms) == 1:
            total = norms[0]
        else:
            norms = [n.to(first) for n in norms]
            if norm_type == math.inf:
                total = tessera.stack(norms).max()
            else:
                total = sum(n ** norm_type for n in norms) ** (1.0 / norm_type)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is "
                               f"non-finite, so it cannot be clipped. To disable this error and scale the gradients "
                               f"by the non-finite norm anyway, set `error_if_nonfinite=False`")
        for dev, gs in groups.items():
            tessera._C.call_op("clip_grad_scale", [total if dev == first else total.to(dev)], out=list(gs),
                               hp=(max_norm,))
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamps every .grad of `parameters` in place to [-clip_value, clip_value]."""
    import tessera
    clip_value = float(clip_value)
    with tessera.no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)
