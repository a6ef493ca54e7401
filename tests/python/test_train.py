"""tools/tessera-train on tiny runs: the JSON last line, the checkpoint and curve PNG, exact
resume (a run cut after epoch 1 and resumed ends bit-identical to an uncut one) and the
errors for bad configs, missing data and bad checkpoints; the same for the gpt-char task (a
tiny character GPT on a generated text: cut at iteration 5 and resumed, bit-identical)."""
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


# ---- the gpt-char task (a character-level GPT; configs/gpt-char*.json) ----------------------------

SHAKESPEARE = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt"))


def tiny_text(tmp_path):
    """A 20,000-character text file of pseudo-words (no dependency on the shared data)."""
    path = tmp_path / "text.txt"
    if not path.exists():
        rng = np.random.default_rng(0)
        words = ["the", "king", "and", "queen", "of", "rome", "speak", "now", "O", "my", "lord,", "love\n"]
        path.write_text(" ".join(rng.choice(words, 4000).tolist())[:20000])
    return path


def tiny_gpt_config(tmp_path, name="gpt.json", **changes):
    cfg = {
        "task": "gpt-char",
        "model": {"type": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "dropout": 0.1},
        "data": {"text": os.path.relpath(tiny_text(tmp_path), tmp_path)},  # relative to the config file
        "optimizer": {"name": "adamw", "lr": 0.003},
        "schedule": {"name": "cosine", "warmup_iters": 3, "min_lr": 0.0003},
        "max_iters": 16,
        "batch_size": 4,
        "eval_interval": 8,
        "eval_iters": 2,
        "log_interval": 4,
        "sample": {"tokens": 20},
        "seed": 7,
        "checkpoint": str(tmp_path / "run" / "gpt.safetensors"),
    }
    for key, value in changes.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return str(path)


def test_gpt_run_prints_metrics_sample_and_checkpoint(tmp_path):
    code, out, err = train(tiny_gpt_config(tmp_path))
    assert code == 0, err
    result = last_json(out)
    for key in ("val_loss", "train_loss", "whole_val_loss", "iters", "ms_per_iter", "tokens_per_s"):
        assert result[key] is not None, (key, result)
    assert abs(result["whole_val_loss"] - result["val_loss"]) < 0.3, result  # the same model, every window
    assert "over the whole validation split" in err, err
    assert result["iters"] == 16 and result["eval_iter"] == 16 and result["val_loss"] < 4.0, result
    assert result["best_val_loss"] <= result["val_loss"] and result["best_iter"] in (0, 8, 16), result
    assert "step 0: train loss" in err and "step 16: train loss" in err and "iter 16/16" in err, err
    with open(result["sample"], encoding="utf-8") as f:
        assert len(f.read()) == 21  # the prompt "\n" and 20 characters
    assert os.path.getsize(result["checkpoint"]) > 0
    assert not [n for n in os.listdir(tmp_path / "run") if ".tmp" in n]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not tessera.cuda.is_available(), reason="no CUDA device: the CUDA resume runs on the GPU machine"))])
def test_gpt_resume_is_exact(tmp_path, device):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    on = {"device": device, "deterministic": True}  # CUDA: embedding backward without atomics
    whole, cut = tiny_gpt_config(tmp_path / "a", **on), tiny_gpt_config(tmp_path / "b", **on)
    code, out_whole, err = train(whole)
    assert code == 0, err
    code, out, err = train(cut, "--stop-after", "5")
    assert code == 0, err
    assert last_json(out)["iters"] == 5 and last_json(out)["sample"] is None
    assert last_json(out)["whole_val_loss"] is None  # only a finished run is measured on the whole split
    code, out_cut, err = train(cut, "--resume")
    assert code == 0, err
    assert "resumed from" in err and "at iteration 5" in err, err
    a, b = last_json(out_whole), last_json(out_cut)
    assert b["resumed_from_iter"] == 5 and b["iters"] == 16
    assert (a["val_loss"], a["train_loss"]) == (b["val_loss"], b["train_loss"])
    wa, wb = weights(a["checkpoint"]), weights(b["checkpoint"])
    assert sorted(wa) == sorted(wb)
    for key in wa:
        if key != "meta":
            assert np.array_equal(wa[key], wb[key]), key
    with open(a["sample"]) as fa, open(b["sample"]) as fb:
        assert fa.read() == fb.read()
    before = os.path.getmtime(b["checkpoint"])  # a finished run only reports
    code, again, err = train(cut, "--resume")
    assert code == 0, err
    assert last_json(again)["val_loss"] == b["val_loss"] and os.path.getmtime(b["checkpoint"]) == before


