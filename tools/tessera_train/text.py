"""Character-level text data for the gpt-char task: the vocabulary (the sorted distinct
characters of the file), encoding, the 90/10 train/val split, and the seeded random batches
(as nanoGPT's data/shakespeare_char/prepare.py and get_batch)."""
import os

import numpy as np

from .data import DataError


class CharText:
    """The text of one file as token ids. vocab is the string of its distinct characters, sorted
    (id i is vocab[i]); train and val are int64 arrays of ids, the first `train_fraction` of the
    text and the rest."""

    def __init__(self, path, field, train_fraction=0.9, vocab=None):
        text = read_text(path, field)
        self.path = path
        self.vocab = vocab if vocab is not None else "".join(sorted(set(text)))
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise DataError(f"{field}: {path} has characters outside the vocabulary: "
                            f"{''.join(unknown)[:20]!r}")
        ids = np.fromiter((self.stoi[c] for c in text), dtype=np.int64, count=len(text))  # ids is (N,)
        n = int(len(ids) * train_fraction)
        self.train, self.val = ids[:n], ids[n:]

    @property
    def vocab_size(self):
        return len(self.vocab)

    def encode(self, s):
        """ids of the characters of s that are in the vocabulary (others are dropped)."""
        return [self.stoi[c] for c in s if c in self.stoi]

    def decode(self, ids):
        return "".join(self.vocab[int(i)] for i in ids)

    def split(self, name):
        return self.train if name == "train" else self.val

    def check_context(self, block_size, field):
        """DataError unless both splits hold more than block_size tokens (a batch row is
        block_size + 1 consecutive tokens)."""
        for name in ("train", "val"):
            n = len(self.split(name))
            if n <= block_size:
                raise DataError(f"{field}: {self.path}: the {name} split has {n} characters, "
                                f"too few for a context of {block_size} (it needs more than "
                                f"block_size)")


def read_text(path, field):
    """The UTF-8 text of the file at path; a DataError naming the config field when it is
    missing, unreadable, not UTF-8 or empty."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{field}: no such file {path}") from None
    except OSError as e:
        raise DataError(f"{field}: cannot read {path} ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{field}: {path} is not UTF-8 text ({e})") from None
    if len(text) < 2:
        raise DataError(f"{field}: {path} is empty" if not text else f"{field}: {path} has one character")
    return text


class Batches:
    """Random (x, y) batches of a split: batch_size rows, each block_size consecutive tokens
    starting at a uniformly drawn offset, y shifted one ahead of x. Its generator is a numpy
    PCG64 whose state is saved in checkpoints (state / set_state), so a resumed run draws the
    same batches as an uncut one."""

    def __init__(self, seed):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def draw(self, data, batch_size, block_size):
        """(x, y) int64 arrays, each (batch_size, block_size)."""
        return sample(self.rng, data, batch_size, block_size)

    def state(self):
        return self.rng.bit_generator.state  # a JSON-able dict of ints

    def set_state(self, state):
        self.rng.bit_generator.state = state


def sample(rng, data, batch_size, block_size):
    ix = rng.integers(0, len(data) - block_size, size=batch_size)  # ix is (B,) start offsets
    rows = ix[:, None] + np.arange(block_size + 1)[None, :]        # rows is (B, T+1)
    chunk = data[rows]
    return np.ascontiguousarray(chunk[:, :-1]), np.ascontiguousarray(chunk[:, 1:])


def eval_rng(seed, step):
    """The generator of the evaluation batches at a step: a function of (seed, step) alone, so
    evaluating (or not, on resume) never changes the training batches."""
    return np.random.default_rng([seed, 0x6576616C, step])


def resolve(path, config_dir, repo_root):
    """A data path from a config: absolute as is; a relative one from the config file's folder,
    else (when nothing is there) from the repository root."""
    if os.path.isabs(path):
        return path
    here = os.path.normpath(os.path.join(config_dir, path))
    if os.path.exists(here):
        return here
    from_root = os.path.normpath(os.path.join(repo_root, path))
    return from_root if os.path.exists(from_root) else here
