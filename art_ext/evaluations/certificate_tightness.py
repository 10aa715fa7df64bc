"""
How tight is a Lipschitz certificate? The chain of radii of Tsuzuku et al. (NeurIPS 2018, Sec. 6):
``M / L  <=  M / L_global  <=  M / L_local(x)`` and the smallest adversarial perturbation found.

| Paper link: https://arxiv.org/abs/1802.04034
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from art_ext.backend import get_backend
from art_ext.estimators.certification.classifier_graph import preprocessing_factor
from art_ext.estimators.certification.lipschitz import LipschitzCertifier
from art_ext.utils.checks import check_finite, check_labels, check_positive

logger = logging.getLogger(__name__)

__all__ = ["CertificateTightnessAnalysis", "CertificateUnsoundError", "TightnessReport"]

#: Mean ratios between consecutive radii reported by Tsuzuku et al. for an unregularised network.
PAPER_RATIOS = {"global/bound": 39.9, "local/global": 1.13, "attack/local": 1.82}


class CertificateUnsoundError(RuntimeError):
    """A certified radius exceeds the size of an adversarial perturbation that was actually found."""


@dataclass
class TightnessReport:
    """
    Result of :meth:`CertificateTightnessAnalysis.analyse`.

    ``radii`` maps ``"bound"`` (A), ``"global"`` (B, ``None`` when not computable, see ``global_reason``),
    ``"local"`` (C), ``"attack"`` (D, ``inf`` where no attack succeeded) and ``"certified"`` (the certifier's own,
    pairwise radius) to arrays ``(nb_samples,)``. ``ratios`` holds the means over inputs with a finite (D) and a
    positive margin of ``global/bound``, ``local/global``, ``attack/local`` and ``attack/bound``.
    """

    radii: dict
    ratios: dict
    margins: np.ndarray
    predictions: np.ndarray
    lipschitz: dict
    global_reason: str = ""
    local_method: str = ""
    attack_used: list = field(default_factory=list)

    def to_markdown(self) -> str:
        """Mean radii and ratios, next to the paper's ratios, as markdown."""
        from art_ext.utils.markdown import markdown_table

        rows = []
        for key, label in (
            ("bound", "(A) margin / L, layer-wise bound"),
            ("global", "(B) margin / L_global"),
            ("local", "(C) margin / L_local"),
            ("attack", "(D) smallest adversarial perturbation found"),
            ("certified", "certified radius (pairwise)"),
        ):
            values = self.radii.get(key)
            if values is None:
                rows.append([label, "n/a: " + self.global_reason, ""])
                continue
            finite = values[np.isfinite(values)]
            rows.append([label, float(np.median(finite)) if finite.size else float("nan"), float(np.mean(finite))])
        text = markdown_table(["radius", "median", "mean"], rows, ".4g")
        ratio_rows = [
            [key, "n/a" if value is None else float(value), PAPER_RATIOS.get(key, "")]
            for key, value in self.ratios.items()
        ]
        return text + "\n" + markdown_table(["mean ratio", "measured", "paper (unregularised)"], ratio_rows, ".3g")

    def plot(self, path: str | None = None) -> Any:
        """Per-input radii sorted by (A), on one log-scale plot; saved to `path` when given. Returns the figure."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        order = np.argsort(self.radii["bound"])
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for key, label in (
            ("bound", "(A) bound"),
            ("global", "(B) global"),
            ("local", "(C) local"),
            ("attack", "(D) attack"),
        ):
            values = self.radii.get(key)
            if values is not None:
                ax.plot(np.asarray(values)[order], marker=".", linestyle="-", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("input (sorted by (A))")
        ax.set_ylabel("l2 radius")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        if path is not None:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        return fig


class CertificateTightnessAnalysis:
    """
    The chain of radii for each input ``x`` with logit margin ``M(x)`` (Tsuzuku et al., 2018, Sec. 6); every radius
    uses the same form ``M / (sqrt(2) L)`` so that ratios compare Lipschitz constants only:

    * (A) ``L``: the sound layer-wise product bound of :class:`~art_ext.estimators.certification.LipschitzCertifier`.
    * (B) ``L_global``: for dense ReLU networks with at most ``max_exact_units`` hidden units, the maximum of
      ``||W_k D_{k-1} ... D_1 W_1||_2`` over every 0/1 activation pattern ``D``, the exact global Lipschitz constant
      when every pattern is realisable (one hidden layer whose weight matrix has full row rank) and otherwise an upper
      bound of it. Other networks: ``None``, with the reason.
    * (C) ``L_local(x)``: the largest exact Jacobian spectral norm (full Jacobian, SVD) over ``x``, points on the
      segment from ``x`` to the closest adversarial example found and ``local_samples`` uniform points of the l2
      ball of radius (D) around ``x``; a lower estimate of the local constant in that ball (random search, because
      the Jacobian of a ReLU network is piecewise constant and gives no gradient to ascend).
    * (D) the smallest perturbation that changes the prediction, over ART's ``DeepFool`` and ``CarliniL2Method``.

    If any (A), or any certified radius, exceeds (D), the certificate is unsound and
    :class:`CertificateUnsoundError` is raised.

    | Paper link: https://arxiv.org/abs/1802.04034
    """

    def __init__(
        self,
        classifier: Any,
        max_exact_units: int = 14,
        local_samples: int = 32,
        deepfool_max_iter: int = 50,
        cw_max_iter: int = 20,
        cw_binary_search_steps: int = 5,
        batch_size: int = 64,
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        """
        :param classifier: Any classifier :class:`~art_ext.estimators.certification.LipschitzCertifier` accepts.
        :param max_exact_units: Largest number of hidden ReLU units for which (B) is computed (``2^units`` patterns).
        :param local_samples: Random points of the ball evaluated per input for (C).
        :param deepfool_max_iter: Iterations of ART's DeepFool.
        :param cw_max_iter: Iterations of ART's Carlini-Wagner L2 per binary-search step.
        :param cw_binary_search_steps: Binary-search steps of Carlini-Wagner L2.
        :param batch_size: Batch size of the attacks and Jacobians.
        :param random_state: Seed of the random points.
        :param verbose: Show progress bars.
        """
        self.certifier = LipschitzCertifier(classifier)
        self.classifier = classifier
        self.max_exact_units = max_exact_units
        self.local_samples = local_samples
        self.deepfool_max_iter = deepfool_max_iter
        self.cw_max_iter = cw_max_iter
        self.cw_binary_search_steps = cw_binary_search_steps
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        for name in ("max_exact_units", "deepfool_max_iter", "cw_max_iter", "cw_binary_search_steps", "batch_size"):
            check_positive(getattr(self, name), name, integer=True)
        check_positive(local_samples, "local_samples", integer=True, allow_zero=True)

    # ------------------------------------------------------------------ (B)
    def global_lipschitz(self) -> tuple[float | None, str]:
        """``(L_global, how)``, or ``(None, reason)`` when the network is not a small dense ReLU network."""
        self.certifier.layer_bounds()  # recomputes the graph if the weights changed
        graph = self.certifier.graph
        weights, hidden = [], []
        if not graph.is_chain():
            return None, "only dense ReLU chains are enumerated; this graph has branches"
        for record in graph.nodes[1:]:
            if record.kind == "meta" or (record.kind == "constant" and record.note in ("identity", "preprocessing")):
                continue
            if record.kind == "dense" and len(record.in_shape) == 1:
                weights.append(np.asarray(record.weight, dtype=np.float64))
            elif record.kind == "constant" and record.note == "relu":
                hidden.append(weights[-1].shape[0] if weights else 0)
            else:
                return None, f"only dense ReLU networks are enumerated; {record.name} is not one of their layers"
        units = sum(hidden)
        if units > self.max_exact_units:
            return None, f"{units} hidden units exceed max_exact_units={self.max_exact_units} (2^units patterns)"
        if len(weights) != len(hidden) + 1:
            return None, "the network does not alternate dense layers and ReLUs"
        best = 0.0
        patterns = np.array(list(itertools.product((0.0, 1.0), repeat=units))) if units else np.zeros((1, 0))
        for chunk in np.array_split(patterns, max(1, len(patterns) // 1024)):
            prod = np.broadcast_to(weights[0], (len(chunk),) + weights[0].shape)
            offset = 0
            for w, h in zip(weights[1:], hidden):
                prod = w[None] @ (chunk[:, offset : offset + h, None] * prod)
                offset += h
            best = max(best, float(np.linalg.norm(prod, ord=2, axis=(1, 2)).max()))
        best *= preprocessing_factor(self.classifier) * (1.0 + self.certifier.float_tolerance)
        exact = len(hidden) == 1 and np.linalg.matrix_rank(weights[0]) == weights[0].shape[0]
        how = (
            "exact: every ReLU activation pattern enumerated and realisable"
            if exact
            else "upper bound: maximum over all ReLU activation patterns (some may not be realisable)"
        )
        return best, how

    # ------------------------------------------------------------------ (C)
    def _jacobian_norms(self, points: np.ndarray) -> np.ndarray:
        ops = get_backend(self.classifier)
        norms = []
        for start in range(0, len(points), self.batch_size):
            batch = ops.asarray(points[start : start + self.batch_size])
            rows = []
            for k in range(self.classifier.nb_classes):
                _, (grad,) = ops.value_and_grad(lambda t, k=k: ops.sum(ops.forward(self.classifier, t)[:, k]), [batch])
                rows.append(ops.to_numpy(grad).reshape(len(ops.to_numpy(grad)), -1))
            jac = np.stack(rows, axis=1).astype(np.float64)  # (batch, classes, dims)
            norms.append(np.linalg.norm(jac, ord=2, axis=(1, 2)))
        return np.concatenate(norms)

    def local_lipschitz(self, x: np.ndarray, x_adv: np.ndarray, radius: np.ndarray) -> np.ndarray:
        """Largest Jacobian spectral norm found per input over its ball of radius `radius` (see the class doc)."""
        rng = np.random.default_rng(self.random_state)
        n, dims = len(x), int(np.prod(x.shape[1:]))
        ball = np.where(np.isfinite(radius), radius, 0.0).reshape((-1,) + (1,) * (x.ndim - 1)).astype(np.float32)
        points = [x]
        for t in (0.25, 0.5, 0.75, 0.999):
            points.append(x + t * (x_adv - x))
        for _ in range(self.local_samples):
            direction = rng.standard_normal(x.shape).astype(np.float32)
            direction /= np.linalg.norm(direction.reshape(n, -1), axis=1).reshape(ball.shape) + 1e-12
            scale = rng.uniform(0, 1, size=ball.shape).astype(np.float32) ** (1.0 / dims)
            points.append(x + direction * ball * scale)
        stacked = np.concatenate(points)
        norms = self._jacobian_norms(stacked).reshape(len(points), n)
        return norms.max(0)

    # ------------------------------------------------------------------ (D)
    def smallest_adversarial(self, x: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        """``(distance, x_adv, attack name)`` of the smaller successful perturbation of DeepFool and CW-L2."""
        from art.attacks.evasion import CarliniL2Method, DeepFool

        attacks = {
            "DeepFool": DeepFool(
                self.classifier,
                max_iter=self.deepfool_max_iter,
                epsilon=1e-4,
                batch_size=self.batch_size,
                verbose=False,
            ),
            "CarliniL2": CarliniL2Method(
                self.classifier,
                confidence=0.0,
                max_iter=self.cw_max_iter,
                binary_search_steps=self.cw_binary_search_steps,
                initial_const=1.0,
                learning_rate=0.05,
                batch_size=self.batch_size,
                verbose=False,
            ),
        }
        best = np.full(len(x), np.inf)
        best_adv = x.copy()
        used = [""] * len(x)
        for name, attack in tqdm(attacks.items(), desc="attacks (D)", disable=not self.verbose):
            x_adv = attack.generate(x).astype(np.float32)
            changed = self.certifier.logits(x_adv, self.batch_size).argmax(1) != pred
            dist = np.linalg.norm((x_adv - x).reshape(len(x), -1).astype(np.float64), axis=1)
            better = changed & (dist < best)
            best[better] = dist[better]
            best_adv[better] = x_adv[better]
            for i in np.flatnonzero(better):
                used[i] = name
        return best, best_adv, used

    # ------------------------------------------------------------------ the chain
    def analyse(self, x: np.ndarray, y: np.ndarray | None = None) -> TightnessReport:
        """
        Compute the chain of radii.

        :param x: Inputs ``(nb_samples, ...)``.
        :param y: Optional labels (indices or one-hot) to check against ``(nb_samples,)``; the margins use the
                  predicted class.
        :return: A :class:`TightnessReport`.
        :raises CertificateUnsoundError: When a certified radius exceeds an adversarial perturbation found.
        """
        x = check_finite(x, "x").astype(np.float32)
        if x.shape[1:] != tuple(self.classifier.input_shape):
            raise ValueError(f"`x` must have shape (nb_samples, {tuple(self.classifier.input_shape)}), got {x.shape}.")
        if y is not None:
            check_labels(y, self.classifier.nb_classes, len(x))
        pred, certified = self.certifier.certify(x, self.batch_size)  # checks the graph against the model on x
        logits = self.certifier.logits(x, self.batch_size)
        top2 = np.sort(logits, axis=1)[:, -2:]
        margins = top2[:, 1] - top2[:, 0]
        slack = self.certifier.float_tolerance * (1.0 + np.abs(logits).max(1))
        usable = np.maximum(margins - slack, 0.0)
        sqrt2 = math.sqrt(2.0)

        lip_bound = self.certifier.lipschitz_bound()
        radius_a = usable / (sqrt2 * lip_bound)
        lip_global, how_global = self.global_lipschitz()
        radius_b = None if lip_global is None else usable / (sqrt2 * lip_global)
        radius_d, x_adv, used = self.smallest_adversarial(x, pred)

        bad = (radius_a > radius_d) | (certified.astype(np.float64) > radius_d)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CertificateUnsoundError(
                f"{int(bad.sum())} certified radii exceed an adversarial perturbation actually found, e.g. input {i}: "
                f"(A) {radius_a[i]:.6g}, certified {certified[i]:.6g}, but {used[i]} changed the prediction at "
                f"l2 {radius_d[i]:.6g}. The Lipschitz bound of this model is wrong; do not trust its certificates."
            )
        lip_local = np.minimum(self.local_lipschitz(x, x_adv, radius_d), lip_bound)
        radius_c = np.where(lip_local > 0, usable / (sqrt2 * np.maximum(lip_local, 1e-300)), np.inf)

        keep = np.isfinite(radius_d) & (usable > 0)

        def mean_ratio(num, den):
            if num is None or den is None or not keep.any():
                return None
            return float(np.mean(num[keep] / den[keep]))

        ratios = {
            "global/bound": mean_ratio(radius_b, radius_a),
            "local/global": mean_ratio(radius_c, radius_b),
            "attack/local": mean_ratio(radius_d, radius_c),
            "attack/bound": mean_ratio(radius_d, radius_a),
        }
        if radius_b is None:
            ratios["local/bound"] = mean_ratio(radius_c, radius_a)
        return TightnessReport(
            radii={
                "bound": radius_a,
                "global": radius_b,
                "local": radius_c,
                "attack": radius_d,
                "certified": certified.astype(np.float64),
            },
            ratios=ratios,
            margins=margins,
            predictions=pred,
            lipschitz={"bound": lip_bound, "global": lip_global, "local": lip_local},
            global_reason=how_global,
            local_method=(
                f"max exact Jacobian spectral norm over x, 4 points towards the closest adversarial example and "
                f"{self.local_samples} uniform points of the ball of radius (D)"
            ),
            attack_used=used,
        )
