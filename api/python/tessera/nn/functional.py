"""tessera.nn.functional: the stateless forms of the layers and losses (torch.nn.functional's
names and semantics). Everything is composed of differentiable runtime ops, so autograd flows."""
import numpy as np

__all__ = ["linear", "relu", "gelu", "silu", "tanh", "sigmoid", "softmax", "log_softmax",
           "dropout", "conv2d", "max_pool2d", "cross_entropy", "nll_loss", "mse_loss", "flatten"]


def _C():
    from .. import _C as c
    return c


def _pair(v, name):
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(x, int) for x in v):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v


def linear(input, weight, bias=None):
    """input @ weight.T + bias; input is (*, in), weight (out, in), bias (out,)."""
    out = input.matmul(weight.t())
    return out if bias is None else out + bias


def relu(input, inplace=False):
    return input.relu_() if inplace else input.relu()


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate argument must be either 'none' or 'tanh', "
                         f"got {approximate!r}")
    return _C().call_op("gelu", [input], approximate=int(approximate == "tanh"))


def silu(input, inplace=False):
    return _C().call_op("silu", [input], out=input if inplace else None)


def tanh(input):
    return input.tanh()


def sigmoid(input):
    return input.sigmoid()


def softmax(input, dim=None):
    return input.softmax(_default_dim(input, dim))


def log_softmax(input, dim=None):
    return input.log_softmax(_default_dim(input, dim))


def _default_dim(input, dim):
    if dim is not None:
        return dim
    return 0 if input.dim() in (0, 1, 3) else 1  # torch's legacy implicit choice


def flatten(input, start_dim=0, end_dim=-1):
    return input.flatten(start_dim, end_dim)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes each element with probability p and scales the rest by 1/(1-p) while training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    from .. import no_grad, empty_like
    with no_grad():
        mask = empty_like(input).bernoulli_(1.0 - p)
        if p < 1.0:
            mask.mul_(1.0 / (1.0 - p))
    return input.mul_(mask) if inplace else input * mask


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over NCHW input: weight is (out, in/groups, kh, kw), bias (out,).
    padding is an int, a pair, 'valid' or 'same' (stride 1, symmetric padding)."""
    dilation = _pair(dilation, "dilation")
    stride = _pair(stride, "stride")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
            if any(t % 2 for t in total):
                raise NotImplementedError("padding='same' with an even effective kernel size "
                                          "needs asymmetric padding, which conv2d lacks")
            padding = tuple(t // 2 for t in total)
        else:
            raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                             "{'valid', 'same'}")
    inputs = [input, weight] if bias is None else [input, weight, bias]
    return _C().call_op("conv2d", inputs, stride2=stride, padding=_pair(padding, "padding"),
                        dilation=dilation, groups=groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling over NCHW input (padding counts as -inf); stride defaults to the window."""
    if return_indices:
        raise NotImplementedError("max_pool2d(return_indices=True) is not supported")
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or stride == [] else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"pad should be at most half of effective kernel size, but got "
                         f"pad={list(padding)}, kernel_size={list(kernel)}")
    return _C().call_op("max_pool2d", [input], kernel=kernel, stride2=stride, padding=padding,
                        dilation=_pair(dilation, "dilation"), ceil_mode=int(bool(ceil_mode)))


# ---- losses ------------------------------------------------------------------------------------

