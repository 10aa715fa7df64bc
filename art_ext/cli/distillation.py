"""
``art-ext distillation`` (alias ``distill``): distil a digits model at T, and run the gradient-masking analysis on it
and on a normal one.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from art_ext.cli.experiments.distillation import QUICK_ATTACKS, compare, comparison_figures, train_pair
from art_ext.cli.main import add_common_arguments, add_framework_argument
from art_ext.cli.options import DEFAULT_OUT, check_out_dir, float_list, positive_float, positive_int, status

__all__ = ["QUICK_ATTACKS", "add_parser", "compare", "comparison_figures", "run", "train_pair"]

#: Where the report goes when ``--out`` is not given.
DEFAULT_DISTILLATION_OUT = os.path.join(DEFAULT_OUT, "distillation")

EXAMPLES = f"""examples:
  art-ext distillation --quick
  art-ext distillation --temperature 100 --sweep 1,10,100 --out {DEFAULT_DISTILLATION_OUT}

The report (report.md, report.json, two PNG figures) goes to --out, by default {DEFAULT_DISTILLATION_OUT}.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distillation",
        aliases=["distill"],
        help="defensive distillation at T on digits, with a gradient-masking analysis against a normal model",
        description="Train a digits model normally and one with defensive distillation at temperature T, then run "
        "GradientMaskingAnalysis on both: gradient statistics, an attack battery at equal budgets and the warning "
        "signs of gradient masking.",
        epilog=EXAMPLES,
    )
    add_framework_argument(p)
    p.add_argument(
        "--architecture",
        default="digits_mlp",
        choices=["digits_mlp", "digits_cnn"],
        help="reference architecture of both models (default digits_mlp)",
    )
    p.add_argument("--temperature", type=positive_float, default=100.0, help="distillation temperature (default 100)")
    p.add_argument("--epochs", type=positive_int, default=15, help="epochs of each model (default 15)")
    p.add_argument("--learning-rate", type=positive_float, default=0.01, help="Adam learning rate (default 0.01)")
    p.add_argument(
        "--eps",
        type=float_list,
        default=[0.05, 0.1, 0.2, 0.3],
        help="comma-separated budgets (default 0.05,0.1,0.2,0.3)",
    )
    p.add_argument("--norm", default="inf", choices=["inf", "2"], help="norm of the budgets (default inf)")
    p.add_argument("--samples", type=positive_int, default=100, help="test inputs analysed (default 100)")
    p.add_argument(
        "--sweep",
        type=float_list,
        default=None,
        help="also distil at these comma-separated temperatures and tabulate (e.g. 1,10,100)",
    )
    add_common_arguments(p)
    p.set_defaults(run=run, validate_args=check)


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before training."""
    if sorted(args.eps) != list(args.eps):
        from art_ext.cli.options import CommandError

        raise CommandError(f"--eps must be increasing, got {','.join(f'{e:g}' for e in args.eps)}.")
    args.out = args.out or DEFAULT_DISTILLATION_OUT
    check_out_dir(args.out)


def run(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt

    from art_ext.data import load_digits
    from art_ext.evaluations import temperature_sweep
    from art_ext.models import build_model, input_shape_of, make_classifier
    from art_ext.utils.seed import set_seed

    if getattr(args, "out", None) is None:
        check(args)
    set_seed(args.seed, args.framework)
    digits = load_digits(channels_first=args.framework == "pytorch")
    (x_train, y_train), (x_test, y_test), _, _ = digits
    epochs = min(args.epochs, 8) if args.quick else args.epochs
    samples = min(args.samples, 50) if args.quick else args.samples
    eps = list(args.eps)
    norm = np.inf if args.norm == "inf" else 2
    normal, distilled = train_pair(
        args.framework,
        digits,
        args.temperature,
        epochs,
        args.learning_rate,
        args.architecture,
        args.seed,
        verbose=True,
        status=status,
    )
    status(f"gradient-masking analysis of both models on {samples} test inputs")
    normal_report, distilled_report = compare(
        normal, distilled, x_test, y_test, quick=args.quick, seed=args.seed, eps=eps, norm=norm, max_samples=samples
    )
    lines = [f"# Defensive distillation at T={args.temperature:g} ({args.framework}, {args.architecture})\n"]
    for name, report in (("Normal model", normal_report), (f"Distilled at T={args.temperature:g}", distilled_report)):
        lines += [f"## {name}\n", report.to_markdown()]
    fig_hist, fig_curves = comparison_figures(normal_report, distilled_report, args.temperature)
    for fig, name in ((fig_hist, "distill_gradient_norms.png"), (fig_curves, "distill_success_vs_eps.png")):
        fig.savefig(os.path.join(args.out, name), dpi=110, bbox_inches="tight")
        plt.close(fig)
        lines.append(f"![{name}]({name})\n")
    if args.sweep:
        shape = input_shape_of(args.architecture, args.framework)
        status(f"temperature sweep over T = {', '.join(f'{t:g}' for t in args.sweep)}")
        sweep = temperature_sweep(
            lambda: make_classifier(
                build_model(args.architecture, args.framework, seed=args.seed), shape, learning_rate=args.learning_rate
            ),
            x_train,
            y_train,
            x_test,
            y_test,
            temperatures=list(args.sweep),
            nb_epochs=epochs,
            batch_size=64,
            eps=max(eps),
            norm=norm,
            attacks=("fgsm_ce", "pgd_margin") if args.quick else ("fgsm_ce", "pgd_ce", "pgd_margin", "cw_l2"),
            max_samples=samples,
            random_state=args.seed,
            verbose=True,
        )
        lines += ["## Temperature sweep\n", sweep.to_markdown()]
    text = "\n".join(lines)
    with open(os.path.join(args.out, "report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump({"normal": normal_report.to_dict(), "distilled": distilled_report.to_dict()}, f, indent=1)
    print(text)
    print(f"[art-ext distillation] report written to {os.path.abspath(os.path.join(args.out, 'report.md'))}")
    return 0
