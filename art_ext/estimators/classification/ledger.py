"""
A write-ahead query ledger on disk, and :class:`LedgerClassifier`, a victim wrapper whose every query goes through it.

Every batch is recorded as *sent* (with the SHA-256 of its inputs, flushed and fsynced) before it leaves, and as
*answered*, with its answers (flushed), when they return. The ledger is the source of truth for the budget: inputs of
every attempt that left count as spent, answered or not (the victim may have answered a request whose response was
lost), except attempts the endpoint refused with an HTTP error status other than 502/504 (it answered nothing). A batch is
only sent when the spent count stays within ``max_queries``, so after any crash, ``kill -9`` or Ctrl-C the victim has
answered at most ``max_queries`` inputs and the ledger's ``queries_used`` is at least what it answered.

On resume, answered batches are served again from the ledger, each at most once, when the same inputs are asked
again (matched by hash): a seeded attack restarted from the beginning, or from its own checkpoint, replays what it
already paid for and pays only for what it never received.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from art.estimators.classification.blackbox import BlackBoxClassifier
from art.estimators.classification.classifier import Classifier, ClassifierMixin

from art_ext.estimators.classification.query_ledger import QueryBudgetExceededError, QueryLedger, inputs_digest
from art_ext.estimators.classification.remote import RemoteClassifier, RequestCallbacks
from art_ext.utils.checks import check_finite, check_positive

__all__ = ["LedgerClassifier", "QueryBudgetExceededError", "QueryLedger"]


class LedgerClassifier(BlackBoxClassifier):
    """
    Wraps a victim classifier so that every query goes through a :class:`QueryLedger` and the total stays within
    ``max_queries`` across crashes and resumes. Any art_ext attack (or any code) that only calls ``predict`` can use
    it: hand the wrapper to the attack in place of the victim. A :class:`RemoteClassifier` victim keeps its
    concurrency, retries and rate limit, and every HTTP attempt is written ahead; any other ART classifier is queried
    one batch at a time.

    ``queries_used``: inputs spent according to the ledger (previous sessions included); ``queries_replayed``: inputs
    served from the ledger in this session; ``queries_remaining``: ``max_queries - queries_used``.
    """

    estimator_params = Classifier.estimator_params + ["input_shape", "max_queries", "batch_size"]

    def __init__(
        self,
        classifier: Any,
        ledger_dir: str,
        max_queries: int,
        resume: bool = False,
        batch_size: int | None = None,
    ) -> None:
        """
        :param classifier: The victim: any ART classifier (only its ``predict`` is called).
        :param ledger_dir: Folder of the ledger.
        :param max_queries: Most inputs the victim may be asked, over every session of this ledger.
        :param resume: Continue the ledger in `ledger_dir` (its answered batches are replayed, its spent queries
                       counted); without it, a folder that already holds a ledger is refused.
        :param batch_size: Inputs per recorded batch, ``None`` for the `batch_size` given to :meth:`predict`. A
                           :class:`RemoteClassifier` victim's own ``batch_size``, when set, takes precedence (one
                           recorded batch is one HTTP request).
        """
        if not isinstance(classifier, ClassifierMixin) or not callable(getattr(classifier, "predict", None)):
            raise TypeError(f"`classifier` must be an ART classifier, got {type(classifier).__name__}.")
        super().__init__(
            predict_fn=self._predict_one,
            input_shape=tuple(classifier.input_shape),
            nb_classes=classifier.nb_classes,
            clip_values=classifier.clip_values,
        )
        self.classifier = classifier
        self.max_queries = max_queries
        self.batch_size = batch_size
        if hasattr(classifier, "channels_first"):  # lets attacks see the victim's layout (e.g. DFME's transposition)
            self.channels_first = classifier.channels_first
        self._check_params()
        header = {"input_shape": list(self.input_shape), "nb_classes": int(self.nb_classes)}
        self.ledger = QueryLedger(ledger_dir, resume=resume, header=header)

    def _check_params(self) -> None:
        super()._check_params()
        check_positive(self.max_queries, "max_queries", integer=True)
        if self.batch_size is not None:
            check_positive(self.batch_size, "batch_size", integer=True)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(classifier={self.classifier!r}, ledger_dir={self.ledger.ledger_dir!r}, "
            f"max_queries={self.max_queries!r}, batch_size={self.batch_size!r}, queries_used={self.queries_used})"
        )

    @property
    def queries_used(self) -> int:
        """Inputs spent according to the ledger, every session included (never below what the victim answered)."""
        return self.ledger.spent

    @property
    def queries_remaining(self) -> int:
        """Inputs that may still be sent."""
        return max(0, self.max_queries - self.ledger.spent)

    @property
    def queries_replayed(self) -> int:
        """Inputs served from the ledger (not sent) in this session."""
        return self.ledger.replayed

    @property
    def queries_unanswered(self) -> int:
        """Inputs spent without answers in the ledger (lost responses, failed retries, a crash mid-request)."""
        return self.ledger.spent - self.ledger.answered

    def close(self) -> None:
        """Release the ledger folder (another process may then resume it)."""
        self.ledger.close()

    def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs) -> np.ndarray:
        """
        Answers of the victim, from the ledger where it already holds them, else asked (and recorded).

        :param x: Inputs ``(nb_samples, *input_shape)``.
        :param batch_size: Inputs per recorded batch when neither the constructor's nor the victim's is set.
        :return: Scores ``(nb_samples, nb_classes)``, float32.
        :raises QueryBudgetExceededError: Before anything is sent, when the batches not in the ledger would exceed
                                          ``max_queries``; or before a retry that would.
        """
        if x is None or not hasattr(x, "shape") or tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"`x` must have shape (nb_samples, *{tuple(self.input_shape)}).")
        if len(x) == 0:
            return np.zeros((0, self.nb_classes), dtype=np.float32)
        x, _ = self._apply_preprocessing(check_finite(x, "x").astype(np.float32), y=None, fit=False)
        x = np.ascontiguousarray(x, dtype=np.float32)
        remote = isinstance(self.classifier, RemoteClassifier)
        # A remote victim's own request size wins, so that every recorded batch is exactly one HTTP request.
        size = (self.classifier.batch_size if remote else None) or self.batch_size or batch_size
        check_positive(size, "batch_size", integer=True)
        chunks = [x[i : i + size] for i in range(0, len(x), size)]
        digests = [inputs_digest(c) for c in chunks]
        # What the ledger can serve, counted without taking it, so that a refusal leaves the ledger untouched.
        available = {d: self.ledger.replayable(d) for d in set(digests)}
        todo = []
        for i, d in enumerate(digests):
            if available[d] > 0:
                available[d] -= 1
            else:
                todo.append(i)
        cost = sum(len(chunks[i]) for i in todo)
        if cost > self.queries_remaining:
            raise QueryBudgetExceededError(
                f"{cost} queries are needed but only {self.queries_remaining} remain of `max_queries`="
                f"{self.max_queries} ({self.queries_used} spent according to the ledger in "
                f"{self.ledger.ledger_dir!r}); nothing was sent."
            )
        todo_set = set(todo)
        results: list[np.ndarray | None] = [
            None if i in todo_set else self.ledger.replay(d) for i, d in enumerate(digests)
        ]
        if todo:
            batches = self.ledger.new_batches(len(todo))
            hooks = _LedgerHooks(self, [(batches[k], digests[i]) for k, i in enumerate(todo)])
            if remote:
                out = self.classifier.predict(
                    np.concatenate([chunks[i] for i in todo]), batch_size=size, callbacks=hooks
                )
                for k, i in enumerate(todo):
                    results[i] = out[k * size : k * size + len(chunks[i])]
            else:
                for k, i in enumerate(todo):
                    hooks.before_send(k, len(chunks[i]), 0)
                    out = self._ask(chunks[i])
                    hooks.after_answer(k, out)
                    results[i] = out
        return self._apply_postprocessing(preds=np.concatenate(results, axis=0), fit=False)

    def _ask(self, chunk: np.ndarray) -> np.ndarray:
        out = np.asarray(self.classifier.predict(chunk, batch_size=len(chunk)), dtype=np.float32)
        if out.shape != (len(chunk), self.nb_classes):
            raise ValueError(f"The victim answered shape {out.shape}, expected {(len(chunk), self.nb_classes)}.")
        return out

    def _predict_one(self, x: np.ndarray) -> np.ndarray:
        return self.predict(x, batch_size=len(x))


class _LedgerHooks(RequestCallbacks):
    """Writes ahead every attempt of one :meth:`LedgerClassifier.predict` call (``index`` -> batch number, digest)."""

    def __init__(self, owner: LedgerClassifier, batches: list[tuple[int, str]]) -> None:
        self.owner = owner
        self.batches = batches

    def before_send(self, index: int, n: int, attempt: int) -> None:
        batch, digest = self.batches[index]
        self.owner.ledger.record_sent(batch, digest, n, attempt, self.owner.max_queries)

    def after_refusal(self, index: int, n: int, attempt: int, status: int) -> None:
        self.owner.ledger.record_refused(self.batches[index][0], n, attempt, status)

    def after_answer(self, index: int, outputs: np.ndarray) -> None:
        batch, digest = self.batches[index]
        self.owner.ledger.record_answered(batch, digest, outputs)
