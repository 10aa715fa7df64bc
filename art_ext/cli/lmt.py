"""``art-ext lmt``: Lipschitz-margin training against standard training on the digits, with sound certificates."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from art_ext.cli.main import add_framework_argument

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
) -> dict:
    """
    A standard and an LMT-trained digits CNN (same architecture and seed).

    :param standard: An already trained standard classifier to reuse (e.g. the demo's cached baseline).
    :return: ``{"standard": clf, "lmt": clf, "seconds": {"standard": s, "lmt": s}}``.
    """
    from art_ext.defences.trainer import LipschitzMarginTrainer
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    (x_train, y_train), _, _, _ = digits
    shape = ARCHITECTURES["digits_cnn"][0 if framework == "pytorch" else 1]
    seconds = {}
    if standard is None:
        standard = make_classifier(build_model("digits_cnn", framework, seed=seed), input_shape=shape)
        start = time.perf_counter()
        standard.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=batch_size, verbose=False)
        seconds["standard"] = time.perf_counter() - start
    lmt = make_classifier(build_model("digits_cnn", framework, seed=seed), input_shape=shape)
    start = time.perf_counter()
    trainer = LipschitzMarginTrainer(lmt, c=c, warmup_epochs=min(3, nb_epochs), random_state=seed, verbose=verbose)
    trainer.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=batch_size)
    seconds["lmt"] = time.perf_counter() - start
    return {"standard": standard, "lmt": lmt, "seconds": seconds}


def certified_curves(classifiers: dict, x: np.ndarray, y: np.ndarray, radii=DIGITS_RADII) -> tuple[list, dict]:
    """Table rows ``[name, L, clean, certified@r...]`` and per-classifier ``(sorted radii of correct inputs)``."""
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
        radii_of[name] = np.where(correct, radius, 0.0)
    return rows, radii_of


def plot_curves(radii_of: dict, max_radius: float = 0.4):
    """Certified accuracy against radius, one line per classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0.0, max_radius, 81)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, radius in radii_of.items():
        ax.plot(grid, [np.mean(radius >= r) for r in grid], label=name)
    ax.set_xlabel("l2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lmt", help="Lipschitz-margin training vs standard training, with sound l2 certificates")
    add_framework_argument(p)
    p.add_argument("--epochs", type=int, default=15, help="training epochs of both nets (default 15)")
    p.add_argument("--c", type=float, default=0.1, help="LMT target radius c (default 0.1 for the 8x8 digits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write a report (markdown + PNG) to this folder")
    p.add_argument("--tightness", action="store_true", help="also run the certificate tightness analysis")
    p.add_argument("--quick", action="store_true", help="fewer epochs and inputs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from art_ext.data import load_digits
    from art_ext.utils.markdown import markdown_table
    from art_ext.utils.seed import set_seed

    set_seed(args.seed, args.framework)
    digits = load_digits(channels_first=args.framework == "pytorch")
    _, (x_test, y_test), _, _ = digits
    epochs = min(args.epochs, 6) if args.quick else args.epochs
    pair = train_pair(args.framework, digits, nb_epochs=epochs, c=args.c, seed=args.seed, verbose=True)
    classifiers = {"standard": pair["standard"], f"LMT (c={args.c})": pair["lmt"]}
    rows, radii_of = certified_curves(classifiers, x_test, y_test)
    headers = ["training", "L bound", "median radius", "clean"] + [f"cert. acc. @{r}" for r in DIGITS_RADII[1:]]
    table = markdown_table(headers, rows, ".3f")
    print(table)
    ratio = pair["seconds"]["lmt"] / pair["seconds"]["standard"]
    print(f"LMT training time / standard training time: {ratio:.2f} ({epochs} epochs, {args.framework})")
    report = None
    if args.out:
        from art_ext.utils.report import Report

        report = Report(args.out, f"art-ext lmt ({args.framework})")
        report.table(headers, rows, ".3f")
        report.figure(plot_curves(radii_of), "lmt_certified_accuracy.png", "Certified accuracy against l2 radius")
    if args.tightness:
        from art_ext.cli.sections.lmt import tightness_tables

        n = 20 if args.quick else 60
        for name, markdown in tightness_tables(classifiers, x_test[:n], y_test[:n], report, seed=args.seed):
            print(f"\nTightness, {name}:\n{markdown}")
    if report is not None:
        print(f"report written to {report.write()}")
    return 0
