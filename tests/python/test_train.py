"""tools/tessera-train on tiny runs: the JSON last line, the checkpoint and curve PNG, exact
resume (a run cut after epoch 1 and resumed ends bit-identical to an uncut one) and the
errors for bad configs, missing data and bad checkpoints."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(REPO, "tools", "tessera-train")
sys.path.insert(0, os.path.join(REPO, "api", "python"))
sys.path.insert(0, os.path.join(REPO, "tools"))
import tessera  # noqa: E402
from tessera_train import config  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
needs_data = pytest.mark.skipif(not os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte.gz")),
                                reason=f"Fashion-MNIST not in {DATA} (Debian package dataset-fashion-mnist)")


def tiny_config(tmp_path, **changes):
    cfg = {
        "model": {"type": "mlp", "sizes": [784, 32, 10], "dropout": 0.1},
        "data": {"name": "fashion-mnist", "path": DATA, "limit_train": 2048, "limit_test": 500},
        "optimizer": {"name": "adamw", "lr": 0.002},
        "schedule": {"name": "cosine"},
        "epochs": 2,
        "batch_size": 128,
        "eval_batch_size": 250,
        "seed": 3,
        "checkpoint": str(tmp_path / "run" / "ckpt.safetensors"),
    }
    for key, value in changes.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def train(*args, env=None):
    """(exit status, stdout, stderr) of tools/tessera-train with args."""
    p = subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True, timeout=300,
                       env=None if env is None else dict(os.environ, **env))
    return p.returncode, p.stdout, p.stderr


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def weights(path):
    return {k: v.numpy().copy() for k, v in tessera.load(path).items()}


@needs_data
def test_run_prints_metrics_and_writes_checkpoint_and_curves(tmp_path):
    code, out, err = train(tiny_config(tmp_path))
    assert code == 0, err
    result = last_json(out)
    for key in ("test_accuracy", "test_loss", "epochs", "seconds"):
        assert key in result
    assert result["epochs"] == 2 and result["test_accuracy"] > 0.6, result
    assert err.count("epoch 1/2") == 1 and "epoch 2/2" in err  # one line per epoch off a TTY
    assert os.path.getsize(result["checkpoint"]) > 0
    with open(result["curves"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in os.listdir(tmp_path / "run") if ".tmp" in n]  # no temp files left


@needs_data
def test_without_matplotlib_says_so_and_goes_on(tmp_path):
    blocker = tmp_path / "block" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib blocked by the test')\n")
    code, out, err = train(tiny_config(tmp_path, epochs=1), env={"PYTHONPATH": str(blocker.parent)})
    assert code == 0, err
    assert "matplotlib is missing" in err and last_json(out)["curves"] is None


@pytest.mark.parametrize("name", ["fashion-mlp", "fashion-cnn"])
def test_shipped_configs_are_valid(name):
    cfg = config.load(os.path.join(REPO, "configs", f"{name}.json"), REPO)
    assert cfg["data"]["path"] == "/usr/share/datasets/fashion-mnist"
    assert cfg["checkpoint"] == os.path.join(REPO, "runs", name, "checkpoint.safetensors")


@needs_data
@pytest.mark.parametrize("model", [{"type": "mlp", "sizes": [784, 32, 10], "dropout": 0.1},
                                   {"type": "cnn", "channels": [4], "hidden": 16, "dropout": 0.2}])
def test_resume_is_exact(tmp_path, model):
    limits = {"name": "fashion-mnist", "path": DATA, "limit_train": 2048 if model["type"] == "mlp" else 512,
              "limit_test": 200}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = tiny_config(tmp_path / "a", model=model, data=limits)
    cut = tiny_config(tmp_path / "b", model=model, data=limits)
    code, out_whole, err = train(whole)
    assert code == 0, err
    code, out, err = train(cut, "--stop-after", "1")
    assert code == 0, err
    assert last_json(out)["epochs"] == 1
    code, out_cut, err = train(cut, "--resume")
    assert code == 0, err
    assert "resumed from" in err and "after epoch 1" in err
    a, b = last_json(out_whole), last_json(out_cut)
    assert b["resumed_from_epoch"] == 1 and b["epochs"] == 2
    assert (a["test_loss"], a["test_accuracy"], a["train_loss"]) == (b["test_loss"], b["test_accuracy"], b["train_loss"])
    wa, wb = weights(a["checkpoint"]), weights(b["checkpoint"])
    assert sorted(wa) == sorted(wb)
    for key in wa:
        if key != "meta":  # meta holds timings
            assert np.array_equal(wa[key], wb[key]), key


@needs_data
def test_resume_of_finished_run_only_reports(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    code, out, err = train(cfg)
    assert code == 0, err
    code, again, err = train(cfg, "--resume")
    assert code == 0, err
    assert last_json(again)["test_accuracy"] == last_json(out)["test_accuracy"]


@needs_data
def test_resume_refuses_another_run_and_corrupt_files(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    assert train(cfg)[0] == 0
    other = tiny_config(tmp_path, epochs=1, batch_size=64)
    code, out, err = train(other, "--resume")
    assert code == 1 and "different batch_size" in err, err
    ckpt = tmp_path / "run" / "ckpt.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    code, out, err = train(cfg, "--resume")
    assert code == 1 and "ckpt.safetensors" in err and "Traceback" not in err, err


@pytest.mark.parametrize("change, message", [
    ({"optimizer": {"name": "adamw", "lr": -1}}, "optimizer.lr must be a positive number, got -1"),
    ({"optimizer": {"name": "rmsprop", "lr": 0.1}}, 'optimizer.name must be one of "adamw", "adam", "sgd"'),
    ({"model": None}, "model is missing"),
    ({"model": {"type": "mlp", "sizes": [100, 10]}}, "model.sizes must start with 784"),
    ({"model": {"type": "cnn", "channels": [0]}}, "model.channels must be a list of 1 to 4 positive integers"),
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"batch_size": "64"}, 'batch_size must be a positive integer, got "64"'),
    ({"schedule": {"name": "step"}}, "schedule.step_size is missing"),
    ({"optimzer": {}}, "the config has unknown field(s) optimzer"),
    ({"data": {"name": "fashion-mnist", "limit_train": -5}}, "data.limit_train must be a positive integer or null"),
    ({"device": "tpu"}, 'device must be "cpu", "cuda" or "cuda:N"'),
])
def test_bad_config_names_the_field(tmp_path, change, message):
    cfg = tiny_config(tmp_path, **change)
    code, out, err = train(cfg)
    assert code == 2, err
    assert f"{cfg}: {message}" in err, err
    assert "Traceback" not in err


def test_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 2,,}')
    code, out, err = train(str(bad))
    assert code == 2 and "not valid JSON" in err and "line 1" in err, err
    code, out, err = train(str(tmp_path / "absent.json"))
    assert code == 2 and "absent.json: cannot read the config" in err, err


def test_missing_data_says_what_to_install(tmp_path):
    cfg = tiny_config(tmp_path, data={"name": "fashion-mnist", "path": str(tmp_path / "nodata")})
    code, out, err = train(cfg)
    assert code == 1, err
    assert "no such file" in err and "dataset-fashion-mnist" in err and "Traceback" not in err, err
