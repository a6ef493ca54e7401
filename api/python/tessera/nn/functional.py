"""tessera.nn.functional: the stateless forms of the layers and losses (torch.nn.functional's
names and semantics). Everything is composed of differentiable runtime ops (fused ones where the
op table has them: layer_norm, scaled_dot_product_attention, cross_entropy, dropout,
index_select), so autograd flows; tessera.autocast's policy applies (see tessera/amp.py)."""
import math
import re

from .. import _C as _Cmod
from .. import amp as _amp

__all__ = ["linear", "relu", "gelu", "silu", "tanh", "sigmoid", "softmax", "log_softmax",
           "dropout", "conv2d", "max_pool2d", "cross_entropy", "nll_loss", "mse_loss", "flatten",
           "layer_norm", "embedding", "scaled_dot_product_attention"]

_amp_active = _amp._active


def _C():
    return _Cmod


def _pair(v, name):
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(x, int) for x in v):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v


def linear(input, weight, bias=None):
    """input @ weight.T + bias; input is (*, in), weight (out, in), bias (out,)."""
    if _amp_active[0]:
        input, weight, bias = _amp.lower_args(input, weight, bias)
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
    """Zeroes each element with probability p and scales the rest by 1/(1-p) while training: the
    dropout op, whose mask comes from the seeded generator (element i kept iff its Philox draw
    u(i) < 1 - p, bernoulli_'s rule), so a seed reproduces it bit for bit."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input.mul_(0.0) if inplace else input * 0.0
    y = _Cmod.call_op("dropout", [input], hp=(float(p),))
    return input.copy_(y) if inplace else y


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
    if _amp_active[0]:
        input, weight, bias = _amp.lower_args(input, weight, bias)
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


def _legacy_reduction(size_average, reduce, reduction):
    """torch's deprecated size_average/reduce arguments folded into `reduction`."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else "mean" if size_average else "sum"


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross entropy of logits input (N, C) / (N, C, d1, ...) / (C,) against class indices or
    class probabilities; label smoothing as PyTorch: (1-eps) * nll + eps * mean_c(-logp_c).
    Class indices without weight= take the fused cross_entropy op (classes moved last, rows
    flattened to [N', C]); weight= or probability targets the composite log_softmax path."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {eps}")
    if _amp_active[0]:
        input = _amp.fp32_arg(input)
    tdt = getattr(target, "dtype", None)
    if weight is None and tdt is not None and not tdt.is_floating_point and tdt.name != "bool":
        return _cross_entropy_fused(input, target, ignore_index, eps, reduction)
    return _weighted_log_likelihood(log_softmax(input, 1 if input.dim() >= 2 else 0), target,
                                    weight, ignore_index, eps, reduction, "cross_entropy")


def _cross_entropy_fused(input, target, ignore_index, eps, reduction):
    """The cross_entropy op on logits [N', C] and targets [N']: per-sample losses (0 where
    ignored), reduced here ('mean': over the targets that are not ignore_index, as PyTorch)."""
    if input.dim() == 0:
        raise ValueError("cross_entropy: input must have at least one dimension (the classes)")
    num_classes = input.shape[1] if input.dim() >= 2 else input.shape[0]
    want = [] if input.dim() == 1 else [input.shape[0]] + list(input.shape[2:])
    if list(target.shape) != want:
        batch = ""
        if input.dim() >= 2 and target.dim() >= 1 and target.shape[0] != input.shape[0]:
            batch = (f" (Expected input batch_size ({input.shape[0]}) to match target "
                     f"batch_size ({target.shape[0]}).)")
        raise ValueError(f"cross_entropy: expected target of shape {want} for input of shape "
                         f"{list(input.shape)} ({num_classes} classes), got target of shape "
                         f"{list(target.shape)}{batch}")
    logits = _class_last(input).reshape(-1, num_classes)  # logits is (N', C)
    flat = target.reshape(-1)  # flat is (N',)
    try:
        loss = _Cmod.call_op("cross_entropy", [logits, flat], hp=(float(ignore_index), eps))  # (N',)
    except IndexError as e:  # torch's wording first: "Target 3 is out of bounds."
        m = re.search(r"target (-?\d+) is out of bounds", str(e))
        if m is None:
            raise
        raise IndexError(f"Target {m.group(1)} is out of bounds. {e}") from None
    if reduction == "none":
        return loss.reshape(want)
    if reduction == "sum":
        return loss.sum()
    count = (flat != ignore_index).sum()
    return loss.sum() / count.to(loss.dtype)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log likelihood of log-probabilities input against class indices."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if target.dtype.is_floating_point:
        raise TypeError(f"nll_loss: target must hold class indices, got {target.dtype}")
    if _amp_active[0]:
        input = _amp.fp32_arg(input)
    return _weighted_log_likelihood(input, target, weight, ignore_index, 0.0, reduction,
                                    "nll_loss")


# ---- normalization, embedding, attention ---------------------------------------------------------

def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing normalized_shape dims
    (biased variance), through the fused layer_norm op."""
    shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else \
        tuple(int(n) for n in normalized_shape)
    if not shape:
        raise RuntimeError("layer_norm: Expected normalized_shape to be at least 1-dimensional, "
                           "i.e., containing at least one element, but got normalized_shape = []")
    n = len(shape)
    if input.dim() < n or tuple(input.shape[input.dim() - n:]) != shape:
        raise RuntimeError(f"Given normalized_shape={list(shape)}, expected input with shape "
                           f"[*, {', '.join(str(d) for d in shape)}], but got input of size"
                           f"{list(input.shape)}")
    if _amp_active[0]:
        input, weight, bias = _amp.fp32_args(input, weight, bias)
    if weight is None and bias is not None:  # the op takes b only after w
        from .. import ones
        weight = ones(shape, dtype=bias.dtype, device=bias.device)
    inputs = [input] + [t for t in (weight, bias) if t is not None]
    return _Cmod.call_op("layer_norm", inputs, dim=n, hp=(float(eps),))


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """The rows of weight (num_embeddings, *) at the integer indices input: input's shape + the
    row's shape, through index_select; the padding_idx row gets no gradient."""
    if max_norm is not None:
        raise NotImplementedError("embedding(max_norm=...) (renormalizing rows in place) is not "
                                  "supported")
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse gradients are not "
                                  "supported")
    if weight.dim() != 2:
        raise RuntimeError(f"embedding: 'weight' must be 2-D, got shape {list(weight.shape)}")
    dt = input.dtype
    if dt.is_floating_point or dt.name in ("bool", "uint8"):
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the "
                           f"following scalar types: Long, Int; but got {dt.name} instead "
                           f"(while checking arguments for embedding)")
    if padding_idx is not None:
        padding_idx = _padding_idx(padding_idx, weight.shape[0])
    flat = input.reshape(-1)  # flat is (n,)
    rows = weight.index_select(0, flat)  # rows is (n, D)
    if padding_idx is not None and rows.requires_grad:
        # the same values, but the padding row's gradient is cut: where() sends it to a detached copy
        from .. import where
        rows = where((flat != padding_idx).unsqueeze(1), rows, rows.detach())
    return rows.reshape(list(input.shape) + list(weight.shape[1:]))


