"""Lipschitz-margin training experiments shared by ``art-ext lmt`` and the demo's LMT section."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from art_ext.models import build_model, input_shape_of, make_classifier

__all__ = ["DIGITS_RADII", "certified_curves", "plot_curves", "tightness_tables", "train_pair"]

#: l2 radii at which certified accuracy is reported on the 8x8 digits (pixel values in [0, 1]).
DIGITS_RADII = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def train_pair(
    framework: str,
    digits: tuple,
    nb_epochs: int = 15,
    c: float = 0.1,
    seed: int = 0,
    standard: Any = None,
    batch_size: int = 64,
    verbose: bool = False,
    status: Callable[[str], None] | None = None,
) -> dict:
    """
    A standard and an LMT-trained digits CNN (same architecture and seed).

    :param standard: An already trained standard classifier to reuse (e.g. the demo's cached baseline).
    :param verbose: Progress bar of the LMT training.
    :param status: Called with a one-line status before each training phase (e.g. ``print``).
    :return: ``{"standard": clf, "lmt": clf, "seconds": {"standard": s, "lmt": s}}``.
    """
    from art_ext.defences.trainer import LipschitzMarginTrainer

    (x_train, y_train), _, _, _ = digits
    shape = input_shape_of("digits_cnn", framework)
    seconds = {}
    if standard is None:
        if status:
            status(f"training the standard CNN ({nb_epochs} epochs)")
        standard = make_classifier(build_model("digits_cnn", framework, seed=seed), input_shape=shape)
        start = time.perf_counter()
        standard.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=batch_size, verbose=False)
        seconds["standard"] = time.perf_counter() - start
    lmt = make_classifier(build_model("digits_cnn", framework, seed=seed), input_shape=shape)
    if status:
        status(f"training the LMT CNN (c={c:g}, {nb_epochs} epochs)")
    start = time.perf_counter()
    trainer = LipschitzMarginTrainer(lmt, c=c, warmup_epochs=min(3, nb_epochs), random_state=seed, verbose=verbose)
    trainer.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=batch_size)
    seconds["lmt"] = time.perf_counter() - start
    return {"standard": standard, "lmt": lmt, "seconds": seconds}


def certified_curves(classifiers: dict, x: np.ndarray, y: np.ndarray, radii=DIGITS_RADII) -> tuple[list, dict]:
    """
    Table rows ``[name, L, median radius, clean, certified@r...]`` and, per classifier, the certified radius of each
    input: its radius when correctly classified, ``-inf`` when misclassified (never certified, not even at r = 0).
    """
    from art_ext.estimators.certification import LipschitzCertifier

    rows, radii_of = [], {}
    for name, clf in classifiers.items():
        cert = LipschitzCertifier(clf)
        pred, radius = cert.certify(x)
        correct = pred == y
        rows.append(
            [name, cert.lipschitz_bound(), float(np.median(np.where(correct, radius, 0.0)))]
            + [float(np.mean(correct & (radius >= r))) for r in radii]
        )
        radii_of[name] = np.where(correct, radius, -np.inf)
    return rows, radii_of


def plot_curves(radii_of: dict, max_radius: float = 0.4):
    """
    Certified accuracy against radius, one line per classifier; at radius 0 it equals the clean accuracy
    (misclassified inputs carry radius ``-inf``, see :func:`certified_curves`).
    """
    import matplotlib.pyplot as plt

    grid = np.linspace(0.0, max_radius, 81)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, (name, radius) in enumerate(radii_of.items()):
        style = ("-", "--", "-.", ":")[i % 4]  # distinct styles: coinciding curves stay visible
        ax.plot(grid, [np.mean(radius >= r) for r in grid], style, label=name, linewidth=1.8)
    ax.set_xlabel("l2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Certified accuracy against l2 radius")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def tightness_tables(classifiers: dict, x: np.ndarray, y: np.ndarray, report=None, seed: int = 0) -> list:
    """
    Run :class:`~art_ext.evaluations.CertificateTightnessAnalysis` on each classifier; add its table and plot to
    `report` (when given). Returns ``[(name, markdown)]``.
    """
    from art_ext.evaluations import CertificateTightnessAnalysis

    out = []
    for i, (name, clf) in enumerate(classifiers.items()):
        analysis = CertificateTightnessAnalysis(
            clf, local_samples=8, cw_max_iter=10, cw_binary_search_steps=3, random_state=seed, verbose=False
        )
        result = analysis.analyse(x, y)
        markdown = result.to_markdown()
        out.append((name, markdown))
        if report is not None:
            report.text(f"**Tightness of the certificate, {name}** ({len(x)} test inputs; (B): {result.global_reason})")
            report.text(markdown)
            figure = result.plot()
            figure.suptitle(f"Certificate tightness: chain of radii per input, {name}")
            report.figure(figure, f"lmt_tightness_{i}.png", f"Chain of radii per input, {name}")
    return out
