"""Demo section: Lipschitz-margin training against standard training, certified accuracy against l2 radius."""

from __future__ import annotations

from art_ext.cli.experiments.lmt import (  # noqa: F401 (tightness_tables: its former home)
    DIGITS_RADII,
    certified_curves,
    plot_curves,
    tightness_tables,
    train_pair,
)

TITLE = "Lipschitz-margin training: sound l2 certificates"


def run(ctx) -> None:
    _, (x_test, y_test), _, _ = ctx.digits
    ctx.status("training the standard CNN")
    standard = ctx.train_classifier("digits_cnn", nb_epochs=15 if ctx.quick else 30)
    pair = train_pair(
        ctx.framework,
        ctx.digits,
        nb_epochs=6 if ctx.quick else 12,
        c=0.1,
        seed=ctx.seed,
        standard=standard,
        batch_size=96,
        verbose=ctx.verbose,
        status=ctx.status,
    )
    classifiers = {"standard": standard, "LMT (c=0.1)": pair["lmt"]}
    ctx.status("certifying the test inputs")
    rows, radii_of = certified_curves(classifiers, x_test, y_test)
    ctx.report.text(
        "Two digits CNNs of the same architecture, one trained normally and one with Lipschitz-margin training "
        "(LMT, c = 0.1). `LipschitzCertifier` computes a guaranteed upper bound L of each network's l2 Lipschitz "
        "constant (exact SVDs, FFT bounds for convolutions) and certifies each test input up to a radius "
        "(pairwise last-layer margins). Certified accuracy at r: correct and certified up to at least r (at r = 0 "
        "it is the clean accuracy)."
    )
    headers = ["training", "L bound", "median radius", "clean"] + [f"cert. acc. @{r}" for r in DIGITS_RADII[1:]]
    ctx.report.table(headers, rows, floatfmt=".3f")
    ctx.report.figure(plot_curves(radii_of), "lmt_certified_accuracy.png", "Certified accuracy against l2 radius")
    ctx.report.text(
        "How much does the certificate give away? The chain of radii of the LMT paper (Sec. 6): (A) margin / "
        "layer-wise bound, (C) margin / local Jacobian norm, (D) the smallest adversarial perturbation found by "
        "DeepFool and Carlini-Wagner L2. (B), the exact global constant, is only computed for small dense ReLU nets."
    )
    n = 10 if ctx.quick else 30
    ctx.status(f"certificate tightness on {n} test inputs")
    tightness_tables(classifiers, x_test[:n], y_test[:n], ctx.report, seed=ctx.seed)
