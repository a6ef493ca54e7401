"""SGD with momentum, dampening, Nesterov, weight decay and maximize (torch.optim.SGD's update):
each parameter's step is one fused sgd_step op in the plugin."""
from .optimizer import Optimizer, required

__all__ = ["SGD"]


class SGD(Optimizer):
    def __init__(self, params, lr=required, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        from .. import _C, no_grad, zeros_like
        loss = self._closure_loss(closure)
        with no_grad():
            for group in self.param_groups:
                momentum = group["momentum"]
                hp = (group["lr"], momentum, group["dampening"], group["weight_decay"],
                      float(group["nesterov"]), float(group["maximize"]))
                for p in group["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    state = self.state[p]
                    if momentum == 0:
                        _C.call_op("sgd_step", [grad], out=p, hp=hp + (0.0,))
                        state["momentum_buffer"] = None
                        continue
                    buf = state.get("momentum_buffer")
                    is_new = buf is None
                    if is_new:
                        buf = zeros_like(p)  # the kernel sets it to the first update
                    _C.call_op("sgd_step", [grad, buf], out=p, hp=hp + (float(is_new),))
                    state["momentum_buffer"] = buf
        return loss
