"""Golden parity of tessera.models.gpt with a PyTorch twin (nanoGPT's model.py, below): a small
GPT (2 layers, width 64, 4 heads, vocabulary 65, context 32, dropout 0) gets the twin's weights
through a safetensors file and the same batch, and gives the same logits, loss and gradient of
every parameter within 1e-4 relative in float32; 10 AdamW steps (nanoGPT's
configure_optimizers, gradient clipping at 1.0) give losses that track PyTorch's within 1e-4.
Also: nanoGPT's parameter names and shapes, tied embeddings, the init, generate, and the
errors. Parametrized on the device: the CUDA cases run where tessera and PyTorch both see a GPU
(tools/gpu-check) and skip elsewhere.

"Relative" is per tensor, in the max norm: max|tessera - torch| <= tol * max|torch| (as
test_golden.py: element by element would fail on entries that are ~0 up to rounding)."""
import json
import math
import os
import struct
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "api", "python"))
torch = pytest.importorskip("torch", reason="PyTorch is not importable (Debian: python3-torch): no golden parity")
import tessera  # noqa: E402
from tessera.models.gpt import GPT, GPTConfig  # noqa: E402

TOL = 1e-4
SMALL = dict(block_size=32, vocab_size=65, n_layer=2, n_head=4, n_embd=64, dropout=0.0)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (tessera.cuda.is_available() and torch.cuda.is_available()),
    reason="CUDA parity needs a GPU seen by both tessera and PyTorch (runs on the GPU machine)"))]


# ---- the twin: nanoGPT's model.py (github.com/karpathy/nanoGPT), trimmed to what is tested ------

class TwinLayerNorm(torch.nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(ndim))
        self.bias = torch.nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return torch.nn.functional.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class TwinCausalSelfAttention(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = torch.nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = torch.nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = torch.nn.Dropout(config.dropout)
        self.resid_dropout = torch.nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.flash = hasattr(torch.nn.functional, "scaled_dot_product_attention")
        if not self.flash:  # torch < 2.0
            self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                                 .view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            y = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = torch.nn.functional.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class TwinMLP(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = torch.nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = torch.nn.GELU()
        self.c_proj = torch.nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = torch.nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class TwinBlock(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = TwinLayerNorm(config.n_embd, bias=config.bias)
        self.attn = TwinCausalSelfAttention(config)
        self.ln_2 = TwinLayerNorm(config.n_embd, bias=config.bias)
        self.mlp = TwinMLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TwinGPT(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = torch.nn.ModuleDict(dict(
            wte=torch.nn.Embedding(config.vocab_size, config.n_embd),
            wpe=torch.nn.Embedding(config.block_size, config.n_embd),
            drop=torch.nn.Dropout(config.dropout),
            h=torch.nn.ModuleList([TwinBlock(config) for _ in range(config.n_layer)]),
            ln_f=TwinLayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = torch.nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                                     ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])
            loss = None
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)


# ---- safetensors on the torch side (the format tessera.save/load speak) ---------------------------

def write_safetensors(path, tensors):
    """A safetensors file of float32 torch tensors (what safetensors.torch.save_file writes)."""
    header, body = {}, b""
    for name, t in tensors.items():
        raw = t.detach().cpu().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + body)


def read_safetensors(path):
    """{name: float32 numpy array} of a safetensors file of F32 tensors."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", (name, e["dtype"])
        start, end = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype="<f4").reshape(e["shape"])
    return out


# ---- helpers ------------------------------------------------------------------------------------

def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def twins(tmp_path, device, bias=True, seed=0):
    """(torch twin, tessera GPT) with the twin's initial weights, passed through a safetensors file."""
    torch.manual_seed(seed)
    conf = GPTConfig(bias=bias, **SMALL)
    ref = TwinGPT(conf).to(device)
    model = GPT(GPTConfig(bias=bias, **SMALL))
    path = tmp_path / "twin.safetensors"
    write_safetensors(path, {k: v for k, v in ref.named_parameters()})  # parameters only: no mask buffer
    loaded = tessera.load(str(path))
    # lm_head.weight is the tied wte.weight: named_parameters lists it once, under wte
    loaded["lm_head.weight"] = loaded["transformer.wte.weight"]
    model.load_state_dict(loaded)
    return ref, model.to(device)


def batch(seed, b=4, t=SMALL["block_size"], ignore=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, SMALL["vocab_size"], (b, t)).astype(np.int64)
    y = rng.integers(0, SMALL["vocab_size"], (b, t)).astype(np.int64)
    if ignore:
        y.reshape(-1)[rng.choice(b * t, ignore, replace=False)] = -1  # nanoGPT's ignore_index
    return x, y


def on(T, array, device):
    t = T.from_numpy(array.copy())
    return t if device == "cpu" else t.to(device)


# ---- tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_names_shapes_and_tied_embeddings_are_nanogpts(bias):
    torch.manual_seed(0)
    ref = TwinGPT(GPTConfig(bias=bias, **SMALL))
    tessera.manual_seed(0)
    model = GPT(GPTConfig(bias=bias, **SMALL))
    want = {k: list(v.shape) for k, v in ref.state_dict().items() if not k.endswith(".attn.bias")}  # the twin's mask buffer (torch < 2)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == want
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in ref.named_parameters()]
    assert model.lm_head.weight is model.transformer.wte.weight
    n = sum(p.numel() for p in ref.parameters())
    assert model.get_num_params(non_embedding=False) == n
    assert model.get_num_params() == n - SMALL["block_size"] * SMALL["n_embd"]


def test_init_is_nanogpts():
    tessera.manual_seed(1)
    model = GPT(GPTConfig(**dict(SMALL, n_embd=128)))
    for name, p in model.named_parameters():
        w = p.detach().numpy()
        if name.endswith("c_proj.weight"):
            assert abs(w.std() - 0.02 / math.sqrt(2 * SMALL["n_layer"])) < 0.002, name
        elif p.dim() == 2:
            assert abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002, name
        elif name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            assert np.all(w == 1), name
        else:
            assert np.all(w == 0), name  # biases


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias", [True, False])
def test_logits_loss_and_every_gradient_match_torch(tmp_path, device, bias):
    ref, model = twins(tmp_path, device, bias)
    x, y = batch(1, ignore=5)
    ref_logits, ref_loss = ref(on(torch, x, device), on(torch, y, device))
    logits, loss = model(on(tessera, x, device), on(tessera, y, device))
    assert list(logits.shape) == [4, SMALL["block_size"], SMALL["vocab_size"]]
    assert rel_err(logits.detach().cpu().numpy(), ref_logits.detach().cpu().numpy()) <= TOL
    assert rel_err(loss.item(), ref_loss.item()) <= TOL, (loss.item(), ref_loss.item())
    ref_loss.backward()
    loss.backward()
    ref_params = dict(ref.named_parameters())
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(ref_params)
    for key, p in params.items():
        assert p.grad is not None, f"{key} has no gradient"
        got, want = p.grad.cpu().numpy(), ref_params[key].grad.cpu().numpy()
        assert got.shape == want.shape, key
        assert rel_err(got, want) <= TOL, f"{key}: gradient off by {rel_err(got, want):.2e} relative"


@pytest.mark.parametrize("device", DEVICES)
def test_adamw_steps_track_torch(tmp_path, device):
    ref, model = twins(tmp_path, device, bias=False, seed=2)
    ref_opt = ref.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), device)
    assert [len(g["params"]) for g in opt.param_groups] == [len(g["params"]) for g in ref_opt.param_groups]
    ref_losses, losses = [], []
    x, y = batch(100)  # one batch, learned by heart: the losses fall, so tracking them means something
    for step in range(10):
        for T, net, o, out in ((torch, ref, ref_opt, ref_losses), (tessera, model, opt, losses)):
            _, loss = net(on(T, x, device), on(T, y, device))
            o.zero_grad(set_to_none=True)
            loss.backward()
            T.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            o.step()
            out.append(loss.item())
    for step, (got, want) in enumerate(zip(losses, ref_losses)):
        assert abs(got - want) <= TOL * abs(want), f"step {step}: loss {got} vs torch {want}"
    assert losses[-1] < losses[0] - 0.1, losses
    ref_params = dict(ref.named_parameters())
    for key, p in model.named_parameters():
        want = ref_params[key].detach().cpu().numpy()
        assert rel_err(p.detach().cpu().numpy(), want) <= 10 * TOL, key


