"""How DFME turns generator outputs into victim inputs: bounded outputs as they are, unbounded ones squashed."""

from __future__ import annotations

from typing import Any

import numpy as np


class InputMap:
    """
    The map from generator outputs to inputs in the victim's range ``[lo, hi]``. A generator whose estimator has
    ``clip_values=None`` is unbounded and squashed, ``lo + (hi - lo) (tanh(a) + 1) / 2``; one with ``clip_values``
    (the range of its last activation: ``(-1, 1)`` for ``tanh``, ``(0, 1)`` for a sigmoid) is bounded and used as it is,
    mapped linearly onto ``[lo, hi]`` when the ranges differ, and clipped into it.

    :param ops: The backend.
    :param victim: The victim (its ``clip_values`` come first).
    :param generator: The generator estimator.
    :param student: The thieved classifier (its ``clip_values`` are used when the victim has none).
    :param sample_shape: Shape of one generated sample.
    """

    def __init__(self, ops: Any, victim: Any, generator: Any, student: Any, sample_shape: tuple) -> None:
        self.ops = ops
        low, high = input_range(victim, generator, student, sample_shape)
        self.low = float(low) if np.ndim(low) == 0 else ops.asarray(low)
        self.high = float(high) if np.ndim(high) == 0 else ops.asarray(high)
        self.span = float(high - low) if np.ndim(low) == 0 else ops.asarray(high - low)
        gen_clip = getattr(generator, "clip_values", None)
        self.bounded = gen_clip is not None
        if self.bounded:
            g_low, g_high = (np.asarray(c, dtype=np.float32) for c in gen_clip)
            if np.any(g_high <= g_low):
                raise ValueError("The generator's `clip_values` must satisfy min < max.")
            self.identity = bool(np.all(g_low == low) and np.all(g_high == high))
            g_low, g_high = (np.broadcast_to(c, sample_shape) if np.ndim(c) else c for c in (g_low, g_high))
            self.g_low = float(g_low) if np.ndim(g_low) == 0 else ops.asarray(g_low)
            self.g_span = float(g_high - g_low) if np.ndim(g_low) == 0 else ops.asarray(g_high - g_low)

    def __call__(self, out: Any) -> Any:
        ops = self.ops
        if not self.bounded:
            return self.low + self.span * (ops.tanh(out) + 1.0) * 0.5
        if not self.identity:
            out = self.low + self.span * (out - self.g_low) / self.g_span
        return ops.clip(out, self.low, self.high)


def input_range(victim: Any, generator: Any, student: Any, sample_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The input range: the first ``clip_values`` of victim, student, generator (broadcast to a sample's shape)."""
    for owner in (victim, student, generator):
        clip = getattr(owner, "clip_values", None)
        if clip is not None:
            low = np.asarray(clip[0], dtype=np.float32)
            high = np.asarray(clip[1], dtype=np.float32)
            if np.ndim(low) > 0 or np.ndim(high) > 0:
                try:
                    low = np.broadcast_to(low, sample_shape).copy()
                    high = np.broadcast_to(high, sample_shape).copy()
                except ValueError as err:
                    raise ValueError(
                        f"`clip_values` of {type(owner).__name__} do not broadcast to the generated shape "
                        f"{sample_shape}."
                    ) from err
            if np.any(high <= low):
                raise ValueError(f"`clip_values` of {type(owner).__name__} must satisfy min < max.")
            return low, high
    raise ValueError(
        "DFME needs the input range: set `clip_values` on the victim, the thieved classifier or the generator."
    )
