"""nn.Parameter: a leaf Tensor that requires grad and that Modules register as a parameter."""
from .._tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """Parameter(data, requires_grad=True): shares data's storage, detached from its history."""
    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from .. import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter data must be a tessera.Tensor, got {type(data).__name__}")
        return Tensor._make_subclass(cls, data, requires_grad)

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__ (c_void_p.__init__ would take data as the pointer)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) not in memo:
            memo[id(self)] = Parameter(self.detach().clone(), self.requires_grad)
        return memo[id(self)]

    def __reduce_ex__(self, protocol):
        return Parameter, (self.detach(), self.requires_grad)
