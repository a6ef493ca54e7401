"""Adam and AdamW (torch.optim.Adam/AdamW's update, bias-corrected, per-parameter step count):
each parameter's step is one fused adam_step op in the plugin.

capturable=True (as torch's) keeps each step count as a float32 0-dim tensor on the parameter's
device, advanced in place and read by the kernel, so that step() can be captured in a CUDA graph
whose replays go on counting; otherwise the count is a Python int passed as a hyperparameter."""
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    _decoupled = False  # AdamW: weight decay applied to the parameter, not added to the gradient

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, capturable=False):
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
                        amsgrad=False, maximize=maximize, capturable=capturable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        from .. import _C, cuda, no_grad, zeros_like
        if cuda.is_current_stream_capturing() and not all(g.get("capturable") for g in self.param_groups):
            raise RuntimeError(f"Attempting CUDA graph capture of step() for an instance of "
                               f"{type(self).__name__} but param_groups' capturable is False.")
        loss = self._closure_loss(closure)
        with no_grad():
            for group in self.param_groups:
                if group.get("amsgrad"):
                    raise NotImplementedError("amsgrad is not supported by the fused adam_step op")
                beta1, beta2 = group["betas"]
                capturable = bool(group.get("capturable"))
                for p in group["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        state["exp_avg"] = zeros_like(p)
                        state["exp_avg_sq"] = zeros_like(p)
                    step = state["step"] = _step_state(p, state["step"], capturable)
                    inputs = [grad, state["exp_avg"], state["exp_avg_sq"]]
                    if capturable:  # the kernel reads the step from its 4th input; hp[5] unused
                        step.add_(1)
                        inputs.append(step)
                    else:
                        step = state["step"] = step + 1
                    hp = (group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                          0.0 if capturable else float(step), float(self._decoupled),
                          float(group["maximize"]))
                    _C.call_op("adam_step", inputs, out=p, hp=hp)
        return loss

    def load_state_dict(self, state_dict):
        """As Optimizer's, but each group keeps its own capturable option: the step counts are
        converted to its form (tensor or int) whatever form they were saved in."""
        capturable = [g.get("capturable", False) for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, c in zip(self.param_groups, capturable):
            group["capturable"] = c
            for p in group["params"]:
                if p in self.state and "step" in self.state[p]:
                    self.state[p]["step"] = _step_state(p, self.state[p]["step"], c)


class AdamW(Adam):
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, capturable=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         capturable=capturable)


def _step_state(p, step, capturable):
    """The step count in a group's form: capturable, a float32 0-dim tensor on p's device (as
    torch keeps it); else an int."""
    from .. import Tensor, float32, full
    if isinstance(step, Tensor) == capturable:
        return step
    if capturable:
        return full((), float(step), dtype=float32, device=p.device)
    return int(step.item())
