"""The gpt-char job of tools/tessera-train: a character-level GPT (tessera.models.gpt, nanoGPT's
model) trained on the text file a config names, as nanoGPT's train.py with
config/train_shakespeare_char.py: random batches, AdamW with decay on 2-D weights only,
linear warm-up then cosine decay to min_lr, gradient clipping, train/val loss every
eval_interval iterations, a checkpoint after each evaluation and an exact --resume, a generated
sample at the end. Written against the torch-like API, so --backend torch runs the very same
loop on PyTorch for the side-by-side figure.

Randomness, and why a resumed run is bit-identical to an uncut one:
  - training batches: a numpy PCG64 generator seeded with `seed`, whose state is saved in the
    checkpoint;
  - dropout: the backend generator is re-seeded with step_seed(seed, iter) before each
    iteration (the runtime has no get_rng_state), so iteration i's masks depend on (seed, i);
  - evaluation batches: a generator of (seed, iter) alone (text.eval_rng), so evaluating never
    moves the training stream;
  - the sample: the backend generator re-seeded with `seed` first.
On CUDA, "deterministic": true in the config also makes the kernels that accumulate with
atomics (embedding backward, ...) reproducible; without it a resumed CUDA run may differ from
an uncut one in the last bits."""
import contextlib
import importlib.util
import math
import os
import time

import numpy as np

from . import checkpoint
from .text import Batches, CharText, eval_rng, sample
from .trainer import TrainError

# Config sections that must match the checkpoint's for --resume to continue the same run.
SAME_RUN_KEYS = ("data", "optimizer", "schedule", "max_iters", "batch_size", "block_size",
                 "grad_clip", "seed")
# model fields that make its architecture: a checkpoint differing in one cannot be loaded.
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias")


def gpt_classes(T):
    """tessera.models.gpt's classes built on backend T. For torch the model file is loaded on
    its own, so a --backend torch run never loads libtessera."""
    if T.__name__ == "tessera":
        from tessera.models import gpt
        return gpt.for_backend(T)
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "api", "python", "tessera", "models", "gpt.py")
    spec = importlib.util.spec_from_file_location("tessera_train_gpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.for_backend(T)


def step_seed(seed, it):
    """The backend seed of iteration `it` (dropout masks)."""
    return (seed * 1000003 + it) & 0x7FFFFFFFFFFFFFFF


def lr_at(it, cfg):
    """nanoGPT's get_lr: linear warm-up over warmup_iters, cosine from lr to min_lr until
    decay_iters, min_lr after; constant for schedule "none"."""
    lr, sched = cfg["optimizer"]["lr"], cfg["schedule"]
    if sched["name"] == "none":
        return lr
    warmup, decay, min_lr = sched["warmup_iters"], sched["decay_iters"], sched["min_lr"]
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def build(T, cfg, vocab_size, device):
    """(model on device, AdamW) as the config's model and optimizer sections say; the initial
    weights are drawn on the CPU from manual_seed(seed)."""
    G = gpt_classes(T)
    m = cfg["model"]
    conf = G.GPTConfig(block_size=m["block_size"], vocab_size=vocab_size, n_layer=m["n_layer"],
                       n_head=m["n_head"], n_embd=m["n_embd"], dropout=m["dropout"], bias=m["bias"])
    T.manual_seed(cfg["seed"])
    model = G.GPT(conf).to(device)
    opt = cfg["optimizer"]
    optimizer = model.configure_optimizers(opt["weight_decay"], opt["lr"], tuple(opt["betas"]),
                                           "cuda" if device.startswith("cuda") else "cpu")
    for group in optimizer.param_groups:
        group["eps"] = opt["eps"]
    return model, optimizer


def deterministic(T):
    """Bitwise reproducible kernels where the backend has a choice (on CUDA: embedding backward
    without atomics, ...), so that a resumed CUDA run matches an uncut one bit for bit; the CPU
    kernels always are."""
    if T.__name__ == "torch":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition
        T.use_deterministic_algorithms(True, warn_only=True)
    else:
        T.use_deterministic_algorithms(True)


def autocast(T, cfg, device):
    """The forward passes' context: bf16 autocast when the config asks for it."""
    if cfg["autocast"] == "none":
        return contextlib.nullcontext()
    return T.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=T.bfloat16)


