"""``art-ext lmt``: Lipschitz-margin training against standard training on the digits, with sound certificates."""

from __future__ import annotations

import argparse

from art_ext.cli.experiments.lmt import DIGITS_RADII, certified_curves, plot_curves, tightness_tables, train_pair
from art_ext.cli.main import add_common_arguments, add_framework_argument
from art_ext.cli.options import check_out_dir, positive_float, positive_int, status

__all__ = ["DIGITS_RADII", "add_parser", "certified_curves", "plot_curves", "run", "train_pair"]

EXAMPLES = """examples:
  art-ext lmt --quick
  art-ext lmt --epochs 15 --c 0.1 --tightness --out art_ext_report/lmt
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lmt",
        help="Lipschitz-margin training vs standard training, with sound l2 certificates",
        description="Train a digits CNN normally and with Lipschitz-margin training (LMT), certify every test input "
        "with LipschitzCertifier and print certified accuracy against the l2 radius.",
        epilog=EXAMPLES,
    )
    add_framework_argument(p)
    p.add_argument("--epochs", type=positive_int, default=15, help="training epochs of both nets (default 15)")
    p.add_argument("--c", type=positive_float, default=0.1, help="LMT target radius c (default 0.1 for the 8x8 digits)")
    p.add_argument("--tightness", action="store_true", help="also run the certificate tightness analysis")
    add_common_arguments(p)
    p.set_defaults(run=run, validate_args=check)


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before training."""
    if args.out:
        check_out_dir(args.out)


def run(args: argparse.Namespace) -> int:
    from art_ext.data import load_digits
    from art_ext.utils.markdown import markdown_table
    from art_ext.utils.seed import set_seed

    set_seed(args.seed, args.framework)
    digits = load_digits(channels_first=args.framework == "pytorch")
    _, (x_test, y_test), _, _ = digits
    epochs = min(args.epochs, 6) if args.quick else args.epochs
    pair = train_pair(args.framework, digits, nb_epochs=epochs, c=args.c, seed=args.seed, verbose=True, status=status)
    classifiers = {"standard": pair["standard"], f"LMT (c={args.c:g})": pair["lmt"]}
    status("certifying the test inputs")
    rows, radii_of = certified_curves(classifiers, x_test, y_test)
    headers = ["training", "L bound", "median radius", "clean"] + [f"cert. acc. @{r}" for r in DIGITS_RADII[1:]]
    print(markdown_table(headers, rows, ".3f"))
    ratio = pair["seconds"]["lmt"] / pair["seconds"]["standard"]
    print(f"LMT training time / standard training time: {ratio:.2f} ({epochs} epochs, {args.framework})")
    report = None
    if args.out:
        from art_ext.utils.report import Report

        report = Report(args.out, f"art-ext lmt ({args.framework})")
        report.table(headers, rows, ".3f")
        report.figure(plot_curves(radii_of), "lmt_certified_accuracy.png", "Certified accuracy against l2 radius")
    if args.tightness:
        n = 20 if args.quick else 60
        status(f"certificate tightness on {n} test inputs")
        for name, markdown in tightness_tables(classifiers, x_test[:n], y_test[:n], report, seed=args.seed):
            print(f"\nTightness, {name}:\n{markdown}")
    if report is not None:
        print(f"report written to {report.write()}")
    return 0
