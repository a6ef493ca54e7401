"""Datasets and a DataLoader. Over a TensorDataset the loader gathers each batch with one
slice (in order) or one fancy-index gather (shuffled) per tensor, never per-sample collation."""
import numbers

import numpy as np

__all__ = ["Dataset", "TensorDataset", "DataLoader", "default_collate"]


def _tessera():
    import tessera
    return tessera


class Dataset:
    """Map-style dataset: __getitem__(index) and __len__."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are the index-th rows of tensors that share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        Tensor = _tessera().Tensor
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: argument {i} is a {type(t).__name__}, "
                                "not a tessera.Tensor")
            if t.dim() == 0:
                raise ValueError(f"TensorDataset: tensor {i} is 0-d; every tensor needs a "
                                 "first (sample) dimension")
        sizes = [t.shape[0] for t in tensors]
        if any(s != sizes[0] for s in sizes):
            shapes = ", ".join(str(list(t.shape)) for t in tensors)
            raise ValueError(f"Size mismatch between tensors: TensorDataset needs the same first "
                             f"dimension in all tensors, got shapes {shapes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


def default_collate(batch):
    """Stacks a list of samples: tensors and numpy arrays into one tensor with a new first
    dimension, numbers into a 1-D tensor, and tuples/lists/dicts element by element."""
    tessera = _tessera()
    elem = batch[0]
    if isinstance(elem, tessera.Tensor):
        arr = np.stack([np.asarray(s) for s in batch])  # bfloat16 comes as float32
        out = _from_numpy(arr, elem.dtype)
        return out if elem.device.type == "cpu" else out.to(elem.device)
    if isinstance(elem, np.ndarray):
        return _from_numpy(np.stack(batch))
    if isinstance(elem, bool):
        return tessera.tensor(batch, dtype=tessera.bool)
    if isinstance(elem, numbers.Integral):
        return tessera.tensor(batch, dtype=tessera.int64)
    if isinstance(elem, numbers.Real):
        return tessera.tensor(batch, dtype=tessera.float32)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, dict):
        return {k: default_collate([s[k] for s in batch]) for k in elem}
    if isinstance(elem, (tuple, list)):
        if any(len(s) != len(elem) for s in batch):
            raise ValueError("default_collate: each sample in a batch must have the same number "
                             "of elements")
        return [default_collate(list(group)) for group in zip(*batch)]
    raise TypeError(f"default_collate: cannot batch samples of type {type(elem).__name__}")


def _from_numpy(arr, dtype=None):
    tessera = _tessera()
    if dtype is tessera.bfloat16:  # numpy has no bfloat16: the host data is float32
        return tessera.from_numpy(np.ascontiguousarray(arr, np.float32)).to(dtype)
    return tessera.from_numpy(np.ascontiguousarray(arr))


class DataLoader:
    """Iterates over a dataset in batches.

    shuffle draws a new permutation every epoch from `generator` (a seed or a
    numpy.random.Generator); without one, from tessera's global generator, so that
    tessera.manual_seed makes the order reproducible."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, generator=None,
                 collate_fn=None, seed=None, num_workers=0):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size should be a positive integer value, got {batch_size!r}")
        if num_workers != 0:
            raise ValueError("num_workers > 0 is not supported: the loader runs in the caller")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn or default_collate
        if generator is None:
            generator = seed
        if generator is None or isinstance(generator, np.random.Generator):
            self.generator = generator
        else:
            self.generator = np.random.default_rng(int(generator))

    def __len__(self):
        n = len(self.dataset)
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size

    def _permutation(self, n):
        rng = self.generator
        if rng is None:
            tessera = _tessera()
            seed = int(tessera.randint(0, 2**31 - 1, (2,)).numpy().astype(np.int64)
                       .dot([2**31, 1]))
            rng = np.random.default_rng(seed)
        return rng.permutation(n)

    def __iter__(self):
        n = len(self.dataset)
        order = self._permutation(n) if self.shuffle else None
        stop = len(self) * self.batch_size
        if isinstance(self.dataset, TensorDataset) and self.collate_fn is default_collate:
            yield from self._tensor_batches(order, n, stop)
            return
        for start in range(0, min(stop, n), self.batch_size):
            end = min(start + self.batch_size, n)
            idx = range(start, end) if order is None else order[start:end]
            yield self.collate_fn([self.dataset[int(i)] for i in idx])

    def _tensor_batches(self, order, n, stop):
        tensors = self.dataset.tensors
        arrays = None
        if order is not None:  # zero-copy host views (copies off the CPU, float32 for bfloat16)
            arrays = [np.asarray(t) for t in tensors]
        for start in range(0, min(stop, n), self.batch_size):
            end = min(start + self.batch_size, n)
            if order is None:
                yield [t[start:end] for t in tensors]
            else:
                idx = order[start:end]  # idx is (B,)
                yield [_gather(t, a, idx) for t, a in zip(tensors, arrays)]


def _gather(t, arr, idx):
    out = _from_numpy(np.take(arr, idx, axis=0), t.dtype)
    return out if t.device.type == "cpu" else out.to(t.device)
