"""
The audit of a model through its answers only, within a query budget (``max_queries``): every input the audit sends
to the model's ``predict`` is counted by :class:`QueryBudget`, which refuses a call that would pass the budget
*before* it is sent, and each section may spend only its share (the runner sets it). Sections that need more than
answers (the gradient-masking analysis, certification) are skipped with the reason.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from art_ext.evaluations.audit.context import SectionSkipped
from art_ext.utils.outputs import predict_in_batches

__all__ = ["QueryBudget", "QueryBudgetExhausted", "allotted_queries", "counted_classifier", "fit_queries"]


class QueryBudgetExhausted(SectionSkipped):
    """A ``predict`` call would have passed the query budget (nothing of it was sent)."""


class QueryBudget:
    """
    Inputs sent to the audited model, against `max_queries` (``None``: counted, never refused) and, inside
    :meth:`section`, the running section's share.

    :param max_queries: Most inputs the whole audit may send, or ``None``.
    """

    def __init__(self, max_queries: int | None) -> None:
        self.max_queries = max_queries
        self.used = 0
        self._limit = max_queries
        self._lock = threading.Lock()

    @property
    def left(self) -> int | None:
        """Inputs the audit may still send (``None``: no budget)."""
        return None if self.max_queries is None else self.max_queries - self.used

    def spend(self, n: int) -> None:
        """Count `n` inputs about to be sent; raises :class:`QueryBudgetExhausted` (and counts nothing) past the limit."""
        with self._lock:
            if self._limit is not None and self.used + n > self._limit:
                share = "its share of the query budget" if self._limit != self.max_queries else "the query budget"
                raise QueryBudgetExhausted(
                    f"{share} ran out ({self.used:,} of {self.max_queries:,} queries sent before a call of {n}); a "
                    "larger --max-queries (`max_queries`) runs it"
                )
            self.used += n

    @contextmanager
    def section(self, allotted: int | None) -> Iterator[None]:
        """Within the block, at most `allotted` more inputs may be sent (``None``: up to the whole budget)."""
        previous = self._limit
        if allotted is not None and self.max_queries is not None:
            self._limit = min(self.max_queries, self.used + int(allotted))
        try:
            yield
        finally:
            self._limit = previous


def counted_classifier(classifier: Any, budget: QueryBudget, batch_size: int) -> Any:
    """
    The audited classifier as a black box whose every input is counted by `budget` (an ART
    ``BlackBoxClassifierNeuralNetwork``, so that ART's ``SquareAttack`` runs on it): its answers are the classifier's,
    in its layout and input range, and nothing else of the model (gradients, weights) is reachable.
    """
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        budget.spend(len(x))
        return predict_in_batches(classifier, x, batch_size)

    return BlackBoxClassifierNeuralNetwork(
        predict,
        tuple(classifier.input_shape),
        classifier.nb_classes,
        channels_first=bool(getattr(classifier, "channels_first", True)),
        clip_values=classifier.clip_values,
    )


def fit_queries(ctx, params: dict, count: Callable[[dict], int], steps: list) -> tuple[dict, list[str]]:
    """
    A section's sizes lowered, in the order of `steps` (as :func:`~.budget.shrink`), until the most queries they can
    take (``count(params)``) fit its share of the query budget; :class:`SectionSkipped` when even the smallest do not.
    Unchanged without a budget.
    """
    from art_ext.evaluations.audit.budget import shrink

    share = ctx.shared.get("query_allotment")
    if ctx.queries is None or share is None:
        return params, []
    params, most, notes = shrink(params, count, share, steps)
    if most > share:
        raise SectionSkipped(
            f"its smallest run may take {int(most):,} queries and its share of the query budget is {share:,}; a "
            "larger --max-queries (`max_queries`) runs it"
        )
    return params, [f"{note} (query budget)" for note in notes]


def allotted_queries(budget: QueryBudget, remaining: list) -> int | None:
    """
    The next section's share of the queries left (``remaining[0]``, the modules still to run): ``QUERY_SHARE`` of a
    module is its weight (0: it sends no query; ``None``: it takes what it needs, first). ``None`` without a budget.
    """
    if budget.left is None:
        return None
    share = getattr(remaining[0], "QUERY_SHARE", 0.0)
    if share is None:
        return budget.left
    total = sum(getattr(m, "QUERY_SHARE", 0.0) or 0.0 for m in remaining)
    return int(budget.left * share / total) if total else 0
