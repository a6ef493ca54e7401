"""The tessera-train job: data, model, optimizer and schedule from a run config; per epoch a
training pass with a progress bar, an evaluation on the test set, a checkpoint and the curve
PNG; --resume continues from the checkpoint bit for bit. (The gpt-char task's loop is in
gpt_task.py; run() hands such configs to it.) Written against the torch-like API,
so the same loop runs on tessera (the job) and on torch (the reference in tools/bench-python)."""
import math
import os
import sys
import time

from . import checkpoint, config, data, models

# Config sections that must match the checkpoint's for --resume to continue the same run.
SAME_RUN_KEYS = ("model", "data", "optimizer", "schedule", "label_smoothing", "batch_size", "seed")


class TrainError(Exception):
    """A run that cannot go on; the message says why and what to do."""


def load_backend(name, repo_root):
    """The torch-like module: tessera from this repository's api/python, or torch."""
    if name == "torch":
        import torch
        return torch
    package_dir = os.path.join(repo_root, "api", "python")
    if package_dir not in sys.path:
        sys.path.insert(0, package_dir)
    import tessera
    return tessera


def epoch_seed(seed, epoch):
    """The backend RNG seed of one epoch (dropout): resuming at an epoch reseeds exactly so."""
    return seed * 100003 + epoch


class Progress:
    """One stderr line per epoch: redrawn in place with `\\r` on a terminal (at most 10 times a
    second), written once when the epoch ends otherwise."""

    def __init__(self, stream, epoch, epochs, total):
        self.stream, self.total = stream, total
        self.tty = stream.isatty()
        self.head = f"epoch {epoch:>{len(str(epochs))}}/{epochs}"
        self.start = self.last_draw = time.perf_counter()

    def rate(self, seen):
        return seen / max(time.perf_counter() - self.start, 1e-9)

    def update(self, seen, loss):
        now = time.perf_counter()
        if self.tty and now - self.last_draw >= 0.1:
            self.last_draw = now
            filled = int(20 * seen / self.total)
            self.stream.write(f"\r{self.head} [{'#' * filled}{'.' * (20 - filled)}] {seen}/{self.total} "
                              f"loss {loss:.4f} {self.rate(seen):,.0f} samples/s\033[K")
            self.stream.flush()

    def finish(self, summary):
        self.stream.write(("\r" if self.tty else "") + f"{self.head} {summary}" + ("\033[K\n" if self.tty else "\n"))
        self.stream.flush()


def _tensor(T, array, device):
    t = T.from_numpy(array)
    return t if device == "cpu" else t.to(device)


