"""Fashion-MNIST from its gzip'd IDX files into numpy arrays, and seeded batching."""
import os
import zlib

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Pixel statistics of the Fashion-MNIST training set (values scaled to [0, 1]).
MEAN, STD = 0.2860, 0.3530
INSTALL_HINT = "install the Debian package dataset-fashion-mnist (tools/setup-deps does)"


class DataError(Exception):
    """A data file that is missing or not what it should be; the message says which."""


def read_idx(path, magic, ndim):
    """The array stored in one gzip'd IDX file (big-endian header: magic, then ndim sizes)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file; {INSTALL_HINT}")
    try:
        with open(path, "rb") as f:
            raw = zlib.decompress(f.read(), 16 + zlib.MAX_WBITS)  # gzip framing
    except (OSError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e}); reinstall dataset-fashion-mnist") from None
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path}: not an IDX file with magic {magic:#010x}")
    sizes = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(sizes)):
        raise DataError(f"{path}: {len(raw) - header} bytes of data for sizes {sizes} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(sizes)


def load_split(path, split, normalize=True, limit=None):
    """(images (N,1,28,28) float32, labels (N,) int64) of the 'train' or 'test' split.

    normalize: True standardizes with the training set's mean/std, False only scales to [0, 1],
    a dict {"mean": m, "std": s} uses those. limit keeps the first `limit` samples."""
    images_file, labels_file = FILES[split]
    images = read_idx(os.path.join(path, images_file), 0x00000803, 3)
    labels = read_idx(os.path.join(path, labels_file), 0x00000801, 1)
    if len(images) != len(labels):
        raise DataError(f"{path}: {len(images)} {split} images but {len(labels)} labels")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32)[:, None, :, :] / np.float32(255)  # x is (N,1,28,28)
    if normalize is True:
        normalize = {"mean": MEAN, "std": STD}
    if normalize:
        x = (x - np.float32(normalize["mean"])) / np.float32(normalize["std"])
    return np.ascontiguousarray(x, dtype=np.float32), labels.astype(np.int64)


def epoch_order(n, seed, epoch):
    """The shuffled sample order of one epoch: a function of (seed, epoch) only, so a resumed
    run visits the samples exactly as an uncut one."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(x, y, batch_size, order=None, drop_last=False):
    """Yields (x_batch, y_batch) numpy arrays: x[order] in batches, each gathered with one fancy
    index (order None: x in its order, sliced)."""
    n = len(x) if order is None else len(order)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
