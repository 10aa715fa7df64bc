"""A tiny synthetic sentiment corpus that ships with the package, for tests, demos and notebooks."""

from __future__ import annotations

import numpy as np

from art_ext.data.rt_polarity import Vocabulary

POSITIVE = ["good", "great", "fine", "superb", "moving", "funny", "smart", "lovely", "brilliant", "charming"]
NEGATIVE = ["bad", "dull", "boring", "awful", "weak", "silly", "flat", "tedious", "clumsy", "bland"]
NEUTRAL = [
    "the", "a", "movie", "film", "story", "plot", "actor", "scene", "and", "is",
    "was", "it", "this", "with", "of", "script", "cast", "ending", "music", "director",
]  # fmt: skip


def make_synthetic_sentiment(
    n_train: int = 400, n_test: int = 200, max_len: int = 12, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], Vocabulary]:
    """
    Sentences of 4 to `max_len` words mixing neutral words with positive and negative ones; the label is 1 when
    positive words outnumber negative ones (never tied). Same layout as
    :func:`art_ext.data.load_rt_polarity` (id 0 padding, id 1 unknown, counts from the training split).

    :param n_train: Training sentences.
    :param n_test: Test sentences.
    :param max_len: Padded length (at least 4).
    :param seed: Seed of the generator.
    :return: ``(x_train, y_train), (x_test, y_test), vocabulary`` with int64 ids of shape ``(n, max_len)``.
    """
    if max_len < 4:
        raise ValueError(f"`max_len` must be at least 4, got {max_len}.")
    rng = np.random.default_rng(seed)
    itos = ["<pad>", "<unk>"] + POSITIVE + NEGATIVE + NEUTRAL
    n_pos = len(POSITIVE)
    x = np.zeros((n_train + n_test, max_len), dtype=np.int64)
    y = np.zeros(n_train + n_test, dtype=np.int64)
    for i in range(len(x)):
        length = int(rng.integers(4, max_len + 1))
        n_sent = int(rng.integers(1, min(4, length) + 1))
        majority = int(rng.integers(n_sent // 2 + 1, n_sent + 1)) if n_sent > 1 else 1
        if n_sent % 2 == 0 and majority == n_sent // 2:
            majority += 1
        label = int(rng.integers(0, 2))
        n_major, n_minor = majority, n_sent - majority
        ids = list(2 + (0 if label else n_pos) + rng.integers(0, n_pos, n_major))
        ids += list(2 + (n_pos if label else 0) + rng.integers(0, n_pos, n_minor))
        ids += list(2 + 2 * n_pos + rng.integers(0, len(NEUTRAL), length - n_sent))
        x[i, :length] = rng.permutation(ids)
        y[i] = label
    counts = np.bincount(x[:n_train].ravel(), minlength=len(itos)).astype(np.int64)
    counts[0] = 0
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), Vocabulary(itos, counts)