def _tensor(T, array, device):
    t = T.from_numpy(array)
    return t if device == "cpu" else t.to(device)


def estimate_loss(T, model, text, cfg, it, device, rng=None):
    """{"train": mean loss, "val": mean loss} over eval_iters batches of each split (train
    first), in eval mode without grad, drawn from rng (default: the evaluation generator of
    iteration `it`)."""
    rng = eval_rng(cfg["seed"], it) if rng is None else rng
    out = {}
    model.eval()
    with T.no_grad():
        for split in ("train", "val"):
            total = None
            for _ in range(cfg["eval_iters"]):
                xb, yb = sample(rng, text.split(split), cfg["batch_size"], cfg["block_size"])
                with autocast(T, cfg, device):
                    _, loss = model(_tensor(T, xb, device), _tensor(T, yb, device))
                loss = loss.detach().float()
                total = loss if total is None else total + loss
            out[split] = total.item() / cfg["eval_iters"]
    model.train()
    return out


def whole_split_loss(T, model, text, cfg, device, split="val"):
    """Mean loss over every consecutive block_size window of a split, in eval mode without
    grad (batches of 64 windows): the figure that estimate_loss's eval_iters random batches
    sample."""
    L = cfg["block_size"]
    ids = text.split(split)
    n = (len(ids) - 1) // L
    x, y = ids[:n * L].reshape(n, L), ids[1:n * L + 1].reshape(n, L)  # each (n, L)
    total = 0.0
    model.eval()
    with T.no_grad():
        for i in range(0, n, 64):
            xb = _tensor(T, np.ascontiguousarray(x[i:i + 64]), device)  # (<=64, L)
            yb = _tensor(T, np.ascontiguousarray(y[i:i + 64]), device)
            with autocast(T, cfg, device):
                _, loss = model(xb, yb)
            total += loss.detach().float().item() * xb.shape[0]
    model.train()
    return total / n


def generate_sample(T, model, text, cfg, device):
    """The sample text (prompt included) of sample.tokens new characters."""
    s = cfg["sample"]
    ids = text.encode(s["prompt"]) or [0]
    T.manual_seed(cfg["seed"])
    model.eval()
    idx = T.tensor([ids], dtype=T.long, device=device)  # idx is (1, len(prompt))
    with autocast(T, cfg, device):
        out = model.generate(idx, s["tokens"], temperature=s["temperature"], top_k=s["top_k"])
    model.train()
    return text.decode(out[0].tolist())


def _check_checkpoint(cfg, meta, path, text):
    """TrainError unless the checkpoint was written by a gpt-char run of the same architecture
    and training setup (the message names the differing config fields)."""
    old = meta.get("config", {})
    if old.get("task") != "gpt-char":
        kind = old.get("task") or f"fashion-mnist, model.type {old.get('model', {}).get('type')!r}"
        raise TrainError(f"{path} is a checkpoint of another task ({kind}), not gpt-char: another "
                         f"architecture; start over without --resume, or point --checkpoint elsewhere")
    arch = [f"model.{k} is {cfg['model'][k]!r} in the config but {old['model'].get(k)!r} in the checkpoint"
            for k in ARCH_KEYS if old["model"].get(k) != cfg["model"][k]]
    if meta.get("vocab") != text.vocab:
        arch.append(f"data.text gives a vocabulary of {text.vocab_size} characters, the checkpoint's "
                    f"has {len(meta.get('vocab') or '')}")
    if arch:
        raise TrainError(f"{path} is a checkpoint of another architecture: {'; '.join(arch)}; "
                         f"resume with the config that wrote it, or start over without --resume")
    changed = [k for k in SAME_RUN_KEYS if old.get(k) != cfg.get(k)]
    if old["model"].get("dropout") != cfg["model"]["dropout"]:
        changed.insert(0, "model.dropout")
    if changed:
        raise TrainError(f"{path} was written by a run with different {', '.join(changed)}; "
                         f"resume with the same config, or start over without --resume "
                         f"(or use another checkpoint path)")


