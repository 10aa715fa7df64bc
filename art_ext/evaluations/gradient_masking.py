"""
A gradient-masking analysis for any ART classifier: gradient statistics, an attack battery at equal budgets and the
warning signs of Athalye, Carlini and Wagner (2018) and Carlini et al. (2019), each a verdict with its evidence; and
:func:`temperature_sweep`, the shape of Papernot et al.'s table for defensive distillation.

| Paper link: https://arxiv.org/abs/1802.00420
| Paper link: https://arxiv.org/abs/1902.06705
| Paper link: https://arxiv.org/abs/1607.04311
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from art_ext.backend import get_backend
from art_ext.defences.trainer.defensive_distillation import (
    _check_classifier,
    infer_output,
    logits_tensor,
    train_at_temperature,
)
from art_ext.utils.checks import check_finite, check_labels, check_positive
from art_ext.utils.markdown import markdown_table
from art_ext.utils.outputs import predict_in_batches

logger = logging.getLogger(__name__)

__all__ = [
    "ATTACKS",
    "GradientMaskingAnalysis",
    "GradientMaskingReport",
    "TemperatureSweepResult",
    "margin_attack",
    "temperature_sweep",
]

#: Attack battery: key -> label. Keys are what ``attacks=`` accepts.
ATTACKS = {
    "fgsm_ce": "FGSM (cross-entropy)",
    "pgd_ce": "PGD (cross-entropy)",
    "fgsm_margin": "FGSM (logit margin)",
    "pgd_margin": "PGD (logit margin)",
    "cw_l2": "C&W L2",
    "transfer": "Transfer (PGD on surrogate)",
    "square": "Square (gradient-free)",
    "noise": "Random noise",
}
_CE_ATTACKS = ("fgsm_ce", "pgd_ce")
_LOGIT_ATTACKS = ("fgsm_margin", "pgd_margin", "cw_l2")
_BLACK_BOX_ATTACKS = ("transfer", "square", "noise")


def _norm_value(norm: Any) -> float:
    if norm in (np.inf, "inf", float("inf")):
        return np.inf
    if norm in (2, 2.0, "2"):
        return 2.0
    raise ValueError(f"`norm` must be np.inf or 2, got {norm!r}.")


def _perturbation_norms(delta: np.ndarray, norm: float) -> np.ndarray:
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return np.abs(flat).max(axis=1) if norm == np.inf else np.sqrt((flat**2).sum(axis=1))


def margin_attack(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: Any = np.inf,
    steps: int = 10,
    step_size: float | None = None,
    output: str = "auto",
    batch_size: int = 128,
) -> np.ndarray:
    """
    FGSM (``steps=1``) or PGD on the logit margin ``max_{j != y} z_j - z_y``, the loss of Carlini and Wagner. The
    logits scale with the temperature of a distilled network but their gradient does not vanish, unlike that of the
    cross-entropy of the saturated softmax. For probability outputs the logits are taken as ``log p``.

    :param classifier: ART classifier (PyTorch or TensorFlow).
    :param x: Inputs ``(nb_samples, ...)``.
    :param y: Index labels ``(nb_samples,)`` or one-hot labels.
    :param eps: Budget.
    :param norm: ``np.inf`` or ``2``.
    :param steps: Gradient steps (1 = FGSM with step `eps`).
    :param step_size: Step size (default: `eps` for one step, ``2.5 * eps / steps`` otherwise).
    :param output: ``"auto"``, ``"logits"`` or ``"probabilities"``.
    :param batch_size: Batch size.
    :return: Adversarial examples, float32, within `eps` of `x` and inside the classifier's clip values.
    """
    norm = _norm_value(norm)
    ops = get_backend(classifier)
    device = ops.device_of(classifier)
    x = np.asarray(x, dtype=np.float32)
    labels = check_labels(y, classifier.nb_classes, n=len(x))
    output = infer_output(classifier, x, output)
    step = (eps if steps == 1 else 2.5 * eps / steps) if step_size is None else step_size
    clip = classifier.clip_values
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        x0 = ops.asarray(x[start : start + batch_size], device=device)
        onehot = ops.one_hot(
            ops.asarray(labels[start : start + batch_size], dtype="int64", device=device), classifier.nb_classes
        )
        x_adv = x0

        def margin(xa, onehot=onehot):
            z = logits_tensor(ops, ops.forward(classifier, xa), output)
            z_true = ops.sum(z * onehot, axis=1)
            z_other = ops.max(z - onehot * 1e9, axis=1)
            return ops.sum(z_other - z_true)

        for _ in range(steps):
            _, (grad,) = ops.value_and_grad(margin, [x_adv])
            if norm == np.inf:
                x_adv = ops.clip(x_adv + step * ops.sign(grad), x0 - eps, x0 + eps)
            else:
                x_adv = x_adv + step * ops.l2_normalize(grad)
                delta = x_adv - x0
                scale = ops.minimum(eps / ops.per_sample_norm(delta, keepdims=True), 1.0)
                x_adv = x0 + delta * scale
            if clip is not None:
                x_adv = ops.clip(x_adv, float(clip[0]), float(clip[1]))
            x_adv = ops.stop_gradient(x_adv)
        out[start : start + batch_size] = ops.to_numpy(x_adv)
    return out


@dataclass
class GradientMaskingReport:
    """
    What :meth:`GradientMaskingAnalysis.analyse` found. ``success[attack][i]`` is the share of the correctly
    classified inputs that the attack misclassifies within ``eps[i]``; ``signs`` holds every warning sign with its
    verdict and evidence, ``reasons`` the evidence of the triggered ones.
    """

    eps: list[float]
    norm: float
    output: str
    nb_samples: int
    nb_correct: int
    clean_accuracy: float
    success: dict[str, list[float]]
    max_perturbation: dict[str, list[float]]
    grad_norms: np.ndarray
    zero_gradient_share: float
    saturated_share: float
    softmax_jacobian_norms: np.ndarray
    logit_jacobian_norms: np.ndarray
    signs: list[dict] = field(default_factory=list)
    masking_suspected: bool = False
    reasons: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cw_unbounded: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable summary (gradient norms summarised by quantiles)."""

        def quantiles(v):
            v = np.asarray(v, dtype=np.float64)
            return {q: float(np.quantile(v, p)) for q, p in (("min", 0), ("median", 0.5), ("max", 1))}

        return {
            "masking_suspected": bool(self.masking_suspected),
            "reasons": list(self.reasons),
            "signs": [dict(s) for s in self.signs],
            "eps": [float(e) for e in self.eps],
            "norm": "inf" if self.norm == np.inf else float(self.norm),
            "output": self.output,
            "nb_samples": int(self.nb_samples),
            "nb_correct": int(self.nb_correct),
            "clean_accuracy": float(self.clean_accuracy),
            "success": {k: [float(v) for v in vs] for k, vs in self.success.items()},
            "max_perturbation": {k: [float(v) for v in vs] for k, vs in self.max_perturbation.items()},
            "gradient_norm": quantiles(self.grad_norms),
            "zero_gradient_share": float(self.zero_gradient_share),
            "saturated_share": float(self.saturated_share),
            "softmax_jacobian_norm": quantiles(self.softmax_jacobian_norms),
            "logit_jacobian_norm": quantiles(self.logit_jacobian_norms),
            "seconds": {k: float(v) for k, v in self.seconds.items()},
            "cw_unbounded": {k: float(v) for k, v in self.cw_unbounded.items()},
        }

    def to_markdown(self) -> str:
        """The report as markdown: verdict, gradient statistics, success-vs-eps table and every warning sign."""
        norm = "l-inf" if self.norm == np.inf else "l2"
        verdict = "**Gradient masking suspected.**" if self.masking_suspected else "**No sign of gradient masking.**"
        lines = [
            verdict,
            "",
            f"{self.nb_samples} inputs, clean accuracy {self.clean_accuracy:.3f}; success rates over the "
            f"{self.nb_correct} correctly classified ones ({self.output} outputs, {norm} budgets).",
            "",
        ]
        med = float(np.median(self.grad_norms))
        lines.append(
            markdown_table(
                ["gradient statistic", "value"],
                [
                    ("median l2 norm of grad_x CE", f"{med:.3g}"),
                    ("share of exactly-zero CE gradients", f"{self.zero_gradient_share:.3f}"),
                    ("share of saturated softmax rows (max p == 1 in float32)", f"{self.saturated_share:.3f}"),
                    ("median softmax-Jacobian norm", f"{float(np.median(self.softmax_jacobian_norms)):.3g}"),
                    ("median logit-Jacobian norm", f"{float(np.median(self.logit_jacobian_norms)):.3g}"),
                ],
            )
        )
        headers = ["attack"] + [f"eps={e:g}" for e in self.eps]
        rows = [[ATTACKS[k]] + [f"{v:.3f}" for v in vs] for k, vs in self.success.items()]
        lines.append(markdown_table(headers, rows))
        if self.cw_unbounded:
            cw = self.cw_unbounded
            lines.append(
                f"C&W L2 without a bound fools {cw['success']:.0%} of the inputs (median l2 {cw['median_l2']:.3g}, "
                f"median l-inf {cw['median_linf']:.3g}).\n"
            )
        lines.append(
            markdown_table(
                ["warning sign", "verdict", "evidence"],
                [(s["title"], "TRIGGERED" if s["triggered"] else "not seen", s["evidence"]) for s in self.signs],
            )
        )
        return "\n".join(lines)

    def plot(self, path: str | None = None, title: str | None = None) -> Any:
        """
        Histogram of the gradient norms (log scale, zeros in their own bar) and success-vs-eps curves.

        :param path: PNG file to write (the figure is closed then); ``None`` returns the figure.
        :return: The matplotlib figure, or `path`.
        """
        import matplotlib.pyplot as plt

        fig, (ax_hist, ax_curve) = plt.subplots(1, 2, figsize=(10, 3.6))
        self.plot_gradients(ax_hist)
        self.plot_success(ax_curve)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is None:
            return fig
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path

    def plot_gradients(self, ax: Any, label: str | None = None, floor: float = -45.0) -> None:
        """Histogram of log10 ||grad_x CE||; exactly-zero gradients are drawn at `floor`."""
        g = np.asarray(self.grad_norms, dtype=np.float64)
        logs = np.where(g > 0, np.log10(np.maximum(g, 1e-300)), floor)
        ax.hist(np.maximum(logs, floor), bins=np.linspace(floor - 1, 3, 50), alpha=0.6, label=label)
        ax.set_xlabel(f"log10 ||grad_x CE||_2  (zero at {floor:g})")
        ax.set_ylabel("inputs")
        if label:
            ax.legend()

    def plot_success(self, ax: Any, attacks: Sequence[str] | None = None, style: str = "-o", prefix: str = "") -> None:
        """Success rate against eps for each attack."""
        for key in attacks or list(self.success):
            if key in self.success:
                color = f"C{list(ATTACKS).index(key)}"
                ax.plot(self.eps, self.success[key], style, color=color, label=prefix + ATTACKS[key], markersize=4)
        ax.set_xlabel(f"eps ({'l-inf' if self.norm == np.inf else 'l2'})")
        ax.set_ylabel("attack success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


class GradientMaskingAnalysis:
    """
    Tells whether a classifier's apparent robustness is only masked gradients.

    It measures the gradient statistics an attacker sees (``||grad_x CE||``, the share of exactly-zero gradients, the
    share of saturated float32 softmax rows, softmax- against logit-Jacobian norms), runs an attack battery at equal
    budgets (ART's FGSM and PGD on the cross-entropy, FGSM and PGD on the logit margin, ART's C&W L2 counted at each
    eps, a transfer attack from an undistilled surrogate, ART's SquareAttack and random noise) and checks the warning
    signs of Athalye et al. and Carlini et al.: one-step beats iterative; black-box or transfer beats white-box;
    success does not reach 100% at the largest eps; success does not grow with eps; logit-space attacks succeed where
    softmax-gradient attacks fail; and vanishing gradients.

    | Paper link: https://arxiv.org/abs/1802.00420
    | Paper link: https://arxiv.org/abs/1902.06705
    """

    def __init__(
        self,
        classifier: Any,
        eps: Sequence[float] | float | None = None,
        norm: Any = np.inf,
        surrogate: Any = None,
        attacks: Sequence[str] | None = None,
        max_samples: int = 100,
        pgd_steps: int = 10,
        cw_max_iter: int = 10,
        cw_binary_search_steps: int = 5,
        square_max_iter: int = 100,
        noise_samples: int = 5,
        surrogate_epochs: int = 20,
        tolerance: float = 0.1,
        zero_gradient_threshold: float = 0.25,
        output: str = "auto",
        batch_size: int = 128,
        random_state: int | None = None,
        verbose: bool = True,
    ) -> None:
        """
        :param classifier: ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` (logits or probabilities).
        :param eps: Budgets, increasing (default: ``(0.05, 0.1, 0.2, 0.3)`` for l-inf and ``(0.5, 1, 2, 3)`` for l2,
                    on inputs in [0, 1]). The largest should be large enough for a real attack to reach ~100%.
        :param norm: ``np.inf`` or ``2``.
        :param surrogate: An undistilled ART classifier for the transfer attack; ``None`` trains a fresh copy of the
                          classifier's architecture normally (cached in :attr:`surrogate` for later calls).
        :param attacks: Keys of :data:`ATTACKS` to run (default: all).
        :param max_samples: Inputs analysed (a seeded random subset of those given).
        :param pgd_steps: Iterations of the PGD attacks (and of the transfer attack).
        :param cw_max_iter: Iterations of C&W per binary-search step.
        :param cw_binary_search_steps: Binary-search steps of C&W.
        :param square_max_iter: Queries-iterations of SquareAttack.
        :param noise_samples: Random-noise draws per input (success if any misleads).
        :param surrogate_epochs: Epochs of the surrogate when it is trained here.
        :param tolerance: Margin in success rate above which one attack "beats" another (0.1 = 10 points).
        :param zero_gradient_threshold: Share of exactly-zero gradients that counts as vanishing gradients.
        :param output: ``"auto"``, ``"logits"`` or ``"probabilities"``.
        :param batch_size: Batch size.
        :param random_state: Seed of the subset, the noise, the surrogate and the attacks' randomness.
        :param verbose: Progress bars.
        """
        _check_classifier(classifier, "classifier")
        get_backend(classifier)
        self.classifier = classifier
        self.norm = _norm_value(norm)
        if eps is None:
            eps = (0.05, 0.1, 0.2, 0.3) if self.norm == np.inf else (0.5, 1.0, 2.0, 3.0)
        if isinstance(eps, numbers.Real):
            eps = (eps,)
        self.eps = [float(e) for e in eps]
        self.surrogate = surrogate
        self.attacks = list(ATTACKS) if attacks is None else list(attacks)
        self.max_samples = max_samples
        self.pgd_steps = pgd_steps
        self.cw_max_iter = cw_max_iter
        self.cw_binary_search_steps = cw_binary_search_steps
        self.square_max_iter = square_max_iter
        self.noise_samples = noise_samples
        self.surrogate_epochs = surrogate_epochs
        self.tolerance = tolerance
        self.zero_gradient_threshold = zero_gradient_threshold
        self.output = output
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self._check_params()

    def _check_params(self) -> None:
        if not self.eps:
            raise ValueError("`eps` must hold at least one budget.")
        for e in self.eps:
            if not math.isfinite(e) or e <= 0:
                raise ValueError(f"`eps` must hold positive finite budgets, got {self.eps}.")
        if sorted(self.eps) != self.eps:
            raise ValueError(f"`eps` must be increasing, got {self.eps}.")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise ValueError(f"`attacks` must be a non-empty subset of {list(ATTACKS)}, got {self.attacks}.")
        if self.surrogate is not None:
            _check_classifier(self.surrogate, "surrogate")
        for name in (
            "max_samples",
            "pgd_steps",
            "cw_max_iter",
            "cw_binary_search_steps",
            "square_max_iter",
            "noise_samples",
            "surrogate_epochs",
            "batch_size",
        ):
            check_positive(getattr(self, name), name, integer=True)
        for name in ("tolerance", "zero_gradient_threshold"):
            value = getattr(self, name)
            check_positive(value, name)
            if value >= 1:
                raise ValueError(f"`{name}` must be in (0, 1), got {value!r}.")
        if self.output not in ("auto", "logits", "probabilities"):
            raise ValueError(f"`output` must be 'auto', 'logits' or 'probabilities', got {self.output!r}.")

    # ------------------------------------------------------------------ inputs
    def _prepare(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        x = check_finite(x, "x").astype(np.float32)
        if x.shape[1:] != tuple(self.classifier.input_shape):
            raise ValueError(
                f"`x` has sample shape {x.shape[1:]}, the classifier expects {tuple(self.classifier.input_shape)}."
            )
        labels = check_labels(y, self.classifier.nb_classes, n=len(x))
        if len(x) > self.max_samples:
            rng = np.random.default_rng(self.random_state)
            idx = np.sort(rng.choice(len(x), self.max_samples, replace=False))
            x, labels = x[idx], labels[idx]
        return x, labels

    # ------------------------------------------------------------------ gradient statistics
    def gradient_statistics(self, x: np.ndarray, y: np.ndarray, output: str) -> dict:
        """
        ``||grad_x CE||_2`` as ART's ``loss_gradient`` returns it (what FGSM uses), the share of exactly-zero ones,
        the share of rows whose float32 softmax has a maximum of exactly 1, and per-input Frobenius norms of the
        softmax and logit Jacobians with respect to the input.
        """
        clf = self.classifier
        nb_classes = clf.nb_classes
        onehot = np.eye(nb_classes, dtype=np.float32)[y]
        grad = np.asarray(clf.loss_gradient(x, onehot), dtype=np.float32).reshape(len(x), -1)
        grad_norms = np.sqrt((grad.astype(np.float64) ** 2).sum(axis=1))
        zero_share = float(np.mean(np.all(grad == 0.0, axis=1)))

        ops = get_backend(clf)
        device = ops.device_of(clf)
        saturated, jac_soft, jac_logit = [], [], []
        for start in range(0, len(x), self.batch_size):
            xb = ops.asarray(x[start : start + self.batch_size], device=device)
            z = logits_tensor(ops, ops.forward(clf, xb), output)
            p = ops.to_numpy(ops.softmax(z)).astype(np.float32)
            saturated.append(p.max(axis=1) == np.float32(1.0))
            soft_sq, logit_sq = 0.0, 0.0
            for k in range(nb_classes):
                for kind in ("softmax", "logit"):

                    def fn(xa, k=k, kind=kind):
                        zz = logits_tensor(ops, ops.forward(clf, xa), output)
                        out = ops.softmax(zz) if kind == "softmax" else zz
                        return ops.sum(out[:, k])

                    _, (g,) = ops.value_and_grad(fn, [xb])
                    sq = ops.to_numpy(ops.sum(ops.flatten(g) * ops.flatten(g), axis=1)).astype(np.float64)
                    if kind == "softmax":
                        soft_sq = soft_sq + sq
                    else:
                        logit_sq = logit_sq + sq
            jac_soft.append(np.sqrt(soft_sq))
            jac_logit.append(np.sqrt(logit_sq))
        return {
            "grad_norms": grad_norms,
            "zero_gradient_share": zero_share,
            "saturated_share": float(np.mean(np.concatenate(saturated))),
            "softmax_jacobian_norms": np.concatenate(jac_soft),
            "logit_jacobian_norms": np.concatenate(jac_logit),
        }

    # ------------------------------------------------------------------ surrogate
    def fit_surrogate(self, x: np.ndarray, y: np.ndarray) -> Any:
        """
        Train (once) an undistilled surrogate: a fresh copy of the classifier's architecture, trained at T = 1 on
        `x`, `y` with its own optimizer. Cached in :attr:`surrogate`.
        """
        if self.surrogate is None:
            from art_ext.models import clone_classifier

            labels = check_labels(y, self.classifier.nb_classes, n=len(x))
            surrogate = clone_classifier(self.classifier, reinitialise=True, seed=self.random_state)
            output = infer_output(surrogate, np.asarray(x, dtype=np.float32), self.output)
            train_at_temperature(
                surrogate,
                np.asarray(x, dtype=np.float32),
                np.eye(self.classifier.nb_classes, dtype=np.float32)[labels],
                1.0,
                self.surrogate_epochs,
                64,
                output=output,
                rng=np.random.default_rng(self.random_state),
                verbose=self.verbose,
                desc="surrogate",
            )
            self.surrogate = surrogate
        return self.surrogate

    # ------------------------------------------------------------------ attacks
    def _run_attack(
        self, key: str, x: np.ndarray, y: np.ndarray, output: str, eps: Sequence[float] | None = None
    ) -> list[np.ndarray]:
        """Adversarial examples of one attack, one array per eps (default: :attr:`eps`)."""
        eps_list = self.eps if eps is None else list(eps)
        from art.attacks.evasion import CarliniL2Method, FastGradientMethod, ProjectedGradientDescent, SquareAttack

        clf, norm, bs = self.classifier, self.norm, self.batch_size
        onehot = np.eye(clf.nb_classes, dtype=np.float32)[y]
        steps = self.pgd_steps
        if key == "cw_l2":
            attack = CarliniL2Method(
                clf,
                max_iter=self.cw_max_iter,
                binary_search_steps=self.cw_binary_search_steps,
                learning_rate=0.1,
                initial_const=1.0,
                batch_size=bs,
                verbose=False,
            )
            x_adv = attack.generate(x, onehot)
            # A minimal-perturbation attack: counted at eps when its perturbation fits in eps.
            dist = _perturbation_norms(x_adv - x, norm)
            fooled = predict_in_batches(clf, x_adv, bs).argmax(1) != y
            l2 = _perturbation_norms(x_adv - x, 2.0)
            self.cw_unbounded_ = {
                "success": float(np.mean(fooled)),
                "median_l2": float(np.median(l2[fooled])) if fooled.any() else float("nan"),
                "median_linf": float(np.median(_perturbation_norms(x_adv - x, np.inf)[fooled]))
                if fooled.any()
                else float("nan"),
            }
            flat_adv, flat_x = x_adv.reshape(len(x), -1), x.reshape(len(x), -1)
            return [np.where((dist <= e * (1 + 1e-6))[:, None], flat_adv, flat_x).reshape(x.shape) for e in eps_list]
        results = []
        rng = np.random.default_rng(self.random_state)
        for e in eps_list:
            if key == "fgsm_ce":
                x_adv = FastGradientMethod(clf, norm=norm, eps=e, batch_size=bs).generate(x, onehot)
            elif key == "pgd_ce":
                x_adv = ProjectedGradientDescent(
                    clf, norm=norm, eps=e, eps_step=2.5 * e / steps, max_iter=steps, batch_size=bs, verbose=False
                ).generate(x, onehot)
            elif key == "fgsm_margin":
                x_adv = margin_attack(clf, x, y, e, norm, steps=1, output=output, batch_size=bs)
            elif key == "pgd_margin":
                x_adv = margin_attack(clf, x, y, e, norm, steps=steps, output=output, batch_size=bs)
            elif key == "transfer":
                x_adv = ProjectedGradientDescent(
                    self.surrogate,
                    norm=norm,
                    eps=e,
                    eps_step=2.5 * e / steps,
                    max_iter=steps,
                    batch_size=bs,
                    verbose=False,
                ).generate(x, onehot)
            elif key == "square":
                np.random.seed(int(rng.integers(2**31)))  # ART's SquareAttack draws from numpy's global generator
                x_adv = SquareAttack(
                    clf, norm=norm, eps=e, max_iter=self.square_max_iter, nb_restarts=1, batch_size=bs, verbose=False
                ).generate(x, onehot)
            else:  # noise
                x_adv = self._noise(x, y, e, rng)
            results.append(np.asarray(x_adv, dtype=np.float32))
        return results

    def _noise(self, x: np.ndarray, y: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
        clip = self.classifier.clip_values
        best = x.copy()
        fooled = np.zeros(len(x), dtype=bool)
        for _ in range(self.noise_samples):
            if self.norm == np.inf:
                delta = eps * rng.choice([-1.0, 1.0], size=x.shape)
            else:
                delta = rng.standard_normal(x.shape)
                delta *= eps / np.sqrt((delta.reshape(len(x), -1) ** 2).sum(1)).reshape((-1,) + (1,) * (x.ndim - 1))
            cand = x + delta.astype(np.float32)
            if clip is not None:
                cand = np.clip(cand, clip[0], clip[1])
            new = (predict_in_batches(self.classifier, cand, self.batch_size).argmax(1) != y) & ~fooled
            best[new] = cand[new]
            fooled |= new
        return best

    def attack_success(
        self, x: np.ndarray, y: np.ndarray, output: str | None = None
    ) -> tuple[dict[str, list[float]], dict[str, list[float]], np.ndarray]:
        """
        Run the battery on the inputs the classifier gets right.

        :return: ``(success, max_perturbation, correct)``: success rate and largest perturbation norm per attack and
                 eps, and the mask of correctly classified inputs.
        """
        output = output or infer_output(self.classifier, x, self.output)
        correct = predict_in_batches(self.classifier, x, self.batch_size).argmax(1) == y
        xc, yc = x[correct], y[correct]
        success: dict[str, list[float]] = {}
        max_pert: dict[str, list[float]] = {}
        self.seconds_: dict[str, float] = {}
        self.cw_unbounded_: dict[str, float] = {}
        self.fooled_: dict[str, list[np.ndarray]] = {}
        if not len(xc):
            raise ValueError("The classifier misclassifies every input given; nothing to attack.")
        for key in tqdm(self.attacks, desc="attack battery", disable=not self.verbose):
            start = time.perf_counter()
            try:
                advs = self._run_attack(key, xc, yc, output)
            except KeyboardInterrupt:
                logger.warning("Attack battery interrupted at %s; reporting the attacks done so far.", key)
                break
            fooled = [predict_in_batches(self.classifier, a, self.batch_size).argmax(1) != yc for a in advs]
            self.fooled_[key] = fooled
            success[key] = [float(np.mean(f)) for f in fooled]
            max_pert[key] = [float(_perturbation_norms(a - xc, self.norm).max()) for a in advs]
            self.seconds_[key] = time.perf_counter() - start
        return success, max_pert, correct

    # ------------------------------------------------------------------ verdicts
    def warning_signs(self, fooled: dict[str, list[np.ndarray]], stats: dict) -> list[dict]:
        """
        The warning signs, each ``{"name", "title", "triggered", "evidence"}``.

        A group of attacks (e.g. the cross-entropy ones) fools an input when any of its attacks does. Group A "beats"
        group B at an eps when, over the same inputs, A's success exceeds B's by more than :attr:`tolerance` and the
        inputs only A fools outnumber those only B fools by at least two standard deviations of a sign test
        (``n_A - n_B >= 2 sqrt(n_A + n_B)``), so that a handful of inputs on a small subset cannot trigger a sign.

        :param fooled: Attack key -> one boolean array per eps (which inputs the attack fooled).
        :param stats: Output of :meth:`gradient_statistics`.
        """
        tol, eps = self.tolerance, self.eps
        signs = []

        def group(keys):
            present = [k for k in keys if k in fooled]
            if not present:
                return None
            return [np.any([fooled[k][i] for k in present], axis=0) for i in range(len(eps))]

        def beats(a, b):
            """Largest margin by which group `a` beats group `b`: (triggered, index of eps, rate a, rate b)."""
            best = (False, 0, -np.inf)
            for i, (fa, fb) in enumerate(zip(a, b)):
                only_a, only_b = int(np.sum(fa & ~fb)), int(np.sum(~fa & fb))
                diff = (only_a - only_b) / len(fa)
                significant = only_a - only_b >= 2.0 * math.sqrt(only_a + only_b) and only_a > only_b
                if (diff > tol and significant, diff) > (best[0], best[2]):
                    best = (diff > tol and significant, i, diff)
            i = best[1]
            return best[0], i, float(np.mean(a[i])), float(np.mean(b[i]))

        def names(keys):
            return " / ".join(ATTACKS[k] for k in keys if k in fooled)

        zero = stats["zero_gradient_share"]
        signs.append(
            {
                "name": "vanishing_gradients",
                "title": "Gradients vanish",
                "triggered": bool(zero >= self.zero_gradient_threshold),
                "evidence": f"{zero:.0%} of the inputs have an exactly-zero cross-entropy gradient and "
                f"{stats['saturated_share']:.0%} a saturated float32 softmax (max p == 1); median softmax-Jacobian "
                f"norm {float(np.median(stats['softmax_jacobian_norms'])):.3g} against logit-Jacobian norm "
                f"{float(np.median(stats['logit_jacobian_norms'])):.3g}.",
            }
        )

        found = []
        for one, it in (("fgsm_ce", "pgd_ce"), ("fgsm_margin", "pgd_margin")):
            if one in fooled and it in fooled:
                triggered, i, ra, rb = beats(fooled[one], fooled[it])
                found.append((triggered, ra - rb, one, it, i, ra, rb))
        if found:
            triggered, _, one, it, i, ra, rb = max(found)
            signs.append(
                {
                    "name": "one_step_beats_iterative",
                    "title": "One-step attack beats iterative attack",
                    "triggered": bool(triggered),
                    "evidence": f"{ATTACKS[one]} {ra:.0%} against {ATTACKS[it]} {rb:.0%} at eps={eps[i]:g}.",
                }
            )

        white = group(_CE_ATTACKS)
        black = group(_BLACK_BOX_ATTACKS)
        if white is not None and black is not None:
            triggered, i, ra, rb = beats(black, white)
            signs.append(
                {
                    "name": "black_box_beats_white_box",
                    "title": "Black-box or transfer attack beats white-box attack",
                    "triggered": bool(triggered),
                    "evidence": f"{names(_BLACK_BOX_ATTACKS)} {ra:.0%} against white-box "
                    f"{names(_CE_ATTACKS)} {rb:.0%} at eps={eps[i]:g}.",
                }
            )

        if white is not None:
            curve = np.array([float(np.mean(f)) for f in white])
            signs.append(
                {
                    "name": "no_full_success_at_large_eps",
                    "title": "Success does not reach ~100% at the largest eps",
                    "triggered": bool(curve[-1] < 1.0 - tol),
                    "evidence": f"white-box {names(_CE_ATTACKS)}: {curve[-1]:.0%} at eps={eps[-1]:g}.",
                }
            )
            drops = np.diff(curve) if len(eps) > 1 else np.zeros(1)
            flat = len(eps) > 1 and curve[-1] - curve[0] < tol and curve[-1] < 1.0 - tol
            dropping = bool(drops.min() < -tol)
            signs.append(
                {
                    "name": "not_growing_with_eps",
                    "title": "Success does not grow with eps",
                    "triggered": bool(flat or dropping),
                    "evidence": f"white-box {names(_CE_ATTACKS)} goes from {curve[0]:.0%} at eps={eps[0]:g} to "
                    f"{curve[-1]:.0%} at eps={eps[-1]:g}"
                    + (f"; it drops by {-drops.min():.0%} between two budgets" if dropping else "")
                    + ".",
                }
            )

        logit = group(_LOGIT_ATTACKS)
        if white is not None and logit is not None:
            triggered, i, ra, rb = beats(logit, white)
            signs.append(
                {
                    "name": "logit_beats_softmax",
                    "title": "Logit-space attacks succeed where softmax-gradient attacks fail",
                    "triggered": bool(triggered),
                    "evidence": f"{names(_LOGIT_ATTACKS)} {ra:.0%} against {names(_CE_ATTACKS)} {rb:.0%} at "
                    f"eps={eps[i]:g}.",
                }
            )
        return signs

    # ------------------------------------------------------------------ main entry
    def analyse(
        self, x: np.ndarray, y: np.ndarray, x_train: np.ndarray | None = None, y_train: np.ndarray | None = None
    ) -> GradientMaskingReport:
        """
        Run the analysis.

        :param x: Inputs ``(nb_samples, ...)`` (a subset of `max_samples` is used).
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :param x_train: Training inputs for the surrogate when none was given (default: `x` itself).
        :param y_train: Their labels.
        :return: The :class:`GradientMaskingReport`.
        """
        x, y = self._prepare(x, y)
        output = infer_output(self.classifier, x, self.output)
        if "transfer" in self.attacks and self.surrogate is None:
            if x_train is None:
                x_train, y_train = x, y
            elif y_train is None:
                raise ValueError("`y_train` is needed with `x_train`.")
            self.fit_surrogate(check_finite(x_train, "x_train"), y_train)
        stats = self.gradient_statistics(x, y, output)
        success, max_pert, correct = self.attack_success(x, y, output)
        signs = self.warning_signs(self.fooled_, stats)
        reasons = [f"{s['title']}: {s['evidence']}" for s in signs if s["triggered"]]
        return GradientMaskingReport(
            eps=list(self.eps),
            norm=self.norm,
            output=output,
            nb_samples=len(x),
            nb_correct=int(correct.sum()),
            clean_accuracy=float(np.mean(correct)),
            success=success,
            max_perturbation=max_pert,
            signs=signs,
            masking_suspected=bool(reasons),
            reasons=reasons,
            seconds=dict(self.seconds_),
            cw_unbounded=dict(getattr(self, "cw_unbounded_", {})),
            **stats,
        )

    analyze = analyse


@dataclass
class TemperatureSweepResult:
    """Rows of :func:`temperature_sweep`: one per model (``"normal"`` first, then each temperature)."""

    rows: list[dict]
    eps: float
    norm: float

    def to_dict(self) -> dict:
        return {
            "eps": self.eps,
            "norm": "inf" if self.norm == np.inf else self.norm,
            "rows": [dict(r) for r in self.rows],
        }

    def to_markdown(self) -> str:
        keys = [k for k in self.rows[0] if k not in ("model", "temperature")]
        headers = ["model"] + keys
        table = [[r["model"]] + [f"{r[k]:.3f}" if isinstance(r[k], float) else r[k] for k in keys] for r in self.rows]
        return markdown_table(headers, table)


def temperature_sweep(
    build_classifier: Callable[[], Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    temperatures: Sequence[float] = (1, 10, 20, 50, 100),
    nb_epochs: int = 20,
    batch_size: int = 128,
    eps: float = 0.3,
    norm: Any = np.inf,
    attacks: Sequence[str] = ("fgsm_ce", "pgd_ce", "pgd_margin", "cw_l2"),
    jsma: bool = False,
    jsma_gamma: float = 0.15,
    baseline: bool = True,
    max_samples: int = 100,
    cw_max_iter: int = 10,
    random_state: int | None = None,
    verbose: bool = True,
) -> TemperatureSweepResult:
    """
    Distil at several temperatures and tabulate clean accuracy and attack success, with a normally trained model
    first (the shape of Papernot et al.'s table). C&W and JSMA are counted with no distortion bound (as both papers
    report them); the other attacks at `eps`.

    :param build_classifier: Returns a fresh, untrained ART classifier (called once per row).
    :param x_train: Training inputs.
    :param y_train: Training labels.
    :param x_test: Test inputs (clean accuracy on all, attacks on `max_samples` of them).
    :param y_test: Test labels.
    :param temperatures: Temperatures to distil at.
    :param nb_epochs: Epochs of every model (teacher and student alike).
    :param batch_size: Batch size.
    :param eps: Budget of the eps-bounded attacks.
    :param norm: ``np.inf`` or ``2``.
    :param attacks: Keys of :data:`ATTACKS` (``"cw_l2"`` is counted unbounded).
    :param jsma: Also run ART's JSMA (random targets, ``gamma`` = `jsma_gamma`) on the probabilities (as in
                 Papernot et al.) and on the logits.
    :param jsma_gamma: Largest share of features JSMA may change.
    :param baseline: Start with a normally trained model (row ``"normal"``).
    :param max_samples: Attacked test inputs.
    :param cw_max_iter: C&W iterations per binary-search step.
    :param random_state: Seed.
    :param verbose: Progress bars.
    :return: The :class:`TemperatureSweepResult`.
    """
    from art_ext.defences.trainer.defensive_distillation import DefensiveDistillationTrainer

    if not callable(build_classifier):
        raise TypeError("`build_classifier` must be a callable returning a fresh ART classifier.")
    temps = list(temperatures)
    if not temps:
        raise ValueError("`temperatures` must not be empty.")
    for t in temps:
        check_positive(t, "temperatures")
    check_positive(eps, "eps")
    x_test = check_finite(x_test, "x_test").astype(np.float32)
    y_test_idx = None
    rows = []
    for t in ([None] if baseline else []) + temps:
        clf = build_classifier()
        _check_classifier(clf, "build_classifier()")
        if y_test_idx is None:
            y_test_idx = check_labels(y_test, clf.nb_classes, n=len(x_test), name="y_test")
            y_train_idx = check_labels(y_train, clf.nb_classes, n=len(x_train), name="y_train")
        if t is None:
            out = infer_output(clf, x_train)
            train_at_temperature(
                clf,
                x_train,
                np.eye(clf.nb_classes, dtype=np.float32)[y_train_idx],
                1.0,
                nb_epochs,
                batch_size,
                output=out,
                rng=np.random.default_rng(random_state),
                verbose=verbose,
                desc="normal training",
            )
        else:
            DefensiveDistillationTrainer(clf, temperature=float(t), random_state=random_state, verbose=verbose).fit(
                x_train, y_train_idx, nb_epochs=nb_epochs, batch_size=batch_size
            )
        row: dict[str, Any] = {"model": "normal" if t is None else f"distilled T={t:g}", "temperature": t}
        preds = predict_in_batches(clf, x_test, batch_size)
        row["clean accuracy"] = float(np.mean(preds.argmax(1) == y_test_idx))
        z = np.sort(preds, axis=1)
        row["median logit gap"] = float(np.median(z[:, -1] - z[:, -2]))
        analysis = GradientMaskingAnalysis(
            clf,
            eps=[eps],
            norm=norm,
            attacks=[a for a in attacks if a != "transfer"],
            max_samples=max_samples,
            cw_max_iter=cw_max_iter,
            random_state=random_state,
            verbose=False,
        )
        xs, ys = analysis._prepare(x_test, y_test_idx)
        output = infer_output(clf, xs)
        correct = predict_in_batches(clf, xs, batch_size).argmax(1) == ys
        xc, yc = xs[correct], ys[correct]
        for key in analysis.attacks:
            unbounded = key == "cw_l2"
            (x_adv,) = analysis._run_attack(key, xc, yc, output, eps=[np.inf] if unbounded else [eps])
            label = ATTACKS[key] + (" unbounded" if unbounded else f" @ {eps:g}")
            row[label] = float(np.mean(predict_in_batches(clf, x_adv, batch_size).argmax(1) != yc))
        if jsma:
            row.update(_jsma_success(clf, xc, yc, jsma_gamma, random_state, batch_size))
        rows.append(row)
    return TemperatureSweepResult(rows=rows, eps=float(eps), norm=_norm_value(norm))


def _jsma_success(clf: Any, x: np.ndarray, y: np.ndarray, gamma: float, seed: int | None, batch_size: int) -> dict:
    """Targeted JSMA success on the softmax (Papernot's setting) and on the logits (random targets != y)."""
    from art.attacks.evasion import SaliencyMapMethod

    from art_ext.models import to_probability_classifier

    rng = np.random.default_rng(seed)
    targets = (y + rng.integers(1, clf.nb_classes, size=len(y))) % clf.nb_classes
    onehot = np.eye(clf.nb_classes, dtype=np.float32)[targets]
    out = {}
    output = infer_output(clf, x)
    models = {"JSMA (softmax)": to_probability_classifier(clf) if output == "logits" else clf}
    if output == "logits":
        models["JSMA (logits)"] = clf
    for name, model in models.items():
        x_adv = SaliencyMapMethod(model, theta=1.0, gamma=gamma, batch_size=batch_size, verbose=False).generate(
            x, onehot
        )
        out[name] = float(np.mean(predict_in_batches(clf, x_adv, batch_size).argmax(1) == targets))
    return out
