"""Optimizer base: param groups with per-group options, per-parameter state, zero_grad, and
state_dict/load_state_dict in torch.optim's structure {'state': {idx: {...}}, 'param_groups': [...]}."""
from collections.abc import MutableMapping

__all__ = ["Optimizer", "required"]


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


def _tensor_type():
    from .._tensor import Tensor
    return Tensor


class _ParamState(MutableMapping):
    """Per-parameter state keyed by the parameter's identity (tensors compare elementwise, so
    they are not dict keys by value); a missing parameter reads as a fresh {} (defaultdict(dict))."""

    def __init__(self):
        self._items = {}  # id(param) -> (param, state)

    def __getitem__(self, p):
        item = self._items.get(id(p))
        if item is None:
            item = self._items[id(p)] = (p, {})
        return item[1]

    def __setitem__(self, p, value):
        self._items[id(p)] = (p, value)

    def __delitem__(self, p):
        del self._items[id(p)]

    def __contains__(self, p):
        return id(p) in self._items

    def __iter__(self):
        return (p for p, _ in list(self._items.values()))

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return f"ParamState({len(self)} params)"


class Optimizer:
    """Base of SGD, Adam and AdamW. Subclasses implement step()."""

    def __init__(self, params, defaults):
        Tensor = _tensor_type()
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        self.defaults = defaults
        self.state = _ParamState()
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        Tensor = _tensor_type()
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        else:
            group["params"] = list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params "
                                f"is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def step(self, closure=None):
        raise NotImplementedError

    def _closure_loss(self, closure):
        if closure is None:
            return None
        from .. import enable_grad
        with enable_grad():
            return closure()

    def state_dict(self):
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}, parameters
        numbered in group order as torch does. Tensors in the state are the live ones."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state._items.values() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores options and per-parameter state (tensors copied, cast to each parameter's
        dtype and device when floating point)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimizer ({len(self.param_groups)})")
        for g, s in zip(self.param_groups, saved_groups):
            if len(g["params"]) != len(s["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 f"the size of optimizer's group ({len(s['params'])} saved, "
                                 f"{len(g['params'])} here)")
        id_map = {}
        for g, s in zip(self.param_groups, saved_groups):
            id_map.update(zip(s["params"], g["params"]))
        state = _ParamState()
        for key, value in state_dict["state"].items():
            key = int(key) if isinstance(key, str) and key.isdigit() else key
            if key not in id_map:
                raise ValueError(f"loaded state dict has state for parameter {key!r}, which no "
                                 "parameter group holds")
            p = id_map[key]
            state[p] = {k: _cast_like(p, k, v) for k, v in value.items()}
        new_groups = []
        for g, s in zip(self.param_groups, saved_groups):
            ng = {k: _copy_value(v) for k, v in s.items() if k != "params"}
            ng["params"] = g["params"]
            new_groups.append(ng)
        self.state = state
        self.param_groups = new_groups

    def __repr__(self):
        lines = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}


def _copy_value(v):
    if isinstance(v, list):
        return [_copy_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy_value(x) for k, x in v.items()}
    return v


def _cast_like(p, key, v):
    """A state value ready for parameter p: tensors copied to p's device (and dtype if floating);
    the step count (a tensor in torch's state dicts) as an int."""
    is_tensor = isinstance(v, _tensor_type())
    if key == "step":
        return int(v.item()) if is_tensor else int(v)
    if not is_tensor:
        return _copy_value(v)
    v = v.detach().to(p.device)
    if v.dtype.is_floating_point:
        v = v.to(p.dtype)
    return v.clone()
