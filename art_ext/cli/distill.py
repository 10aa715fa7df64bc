"""``art-ext distill``: distil a digits model at T, and run the gradient-masking analysis on it and on a normal one."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from art_ext.cli.main import add_framework_argument

#: Attacks of the quick comparison (C&W and Square are left to the full run: they dominate the time).
QUICK_ATTACKS = ("fgsm_ce", "pgd_ce", "fgsm_margin", "pgd_margin", "transfer", "noise")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="defensive distillation at T on digits, with a gradient-masking analysis against a normal model"
    )
    add_framework_argument(p)
    p.add_argument("--architecture", default="digits_mlp", choices=["digits_mlp", "digits_cnn"])
    p.add_argument("--temperature", type=float, default=100.0, help="distillation temperature (default 100)")
    p.add_argument("--epochs", type=int, default=15, help="epochs of each model (default 15)")
    p.add_argument("--learning-rate", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    p.add_argument("--eps", default="0.05,0.1,0.2,0.3", help="comma-separated budgets (default 0.05,0.1,0.2,0.3)")
    p.add_argument("--norm", default="inf", choices=["inf", "2"])
    p.add_argument("--samples", type=int, default=100, help="test inputs analysed (default 100)")
    p.add_argument(
        "--sweep", default="", help="also distil at these comma-separated temperatures and tabulate (e.g. 1,10,100)"
    )
    p.add_argument("--out", default="art_ext_distill", help="output folder (default ./art_ext_distill)")
    p.add_argument("--quick", action="store_true", help="small budgets and a reduced attack battery")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def train_pair(
    framework: str,
    digits: tuple,
    temperature: float = 100.0,
    nb_epochs: int = 15,
    learning_rate: float = 0.01,
    architecture: str = "digits_mlp",
    seed: int = 0,
    verbose: bool = False,
) -> tuple[Any, Any]:
    """A normally trained digits classifier and one distilled at `temperature`, same architecture and optimizer."""
    from art_ext.defences.trainer import DefensiveDistillationTrainer
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    (x_train, y_train), _, _, _ = digits
    shape = ARCHITECTURES[architecture][0 if framework == "pytorch" else 1]
    normal = make_classifier(build_model(architecture, framework, seed=seed), shape, learning_rate=learning_rate)
    normal.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=64, verbose=False)
    distilled = make_classifier(build_model(architecture, framework, seed=seed), shape, learning_rate=learning_rate)
    DefensiveDistillationTrainer(distilled, temperature=temperature, random_state=seed, verbose=verbose).fit(
        x_train, y_train, nb_epochs=nb_epochs, batch_size=64
    )
    return normal, distilled


def compare(
    normal: Any, distilled: Any, x: np.ndarray, y: np.ndarray, quick: bool = False, seed: int = 0, **kwargs
) -> tuple[Any, Any]:
    """
    Gradient-masking reports of the normal and the distilled model. The normal model is the distilled model's
    transfer surrogate; the normal model's own analysis has no transfer attack.
    """
    from art_ext.evaluations import ATTACKS, GradientMaskingAnalysis

    attacks = list(QUICK_ATTACKS if quick else ATTACKS)
    settings = dict(random_state=seed, verbose=False)
    if quick:
        settings["pgd_steps"] = 5
    settings.update(kwargs)
    normal_report = GradientMaskingAnalysis(normal, attacks=[a for a in attacks if a != "transfer"], **settings)
    distilled_report = GradientMaskingAnalysis(distilled, attacks=attacks, surrogate=normal, **settings)
    return normal_report.analyse(x, y), distilled_report.analyse(x, y)


def comparison_figures(normal_report: Any, distilled_report: Any, temperature: float) -> tuple[Any, Any]:
    """Gradient-norm histograms (normal against distilled) and success-vs-eps curves."""
    import matplotlib.pyplot as plt

    fig_hist, ax = plt.subplots(figsize=(5.5, 3.5))
    normal_report.plot_gradients(ax, label="normal")
    distilled_report.plot_gradients(ax, label=f"distilled T={temperature:g}")
    ax.set_title("||grad_x CE|| at the test inputs")
    fig_curves, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    normal_report.plot_success(axes[0])
    axes[0].set_title("normal")
    distilled_report.plot_success(axes[1])
    axes[1].set_title(f"distilled T={temperature:g}")
    fig_curves.tight_layout()
    return fig_hist, fig_curves


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from art_ext.data import load_digits
    from art_ext.evaluations import temperature_sweep
    from art_ext.models import ARCHITECTURES, build_model, make_classifier
    from art_ext.utils.seed import set_seed

    set_seed(args.seed, args.framework)
    os.makedirs(args.out, exist_ok=True)
    digits = load_digits(channels_first=args.framework == "pytorch")
    (x_train, y_train), (x_test, y_test), _, _ = digits
    epochs = min(args.epochs, 8) if args.quick else args.epochs
    samples = min(args.samples, 50) if args.quick else args.samples
    eps = [float(e) for e in args.eps.split(",") if e.strip()]
    norm = np.inf if args.norm == "inf" else 2
    normal, distilled = train_pair(
        args.framework, digits, args.temperature, epochs, args.learning_rate, args.architecture, args.seed
    )
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
        temps = [float(t) for t in args.sweep.split(",") if t.strip()]
        shape = ARCHITECTURES[args.architecture][0 if args.framework == "pytorch" else 1]
        sweep = temperature_sweep(
            lambda: make_classifier(
                build_model(args.architecture, args.framework, seed=args.seed), shape, learning_rate=args.learning_rate
            ),
            x_train,
            y_train,
            x_test,
            y_test,
            temperatures=temps,
            nb_epochs=epochs,
            batch_size=64,
            eps=max(eps),
            norm=norm,
            attacks=("fgsm_ce", "pgd_margin") if args.quick else ("fgsm_ce", "pgd_ce", "pgd_margin", "cw_l2"),
            max_samples=samples,
            random_state=args.seed,
            verbose=False,
        )
        lines += ["## Temperature sweep\n", sweep.to_markdown()]
    text = "\n".join(lines)
    with open(os.path.join(args.out, "report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump({"normal": normal_report.to_dict(), "distilled": distilled_report.to_dict()}, f, indent=1)
    print(text)
    print(f"[art-ext distill] report written to {os.path.abspath(os.path.join(args.out, 'report.md'))}")
    return 0
