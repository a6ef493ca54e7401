"""The tessera-train run config: JSON read, defaults filled in, every field checked with an
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


def parse(obj, source, root):
    """The validated config with every default filled in (a plain dict, JSON-able)."""
    c = _Checker(source, "", obj)
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
                     "batch_size", "eval_batch_size", "seed", "device", "checkpoint", "comment"))
    return cfg


def load(path, root):
    """parse() of the JSON file at path (errors name the file as given)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    return parse(obj, path, root)
