"""tessera.models.gpt: a GPT language model written as nanoGPT's model.py (Karpathy), name for
name, on tessera.nn: token + position embeddings, pre-LN blocks of causal self-attention (one
c_attn projection split into q, k, v; scaled_dot_product_attention with is_causal) and an MLP
(GELU), a final LayerNorm and an lm_head tied to the token embedding.

The same source builds the model on any torch-like library: `for_backend(torch)` gives the
PyTorch twin (used by tools/tessera-train --backend torch), and this module's GPT, Block, ...
are `for_backend(tessera)`'s. State dict keys are nanoGPT's, so weights move between the two
through safetensors unchanged:
  transformer.wte.weight (vocab, C)     transformer.wpe.weight (block, C)
  transformer.h.<i>.ln_1.weight (C)     transformer.h.<i>.attn.c_attn.weight (3C, C)
  transformer.h.<i>.attn.c_proj.weight (C, C)   transformer.h.<i>.ln_2.weight (C)
  transformer.h.<i>.mlp.c_fc.weight (4C, C)     transformer.h.<i>.mlp.c_proj.weight (C, 4C)
  transformer.ln_f.weight (C)           lm_head.weight (vocab, C), the same tensor as wte's
  (+ the matching .bias entries when GPTConfig.bias)."""
import inspect
import math
from dataclasses import dataclass
from types import SimpleNamespace

__all__ = ["GPTConfig", "LayerNorm", "CausalSelfAttention", "MLP", "Block", "GPT", "for_backend"]


@dataclass
class GPTConfig:
    block_size: int = 1024   # the longest context the model takes (rows of wpe)
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True        # biases in the Linears and LayerNorms (False: a bit better and faster)

    def check(self):
        """ValueError naming the field when the sizes cannot make a GPT."""
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")


_BACKENDS = {}


def for_backend(torch):
    """The model's classes (a namespace of LayerNorm, CausalSelfAttention, MLP, Block, GPT and
    GPTConfig) built on the torch-like module `torch` (tessera or torch itself)."""
    key = torch.__name__
    if key not in _BACKENDS:
        _BACKENDS[key] = _define(torch)
    return _BACKENDS[key]


