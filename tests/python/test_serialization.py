# tessera.save / tessera.load: the safetensors layout, round trips, nested objects, atomic writes
# and a clear ValueError for every kind of corrupt or truncated file.
import json
import os
import struct

import numpy as np
import pytest

import tessera

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None


def _header(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8:8 + n]), data[8 + n:], data


def _write(path, header, body=b"", pad=True):
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + body)


NUMPY_DTYPES = [("float32", np.float32), ("float64", np.float64), ("float16", np.float16),
                ("int64", np.int64), ("int32", np.int32), ("uint8", np.uint8), ("bool", np.bool_)]


@pytest.mark.parametrize("name,np_dtype", NUMPY_DTYPES)
def test_round_trip_each_dtype(tmp_path, name, np_dtype):
    arr = (np.arange(24).reshape(2, 3, 4) % 7).astype(np_dtype)
    t = tessera.from_numpy(arr)
    tessera.save({"x": t}, tmp_path / "a.safetensors")
    back = tessera.load(tmp_path / "a.safetensors")
    assert list(back) == ["x"]
    assert back["x"].dtype == getattr(tessera, name)
    np.testing.assert_array_equal(back["x"].numpy(), arr)


def test_round_trip_bfloat16(tmp_path):
    t = tessera.tensor([1.0, -2.5, 3.0, 0.15625]).to(tessera.bfloat16)
    tessera.save({"b": t}, tmp_path / "b.safetensors")
    _, header, body, _ = _header(tmp_path / "b.safetensors")
    assert header["b"] == {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}
    # bf16 is the upper half of the float32 bits
    expected = (np.array([1.0, -2.5, 3.0, 0.15625], np.float32).view(np.uint32) >> 16)
    np.testing.assert_array_equal(np.frombuffer(body, np.uint16), expected.astype(np.uint16))
    back = tessera.load(tmp_path / "b.safetensors")["b"]
    assert back.dtype == tessera.bfloat16
    np.testing.assert_array_equal(back.float().numpy(), [1.0, -2.5, 3.0, 0.15625])


