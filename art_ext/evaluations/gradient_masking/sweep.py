"""
:func:`temperature_sweep`: distil at several temperatures and tabulate clean accuracy and attack success, the shape of
Papernot et al.'s table for defensive distillation.

| Paper link: https://arxiv.org/abs/1511.04508
| Paper link: https://arxiv.org/abs/1607.04311
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from art_ext.attacks.evasion.logit_margin import norm_value
from art_ext.defences.trainer.defensive_distillation import train_at_temperature
from art_ext.evaluations.gradient_masking.analysis import GradientMaskingAnalysis
from art_ext.evaluations.gradient_masking.battery import ATTACKS
from art_ext.utils.checks import (
    check_classifier,
    check_finite,
    check_flag,
    check_labels,
    check_positive,
    check_random_state,
)
from art_ext.utils.markdown import markdown_table
from art_ext.utils.outputs import output_kind_of, predict_in_batches

__all__ = ["TemperatureSweepResult", "temperature_sweep"]


@dataclass
class TemperatureSweepResult:
    """Rows of :func:`temperature_sweep`: one per model (``"normal"`` first, then each temperature)."""

    rows: list[dict]
    eps: float
    norm: float

    def to_dict(self) -> dict:
        """A JSON-serialisable copy: budget, norm and one dict per row."""
        return {
            "eps": self.eps,
            "norm": "inf" if self.norm == np.inf else self.norm,
            "rows": [dict(r) for r in self.rows],
        }

    def to_markdown(self) -> str:
        """The rows as a markdown table (one row per model)."""
        keys = [k for k in self.rows[0] if k not in ("model", "temperature")]
        headers = ["model"] + keys
        table = [[r["model"]] + [f"{r[k]:.3f}" if isinstance(r[k], float) else r[k] for k in keys] for r in self.rows]
        return markdown_table(headers, table)

    def plot(self, path: str | None = None, title: str | None = None) -> Any:
        """
        Clean accuracy and each attack's success against the temperature (the normal model drawn at T = 1).

        :param path: PNG file to write (the figure is closed then); ``None`` returns the figure.
        :param title: Figure title.
        :return: The matplotlib figure, or `path`.
        """
        import matplotlib.pyplot as plt

        temps = [1.0 if r["temperature"] is None else float(r["temperature"]) for r in self.rows]
        keys = [k for k in self.rows[0] if k not in ("model", "temperature", "median logit gap")]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        markers = ("o", "s", "^", "v", "D", "P", "X", "*")
        for i, key in enumerate(keys):
            values = [r.get(key, np.nan) for r in self.rows]
            ax.plot(temps, values, "-" + markers[i % len(markers)], label=key, alpha=0.85)
        ax.set_xscale("log")
        ax.set_xlabel("temperature (normal model at T = 1)")
        ax.set_ylabel("rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(title or "Defensive distillation: temperature sweep")
        fig.tight_layout()
        if path is None:
            return fig
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path


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
    norm = norm_value(norm)
    check_random_state(random_state)
    for flag in ("jsma", "baseline", "verbose"):
        check_flag(locals()[flag], flag)
    check_positive(nb_epochs, "nb_epochs", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    if isinstance(attacks, str):
        attacks = [attacks]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"`attacks` must be keys of {list(ATTACKS)}, got {list(attacks)}.")
    x_test = check_finite(x_test, "x_test").astype(np.float32)
    y_test_idx = None
    rows = []
    for t in ([None] if baseline else []) + temps:
        clf = build_classifier()
        check_classifier(clf, "build_classifier()")
        if y_test_idx is None:
            y_test_idx = check_labels(y_test, clf.nb_classes, n=len(x_test), name="y_test")
            y_train_idx = check_labels(y_train, clf.nb_classes, n=len(x_train), name="y_train")
        if t is None:
            out = output_kind_of(clf, x_train)
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
        xs, ys = analysis.select_samples(x_test, y_test_idx)
        output = output_kind_of(clf, xs)
        correct = predict_in_batches(clf, xs, batch_size).argmax(1) == ys
        xc, yc = xs[correct], ys[correct]
        for key in analysis.attacks:
            unbounded = key == "cw_l2"
            (x_adv,) = analysis.run_attack(key, xc, yc, output, eps=[np.inf] if unbounded else [eps])
            label = ATTACKS[key] + (" unbounded" if unbounded else f" @ {eps:g}")
            row[label] = float(np.mean(predict_in_batches(clf, x_adv, batch_size).argmax(1) != yc))
        if jsma:
            row.update(_jsma_success(clf, xc, yc, jsma_gamma, random_state, batch_size))
        rows.append(row)
    return TemperatureSweepResult(rows=rows, eps=float(eps), norm=norm)


def _jsma_success(clf: Any, x: np.ndarray, y: np.ndarray, gamma: float, seed: int | None, batch_size: int) -> dict:
    """
    Targeted JSMA success on the softmax (Papernot's setting) and on the logits (random targets != y), and where the
    softmax attack's successes come from: the share of inputs whose softmax target-class gradient is exactly zero in
    the model's precision (JSMA's saliency map is then all zero and ART's attack raises pixels no gradient chose),
    with the success rate on each side of that split.
    """
    from art.attacks.evasion import SaliencyMapMethod

    from art_ext.estimators.classification.utils import to_probability_classifier

    rng = np.random.default_rng(seed)
    targets = (y + rng.integers(1, clf.nb_classes, size=len(y))) % clf.nb_classes
    onehot = np.eye(clf.nb_classes, dtype=np.float32)[targets]
    out = {}
    output = output_kind_of(clf, x)
    models = {"JSMA (softmax)": to_probability_classifier(clf) if output == "logits" else clf}
    if output == "logits":
        models["JSMA (logits)"] = clf
    for name, model in models.items():
        x_adv = SaliencyMapMethod(model, theta=1.0, gamma=gamma, batch_size=batch_size, verbose=False).generate(
            x, onehot
        )
        hit = predict_in_batches(clf, x_adv, batch_size).argmax(1) == targets
        out[name] = float(np.mean(hit))
        if name == "JSMA (softmax)":
            out.update(_softmax_saturation(model, x, targets, hit, batch_size))
    return out


def _softmax_saturation(model: Any, x: np.ndarray, targets: np.ndarray, hit: np.ndarray, batch_size: int) -> dict:
    """Share of inputs whose target-class probability has an all-zero input gradient, and JSMA's success on each side."""
    zero = np.zeros(len(x), dtype=bool)
    for i in range(0, len(x), batch_size):
        grad = np.asarray(model.class_gradient(x[i : i + batch_size], label=targets[i : i + batch_size]))
        zero[i : i + batch_size] = ~np.any(grad.reshape(len(grad), -1) != 0, axis=1)
    return {
        "JSMA (softmax): zero target gradient": float(np.mean(zero)),
        "JSMA (softmax) success, zero gradient": float(np.mean(hit[zero])) if zero.any() else float("nan"),
        "JSMA (softmax) success, non-zero gradient": float(np.mean(hit[~zero])) if (~zero).any() else float("nan"),
    }
