"""Seeding every random source art_ext touches."""

from __future__ import annotations

import random
import sys

import numpy as np


def set_seed(seed: int | None, framework: str | None = None) -> None:
    """
    Seed Python, numpy and the framework(s) already imported (or the one named).

    :param seed: The seed; ``None`` does nothing.
    :param framework: ``"pytorch"`` or ``"tensorflow"`` to seed that one even if not imported yet.
    :raises ValueError: When `seed` is not ``None`` or a non-negative int.
    """
    from art_ext.utils.checks import check_random_state

    check_random_state(seed, "seed")
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if framework in ("pytorch", "torch") or "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
    if framework in ("tensorflow", "tf") or "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.random.set_seed(seed)
        try:
            import keras

            keras.utils.set_random_seed(seed)
        except (ImportError, AttributeError):  # pragma: no cover
            pass