def train_step(T, model, optimizer, batches, text, cfg, it, device):
    """Iteration `it`: its learning rate, dropout seed and batch, forward (under autocast),
    backward, clipping, AdamW. Returns the loss tensor (not synchronized)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(it, cfg)
    T.manual_seed(step_seed(cfg["seed"], it))
    xb, yb = batches.draw(text.train, cfg["batch_size"], cfg["block_size"])  # xb, yb are (B, L) int64
    x, y = _tensor(T, xb, device), _tensor(T, yb, device)
    with autocast(T, cfg, device):
        _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg["grad_clip"] > 0:
        T.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
    optimizer.step()
    return loss


class StepTimer:
    """Training time per iteration, measured between device synchronizations and leaving out
    the first `skip` iterations of the process (warm-up) and everything outside the training
    steps (evaluation, checkpoints)."""

    def __init__(self, T, device, skip):
        self.T, self.device, self.skip = T, device, skip
        self.seconds, self.iters, self.pending, self.start = 0.0, 0, 0, None

    def sync(self):
        if self.device.startswith("cuda"):
            self.T.cuda.synchronize()

    def begin(self):
        self.sync()
        self.start, self.pending = time.perf_counter(), 0

    def step(self):
        self.pending += 1

    def end(self):
        """Closes the window of steps since begin() (synchronizing first)."""
        if self.start is None:
            return
        self.sync()
        if self.skip > 0:
            self.skip -= self.pending
        else:
            self.seconds += time.perf_counter() - self.start
            self.iters += self.pending
        self.start = None

    def ms_per_iter(self):
        return 1000.0 * self.seconds / self.iters if self.iters else None


def run(T, cfg, source, device, backend="tessera", resume=False, stop_after=None, log=None,
        wall_start=None, profile=0):
    """Trains as cfg says and returns the final metrics dict (the JSON line); with profile > 0,
    only times that many iterations under the PyTorch profiler (see profile.py) instead."""
    wall_start = time.perf_counter() if wall_start is None else wall_start
    text = CharText(cfg["data"]["text"], f"{source}: data.text", cfg["data"]["train_fraction"])
    text.check_context(cfg["block_size"], f"{source}: block_size")
    path = cfg["checkpoint"]
    flat = meta = None
    if resume and os.path.exists(path):
        try:
            flat, meta = checkpoint.read_meta(T, path)
        except ValueError as e:
            raise TrainError(f"{e}; start over without --resume, or point --checkpoint elsewhere") from None
        _check_checkpoint(cfg, meta, path, text)
    elif resume:
        print(f"no checkpoint at {path} yet: starting at iteration 0", file=log)

    if cfg["deterministic"]:
        deterministic(T)
    model, optimizer = build(T, cfg, text.vocab_size, device)
    batches = Batches(cfg["seed"])
    it, history, resumed_from = 0, [], None
    if meta is not None:
        try:
            checkpoint.restore(flat, meta, model, optimizer, None)
            batches.set_state(meta["sampler"])
            it, history = meta["step"], meta["history"]
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise TrainError(f"{path}: cannot restore the checkpoint: {e}; start over without --resume, "
                             f"or point --checkpoint elsewhere") from None
        resumed_from = it
        print(f"resumed from {path} at iteration {it}", file=log)
    n_params = model.get_num_params()
    if profile:
        from . import profile as prof
        step = lambda i: train_step(T, model, optimizer, batches, text, cfg, it + i, device)  # noqa: E731
        return dict(prof.profile_steps(T, step, profile, device, log), params=n_params, config=source,
                    backend=backend, device=device, autocast=cfg["autocast"])
    print(f"gpt-char: {n_params / 1e6:.2f}M parameters, vocabulary {text.vocab_size}, "
          f"{len(text.train):,} train / {len(text.val):,} val characters, {backend} on {device}"
          f"{', bf16 autocast' if cfg['autocast'] == 'bfloat16' else ''}", file=log)

    dirty = False  # whether the state or history changed since the checkpoint was written

    def save(step):
        nonlocal dirty
        dirty = False
        checkpoint.save(T, path, model, optimizer, None,
                        {"step": step, "config": cfg, "history": history, "backend": backend,
                         "vocab": text.vocab, "sampler": batches.state(),
                         "rng": "batches: numpy PCG64(seed), state in 'sampler'; dropout: backend "
                                "manual_seed(seed*1000003+iter) before each iteration"})

    def evaluate(step):
        nonlocal dirty
        dirty = True
        start = time.perf_counter()
        losses = estimate_loss(T, model, text, cfg, step, device)
        history.append({"iter": step, "train_loss": losses["train"], "val_loss": losses["val"],
                        "lr": lr_at(step, cfg), "seconds": time.perf_counter() - start})
        print(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", file=log)

    if device.startswith("cuda"):
        T.cuda.reset_peak_memory_stats()
    max_iters = cfg["max_iters"]
    last = max_iters if stop_after is None else min(max_iters, stop_after)
    timer = StepTimer(T, device, skip=10)
    evaluated = {h["iter"] for h in history}
    model.train()
    loss = None
    while it < last:
        if it % cfg["eval_interval"] == 0 and it not in evaluated:
            timer.end()
            evaluate(it)
            evaluated.add(it)
            if it > 0:
                save(it)
        if timer.start is None:
            timer.begin()
        lr = lr_at(it, cfg)
        loss = train_step(T, model, optimizer, batches, text, cfg, it, device)
        it += 1
        dirty = True
        timer.step()
        if it % cfg["log_interval"] == 0 or it == last:
            value = loss.item()
            timer.end()
            if not math.isfinite(value):
                raise TrainError(f"the training loss became {value} at iteration {it}; lower optimizer.lr")
            ms = timer.ms_per_iter()
            print(f"iter {it}/{max_iters}: loss {value:.4f}, lr {lr:.2e}"
                  + (f", {ms:.1f} ms/iter" if ms else ""), file=log)
    timer.end()

    finished = it >= max_iters
    if finished and it not in evaluated:
        evaluate(it)
    if dirty:
        save(it)
    whole_val = None
    if finished:
        whole_val = whole_split_loss(T, model, text, cfg, device)
        print(f"step {it}: val loss {whole_val:.4f} over the whole validation split "
              f"({(len(text.val) - 1) // cfg['block_size']} windows of {cfg['block_size']})", file=log)
    sample_text, sample_path = None, None
    if finished and cfg["sample"]["tokens"] > 0:
        sample_text = generate_sample(T, model, text, cfg, device)
        sample_path = os.path.splitext(path)[0] + "-sample.txt"
        with open(sample_path, "w", encoding="utf-8") as f:
            f.write(sample_text)
        print(f"sample ({cfg['sample']['tokens']} characters, temperature {cfg['sample']['temperature']}, "
              f"top_k {cfg['sample']['top_k']}):\n{sample_text}\n", file=log)

    final = history[-1] if history else {}
    best = min(history, key=lambda h: h["val_loss"]) if history else {}
    ms = timer.ms_per_iter()
    result = {
        "val_loss": final.get("val_loss"),
        "train_loss": final.get("train_loss"),
        "iters": it,
        "eval_iter": final.get("iter"),
        "whole_val_loss": whole_val,  # the final model on every window of the split, not eval_iters batches
        "best_val_loss": best.get("val_loss"),  # nanoGPT's figure: the run overfits later on
        "best_iter": best.get("iter"),
        "ms_per_iter": round(ms, 3) if ms else None,
        "tokens_per_s": round(cfg["batch_size"] * cfg["block_size"] * 1000.0 / ms, 1) if ms else None,
        "peak_memory_mb": (round(T.cuda.max_memory_allocated() / 2**20, 1)
                           if device.startswith("cuda") else None),
        "params": n_params,
        "config": source,
        "backend": backend,
        "device": device,
        "autocast": cfg["autocast"],
        "checkpoint": path,
        "sample": sample_path,
        "resumed_from_iter": resumed_from,
        "wall_seconds": round(time.perf_counter() - wall_start, 3),
    }
    return result


__all__ = ["run", "TrainError", "lr_at", "step_seed", "gpt_classes", "build", "estimate_loss", "train_step",
           "whole_split_loss"]