def _padding_idx(padding_idx, num_embeddings):
    if padding_idx > 0:
        assert padding_idx < num_embeddings, "Padding_idx must be within num_embeddings"
    elif padding_idx < 0:
        assert padding_idx >= -num_embeddings, "Padding_idx must be within num_embeddings"
        padding_idx = num_embeddings + padding_idx
    return padding_idx


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(q @ k^T * scale + mask) @ v (with dropout on the softmax): query (..., T, D),
    key/value (..., S, D), scale 1/sqrt(D) by default, is_causal: query i sees keys j <= i.
    Without attn_mask: the fused op (blocked, no T x S matrix); attn_mask (bool: True takes
    part; or float, added to the scores), a value head dim other than the query's, dropout_p 1,
    a scale <= 0 or a geometry the device's kernel lacks (NotImplementedError: a head dim on
    CUDA) go through matmul/softmax."""
    if _amp_active[0]:
        query, key, value = _amp.lower_args(query, key, value)
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise RuntimeError(f"scaled_dot_product_attention: expected query, key and value of at least "
                           f"2 dims, got shapes {list(query.shape)}, {list(key.shape)}, "
                           f"{list(value.shape)}")
    if attn_mask is not None and is_causal:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set "
                           "when is_causal=True")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    if attn_mask is not None or dropout_p >= 1.0 or (scale is not None and scale <= 0) or \
            value.shape[-1] != query.shape[-1]:  # (the op: one head dim for q, k and v)
        return _sdpa_composite(query, key, value, attn_mask, dropout_p, is_causal, scale)
    lead = list(query.shape[:-2])
    q, k, v = query, key, value
    if not (q.dim() == k.dim() == v.dim() and q.dim() in (3, 4)):
        q, k, v = (_as_batched(t, lead) for t in (query, key, value))
    try:
        out = _Cmod.call_op("scaled_dot_product_attention", [q, k, v],
                            hp=(0.0 if scale is None else float(scale), float(dropout_p),
                                1.0 if is_causal else 0.0))
    except NotImplementedError:  # a geometry the device's kernel lacks (a head dim, a dtype); with
        # dropout, the op has drawn its Philox counters already: the composite's mask is another draw
        return _sdpa_composite(query, key, value, None, dropout_p, is_causal, scale)
    return out if out.dim() == query.dim() else out.reshape(lead + list(out.shape[-2:]))


def _as_batched(t, lead):
    """t (..., L, D) as (B, L, D) with the leading dims `lead` (broadcast) flattened to B."""
    t = t.expand(lead + list(t.shape[-2:]))
    return t.reshape([-1] + list(t.shape[-2:]))


def _sdpa_composite(q, k, v, attn_mask, dropout_p, is_causal, scale):
    T, S = q.shape[-2], k.shape[-2]
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = q.matmul(k.transpose(-2, -1)) * s  # scores is (..., T, S)
    if is_causal:
        from .. import ones
        keep = ones(T, S, dtype=_bool(), device=q.device).tril()
        scores = scores.masked_fill(keep.logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype is _bool():
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            scores = scores + attn_mask
    attn = scores.softmax(-1)  # (float32 under autocast; the product below casts it back)
    if dropout_p > 0.0:
        attn = dropout(attn, dropout_p)
    return attn.matmul(v)


def _bool():
    from .. import _types
    return _types.bool_


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if _amp_active[0]:
        input, target = _amp.fp32_args(input, target)
    if list(input.shape) != list(target.shape):
        import warnings
        warnings.warn(f"Using a target size ({list(target.shape)}) that is different to the "
                      f"input size ({list(input.shape)}). This will likely lead to incorrect "
                      "results due to broadcasting.", stacklevel=2)
    diff = input - target
    return _reduce(diff * diff, reduction)

