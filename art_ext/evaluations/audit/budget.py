"""
Time estimates of the audit: a cost model measured on the audited classifier (seconds per input for a forward pass
and for an input gradient), and :func:`shrink`, which lowers a section's sizes until its estimate fits its share.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from art_ext.utils.outputs import predict_in_batches

__all__ = ["CostModel", "shrink"]


class CostModel:
    """
    Seconds per input of a forward pass (``forward``) and of a loss gradient (``gradient``) of an ART classifier,
    measured once on up to `probe` inputs after a warm-up call (the first TensorFlow call traces its graph).

    :param classifier: The audited classifier.
    :param x: Inputs.
    :param batch_size: Batch size used by the audit.
    :param probe: Inputs timed.
    """

    def __init__(self, classifier: Any, x: np.ndarray, batch_size: int = 128, probe: int = 128) -> None:
        xb = np.asarray(x[: min(probe, len(x))], dtype=np.float32)
        n = len(xb)
        self.batch_size = batch_size
        onehot = np.eye(classifier.nb_classes, dtype=np.float32)[np.zeros(n, dtype=np.int64)]

        def timed(fn, arg, repeats):
            best = np.inf
            for _ in range(repeats):
                start = time.perf_counter()
                fn(arg)
                best = min(best, time.perf_counter() - start)
            return best

        predictions = {}

        def predict(a):
            predictions[len(a)] = predict_in_batches(classifier, a, batch_size)

        predict(xb[:2])
        one, full = timed(predict, xb[:1], 3), timed(predict, xb, 2)
        self.forward = max((full - one) / max(n - 1, 1), 2e-6)
        self.forward_call = max(one - self.forward, 1e-4)
        self.has_gradients = hasattr(classifier, "loss_gradient")
        self.gradient, self.gradient_call = 3 * self.forward, 3 * self.forward_call
        if self.has_gradients:
            try:

                def gradient(a):
                    classifier.loss_gradient(a, onehot[: len(a)])

                gradient(xb[:2])
                one, full = timed(gradient, xb[:1], 3), timed(gradient, xb, 2)
                self.gradient = max((full - one) / max(n - 1, 1), 5e-6)
                self.gradient_call = max(one - self.gradient, 2e-4)
            except Exception:  # noqa: BLE001 (a classifier without working gradients is audited black-box)
                self.has_gradients = False
        # ART's SquareAttack and Carlini-Wagner are timed when a section first needs them (see below).
        self.probe_size = n
        self._classifier, self._probe = classifier, xb
        # The attacks are timed on the classifier's own labels: every probed input starts correctly classified, as
        # most audited inputs do (with other labels, ART's attacks drop the inputs already "fooled" and run faster).
        self._labels = np.eye(classifier.nb_classes, dtype=np.float32)[np.argmax(predictions[n], axis=1)]
        self.square_iteration: dict[str, float] = {}
        self._cw_iteration: float | None = None
        self._figure: float | None = None

    def figure(self) -> float:
        """
        Seconds to draw and keep one report figure (two panels, PNG), timed once after a first figure that pays for
        matplotlib's start-up (in the section that first asks, as part of its planning).
        """
        if self._figure is None:
            import io

            import matplotlib.pyplot as plt

            for _ in range(2):
                start = time.perf_counter()
                fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
                axes[0].bar(np.linspace(0, 1, 15), np.linspace(0, 1, 15), width=1 / 15)
                axes[1].hist(np.linspace(0, 1, 500), bins=20)
                axes[1].legend(["a"])
                fig.savefig(io.BytesIO(), format="png", dpi=100, bbox_inches="tight")
                plt.close(fig)
                self._figure = time.perf_counter() - start
        return self._figure

    def _square_iteration(self, norm: str) -> float:
        """
        ART's SquareAttack spends most of its time in numpy bookkeeping per iteration (more for l2): timed per norm
        at a small eps, where few inputs are fooled early, as the difference between 6 iterations and 1 (its start,
        stripes and a first prediction of every input, is paid once per call, not per iteration).
        """
        if norm not in self.square_iteration:
            self.square_iteration[norm] = 0.03 if norm == "inf" else 0.06
            try:
                from art.attacks.evasion import SquareAttack

                clf, xb = self._classifier, self._probe
                lo, hi = clf.clip_values
                eps = 0.02 * float(np.max(hi) - np.min(lo)) * (1.0 if norm == "inf" else float(np.sqrt(xb[0].size)))
                seconds = {}
                for iterations in (1, 6):
                    attack = SquareAttack(
                        clf,
                        norm=np.inf if norm == "inf" else 2,
                        eps=eps,
                        max_iter=iterations,
                        nb_restarts=1,
                        batch_size=self.batch_size,
                        verbose=False,
                    )
                    start = time.perf_counter()
                    with np.errstate(divide="ignore", invalid="ignore"):
                        attack.generate(xb, self._labels)
                    seconds[iterations] = time.perf_counter() - start
                self.square_iteration[norm] = max(seconds[6] - seconds[1], 1e-4) / 5
            except Exception:  # noqa: BLE001 (an estimate only)
                pass
        return self.square_iteration[norm]

    @property
    def cw_iteration(self) -> float:
        """Seconds of one iteration of ART's CarliniL2Method on the probe (several passes and a line search)."""
        if self._cw_iteration is None:
            self._cw_iteration = 20 * (self.gradient * self.probe_size + self.gradient_call)
            if self.has_gradients:
                try:
                    from art.attacks.evasion import CarliniL2Method

                    attack = CarliniL2Method(
                        self._classifier, max_iter=2, binary_search_steps=1, batch_size=self.batch_size, verbose=False
                    )
                    start = time.perf_counter()
                    attack.generate(self._probe, self._labels)
                    self._cw_iteration = (time.perf_counter() - start) / 2
                except Exception:  # noqa: BLE001 (an estimate only)
                    pass
        return self._cw_iteration

    def cw(self, n: int, iterations: int) -> float:
        """Seconds of ART's CarliniL2Method on `n` inputs for `iterations` iterations (all binary-search steps)."""
        return iterations * self.cw_iteration * (0.2 + 0.8 * n / max(1, self.probe_size))

    def square(self, n: int, iterations: int, norm: str = "inf") -> float:
        """Seconds of ART's SquareAttack on `n` inputs for `iterations` iterations (`norm`: ``"inf"`` or ``"2"``)."""
        # ART's Square predicts every input each iteration (not only those still robust): close to linear in n
        # (benchmarks/audit_mnist.py reports Square's actual over estimated time, 500 inputs timed on a probe of 128).
        return iterations * self._square_iteration(norm) * (0.05 + 0.95 * n / max(1, self.probe_size))

    def f(self, n: int, calls: float | None = None) -> float:
        """Seconds of forward passes on `n` inputs in `calls` calls (default: one per batch)."""
        calls = math.ceil(n / self.batch_size) if calls is None else calls
        return n * self.forward + calls * self.forward_call

    def g(self, n: int, calls: float | None = None) -> float:
        """Seconds of input gradients on `n` inputs in `calls` calls (default: one per batch)."""
        calls = math.ceil(n / self.batch_size) if calls is None else calls
        return n * self.gradient + calls * self.gradient_call

    def to_dict(self) -> dict:
        return {
            "forward_seconds_per_input": self.forward,
            "forward_seconds_per_call": self.forward_call,
            "gradient_seconds_per_input": self.gradient,
            "gradient_seconds_per_call": self.gradient_call,
            "square_seconds_per_iteration": dict(self.square_iteration),
            "cw_seconds_per_iteration": self._cw_iteration,
            "figure_seconds": self._figure,
        }


def shrink(
    params: dict, estimate: Callable[[dict], float], allotted: float | None, steps: list[tuple[str, Any, str]]
) -> tuple[dict, float, list[str]]:
    """
    Lower a section's sizes, in the order of `steps`, until ``estimate(params) <= allotted``.

    :param params: Default sizes of the section.
    :param estimate: Seconds the section takes with given sizes.
    :param allotted: Seconds the section may take (``None``: no limit).
    :param steps: ``(key, smallest value, label)``: each size is halved (integers) down to its smallest value before
                  the next one is touched.
    :return: ``(params, estimated seconds, notes)``; a note per size changed, e.g. ``"inputs 500 -> 125"``.
    """
    params = dict(params)
    original = dict(params)
    if allotted is not None:
        for key, smallest, _ in steps:
            while estimate(params) > allotted and params[key] > smallest:
                params[key] = max(smallest, int(params[key] // 2))
    labels = dict((k, label) for k, _, label in steps)
    notes = [f"{labels[k]} {original[k]} -> {params[k]}" for k in labels if params[k] != original[k]]
    return params, float(estimate(params)), notes
