"""tessera.nn: Module, Parameter, layers, containers and losses (torch.nn's API)."""
from . import functional, init, utils
from .module import Module
from .modules import (Conv2d, CrossEntropyLoss, Dropout, Embedding, Flatten, GELU, Identity,
                      LayerNorm, Linear, LogSoftmax, MaxPool2d, ModuleList, MSELoss, NLLLoss, ReLU,
                      Sequential, Sigmoid, SiLU, Softmax, Tanh)
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Identity", "Linear", "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid",
           "Softmax", "LogSoftmax", "Sequential", "ModuleList", "Dropout", "Flatten", "Conv2d",
           "MaxPool2d", "CrossEntropyLoss", "NLLLoss", "MSELoss", "Embedding", "LayerNorm",
           "functional", "init", "utils"]