def _reduce(loss, reduction, denom=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if denom is None else loss.sum() / denom
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _class_last(x):
    """x with its class dim (1; 0 for a 1-D x) moved last: (N, C, d1, ...) -> (N, d1, ..., C)."""
    if x.dim() <= 2:
        return x
    return x.permute(0, *range(2, x.dim()), 1)


def _weighted_log_likelihood(logp, target, weight, ignore_index, label_smoothing, reduction,
                             fn):
    """-(sum_c coef[.., c] * logp[.., c]) reduced, where coef holds the (smoothed, weighted)
    targets: for class indices coef = w * ((1-eps) * onehot(t) + eps/C), zero where t is
    ignore_index, and 'mean' divides by sum of w[t] over the kept samples (PyTorch's
    normalization); for class probabilities coef = w * ((1-eps) * t + eps/C), 'mean' divides by
    the number of samples."""
    import tessera
    if logp.dim() == 0:
        raise ValueError(f"{fn}: input must have at least one dimension (the classes)")
    num_classes = logp.shape[1] if logp.dim() >= 2 else logp.shape[0]
    logp = _class_last(logp)  # logp is (..., C)
    if weight is not None and list(weight.shape) != [num_classes]:
        raise ValueError(f"{fn}: weight should have shape [{num_classes}] (one per class), "
                         f"got {list(weight.shape)}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {eps}")
    with tessera.no_grad():
        if target.dtype.is_floating_point:  # class probabilities
            target = _class_last(target)
            if list(target.shape) != list(logp.shape):
                raise ValueError(f"{fn}: probability target of shape {list(target.shape)} "
                                 f"must match input of shape {list(logp.shape)} (classes last)")
            coef = target.to(logp.dtype) * (1.0 - eps) + eps / num_classes
            if weight is not None:
                coef = coef * weight.to(logp.dtype)
            denom = None
        else:
            coef, denom = _index_coef(logp, target, weight, ignore_index, eps, num_classes, fn,
                                      reduction)
    loss = -(logp * coef).sum(-1)  # loss is (...), the batch shape
    return _reduce(loss, reduction, denom)


def _capturing(t):
    """Whether t's device is in the middle of a CUDA graph capture on this thread."""
    if t.device.type != "cuda":
        return False
    from tessera import cuda
    return cuda.is_current_stream_capturing()


def _index_coef(logp, target, weight, ignore_index, eps, num_classes, fn, reduction):
    import tessera
    if target.dtype.is_floating_point or target.dtype is tessera.bool:
        raise TypeError(f"{fn}: target must hold class indices (an integer tensor), "
                        f"got {target.dtype}")
    if list(target.shape) != list(logp.shape[:-1]):
        raise ValueError(f"{fn}: expected target of shape {list(logp.shape[:-1])} for input of "
                         f"{num_classes} classes, got target of shape {list(target.shape)}")
    # Everything stays on the target's device: no copy to the host beyond the one-element
    # bounds check (which a CUDA graph capture skips, as it cannot read the device).
    target = target.long()
    ignored = target == ignore_index  # ignored is (...)
    bad = ((target < 0) | (target >= num_classes)) & ~ignored
    if not _capturing(target) and bad.any().item():
        first = target[bad].flatten()[0].item()
        raise IndexError(f"{fn}: Target {first} is out of bounds (the input has "
                         f"{num_classes} classes)")
    classes = tessera.arange(num_classes, device=logp.device)
    onehot = (classes == target.unsqueeze(-1)).to(logp.dtype)  # onehot is (..., C)
    coef = onehot * (1.0 - eps) + eps / num_classes if eps else onehot
    keep = (~ignored).to(logp.dtype).unsqueeze(-1)  # keep is (..., 1): 0 for ignored targets
    coef = coef * keep
    onehot = onehot * keep
    denom = None
    if weight is not None:
        w = weight.to(logp.dtype)
        coef = coef * w
        if reduction == "mean":
            denom = (onehot * w).sum()
    elif reduction == "mean":
        denom = keep.sum()
    return coef, denom


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross entropy of logits input (N, C) / (N, C, d1, ...) / (C,) against class indices or
    class probabilities; label smoothing as PyTorch: (1-eps) * nll + eps * mean_c(-logp_c)."""
    return _weighted_log_likelihood(log_softmax(input, 1 if input.dim() >= 2 else 0), target,
                                    weight, ignore_index, label_smoothing, reduction,
                                    "cross_entropy")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log likelihood of log-probabilities input against class indices."""
    if target.dtype.is_floating_point:
        raise TypeError(f"nll_loss: target must hold class indices, got {target.dtype}")
    return _weighted_log_likelihood(input, target, weight, ignore_index, 0.0, reduction,
                                    "nll_loss")


def mse_loss(input, target, reduction="mean"):
    if list(input.shape) != list(target.shape):
        import warnings
        warnings.warn(f"Using a target size ({list(target.shape)}) that is different to the "
                      f"input size ({list(input.shape)}). This will likely lead to incorrect "
                      "results due to broadcasting.", stacklevel=2)
    diff = input - target
    return _reduce(diff * diff, reduction)

