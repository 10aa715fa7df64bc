"""
Defensive distillation on MNIST: attack success before and after distillation at several temperatures, in one table.

Anchors: Papernot et al. (S&P 2016, https://arxiv.org/abs/1511.04508) report JSMA success falling from 95.89% to
0.45% at T=100 on MNIST; Carlini and Wagner (https://arxiv.org/abs/1607.04311) report 100% success of their attacks
on the distilled networks. This script trains LeNet-5 (not Papernot's exact network) with Adam; JSMA is ART's
``SaliencyMapMethod`` with random targets, on the softmax (Papernot's setting) and on the logits; C&W is ART's
``CarliniL2Method`` counted without a distortion bound; FGSM (cross-entropy) and PGD (logit margin) at ``--eps``.

Usage::

    ART_EXT_DATA=path/to/data python benchmarks/distillation_mnist.py --quick
    python benchmarks/distillation_mnist.py --data path/to/data --epochs 10 --samples 500
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run  # noqa: E402
from _common import parser as _parser  # noqa: E402

ANCHORS = (
    "Paper anchors: JSMA 95.89% -> 0.45% at T=100 (Papernot et al. 2016); C&W 100% on distilled networks "
    "(Carlini and Wagner 2016)."
)
PAPER = {
    "citation": "Papernot et al., Distillation as a Defense to Adversarial Perturbations, S&P 2016 (JSMA on "
    "MNIST); Carlini and Wagner, Defensive Distillation is Not Robust to Adversarial Examples, 2016",
    "jsma_success": {"normal": 0.9589, "distilled T=100": 0.0045},
    "cw_success_on_distilled": 1.0,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser(__doc__)
    parser.add_argument("--temperatures", default="1,10,20,50,100")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every model (teacher and student alike)")
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--samples", type=int, default=300, help="attacked test inputs")
    parser.add_argument("--eps", type=float, default=0.3, help="l-inf budget of FGSM and PGD")
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--cw-iter", type=int, default=20, help="C&W iterations per binary-search step")
    parser.add_argument("--no-jsma", action="store_true", help="skip JSMA (the slowest attack)")
    args = parser.parse_args(argv)

    from art_ext.data import load_mnist
    from art_ext.evaluations import temperature_sweep
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    if args.quick:  # 10k training images, 2 epochs, 50 inputs, T in {1, 100}
        args.train_size, args.epochs, args.samples, args.cw_iter = 10000, 2, 50, 10
        args.temperatures = "1,100"
    run = Run(
        "distillation_mnist" + ("" if args.framework == "pytorch" else "_tensorflow"),
        args,
        PAPER,
        notes="LeNet-5 with Adam instead of Papernot's network and SGD schedule; JSMA is ART's SaliencyMapMethod "
        "with random targets; success rates on correctly classified test inputs.",
    )
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(channels_first=args.framework == "pytorch")
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(x_train))[: args.train_size]
    x_train, y_train = x_train[idx], y_train[idx]
    x_test, y_test = x_test[:2000], y_test[:2000]
    shape = ARCHITECTURES["lenet5"][0 if args.framework == "pytorch" else 1]
    temps = [float(t) for t in args.temperatures.split(",")]
    if run.rows:
        run.finish()
        return 0
    start = time.perf_counter()
    result = temperature_sweep(
        lambda: make_classifier(
            build_model("lenet5", args.framework, seed=args.seed), shape, learning_rate=args.learning_rate
        ),
        x_train,
        y_train,
        x_test,
        y_test,
        temperatures=temps,
        nb_epochs=args.epochs,
        batch_size=128,
        eps=args.eps,
        attacks=("fgsm_ce", "pgd_margin", "cw_l2"),
        jsma=not args.no_jsma,
        max_samples=args.samples,
        cw_max_iter=args.cw_iter,
        random_state=args.seed,
        verbose=True,
    )
    print(
        f"\nDefensive distillation on MNIST ({args.framework}, LeNet-5, {len(x_train)} training images, "
        f"{args.epochs} epochs, clean accuracy on 2000 test images, attacks on {args.samples}; "
        f"{time.perf_counter() - start:.0f} s)\n"
    )
    print(result.to_markdown())
    print(ANCHORS)
    for r in result.rows:  # the sweep trains all models together: its rows are stored at once
        run.rows.append({"key": str(r["model"]), **r})
    run.finish(
        setting=f"MNIST ({args.framework}), LeNet-5, {len(x_train)} training images, {args.epochs} epochs, clean "
        f"accuracy on 2000 test images, attacks on {args.samples}, eps {args.eps}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
