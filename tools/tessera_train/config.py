"""The tessera-train run config (the fashion-mnist task, and the gpt-char task of a
character-level GPT): JSON read, defaults filled in, every field checked with an
error that names the file and the field ("configs/x.json: optimizer.lr must be a positive
number, got -1")."""
import json
import math
import os
import re

DEFAULT_DATA_PATH = "/usr/share/datasets/fashion-mnist"


class ConfigError(Exception):
    """A config that cannot run; the message names the file and the field."""


class _Checker:
    """Reads fields of one JSON object, raising ConfigError('<file>: <where>.<key> ...')."""

    def __init__(self, source, where, obj):
        self.source, self.where = source, where
        if not isinstance(obj, dict):
            self.fail(f"{where or 'the config'} must be a JSON object, got {_show(obj)}")
        self.obj = obj

    def fail(self, message):
        raise ConfigError(f"{self.source}: {message}")

    def name(self, key):
        return f"{self.where}.{key}" if self.where else key

    def get(self, key, default, check, what):
        """obj[key] (or default when absent) after check(value) is true; else an error saying
        the field must be `what`."""
        if key not in self.obj:
            if default is _REQUIRED:
                self.fail(f"{self.name(key)} is missing (it must be {what})")
            return default
        value = self.obj[key]
        if not check(value):
            self.fail(f"{self.name(key)} must be {what}, got {_show(value)}")
        return value

    def number(self, key, default=None, low=None, high=None, low_open=False, high_open=True):
        def ok(v):
            if not _is_number(v):
                return False
            if low is not None and (v < low or (low_open and v == low)):
                return False
            return high is None or v < high or (not high_open and v == high)
        if low == 0 and low_open and high is None:
            what = "a positive number"
        elif low == 0 and high is None:
            what = "a number >= 0"
        else:
            what = (f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")
        return self.get(key, default, ok, what)

    def integer(self, key, default=None, low=1):
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        return self.get(key, default, lambda v: _is_int(v) and v >= low, what)

    def choice(self, key, choices, default=None):
        return self.get(key, default, lambda v: v in choices,
                        "one of " + ", ".join(f'"{c}"' for c in choices))

    def string(self, key, default=None):
        return self.get(key, default, lambda v: isinstance(v, str) and v != "", "a non-empty string")

    def section(self, key, default=None):
        value = self.get(key, default, lambda v: isinstance(v, dict), "a JSON object")
        return _Checker(self.source, self.name(key), value)

    def no_other_keys(self, known):
        unknown = sorted(set(self.obj) - set(known))
        if unknown:
            self.fail(f"{self.where or 'the config'} has unknown field(s) "
                      f"{', '.join(self.name(k) for k in unknown)} (known: {', '.join(sorted(known))})")


_REQUIRED = object()


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _show(v):
    return json.dumps(v) if not isinstance(v, str) or len(v) < 60 else json.dumps(v[:57] + "...")


def _model(c):
    kind = c.choice("type", ("mlp", "cnn"), _REQUIRED)
    model = {"type": kind, "dropout": c.number("dropout", 0.0, 0, 1)}
    if kind == "mlp":
        sizes = c.get("sizes", [784, 256, 256, 10],
                      lambda v: isinstance(v, list) and len(v) >= 2 and all(_is_int(s) and s > 0 for s in v),
                      "a list of at least 2 positive integers")
        if sizes[0] != 784 or sizes[-1] != 10:
            c.fail(f"{c.name('sizes')} must start with 784 (28x28 pixels) and end with 10 (classes), got {sizes}")
        model["sizes"] = sizes
        c.no_other_keys(("type", "sizes", "dropout"))
    else:
        model["channels"] = c.get("channels", [32, 64],
                                  lambda v: isinstance(v, list) and 1 <= len(v) <= 4
                                  and all(_is_int(s) and s > 0 for s in v),
                                  "a list of 1 to 4 positive integers (one conv block each)")
        model["kernel_size"] = c.get("kernel_size", 3, lambda v: _is_int(v) and v > 0 and v % 2 == 1,
                                     "a positive odd integer")
        model["hidden"] = c.integer("hidden", 128)
        c.no_other_keys(("type", "channels", "kernel_size", "hidden", "dropout"))
    return model


def _data(c, root):
    data = {"name": c.choice("name", ("fashion-mnist",), "fashion-mnist"),
            "path": resolve(root, c.string("path", DEFAULT_DATA_PATH))}
    normalize = c.get("normalize", True,
                      lambda v: isinstance(v, bool) or isinstance(v, dict),
                      'true, false or {"mean": M, "std": S}')
    if isinstance(normalize, dict):
        n = _Checker(c.source, c.name("normalize"), normalize)
        normalize = {"mean": n.number("mean", _REQUIRED), "std": n.number("std", _REQUIRED, 0, low_open=True)}
        n.no_other_keys(("mean", "std"))
    data["normalize"] = normalize
    for key in ("limit_train", "limit_test"):
        data[key] = c.get(key, None, lambda v: v is None or (_is_int(v) and v > 0), "a positive integer or null")
    c.no_other_keys(("name", "path", "normalize", "limit_train", "limit_test"))
    return data


def _optimizer(c):
    name = c.choice("name", ("adamw", "adam", "sgd"), _REQUIRED)
    opt = {"name": name, "lr": c.number("lr", _REQUIRED, 0, low_open=True)}
    opt["weight_decay"] = c.number("weight_decay", 0.01 if name == "adamw" else 0.0, 0)
    if name in ("adam", "adamw"):
        betas = c.get("betas", [0.9, 0.999],
                      lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
                      "a list of two numbers in [0, 1)")
        opt["betas"] = list(betas)
        opt["eps"] = c.number("eps", 1e-8, 0, low_open=True)
        c.no_other_keys(("name", "lr", "weight_decay", "betas", "eps"))
    else:
        opt["momentum"] = c.number("momentum", 0.0, 0, 1)
        opt["nesterov"] = c.get("nesterov", False, lambda v: isinstance(v, bool), "true or false")
        if opt["nesterov"] and opt["momentum"] == 0:
            c.fail(f"{c.name('nesterov')} needs {c.name('momentum')} > 0")
        c.no_other_keys(("name", "lr", "weight_decay", "momentum", "nesterov"))
    return opt


def _schedule(c):
    name = c.choice("name", ("cosine", "step", "none"), "none")
    sched = {"name": name}
    if name == "cosine":
        sched["eta_min"] = c.number("eta_min", 0.0, 0)
        c.no_other_keys(("name", "eta_min"))
    elif name == "step":
        sched["step_size"] = c.integer("step_size", _REQUIRED)
        sched["gamma"] = c.number("gamma", 0.1, 0, low_open=True)
        c.no_other_keys(("name", "step_size", "gamma"))
    else:
        c.no_other_keys(("name",))
    return sched


DEVICE_WHAT = '"cpu", "cuda" or "cuda:N"'


def is_device(v):
    """Whether v names a device a run may use: "cpu", "cuda" or "cuda:N"."""
    return isinstance(v, str) and re.fullmatch(r"cpu|cuda(:\d+)?", v) is not None


def resolve(root, path):
    """A path from a config: absolute as is, relative ones from the repository root."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


TASKS = ("fashion-mnist", "gpt-char")


def parse(obj, source, root):
    """The validated config with every default filled in (a plain dict, JSON-able)."""
    c = _Checker(source, "", obj)
    task = c.choice("task", TASKS, "fashion-mnist")
    if task == "gpt-char":
        return _parse_gpt(c, source, root)
    cfg = {"name": c.string("name", os.path.splitext(os.path.basename(source))[0])}
    cfg["model"] = _model(c.section("model", _REQUIRED))
    cfg["data"] = _data(c.section("data", {}), root)
    cfg["optimizer"] = _optimizer(c.section("optimizer", _REQUIRED))
    cfg["schedule"] = _schedule(c.section("schedule", {}))
    cfg["label_smoothing"] = c.number("label_smoothing", 0.0, 0, 1)
    cfg["epochs"] = c.integer("epochs", _REQUIRED)
    cfg["batch_size"] = c.integer("batch_size", _REQUIRED)
    cfg["eval_batch_size"] = c.integer("eval_batch_size", 1000)
    cfg["seed"] = c.integer("seed", 0, low=0)
    cfg["device"] = c.get("device", "cpu", is_device, DEVICE_WHAT)
    cfg["checkpoint"] = resolve(root, c.string("checkpoint", f"runs/{cfg['name']}/checkpoint.safetensors"))
    c.no_other_keys(("name", "model", "data", "optimizer", "schedule", "label_smoothing", "epochs",
                     "batch_size", "eval_batch_size", "seed", "device", "checkpoint", "comment", "task"))
    return cfg


# ---- the gpt-char task: a character-level GPT (nanoGPT's shakespeare-char setup) --------------

AUTOCAST = ("none", "bfloat16")


def _gpt_model(c):
    c.choice("type", ("gpt",), "gpt")
    model = {"type": "gpt"}
    for key, default in (("n_layer", 6), ("n_head", 6), ("n_embd", 384), ("block_size", 256)):
        model[key] = c.integer(key, default)
    if model["n_embd"] % model["n_head"]:
        c.fail(f"{c.name('n_embd')} ({model['n_embd']}) must be a multiple of {c.name('n_head')} "
               f"({model['n_head']})")
    model["dropout"] = c.number("dropout", 0.0, 0, 1)
    model["bias"] = c.get("bias", False, lambda v: isinstance(v, bool), "true or false")
    c.no_other_keys(("type", "n_layer", "n_head", "n_embd", "block_size", "dropout", "bias"))
    return model


def _gpt_data(c, config_dir, root):
    from .text import resolve as resolve_text
    data = {"text": resolve_text(c.string("text", _REQUIRED), config_dir, root),
            "train_fraction": c.number("train_fraction", 0.9, 0, 1, low_open=True)}
    c.no_other_keys(("text", "train_fraction"))
    return data


def _gpt_optimizer(c):
    c.choice("name", ("adamw",), "adamw")
    opt = {"name": "adamw", "lr": c.number("lr", _REQUIRED, 0, low_open=True),
           "weight_decay": c.number("weight_decay", 0.1, 0)}
    opt["betas"] = list(c.get("betas", [0.9, 0.99],
                              lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
                              "a list of two numbers in [0, 1)"))
    opt["eps"] = c.number("eps", 1e-8, 0, low_open=True)
    c.no_other_keys(("name", "lr", "weight_decay", "betas", "eps"))
    return opt


def _gpt_schedule(c, max_iters):
    name = c.choice("name", ("cosine", "none"), "cosine")
    sched = {"name": name}
    if name == "cosine":
        sched["warmup_iters"] = c.integer("warmup_iters", 100, low=0)
        sched["min_lr"] = c.number("min_lr", 0.0, 0)
        sched["decay_iters"] = c.get("decay_iters", max_iters, lambda v: _is_int(v) and v >= 1,
                                     "a positive integer (default max_iters)")
        if sched["decay_iters"] <= sched["warmup_iters"]:
            c.fail(f"{c.name('decay_iters')} ({sched['decay_iters']}) must be greater than "
                   f"{c.name('warmup_iters')} ({sched['warmup_iters']})")
        c.no_other_keys(("name", "warmup_iters", "min_lr", "decay_iters"))
    else:
        c.no_other_keys(("name",))
    return sched


def _gpt_sample(c):
    sample = {"tokens": c.integer("tokens", 500, low=0),
              "temperature": c.number("temperature", 0.8, 0, low_open=True),
              "top_k": c.get("top_k", 200, lambda v: v is None or (_is_int(v) and v > 0), "a positive integer or null"),
              "prompt": c.get("prompt", "\n", lambda v: isinstance(v, str), "a string")}
    c.no_other_keys(("tokens", "temperature", "top_k", "prompt"))
    return sample


def _parse_gpt(c, source, root):
    """The gpt-char config (see tools/tessera-train --help); data.text relative to the config
    file's folder (else to the repository root), the checkpoint relative to the root."""
    cfg = {"task": "gpt-char", "name": c.string("name", os.path.splitext(os.path.basename(source))[0])}
    cfg["model"] = _gpt_model(c.section("model", _REQUIRED))
    cfg["data"] = _gpt_data(c.section("data", _REQUIRED), os.path.dirname(os.path.abspath(source)), root)
    cfg["optimizer"] = _gpt_optimizer(c.section("optimizer", _REQUIRED))
    cfg["max_iters"] = c.integer("max_iters", _REQUIRED)
    cfg["schedule"] = _gpt_schedule(c.section("schedule", {}), cfg["max_iters"])
    cfg["batch_size"] = c.integer("batch_size", _REQUIRED)
    cfg["block_size"] = c.integer("block_size", cfg["model"]["block_size"])
    if cfg["block_size"] > cfg["model"]["block_size"]:
        c.fail(f"block_size ({cfg['block_size']}) is longer than model.block_size "
               f"({cfg['model']['block_size']}), the model's context")
    cfg["grad_clip"] = c.number("grad_clip", 1.0, 0)
    cfg["eval_interval"] = c.integer("eval_interval", 250)
    cfg["eval_iters"] = c.integer("eval_iters", 200)
    cfg["log_interval"] = c.integer("log_interval", 10)
    cfg["sample"] = _gpt_sample(c.section("sample", {}))
    cfg["seed"] = c.integer("seed", 1337, low=0)
    cfg["device"] = c.get("device", "cpu", is_device, DEVICE_WHAT)
    cfg["autocast"] = c.choice("autocast", AUTOCAST, "none")
    cfg["deterministic"] = c.get("deterministic", False, lambda v: isinstance(v, bool), "true or false")
    cfg["checkpoint"] = resolve(root, c.string("checkpoint", f"runs/{cfg['name']}/checkpoint.safetensors"))
    c.no_other_keys(("task", "name", "model", "data", "optimizer", "max_iters", "schedule", "batch_size",
                     "block_size", "grad_clip", "eval_interval", "eval_iters", "log_interval", "sample",
                     "seed", "device", "autocast", "deterministic", "checkpoint", "comment"))
    return cfg


def load(path, root, overrides=None):
    """parse() of the JSON file at path (errors name the file as given), with the top-level
    fields in `overrides` replaced first."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if overrides and isinstance(obj, dict):
        obj.update(overrides)
    return parse(obj, path, root)
