"""The Pang & Lee (2005) sentence polarity data set v1.0, tokenised to padded int64 ids."""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass, field

import numpy as np

from art_ext.data._common import DataNotFoundError, resolve_folder, seeded_split

RT_FILES = ["rt-polarity.pos", "rt-polarity.neg"]

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case word and punctuation tokens."""
    return _TOKEN.findall(text.lower())


@dataclass
class Vocabulary:
    """Token <-> id maps; id 0 is padding, id 1 unknown words. ``counts[i]`` is the training frequency of id ``i``."""

    itos: list[str]
    counts: np.ndarray
    stoi: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, texts: list[list[str]], vocab_size: int) -> Vocabulary:
        if vocab_size < 3:
            raise ValueError(f"`vocab_size` must be at least 3, got {vocab_size}.")
        counter = collections.Counter(tok for t in texts for tok in t)
        common = counter.most_common(vocab_size - 2)
        itos = [PAD, UNK] + [tok for tok, _ in common]
        unk = sum(counter.values()) - sum(c for _, c in common)
        counts = np.array([0, unk] + [c for _, c in common], dtype=np.int64)
        return cls(itos, counts)

    def encode(self, tokens: list[str], max_len: int) -> np.ndarray:
        ids = [self.stoi.get(tok, 1) for tok in tokens[:max_len]]
        return np.array(ids + [0] * (max_len - len(ids)), dtype=np.int64)

    def decode(self, ids: np.ndarray) -> str:
        return " ".join(self.itos[i] for i in ids if i != 0)


def load_rt_polarity(
    path: str | os.PathLike | None = None,
    max_len: int = 50,
    vocab_size: int = 20000,
    test_size: float = 0.1,
    seed: int = 0,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], Vocabulary]:
    """
    Load the sentence polarity data set (5,331 positive and 5,331 negative snippets).

    The vocabulary is built on the training split only. Label 1 is positive, 0 negative.

    :param path: Folder holding ``rt-polarity.pos`` and ``rt-polarity.neg``; default ``$ART_EXT_DATA/rt-polarity``.
    :param max_len: Sentences are cut or zero-padded to this many tokens.
    :param vocab_size: Vocabulary size, padding and unknown included.
    :param test_size: Share held out for testing (fixed, seeded split).
    :param seed: Seed of the split.
    :return: ``(x_train, y_train), (x_test, y_test), vocabulary`` with int64 ids of shape ``(n, max_len)``.
    :raises DataNotFoundError: When a file is missing or unreadable.
    """
    if max_len < 1:
        raise ValueError(f"`max_len` must be positive, got {max_len}.")
    folder = resolve_folder(path, "rt-polarity", RT_FILES)
    texts, labels = [], []
    for name, label in zip(RT_FILES, (1, 0)):
        file_path = os.path.join(folder, name)
        try:
            with open(file_path, encoding="utf-8", errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError as err:
            raise DataNotFoundError(f"Could not read {file_path}: {err}") from err
        if not lines:
            raise DataNotFoundError(f"{file_path} is empty; expected one review snippet per line.")
        texts += [tokenize(line) for line in lines]
        labels += [label] * len(lines)
    y = np.array(labels, dtype=np.int64)
    train, test = seeded_split(len(texts), test_size, seed)
    vocab = Vocabulary.build([texts[i] for i in train], vocab_size)
    x = np.stack([vocab.encode(t, max_len) for t in texts])
    return (x[train], y[train]), (x[test], y[test]), vocab
