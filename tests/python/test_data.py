# tessera.utils.data: TensorDataset, DataLoader batching/shuffling/drop_last, the gather fast
# path, generic datasets with the default collate, and bad input.
import numpy as np
import pytest

import tessera
from tessera.utils.data import DataLoader, Dataset, TensorDataset, default_collate


def _data(n=10):
    x = tessera.from_numpy(np.arange(n * 3, dtype=np.float32).reshape(n, 3))
    y = tessera.from_numpy(np.arange(n, dtype=np.int64))
    return x, y


def test_tensor_dataset_items():
    x, y = _data()
    ds = TensorDataset(x, y)
    assert len(ds) == 10
    a, b = ds[4]
    np.testing.assert_array_equal(a.numpy(), [12, 13, 14])
    assert b.item() == 4


def test_tensor_dataset_size_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\[10, 3\], \[9\]"):
        TensorDataset(tessera.zeros(10, 3), tessera.zeros(9))
    with pytest.raises(TypeError, match="not a tessera.Tensor"):
        TensorDataset(np.zeros(3))
    with pytest.raises(ValueError, match="0-d"):
        TensorDataset(tessera.tensor(1.0))


@pytest.mark.parametrize("batch_size,drop_last,expected", [
    (3, False, [3, 3, 3, 1]), (3, True, [3, 3, 3]), (5, True, [5, 5]), (5, False, [5, 5]),
    (20, False, [10]), (20, True, []), (1, False, [1] * 10)])
def test_batches_in_order(batch_size, drop_last, expected):
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(expected)
    batches = list(loader)
    assert [len(b[1]) for b in batches] == expected
    seen = np.concatenate([b[1].numpy() for b in batches]) if batches else np.array([])
    np.testing.assert_array_equal(seen, np.arange(sum(expected)))
    for bx, by in batches:
        np.testing.assert_array_equal(bx.numpy(), x.numpy()[by.numpy()])


def test_shuffle_is_a_permutation_and_changes_per_epoch():
    x, y = _data(50)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=0)
    epochs = []
    for _ in range(2):
        batches = list(loader)
        order = np.concatenate([b[1].numpy() for b in batches])
        assert sorted(order) == list(range(50))
        for bx, by in batches:
            np.testing.assert_array_equal(bx.numpy(), x.numpy()[by.numpy()])
            assert bx.dtype == tessera.float32 and by.dtype == tessera.int64
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(50))


def test_shuffle_is_reproducible():
    x, y = _data(40)
    ds = TensorDataset(x, y)

    def order(loader):
        return np.concatenate([b[1].numpy() for b in loader])
    np.testing.assert_array_equal(order(DataLoader(ds, 7, shuffle=True, generator=3)),
                                  order(DataLoader(ds, 7, shuffle=True, seed=3)))
    tessera.manual_seed(11)
    a = order(DataLoader(ds, 7, shuffle=True))
    tessera.manual_seed(11)
    b = order(DataLoader(ds, 7, shuffle=True))
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(5)
    assert sorted(order(DataLoader(ds, 7, shuffle=True, generator=rng))) == list(range(40))


def test_shuffle_drop_last():
    x, y = _data(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, drop_last=True, seed=1)
    batches = list(loader)
    assert len(loader) == len(batches) == 2 and all(len(b[0]) == 4 for b in batches)


def test_ordered_batches_are_views():
    x, y = _data()
    bx, _ = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    assert bx.shape == (4, 3) or list(bx.shape) == [4, 3]
    x[0, 0] = 100.0
    assert bx[0, 0].item() == 100.0  # a slice of the dataset tensor, not a copy


def test_tensor_fast_path_does_not_index_per_sample(monkeypatch):
    x, y = _data(64)
    ds = TensorDataset(x, y)

    def forbidden(self, index):
        raise AssertionError("per-sample indexing on the TensorDataset fast path")
    monkeypatch.setattr(TensorDataset, "__getitem__", forbidden)
    for shuffle in (False, True):
        assert sum(len(b[0]) for b in DataLoader(ds, 16, shuffle=shuffle, seed=0)) == 64


class Squares(Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": tessera.tensor([float(i), float(i * i)]), "i": i, "name": f"s{i}"}


def test_generic_dataset_default_collate():
    batches = list(DataLoader(Squares(), batch_size=3))
    assert len(batches) == 3
    first = batches[0]
    np.testing.assert_array_equal(first["x"].numpy(), [[0, 0], [1, 1], [2, 4]])
    assert first["i"].dtype == tessera.int64 and first["i"].tolist() == [0, 1, 2]
    assert first["name"] == ["s0", "s1", "s2"]
    assert batches[-1]["i"].tolist() == [6]


def test_generic_dataset_shuffle_and_custom_collate():
    loader = DataLoader(Squares(), batch_size=2, shuffle=True, seed=4, drop_last=True,
                        collate_fn=lambda samples: [s["i"] for s in samples])
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert len(set(sum(batches, []))) == 6


def test_default_collate_tuples_and_numbers():
    out = default_collate([(tessera.tensor([1.0]), 2, 0.5, True), (tessera.tensor([3.0]), 4, 1.5, False)])
    np.testing.assert_array_equal(out[0].numpy(), [[1.0], [3.0]])
    assert out[1].dtype == tessera.int64 and out[2].dtype == tessera.float32
    assert out[3].dtype == tessera.bool
    with pytest.raises(TypeError, match="cannot batch"):
        default_collate([object()])


def test_bad_loader_arguments():
    x, y = _data()
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(x, y), batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(TensorDataset(x, y), num_workers=2)