def train_epoch(T, model, optimizer, scheduler, x, y, batch_size, order, device="cpu",
                label_smoothing=0.0, progress=None):
    """One pass over x[order] in batches; returns the mean training loss."""
    F = T.nn.functional
    model.train()
    loss_sum, seen = 0.0, 0
    for xb, yb in data.batches(x, y, batch_size, order):  # xb is (B,...) float32, yb (B,) int64
        logits = model(_tensor(T, xb, device))  # (B,10)
        loss = F.cross_entropy(logits, _tensor(T, yb, device), label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        value = loss.item()
        if not math.isfinite(value):
            raise TrainError(f"the training loss became {value} after {seen} samples; "
                             "lower optimizer.lr")
        loss_sum += value * len(xb)
        seen += len(xb)
        if progress is not None:
            progress.update(seen, value)
    return loss_sum / seen


def evaluate(T, model, x, y, batch_size, device="cpu"):
    """(mean cross-entropy, accuracy) of the model on x, y, in eval mode without grad."""
    F = T.nn.functional
    model.eval()
    loss_sum, correct = 0.0, 0
    with T.no_grad():
        for xb, yb in data.batches(x, y, batch_size):
            logits = model(_tensor(T, xb, device))
            loss_sum += F.cross_entropy(logits, _tensor(T, yb, device), reduction="sum").item()
            correct += int((logits.cpu().numpy().argmax(axis=1) == yb).sum())
    return loss_sum / len(x), correct / len(x)


def plot_curves(history, path):
    """Writes train/test loss and test accuracy per epoch to the PNG at path; False (with a
    note on stderr) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["test_loss"] for h in history], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [h["test_accuracy"] for h in history], "o-", color="tab:green")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def curves_path(checkpoint_path):
    return os.path.splitext(checkpoint_path)[0] + "-curves.png"


def _check_same_run(cfg, meta, path):
    old = meta["config"]
    changed = [k for k in SAME_RUN_KEYS if old.get(k) != cfg.get(k)]
    if changed:
        raise TrainError(f"{path} was written by a run with different {', '.join(changed)}; "
                         f"resume with the same config, or start over without --resume "
                         f"(or use another checkpoint path)")


def check_device(T, device, source):
    """The run's device, if it is one the backend has; else a TrainError naming the field."""
    if not config.is_device(device):
        raise TrainError(f"{source}: device must be {config.DEVICE_WHAT}, got {device!r}")
    if device != "cpu":
        index = int(device.partition(":")[2] or 0)
        count = T.cuda.device_count() if T.cuda.is_available() else 0
        if index >= count:
            raise TrainError(f"{source}: device {device!r} is not available ({T.__name__}.cuda sees "
                             f"{count or 'no'} CUDA device{'' if count == 1 else 's'}); use \"device\": \"cpu\"")
    return device


def run(cfg, source, repo_root, backend="tessera", resume=False, stop_after=None, log=sys.stderr,
        profile=0):
    """Trains as cfg says and returns the final metrics dict (the JSON line)."""
    wall_start = time.perf_counter()
    T = load_backend(backend, repo_root)
    device = check_device(T, cfg["device"], source)
    if cfg.get("task") == "gpt-char":
        from . import gpt_task  # imports this module: not at the top
        return gpt_task.run(T, cfg, source, device, backend, resume, stop_after, log, wall_start, profile)
    d = cfg["data"]
    x_train, y_train = data.load_split(d["path"], "train", d["normalize"], d["limit_train"])
    x_test, y_test = data.load_split(d["path"], "test", d["normalize"], d["limit_test"])
    shape = models.input_shape(cfg["model"])
    x_train = x_train.reshape(len(x_train), *shape)
    x_test = x_test.reshape(len(x_test), *shape)

    T.manual_seed(cfg["seed"])
    model = models.build_model(T, cfg["model"]).to(device)
    optimizer = models.build_optimizer(T, cfg["optimizer"], model.parameters())
    steps_per_epoch = -(-len(x_train) // cfg["batch_size"])
    scheduler = models.build_scheduler(T, cfg["schedule"], optimizer, steps_per_epoch, cfg["epochs"])

    path = cfg["checkpoint"]
    history, done, resumed_from = [], 0, None
    if resume and os.path.exists(path):
        try:
            flat, meta = checkpoint.read_meta(T, path)
        except ValueError as e:
            raise TrainError(f"{e}; start over without --resume, or point --checkpoint elsewhere") from None
        _check_same_run(cfg, meta, path)
        try:
            checkpoint.restore(flat, meta, model, optimizer, scheduler)
            history, done = meta["history"], meta["epoch"]
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise TrainError(f"{path}: cannot restore the checkpoint: {e}; start over without --resume, "
                             f"or point --checkpoint elsewhere") from None
        resumed_from = done
        print(f"resumed from {path} after epoch {done}", file=log)
    elif resume:
        print(f"no checkpoint at {path} yet: starting at epoch 1", file=log)

    last = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after)
    plot = curves_path(path)
    plot_ok = True
    for epoch in range(done + 1, last + 1):
        start = time.perf_counter()
        T.manual_seed(epoch_seed(cfg["seed"], epoch))
        progress = Progress(log, epoch, cfg["epochs"], len(x_train))
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_epoch(T, model, optimizer, scheduler, x_train, y_train, cfg["batch_size"],
                                 data.epoch_order(len(x_train), cfg["seed"], epoch), device,
                                 cfg["label_smoothing"], progress)
        rate = progress.rate(len(x_train))
        test_loss, test_acc = evaluate(T, model, x_test, y_test, cfg["eval_batch_size"], device)
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss,
                        "test_accuracy": test_acc, "lr": lr, "samples_per_second": rate,
                        "seconds": seconds})
        checkpoint.save(T, path, model, optimizer, scheduler,
                        {"epoch": epoch, "config": cfg, "history": history, "backend": backend,
                         "rng": "per-epoch seeds: numpy default_rng([seed, epoch]) shuffles, "
                                "backend manual_seed(seed*100003+epoch) before each epoch"})
        progress.finish(f"train_loss {train_loss:.4f} test_loss {test_loss:.4f} "
                        f"test_accuracy {test_acc:.4f} | {rate:,.0f} samples/s {seconds:.1f}s")
        if plot_ok and not plot_curves(history, plot):
            print("matplotlib is missing (Debian: python3-matplotlib): no curve PNG", file=log)
            plot_ok = False

    final = history[-1]  # never empty: epochs and --stop-after are >= 1
    return {
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "epochs": len(history),
        "seconds": round(sum(h["seconds"] for h in history), 3),
        "train_loss": final["train_loss"],
        "samples_per_second": round(final["samples_per_second"], 1),
        "config": source,
        "backend": backend,
        "device": device,
        "checkpoint": path,
        "curves": plot if plot_ok and os.path.exists(plot) else None,
        "resumed_from_epoch": resumed_from,
        "wall_seconds": round(time.perf_counter() - wall_start, 3),
    }