def test_layout_follows_the_spec(tmp_path):
    a = tessera.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = tessera.tensor([1, 2, 3], dtype=tessera.int64)
    c = tessera.tensor([True, False, True])
    tessera.save({"a": a, "b": b, "c": c}, tmp_path / "l.safetensors")
    n, header, body, data = _header(tmp_path / "l.safetensors")
    assert (8 + n) % 8 == 0 and data[8:8 + n].rstrip(b" ").endswith(b"}")
    assert data[8:9] == b"{"
    assert list(header) == ["a", "b", "c"]
    assert header["a"]["dtype"] == "F32" and header["a"]["shape"] == [2, 2]
    assert header["b"]["dtype"] == "I64" and header["c"]["dtype"] == "BOOL"
    assert "__metadata__" not in header  # a plain state dict stays plain
    spans = sorted(tuple(e["data_offsets"]) for e in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(body)
    assert all(x[1] == y[0] for x, y in zip(spans, spans[1:]))  # contiguous, no holes
    for name, arr in (("a", a.numpy()), ("b", b.numpy()), ("c", c.numpy())):
        lo, hi = header[name]["data_offsets"]
        assert body[lo:hi] == arr.tobytes()
        assert lo % arr.itemsize == 0  # every tensor aligned to its dtype


def test_non_contiguous_and_scalar_and_empty(tmp_path):
    t = tessera.arange(12, dtype=tessera.float32).reshape(3, 4).t()  # a transposed view
    s = tessera.tensor(2.5)
    e = tessera.zeros(0, 3)
    tessera.save({"t": t, "s": s, "e": e}, tmp_path / "v.safetensors")
    back = tessera.load(tmp_path / "v.safetensors")
    np.testing.assert_array_equal(back["t"].numpy(), t.numpy())
    assert back["s"].shape == () and back["s"].item() == 2.5
    assert list(back["e"].shape) == [0, 3]


def test_load_hand_built_file(tmp_path):
    """A file written independently of tessera.save: other key order, metadata, I8/BF16."""
    f32 = np.array([[0.5, -1.0, 2.0]], np.float32)
    i64 = np.array([7, -8], np.int64)
    i8 = np.array([-3, 4, 5], np.int8)
    bf16 = (np.array([1.5, -4.0], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    body = i64.tobytes() + f32.tobytes() + bf16.tobytes() + i8.tobytes()
    header = {
        "w": {"dtype": "F32", "shape": [1, 3], "data_offsets": [16, 28]},
        "__metadata__": {"format": "pt"},
        "step": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
        "h": {"dtype": "BF16", "shape": [2], "data_offsets": [28, 32]},
        "q": {"dtype": "I8", "shape": [3], "data_offsets": [32, 35]},
    }
    _write(tmp_path / "h.safetensors", header, body)
    back = tessera.load(str(tmp_path / "h.safetensors"))
    assert list(back) == ["w", "step", "h", "q"]
    np.testing.assert_array_equal(back["w"].numpy(), f32)
    np.testing.assert_array_equal(back["step"].numpy(), i64)
    np.testing.assert_array_equal(back["h"].float().numpy(), [1.5, -4.0])
    np.testing.assert_array_equal(back["q"].numpy(), i8)  # widened to int32


def test_user_metadata_is_written(tmp_path):
    tessera.save({"x": tessera.ones(2)}, tmp_path / "m.safetensors", metadata={"format": "pt"})
    _, header, _, _ = _header(tmp_path / "m.safetensors")
    assert header["__metadata__"] == {"format": "pt"}
    with pytest.raises(TypeError, match="metadata"):
        tessera.save({"x": tessera.ones(2)}, tmp_path / "m2.safetensors", metadata={"a": 1})


def test_nested_checkpoint_round_trip(tmp_path):
    model = tessera.nn.Linear(3, 2)
    opt = tessera.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    model(tessera.randn(4, 3)).sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
            "history": [0.5, 0.25], "name": "run", "best": None}
    tessera.save(ckpt, tmp_path / "c.safetensors")
    _, header, _, _ = _header(tmp_path / "c.safetensors")
    assert "model.weight" in header and "optimizer.state.0.exp_avg" in header
    assert "tessera.structure" in header["__metadata__"]
    back = tessera.load(tmp_path / "c.safetensors")
    assert back["epoch"] == 3 and back["history"] == [0.5, 0.25] and back["best"] is None
    assert list(back["model"]) == ["weight", "bias"]
    np.testing.assert_array_equal(back["model"]["weight"].numpy(), model.weight.detach().numpy())
    osd = back["optimizer"]
    assert set(osd["state"]) == {0, 1}  # int keys survive
    assert osd["state"][0]["step"] == 1
    assert osd["param_groups"][0]["betas"] == (0.8, 0.9)  # tuples survive
    np.testing.assert_array_equal(osd["state"][1]["exp_avg_sq"].numpy(),
                                  opt.state[model.bias]["exp_avg_sq"].numpy())
    opt2 = tessera.optim.AdamW(tessera.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(osd)
    assert opt2.param_groups[0]["lr"] == 0.01


def test_flattened_key_collision_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="same key 'a.b'"):
        tessera.save({"a.b": tessera.ones(1), "a": {"b": tessera.ones(1)}}, tmp_path / "x")


def test_unsupported_value_names_its_place(tmp_path):
    with pytest.raises(TypeError, match="'opt.fn'"):
        tessera.save({"opt": {"fn": object()}}, tmp_path / "x")
    assert not os.path.exists(tmp_path / "x")


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "good.safetensors"
    tessera.save({"x": tessera.ones(3)}, path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        tessera.save({"x": tessera.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["good.safetensors"]  # the temp file is gone


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "f.safetensors"
    tessera.save({"x": tessera.ones(3)}, path)
    tessera.save({"y": tessera.zeros(2)}, path)
    assert list(tessera.load(path)) == ["y"]
    assert os.listdir(tmp_path) == ["f.safetensors"]


# ---- corrupt and truncated files -------------------------------------------------------------

def _good(tmp_path):
    path = tmp_path / "good.safetensors"
    tessera.save({"a": tessera.ones(4), "b": tessera.zeros(2, dtype=tessera.int64)}, path)
    return path


def _corrupt(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_truncated_to_nothing(tmp_path):
    path = _corrupt(tmp_path, "short.safetensors", b"\x10\x00\x00")
    with pytest.raises(ValueError, match="short.safetensors.*too short"):
        tessera.load(path)


def test_header_length_past_the_end(tmp_path):
    data = _good(tmp_path).read_bytes()
    path = _corrupt(tmp_path, "hl.safetensors", struct.pack("<Q", 1 << 40) + data[8:])
    with pytest.raises(ValueError, match="hl.safetensors.*header length"):
        tessera.load(path)


def test_truncated_inside_the_header(tmp_path):
    data = _good(tmp_path).read_bytes()
    path = _corrupt(tmp_path, "th.safetensors", data[:20])
    with pytest.raises(ValueError, match="th.safetensors.*header length"):
        tessera.load(path)


def test_header_not_json(tmp_path):
    path = _corrupt(tmp_path, "nj.safetensors", struct.pack("<Q", 8) + b"{not jso")
    with pytest.raises(ValueError, match="nj.safetensors.*not valid UTF-8 JSON"):
        tessera.load(path)


def test_header_not_utf8(tmp_path):
    path = _corrupt(tmp_path, "nu.safetensors", struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc")
    with pytest.raises(ValueError, match="nu.safetensors.*not valid UTF-8 JSON"):
        tessera.load(path)


def test_header_not_an_object(tmp_path):
    _write(tmp_path / "arr.safetensors", [1, 2, 3])
    with pytest.raises(ValueError, match="arr.safetensors.*not an object"):
        tessera.load(tmp_path / "arr.safetensors")


def test_truncated_data(tmp_path):
    data = _good(tmp_path).read_bytes()
    path = _corrupt(tmp_path, "td.safetensors", data[:-4])
    with pytest.raises(ValueError, match="td.safetensors.*outside the .* data bytes"):
        tessera.load(path)


def test_offsets_outside_the_file(tmp_path):
    _write(tmp_path / "o.safetensors",
           {"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 8)
    with pytest.raises(ValueError, match="o.safetensors.*'x'.*outside"):
        tessera.load(tmp_path / "o.safetensors")


def test_reversed_offsets(tmp_path):
    _write(tmp_path / "r.safetensors",
           {"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8)
    with pytest.raises(ValueError, match="r.safetensors.*'x'"):
        tessera.load(tmp_path / "r.safetensors")


def test_overlapping_offsets(tmp_path):
    _write(tmp_path / "ov.safetensors",
           {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
    with pytest.raises(ValueError, match="ov.safetensors.*'x'.*'y'.*overlap"):
        tessera.load(tmp_path / "ov.safetensors")


def test_unknown_dtype(tmp_path):
    _write(tmp_path / "d.safetensors",
           {"x": {"dtype": "F8_E9M9", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2)
    with pytest.raises(ValueError, match="d.safetensors.*'x'.*unknown or unsupported dtype"):
        tessera.load(tmp_path / "d.safetensors")


def test_shape_does_not_match_offsets(tmp_path):
    _write(tmp_path / "s.safetensors",
           {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(ValueError, match=r"s.safetensors.*'x'.*needs 12 bytes.*span 8"):
        tessera.load(tmp_path / "s.safetensors")


@pytest.mark.parametrize("entry", [
    {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": [2], "data_offsets": [0]},
    {"dtype": "F32", "shape": [2]},
    "not an entry",
])
def test_malformed_entries(tmp_path, entry):
    _write(tmp_path / "e.safetensors", {"x": entry}, b"\0" * 8)
    with pytest.raises(ValueError, match="e.safetensors.*'x'"):
        tessera.load(tmp_path / "e.safetensors")


def test_bad_metadata(tmp_path):
    _write(tmp_path / "md.safetensors", {"__metadata__": {"a": 1}})
    with pytest.raises(ValueError, match="md.safetensors.*__metadata__"):
        tessera.load(tmp_path / "md.safetensors")


def test_random_garbage_never_crashes(tmp_path):
    rng = np.random.default_rng(0)
    good = _good(tmp_path).read_bytes()
    for i in range(200):
        data = bytearray(good)
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(0, len(data))] = int(rng.integers(0, 256))
        data = bytes(data[:rng.integers(0, len(data) + 1)])
        path = _corrupt(tmp_path, "g.safetensors", data)
        try:
            tessera.load(path)
        except ValueError as e:
            assert "g.safetensors" in str(e)


# ---- other writers and readers -----------------------------------------------------------------

@pytest.mark.skipif(torch is None, reason="torch is not importable")
def test_torch_bfloat16_bytes_load(tmp_path):
    t = torch.tensor([[0.1, 2.0], [-3.5, 1e3]], dtype=torch.bfloat16)
    raw = t.view(torch.int16).numpy().tobytes()
    _write(tmp_path / "t.safetensors", {"t": {"dtype": "BF16", "shape": [2, 2],
                                              "data_offsets": [0, 8]}}, raw)
    back = tessera.load(tmp_path / "t.safetensors")["t"]
    np.testing.assert_array_equal(back.float().numpy(), t.float().numpy())


def test_file_written_by_the_safetensors_library():
    """data/safetensors-0.8.0-torch.safetensors: safetensors.torch.save_file (0.8.0, torch 2.11) of
    w=arange(12).reshape(3,4)/7, h=(arange(6)/3-1).bfloat16(), i=arange(-3,4), b=[True,False],
    s=2.5, e=zeros(0,2), q=arange(-4,4).int8(), x16=arange(3).int16(), metadata format=pt."""
    path = os.path.join(os.path.dirname(__file__), "data", "safetensors-0.8.0-torch.safetensors")
    got = tessera.load(path)
    assert sorted(got) == ["b", "e", "h", "i", "q", "s", "w", "x16"]
    np.testing.assert_array_equal(got["w"].numpy(), np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    h = (np.arange(6) / 3 - 1).astype(np.float32)
    h = ((h.view(np.uint32) + 0x7FFF + ((h.view(np.uint32) >> 16) & 1)) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(got["h"].float().numpy(), h)  # round-to-nearest-even bf16
    np.testing.assert_array_equal(got["i"].numpy(), np.arange(-3, 4))
    assert got["b"].tolist() == [True, False] and got["s"].item() == 2.5
    assert list(got["e"].shape) == [0, 2]
    assert got["q"].tolist() == list(range(-4, 4)) and got["x16"].tolist() == [0, 1, 2]


def test_safetensors_library_reads_and_writes(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="the safetensors library is not installed")
    sd = {"w": tessera.randn(3, 4), "i": tessera.arange(5), "m": tessera.tensor([True, False]),
          "h": tessera.randn(2).half()}
    tessera.save(sd, tmp_path / "ours.safetensors", metadata={"format": "np"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    for k, v in sd.items():
        np.testing.assert_array_equal(theirs[k], v.numpy())
    st.save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], np.int32)},
                 str(tmp_path / "theirs.safetensors"))
    back = tessera.load(tmp_path / "theirs.safetensors")
    np.testing.assert_array_equal(back["a"].numpy(), np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(back["b"].numpy(), [1, 2])
