"""Demo section: Lipschitz-margin training against standard training, certified accuracy against l2 radius."""

from __future__ import annotations

import numpy as np

TITLE = "Lipschitz-margin training: sound l2 certificates"


def tightness_tables(classifiers: dict, x: np.ndarray, y: np.ndarray, report=None, seed: int = 0) -> list:
    """Placeholder until the tightness analysis lands: nothing to add."""
    return []


def run(ctx) -> None:
    from art_ext.cli.lmt import DIGITS_RADII, certified_curves, plot_curves, train_pair

    _, (x_test, y_test), _, _ = ctx.digits
    standard = ctx.train_classifier("digits_cnn", nb_epochs=15 if ctx.quick else 30)
    pair = train_pair(
        ctx.framework,
        ctx.digits,
        nb_epochs=6 if ctx.quick else 12,
        c=0.1,
        seed=ctx.seed,
        standard=standard,
        batch_size=96,
    )
    classifiers = {"standard": standard, "LMT (c=0.1)": pair["lmt"]}
    rows, radii_of = certified_curves(classifiers, x_test, y_test)
    ctx.report.text(
        "Two digits CNNs of the same architecture, one trained normally and one with Lipschitz-margin training "
        "(LMT, c = 0.1). `LipschitzCertifier` computes a guaranteed upper bound L of each network's l2 Lipschitz "
        "constant (exact SVDs, FFT bounds for convolutions) and certifies each test input up to a radius "
        "(pairwise last-layer margins). Certified accuracy at r: correct and certified up to at least r."
    )
    headers = ["training", "L bound", "median radius", "clean"] + [f"cert. acc. @{r}" for r in DIGITS_RADII[1:]]
    ctx.report.table(headers, rows, floatfmt=".3f")
    ctx.report.figure(plot_curves(radii_of), "lmt_certified_accuracy.png", "Certified accuracy against l2 radius")
