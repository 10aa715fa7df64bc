"""
The victim as DFME sees it: a query-counting oracle that puts generated samples into the victim's layout, calls its
``predict``, checks the answers and recovers logits from probabilities.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class BudgetExceededError(RuntimeError):
    """Raised when a query would take the oracle above its budget (the attack checks before asking)."""


def victim_layout(victim: Any, sample_shape: tuple[int, ...], generator_channels_first: bool | None) -> str:
    """
    How generated samples reach the victim: ``"same"`` (as they are), ``"to_channels_last"`` /
    ``"to_channels_first"`` (an axis move between the two image layouts) or ``"flatten"`` / ``"unflatten"``
    (single-channel images to and from flat vectors, where row-major order is the only order). Anything else is
    refused: a reshape across a channel axis would scramble the images.

    :param victim: The victim classifier (its ``input_shape`` and, when it has one, ``channels_first`` are read).
    :param sample_shape: Shape of one generated sample, in the generator's (and student's) layout.
    :param generator_channels_first: The generator's layout (``None`` when unknown).
    :return: The layout transform's name.
    """
    try:
        shape = tuple(int(d) for d in victim.input_shape)
    except (AttributeError, NotImplementedError, TypeError):
        return "same"
    sample_shape = tuple(sample_shape)
    victim_cf = getattr(victim, "channels_first", None)
    if victim_cf is None:
        victim_cf = getattr(victim, "_channels_first", None)
    image = len(sample_shape) == 3
    if image and generator_channels_first is not None:
        if generator_channels_first:
            moved, move = (sample_shape[1], sample_shape[2], sample_shape[0]), "to_channels_last"
        else:
            moved, move = (sample_shape[2], sample_shape[0], sample_shape[1]), "to_channels_first"
        if shape == sample_shape and moved != sample_shape:
            return "same"
        if shape == moved and shape != sample_shape:
            return move
        if shape == sample_shape:  # square with as many channels as pixels a side: only the flag can tell
            if victim_cf is None or bool(victim_cf) == bool(generator_channels_first):
                return "same"
            return move
    elif shape == sample_shape:
        return "same"
    single_channel = (
        image
        and generator_channels_first is not None
        and (sample_shape[0] == 1 if generator_channels_first else sample_shape[2] == 1)
    )
    if len(shape) == 1 and shape[0] == int(np.prod(sample_shape)) and (single_channel or len(sample_shape) == 1):
        return "flatten"
    raise ValueError(
        f"The victim expects inputs of shape {shape}; the generator makes samples of shape {sample_shape} "
        f"(channels_first={generator_channels_first}). They are not a known permutation of each other, and DFME "
        "never reshapes across a channel axis: give a generator (and student) in the victim's layout, or set the "
        "generator's `channels_first` to the layout it really produces."
    )


class VictimOracle:
    """
    Counting access to the victim. Queries are counted when they are sent (also when ``predict`` then fails or is
    interrupted), and never beyond ``max_queries``.

    :param victim: The victim classifier.
    :param ops: The backend of the student and generator.
    :param sample_shape: Shape of one generated sample.
    :param generator_channels_first: The generator's layout.
    :param nb_classes: Number of classes.
    :param max_queries: Total budget.
    :param queries_used: Queries already spent (earlier calls, a checkpoint).
    :param batch_size: ``batch_size`` passed to the victim's ``predict``.
    :param victim_output: ``"auto"``, ``"probabilities"`` or ``"logits"``.
    :param detected_output: Output kind already detected (resuming), else ``None``.
    :param probability_floor: Floor of probabilities before the log.
    :param logit_correction: ``"mean"``, ``"min"`` or ``"none"``.
    """

    def __init__(
        self,
        victim: Any,
        ops: Any,
        sample_shape: tuple[int, ...],
        generator_channels_first: bool | None,
        nb_classes: int,
        max_queries: int,
        queries_used: int,
        batch_size: int,
        victim_output: str,
        detected_output: str | None,
        probability_floor: float,
        logit_correction: str,
    ) -> None:
        self.victim, self.ops = victim, ops
        self.sample_shape = tuple(sample_shape)
        self.layout = victim_layout(victim, self.sample_shape, generator_channels_first)
        try:
            self.victim_shape = tuple(int(d) for d in victim.input_shape)
        except (AttributeError, NotImplementedError, TypeError):
            self.victim_shape = self.sample_shape
        self.nb_classes = nb_classes
        self.max_queries = int(max_queries)
        self.queries_used = int(queries_used)
        self.batch_size = int(batch_size)
        self.victim_output = victim_output
        self.detected_output = detected_output
        self.probability_floor = float(probability_floor)
        self.logit_correction = logit_correction
        self.seconds = 0.0
        self.class_counts = np.zeros(nb_classes, dtype=np.int64)
        self.on_queries = None  # optional callback(n) after each answered batch (progress bars)

    # ------------------------------------------------------------------ budget
    def fits(self, n: int) -> bool:
        """Whether `n` more queries stay within the budget."""
        return self.queries_used + n <= self.max_queries

    @property
    def remaining(self) -> int:
        """Queries left."""
        return self.max_queries - self.queries_used

    # ------------------------------------------------------------------ layout
    def to_victim_layout(self, x: np.ndarray) -> np.ndarray:
        """Samples in the generator's layout, moved (never scrambled) into the victim's."""
        if self.layout == "to_channels_last":
            x = np.moveaxis(x, 1, 3)
        elif self.layout == "to_channels_first":
            x = np.moveaxis(x, 3, 1)
        elif self.layout == "flatten":
            x = x.reshape((len(x),) + self.victim_shape)
        return np.ascontiguousarray(x)

    # ------------------------------------------------------------------ queries
    def query(self, x_tensor: Any) -> Any:
        """Ask the victim about generated samples (a backend tensor); return its (recovered) logits as a tensor."""
        x_np = self.ops.to_numpy(x_tensor)
        return self.ops.asarray(self.query_numpy(x_np))

    def query_numpy(self, x: np.ndarray) -> np.ndarray:
        """Ask the victim about samples in the generator's layout; return (recovered) logits as numpy."""
        n = len(x)
        if not self.fits(n):
            raise BudgetExceededError(
                f"{n} more queries would exceed `max_queries`={self.max_queries} ({self.queries_used} used)."
            )
        x_victim = self.to_victim_layout(np.asarray(x, dtype=np.float32))
        self.queries_used += n  # counted when sent: a failure or Ctrl-C inside predict does not hide them
        start = time.perf_counter()
        try:
            out = np.asarray(self.victim.predict(x_victim, batch_size=max(self.batch_size, 1)))
        finally:
            self.seconds += time.perf_counter() - start
        if self.on_queries is not None:
            self.on_queries(n)
        return self.to_logits(out, n)

    def to_logits(self, out: np.ndarray, n: int) -> np.ndarray:
        """Check the victim's answers and turn probabilities into logits (``log p`` minus its mean or min)."""
        if out.ndim != 2 or out.shape != (n, self.nb_classes):
            raise ValueError(
                f"The victim returned shape {out.shape}; DFME needs scores of shape (nb_samples, {self.nb_classes}) "
                "(a victim exposing only labels cannot be extracted data-free)."
            )
        out = out.astype(np.float32, copy=False)
        if not np.all(np.isfinite(out)):
            raise ValueError("The victim returned NaN or infinite scores.")
        if self.detected_output is None:
            # One-hot (or any 0/1) answers carry no gradient information (ART's ClassLabels postprocessor).
            if np.all((out == 0.0) | (out == 1.0)):
                raise ValueError(
                    "The victim returns labels only (0/1 outputs); DFME needs probabilities or logits to estimate "
                    "gradients."
                )
            if self.victim_output != "auto":
                self.detected_output = self.victim_output
            else:
                # Postprocessing defences (noise, rounding, confidence cut-offs) break the sum-to-one test, so
                # probabilities are recognised by their range only.
                in_range = out.min() >= -1e-6 and out.max() <= 1.0 + 1e-6
                self.detected_output = "probabilities" if in_range else "logits"
            logger.info("DFME: the victim outputs %s.", self.detected_output)
        self.class_counts += np.bincount(out.argmax(axis=1), minlength=self.nb_classes)
        if self.detected_output == "logits":
            return out
        logp = np.log(np.clip(out, self.probability_floor, 1.0))
        if self.logit_correction == "mean":
            logp = logp - logp.mean(axis=1, keepdims=True)
        elif self.logit_correction == "min":
            logp = logp - logp.min(axis=1, keepdims=True)
        return logp.astype(np.float32, copy=False)
