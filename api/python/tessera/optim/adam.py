"""Adam and AdamW (torch.optim.Adam/AdamW's update, bias-corrected, per-parameter step count):
each parameter's step is one fused adam_step op in the plugin."""
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    _decoupled = False  # AdamW: weight decay applied to the parameter, not added to the gradient

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if amsgrad:
            raise NotImplementedError(f"{type(self).__name__}(amsgrad=True) is not supported: "
                                      "the fused adam_step op has no max_exp_avg_sq state")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=False, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        from .. import _C, no_grad, zeros_like
        loss = self._closure_loss(closure)
        with no_grad():
            for group in self.param_groups:
                if group.get("amsgrad"):
                    raise NotImplementedError("amsgrad is not supported by the fused adam_step op")
                beta1, beta2 = group["betas"]
                for p in group["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        state["exp_avg"] = zeros_like(p)
                        state["exp_avg_sq"] = zeros_like(p)
                    state["step"] += 1
                    hp = (group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                          float(state["step"]), float(self._decoupled), float(group["maximize"]))
                    _C.call_op("adam_step", [grad, state["exp_avg"], state["exp_avg_sq"]],
                               out=p, hp=hp)
        return loss


class AdamW(Adam):
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