@pytest.mark.parametrize("device", DEVICES)
def test_weights_round_trip_through_safetensors(tmp_path, device):
    ref, model = twins(tmp_path, device)
    tessera.save(dict(model.named_parameters()), str(tmp_path / "back.safetensors"))
    back = read_safetensors(tmp_path / "back.safetensors")
    for key, p in ref.named_parameters():
        np.testing.assert_array_equal(back[key], p.detach().cpu().numpy(), err_msg=key)


@pytest.mark.parametrize("device", DEVICES)
def test_generate_greedy_matches_torch(tmp_path, device):
    """top_k=1 leaves one token with probability 1: multinomial must draw it, so both libraries
    continue the prompt by the same argmax tokens, past the context (cropped to block_size)."""
    ref, model = twins(tmp_path, device, seed=3)
    ref.eval()
    model.eval()
    prompt = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    out = model.generate(on(tessera, prompt, device), SMALL["block_size"] + 4, temperature=0.8, top_k=1)
    assert list(out.shape) == [2, 3 + SMALL["block_size"] + 4] and out.dtype == tessera.int64
    idx = on(torch, prompt, device)
    with torch.no_grad():
        for _ in range(SMALL["block_size"] + 4):
            logits, _ = ref(idx[:, -SMALL["block_size"]:])
            idx = torch.cat((idx, logits[:, -1, :].argmax(dim=-1, keepdim=True)), dim=1)
    np.testing.assert_array_equal(out.cpu().numpy(), idx.cpu().numpy())


def test_generate_samples_from_the_top_k():
    tessera.manual_seed(4)
    model = GPT(GPTConfig(**SMALL))
    model.eval()
    idx = tessera.tensor([[0]], dtype=tessera.int64)
    logits, loss = model(idx)
    assert loss is None and list(logits.shape) == [1, 1, SMALL["vocab_size"]]
    top = set(np.argsort(-logits[0, -1].detach().numpy())[:5].tolist())
    tessera.manual_seed(5)
    first = model.generate(idx, 20, temperature=1.0, top_k=5).numpy()
    assert first[0, 1] in top and np.all((first >= 0) & (first < SMALL["vocab_size"]))
    tessera.manual_seed(5)
    assert np.array_equal(model.generate(idx, 20, temperature=1.0, top_k=5).numpy(), first)  # seeded


def test_sequence_longer_than_the_context_is_an_error():
    model = GPT(GPTConfig(**SMALL))
    idx = tessera.zeros(1, SMALL["block_size"] + 1, dtype=tessera.int64)
    with pytest.raises(ValueError, match=f"length {SMALL['block_size'] + 1}, block size is only {SMALL['block_size']}"):
        model(idx)


@pytest.mark.parametrize("field, value, message", [
    ("n_embd", 30, "n_embd \\(30\\) must be a multiple of n_head \\(4\\)"),
    ("n_layer", 0, "n_layer must be a positive integer"),
    ("dropout", 1.0, "dropout must be in"),
])
def test_bad_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        GPT(GPTConfig(**dict(SMALL, **{field: value})))