def test_gpt_torch_backend_runs_the_same_config(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is not importable: no --backend torch")
    code, out, err = train(tiny_gpt_config(tmp_path), "--backend", "torch")
    assert code == 0, err
    result = last_json(out)
    assert result["backend"] == "torch" and result["iters"] == 16 and result["val_loss"] < 4.0, result


def replay(*args):
    """(exit status, stdout, stderr) of tools/gpt-replay with args."""
    p = subprocess.run([sys.executable, os.path.join(REPO, "tools", "gpt-replay"), *args],
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_gpt_replay_trains_tessera_and_torch_on_nanogpts_stream_alike(tmp_path):
    """tools/gpt-replay: the twin's initial weights and nanoGPT's batch stream, trained by both
    backends: the same curve (16 steps, 3 evaluations) and the same whole-split losses."""
    pytest.importorskip("torch", reason="PyTorch is not importable: gpt-replay draws nanoGPT's stream with it")
    cfg = tiny_gpt_config(tmp_path, model={"type": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16,
                                           "block_size": 16, "dropout": 0.0})
    code, out, err = replay(cfg, "--torch")
    assert code == 0, err
    runs = last_json(out)["runs"]
    a, b = runs["tessera"], runs["torch"]
    assert [c["iter"] for c in a["curve"]] == [0, 8, 16] == [c["iter"] for c in b["curve"]]
    for x, y in zip(a["curve"], b["curve"]):
        for key in ("train_loss", "val_loss"):
            assert abs(x[key] - y[key]) <= 1e-3, (x, y)
    assert a["curve"][-1]["val_loss"] < a["curve"][0]["val_loss"] - 0.1  # it trained
    assert abs(a["whole_val_loss"] - b["whole_val_loss"]) <= 1e-3, (a, b)
    assert "tessera train" in err and "whole" in err, err


def test_gpt_replay_refuses_dropout(tmp_path):
    code, out, err = replay(tiny_gpt_config(tmp_path))  # dropout 0.1
    assert code == 2 and "model.dropout is 0.1" in err and "not replayed" in err, err


@pytest.mark.parametrize("name, device", [("gpt-char", "cuda"), ("gpt-char-cpu", "cpu")])
def test_gpt_shipped_configs_are_valid(name, device):
    cfg = config.load(os.path.join(REPO, "configs", f"{name}.json"), REPO)
    assert cfg["task"] == "gpt-char" and cfg["device"] == device
    assert cfg["data"]["text"] == SHAKESPEARE or cfg["data"]["text"].endswith("/shared/data/tinyshakespeare.txt")
    assert cfg["checkpoint"] == os.path.join(REPO, "runs", name, "checkpoint.safetensors")
    m = cfg["model"]
    if name == "gpt-char":  # nanoGPT's config/train_shakespeare_char.py
        assert (m["n_layer"], m["n_head"], m["n_embd"], m["block_size"], m["dropout"]) == (6, 6, 384, 256, 0.2)
        assert (cfg["batch_size"], cfg["max_iters"], cfg["eval_interval"], cfg["eval_iters"]) == (64, 5000, 250, 200)
        assert cfg["autocast"] == "bfloat16"
    else:  # its CPU command line
        assert (m["n_layer"], m["n_head"], m["n_embd"], m["block_size"], m["dropout"]) == (4, 4, 128, 64, 0.0)
        assert (cfg["batch_size"], cfg["max_iters"], cfg["eval_iters"]) == (12, 2000, 20)
    assert cfg["optimizer"] == {"name": "adamw", "lr": 1e-3, "weight_decay": 0.1, "betas": [0.9, 0.99], "eps": 1e-8}
    assert cfg["schedule"] == {"name": "cosine", "warmup_iters": 100, "min_lr": 1e-4,
                               "decay_iters": cfg["max_iters"]}
    assert cfg["grad_clip"] == 1.0


@pytest.mark.skipif(not os.path.exists(SHAKESPEARE), reason=f"{SHAKESPEARE} is not there")
def test_gpt_shipped_config_finds_the_shared_text():
    assert config.load(os.path.join(REPO, "configs", "gpt-char-cpu.json"), REPO)["data"]["text"] == SHAKESPEARE


@pytest.mark.parametrize("change, message", [
    ({"block_size": 32}, "block_size (32) is longer than model.block_size (16), the model's context"),
    ({"model": {"type": "gpt", "n_embd": 30, "n_head": 4}}, "model.n_embd (30) must be a multiple of model.n_head (4)"),
    ({"data": {}}, "data.text is missing"),
    ({"autocast": "float16"}, 'autocast must be one of "none", "bfloat16"'),
    ({"max_iters": 0}, "max_iters must be a positive integer, got 0"),
    ({"schedule": {"warmup_iters": 20}}, "schedule.decay_iters (16) must be greater than schedule.warmup_iters (20)"),
    ({"optimizer": {"name": "sgd", "lr": 0.1}}, 'optimizer.name must be one of "adamw"'),
    ({"epochs": 3}, "the config has unknown field(s) epochs"),
])
def test_gpt_bad_config_names_the_field(tmp_path, change, message):
    cfg = tiny_gpt_config(tmp_path, **change)
    code, out, err = train(cfg)
    assert code == 2, err
    assert f"{cfg}: {message}" in err, err
    assert "Traceback" not in err


def test_gpt_missing_text_file_names_the_field(tmp_path):
    cfg = tiny_gpt_config(tmp_path, data={"text": "absent.txt"})
    code, out, err = train(cfg)
    assert code == 1, err
    assert f"{cfg}: data.text: no such file {tmp_path / 'absent.txt'}" in err and "Traceback" not in err, err


def test_gpt_text_shorter_than_the_context(tmp_path):
    (tmp_path / "short.txt").write_text("to be or not to be, that is the question")
    code, out, err = train(tiny_gpt_config(tmp_path, data={"text": "short.txt", "train_fraction": 0.9}))
    assert code == 1 and "block_size" in err and "too few for a context of 16" in err, err


def test_gpt_checkpoint_of_another_architecture(tmp_path):
    assert train(tiny_gpt_config(tmp_path), "--stop-after", "2")[0] == 0
    wider = tiny_gpt_config(tmp_path, "wider.json",
                            model={"type": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16})
    code, out, err = train(wider, "--resume")
    assert code == 1, err
    assert "checkpoint of another architecture" in err and "model.n_layer is 2 in the config but 1" in err, err
    assert "model.n_embd is 32 in the config but 16" in err and "Traceback" not in err, err
    longer = tiny_gpt_config(tmp_path, "longer.json",
                             model={"type": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32})
    code, out, err = train(longer, "--resume")
    assert code == 1 and "model.block_size is 32 in the config but 16" in err, err
    other = tiny_gpt_config(tmp_path, "other.json", batch_size=8)
    code, out, err = train(other, "--resume")
    assert code == 1 and "different batch_size" in err, err


@needs_data
def test_gpt_resume_refuses_a_fashion_checkpoint(tmp_path):
    assert train(tiny_config(tmp_path, epochs=1))[0] == 0
    cfg = tiny_gpt_config(tmp_path, checkpoint=str(tmp_path / "run" / "ckpt.safetensors"))
    code, out, err = train(cfg, "--resume")
    assert code == 1 and "checkpoint of another task" in err and "not gpt-char" in err, err


def test_gpt_checkpoint_is_never_replaced_by_a_half_written_one(tmp_path, monkeypatch):
    from tessera_train import checkpoint
    assert train(tiny_gpt_config(tmp_path), "--stop-after", "2")[0] == 0
    path = str(tmp_path / "run" / "gpt.safetensors")
    with open(path, "rb") as f:
        good = f.read()

    class HalfWriter:
        """tessera with a save() that writes half a file and fails (a crash mid-write)."""

        def __getattr__(self, name):
            return getattr(tessera, name)

        def save(self, obj, dest):
            with open(dest, "wb") as f:
                f.write(good[:len(good) // 2])
            raise OSError(28, "No space left on device")

    model = tessera.nn.Linear(2, 2)
    opt = tessera.optim.AdamW(model.parameters())
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(HalfWriter(), path, model, opt, None, {"step": 3})
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        checkpoint.save(tessera, path, model, opt, None, {"step": 3})
    with open(path, "rb") as f:
        assert f.read() == good
    assert not [n for n in os.listdir(tmp_path / "run") if ".tmp" in n]


def test_gpt_options_of_the_other_task_are_refused(tmp_path):
    code, out, err = train(tiny_gpt_config(tmp_path), "--epochs", "2")
    assert code == 2 and "--epochs is for the fashion-mnist task" in err, err
    code, out, err = train(tiny_gpt_config(tmp_path), "--profile", "2")  # the CPU: no CUDA kernels to time
    assert code == 1 and "--profile times CUDA kernels" in err and "Traceback" not in err, err
