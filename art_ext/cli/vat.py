"""``art-ext vat``: semi-supervised VAT on digits (or embedding-space AT/VAT on a tiny text corpus)."""

from __future__ import annotations

import argparse

from art_ext.cli.experiments.vat import compare_on_digits, text_comparison
from art_ext.cli.main import add_common_arguments, add_framework_argument
from art_ext.cli.options import at_least, check_out_dir, positive_float, positive_int, status

__all__ = ["add_parser", "run", "text_comparison"]

EXAMPLES = """examples:
  art-ext vat --quick
  art-ext vat --labels 100 --epochs 40 --entmin --out art_ext_report/vat
  art-ext vat --text
"""

#: Default passes over the data: digits, text, and with --quick.
DEFAULT_EPOCHS = {"digits": 40, "text": 8, "quick": 10}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vat",
        help="virtual adversarial training: VAT vs supervised only on digits, or text AT/VAT",
        description="Semi-supervised virtual adversarial training on the digits: a few labelled images, all the "
        "others unlabelled, VAT against training on the labels alone. With --text: baseline, adversarial and "
        "virtual adversarial training in embedding space on a built-in synthetic corpus.",
        epilog=EXAMPLES,
    )
    add_framework_argument(p)
    p.add_argument(
        "--labels",
        type=at_least(10),
        default=50,
        help="number of labelled digits, class-balanced, at least 10 (default 50)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="passes over the training data, at least 1 (default 40, text 8, --quick 10)",
    )
    p.add_argument(
        "--eps", type=positive_float, default=None, help="perturbation norm (default: 0.25 x median input norm)"
    )
    p.add_argument(
        "--xi", type=positive_float, default=None, help="power-iteration radius (default: 0.25 x median norm)"
    )
    p.add_argument("--entmin", action="store_true", help="add entropy minimisation (VAT+EntMin)")
    p.add_argument("--text", action="store_true", help="run baseline/AT/VAT on the built-in synthetic text corpus")
    add_common_arguments(p)
    p.set_defaults(run=run, validate_args=check)


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before training."""
    if args.out:
        check_out_dir(args.out)


def run(args: argparse.Namespace) -> int:
    from art_ext.utils.markdown import markdown_table
    from art_ext.utils.seed import set_seed

    set_seed(args.seed, args.framework)
    epochs = args.epochs
    if epochs is None:
        epochs = DEFAULT_EPOCHS["quick" if args.quick else ("text" if args.text else "digits")]
    if args.text:
        status(f"training baseline, AT and VAT on the synthetic text corpus ({epochs} epochs each)")
        headers = ["training", "clean acc.", "acc. under AT perturbation", "LDS"]
        rows = text_comparison(args.framework, nb_epochs=epochs, seed=args.seed, eps=args.eps, xi=args.xi)
        title = f"text AT/VAT, {args.framework}"
    else:
        from art_ext.data import load_digits

        digits = load_digits(channels_first=args.framework == "pytorch")
        status(f"training supervised-only and VAT digits MLPs on {args.labels} labels ({epochs} epochs each)")
        res = compare_on_digits(
            args.framework,
            digits,
            args.labels,
            nb_epochs=epochs,
            seed=args.seed,
            entropy_minimization=args.entmin,
            eps=args.eps,
            xi=args.xi,
        )
        name = "VAT+EntMin" if args.entmin else "VAT"
        title = f"digits, {args.labels} labels, eps={res['eps']:.3f}, xi={res['xi']:.3f}, {args.framework}"
        headers = ["training", "test accuracy"]
        rows = [["supervised only", res["supervised"]], [name, res["vat"]]]
    print(title)
    print(markdown_table(headers, rows, floatfmt=".3f"))
    if args.out:
        from art_ext.utils.report import Report

        report = Report(args.out, f"art-ext vat ({title})")
        report.table(headers, rows, ".3f")
        print(f"report written to {report.write()}")
    return 0
