"""The report of :class:`~art_ext.evaluations.GradientMaskingAnalysis`: markdown, a JSON-ready dict and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from art_ext.evaluations.gradient_masking.battery import ATTACKS
from art_ext.utils.markdown import markdown_table

__all__ = ["GradientMaskingReport"]

#: One marker and line style per attack, so that overlapping curves stay visible.
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
_LINES = ("-", "--", "-.", ":")


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
    interrupted: bool = False

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
            "interrupted": bool(self.interrupted),
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
        if self.interrupted:
            lines += ["*Interrupted: only the attacks that finished are reported.*", ""]
        med = float(np.median(self.grad_norms))
        lines.append(
            markdown_table(
                ["gradient statistic", "value"],
                [
                    ("median l2 norm of grad_x CE", f"{med:.3g}"),
                    ("share of exactly-zero CE gradients", f"{self.zero_gradient_share:.3f}"),
                    ("share of saturated softmax rows (1 - max p <= float32 eps)", f"{self.saturated_share:.3f}"),
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

    def plot_success(
        self, ax: Any, attacks: Sequence[str] | None = None, style: str | None = None, prefix: str = ""
    ) -> None:
        """
        Success rate against eps for each attack, each with its own colour, marker and line style (curves that
        coincide stay visible).

        :param ax: A matplotlib ``Axes``.
        :param attacks: Keys to draw (default: all in the report).
        :param style: A matplotlib format string for every curve (default: one style per attack).
        :param prefix: Prefix of the legend labels.
        """
        for key in attacks or list(self.success):
            if key in self.success:
                k = list(ATTACKS).index(key)
                fmt = style or _LINES[k % len(_LINES)] + _MARKERS[k % len(_MARKERS)]
                ax.plot(
                    self.eps,
                    self.success[key],
                    fmt,
                    color=f"C{k}",
                    label=prefix + ATTACKS[key],
                    markersize=6 - 0.4 * (k % 4),
                    alpha=0.85,
                )
        ax.set_xlabel(f"eps ({'l-inf' if self.norm == np.inf else 'l2'})")
        ax.set_ylabel("attack success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
