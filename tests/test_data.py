"""Loaders: shapes, dtypes, ranges, label counts, and clear errors on a missing or corrupt path."""

import gzip
import os

import numpy as np
import pytest

from art_ext.data import DataNotFoundError, load_digits, load_mnist, load_rt_polarity, tokenize


@pytest.mark.parametrize("channels_first", [True, False])
def test_digits_shapes_and_ranges(channels_first):
    (x_train, y_train), (x_test, y_test), lo, hi = load_digits(channels_first=channels_first)
    assert x_train.shape == ((1438, 1, 8, 8) if channels_first else (1438, 8, 8, 1))
    assert x_test.shape[0] == 359 and x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert (lo, hi) == (0.0, 1.0) and x_train.min() == 0.0 and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10)) and np.bincount(y_test, minlength=10).min() > 20


def test_digits_split_is_fixed_and_seeded():
    a = load_digits(seed=0)
    b = load_digits(seed=0)
    c = load_digits(seed=1)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[1][1], c[1][1])
    flat = load_digits(flatten=True)
    assert flat[0][0].shape == (1438, 64)


def test_digits_rejects_bad_test_size():
    with pytest.raises(ValueError, match="test_size"):
        load_digits(test_size=1.5)


def test_mnist_missing_path_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("ART_EXT_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        load_mnist(tmp_path)
    with pytest.raises(DataNotFoundError, match="ART_EXT_DATA"):
        load_mnist()


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_idx_and_rejects_corrupt(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.full((3, 28, 28), 255))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([7, 8, 9]))
    monkeypatch.setenv("ART_EXT_DATA", str(tmp_path))
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(channels_first=False)
    assert x_train.shape == (5, 28, 28, 1) and x_test.max() == 1.0 and list(y_test) == [7, 8, 9]
    with open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"not a gzip file")
    with pytest.raises(DataNotFoundError, match="t10k-labels"):
        load_mnist(tmp_path)


@pytest.mark.mnist
def test_real_mnist(mnist):
    (x_train, y_train), (x_test, y_test), _, _ = mnist
    assert len(x_train) == 60000 and len(x_test) == 10000
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert np.bincount(y_train).tolist()[:2] == [5923, 6742]


def test_rt_polarity_small_copy(tmp_path):
    (tmp_path / "rt-polarity.pos").write_text("a great , moving film .\nwonderful acting\n", encoding="utf-8")
    (tmp_path / "rt-polarity.neg").write_text("a dull mess .\nboring and bad\n", encoding="utf-8")
    (x_train, y_train), (x_test, y_test), vocab = load_rt_polarity(tmp_path, max_len=6, vocab_size=50, test_size=0.25)
    assert x_train.shape == (3, 6) and x_test.shape == (1, 6) and x_train.dtype == np.int64
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == [0, 0, 1, 1]
    assert vocab.itos[:2] == ["<pad>", "<unk>"] and vocab.counts.sum() > 0
    assert tokenize("It's GREAT!") == ["it's", "great", "!"]
    os.remove(tmp_path / "rt-polarity.neg")
    with pytest.raises(DataNotFoundError, match="rt-polarity.neg"):
        load_rt_polarity(tmp_path)


def test_real_rt_polarity(rt_polarity_folder):
    (x_train, y_train), (x_test, y_test), vocab = load_rt_polarity(rt_polarity_folder, max_len=40, vocab_size=5000)
    assert len(x_train) + len(x_test) == 10662 and x_train.shape[1] == 40
    assert abs(float(y_train.mean()) - 0.5) < 0.02 and len(vocab) == 5000