def _define(torch):
    nn = torch.nn
    F = torch.nn.functional
    has_sdpa = hasattr(F, "scaled_dot_product_attention")  # torch < 2.0 lacks it
    ModuleDict = getattr(nn, "ModuleDict", None) or _module_dict(nn)

    class LayerNorm(nn.Module):
        """LayerNorm with an optional bias (torch.nn.LayerNorm has bias= only since 2.1)."""

        def __init__(self, ndim, bias):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(ndim))
            self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

        def forward(self, input):
            return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)

    class CausalSelfAttention(nn.Module):

        def __init__(self, config):
            super().__init__()
            assert config.n_embd % config.n_head == 0
            # key, query, value projections for all heads, in one matmul
            self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
            # output projection
            self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
            self.attn_dropout = nn.Dropout(config.dropout)
            self.resid_dropout = nn.Dropout(config.dropout)
            self.n_head = config.n_head
            self.n_embd = config.n_embd
            self.dropout = config.dropout

        def forward(self, x):
            B, T, C = x.size()  # x is (B, T, C): batch, sequence length, embedding width
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # each (B, T, C)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            if has_sdpa:  # fused attention: the (T, T) matrix is never materialized
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                                   dropout_p=self.dropout if self.training else 0,
                                                   is_causal=True)
            else:  # torch < 2.0: the same attention, written out
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~mask, float("-inf"))
                att = F.softmax(att, dim=-1)
                att = self.attn_dropout(att)
                y = att @ v  # (B, nh, T, hs)
            y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
            y = self.resid_dropout(self.c_proj(y))
            return y

    class MLP(nn.Module):

        def __init__(self, config):
            super().__init__()
            self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
            self.dropout = nn.Dropout(config.dropout)

        def forward(self, x):
            x = self.c_fc(x)      # (B, T, 4C)
            x = self.gelu(x)
            x = self.c_proj(x)    # (B, T, C)
            x = self.dropout(x)
            return x

    class Block(nn.Module):

        def __init__(self, config):
            super().__init__()
            self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
            self.attn = CausalSelfAttention(config)
            self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
            self.mlp = MLP(config)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

    class GPT(nn.Module):

        def __init__(self, config):
            super().__init__()
            assert config.vocab_size is not None
            assert config.block_size is not None
            config.check()
            self.config = config

            self.transformer = ModuleDict(dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            ))
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
            # weight tying: the token embedding is the output projection
            # (https://paperswithcode.com/method/weight-tying)
            self.transformer.wte.weight = self.lm_head.weight

            # init all weights
            self.apply(self._init_weights)
            # apply special scaled init to the residual projections, per the GPT-2 paper
            for pn, p in self.named_parameters():
                if pn.endswith("c_proj.weight"):
                    torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

        def get_num_params(self, non_embedding=True):
            """The number of parameters; by default without the position embeddings (the token
            embeddings count: they are the lm_head's weights too)."""
            n_params = sum(p.numel() for p in self.parameters())
            if non_embedding:
                n_params -= self.transformer.wpe.weight.numel()
            return n_params

        def _init_weights(self, module):
            if isinstance(module, nn.Linear):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            """idx (B, T) int64 token ids, T <= block_size; targets (B, T) int64 or None.
            Returns (logits (B, T, vocab), mean cross-entropy) with targets, else (logits of the
            last position (B, 1, vocab), None)."""
            device = idx.device
            b, t = idx.size()
            if t > self.config.block_size:
                raise ValueError(f"Cannot forward sequence of length {t}, block size is only "
                                 f"{self.config.block_size}")
            pos = torch.arange(0, t, dtype=torch.long, device=device)  # shape (t)

            # forward the GPT model itself
            tok_emb = self.transformer.wte(idx)  # token embeddings of shape (b, t, n_embd)
            pos_emb = self.transformer.wpe(pos)  # position embeddings of shape (t, n_embd)
            x = self.transformer.drop(tok_emb + pos_emb)
            for block in self.transformer.h:
                x = block(x)
            x = self.transformer.ln_f(x)

            if targets is not None:
                logits = self.lm_head(x)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            else:
                # inference-time mini-optimization: only forward the lm_head on the very last position
                logits = self.lm_head(x[:, -1:, :])  # nanoGPT writes x[:, [-1], :]: the same rows
                loss = None
            return logits, loss

        def crop_block_size(self, block_size):
            """Shrinks the model's context to block_size (e.g. to sample with a shorter one)."""
            assert block_size <= self.config.block_size
            self.config.block_size = block_size
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size].detach().clone())

        def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
            """AdamW with weight decay on the 2-D parameters (matmul weights, embeddings) and none
            on biases and LayerNorm weights; fused where the library's AdamW offers it on CUDA."""
            # start with all of the candidate parameters that require grad
            param_dict = {pn: p for pn, p in self.named_parameters()}
            param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
            # any parameter that is 2D will be weight decayed, otherwise no
            decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
            nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
            optim_groups = [
                {"params": decay_params, "weight_decay": weight_decay},
                {"params": nodecay_params, "weight_decay": 0.0},
            ]
            fused_available = "fused" in inspect.signature(torch.optim.AdamW).parameters
            use_fused = fused_available and device_type == "cuda"
            extra_args = dict(fused=True) if use_fused else dict()
            return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)

        def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
            """Continues each row of idx (B, T) by max_new_tokens tokens, each drawn from the
            softmax of the last logits / temperature, restricted to the top_k most likely ones
            when top_k is given (eval mode is up to the caller, as in nanoGPT)."""
            with torch.no_grad():
                for _ in range(max_new_tokens):
                    # if the sequence context is growing too long we must crop it at block_size
                    idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
                    logits, _ = self(idx_cond)
                    logits = logits[:, -1, :] / temperature  # (B, vocab)
                    if top_k is not None:
                        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                        logits = logits.masked_fill(logits < v[:, -1:], -float("Inf"))
                    probs = F.softmax(logits, dim=-1)
                    idx_next = torch.multinomial(probs, num_samples=1)  # (B, 1)
                    idx = torch.cat((idx, idx_next), dim=1)
            return idx

    for cls in (LayerNorm, CausalSelfAttention, MLP, Block, GPT):
        cls.__qualname__ = cls.__name__  # not _define.<locals>.GPT
        cls.__module__ = __name__
    return SimpleNamespace(GPTConfig=GPTConfig, LayerNorm=LayerNorm, CausalSelfAttention=CausalSelfAttention,
                           MLP=MLP, Block=Block, GPT=GPT, ModuleDict=ModuleDict)


def _module_dict(nn):
    """A minimal nn.ModuleDict for libraries without one (modules registered under their keys)."""

    class ModuleDict(nn.Module):
        def __init__(self, modules=None):
            super().__init__()
            for key, module in (modules or {}).items():
                self.add_module(key, module)

        def __getitem__(self, key):
            return self._modules[key]

        def __contains__(self, key):
            return key in self._modules

        def __len__(self):
            return len(self._modules)

        def __iter__(self):
            return iter(self._modules)

        def keys(self):
            return self._modules.keys()

        def items(self):
            return self._modules.items()

        def values(self):
            return self._modules.values()

    return ModuleDict


def __getattr__(name):
    """LayerNorm, CausalSelfAttention, MLP, Block and GPT: for_backend(tessera)'s, made on first
    use (so that loading this file for another backend never loads tessera)."""
    if name in ("LayerNorm", "CausalSelfAttention", "MLP", "Block", "GPT"):
        import tessera
        return getattr(for_backend(tessera), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
