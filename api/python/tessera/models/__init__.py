"""tessera.models: complete networks built from tessera.nn (GPT, as nanoGPT's model.py)."""
from . import gpt
from .gpt import GPT, GPTConfig

__all__ = ["gpt", "GPT", "GPTConfig"]
