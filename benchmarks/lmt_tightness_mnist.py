"""
Certificate tightness on MNIST (Tsuzuku et al. 2018, Sec. 6): mean ratios between (A) margin / layer-wise bound,
(B) margin / global constant, (C) margin / local Jacobian norm and (D) the smallest adversarial perturbation found,
for a normally trained and an LMT-trained network, next to the paper's 39.9 / 1.13 / 1.82 (unregularised network).

    python benchmarks/lmt_tightness_mnist.py --data <data root> [--architecture gloro_small] [--quick]

Writes benchmarks/results/lmt_tightness_mnist.json (resumable).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run, parser, trained  # noqa: E402
from lmt_mnist import gloro_small  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--architecture", choices=["gloro_small", "lenet5"], default="gloro_small")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--c", type=float, default=0.3)
    p.add_argument("--train-size", type=int, default=60000)
    p.add_argument("--inputs", type=int, default=200, help="test inputs analysed")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.train_size, args.inputs = min(args.epochs, 3), 5000, 30

    from art_ext.data import load_mnist
    from art_ext.defences.trainer import LipschitzMarginTrainer
    from art_ext.evaluations import CertificateTightnessAnalysis
    from art_ext.evaluations.certificate_tightness import PAPER_RATIOS
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    fw = args.framework
    run = Run(
        "lmt_tightness_mnist" + ("" if fw == "pytorch" else "_tensorflow"),
        args,
        {"citation": "Tsuzuku, Sato and Sugiyama, Lipschitz-Margin Training, NeurIPS 2018, Sec. 6", **PAPER_RATIOS},
        notes="(B) needs a small dense ReLU net: n/a for convolutional networks, so (C)/(A) stands in for "
        "(B)/(A) x (C)/(B).",
    )
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(channels_first=fw == "pytorch")
    idx = np.random.default_rng(args.seed).permutation(len(x_train))[: args.train_size]
    x_train, y_train = x_train[idx], y_train[idx]
    shape = ARCHITECTURES["lenet5"][0 if fw == "pytorch" else 1]

    def build():
        return (
            build_model("lenet5", fw, seed=args.seed) if args.architecture == "lenet5" else gloro_small(fw, args.seed)
        )

    def analyse(name: str) -> dict:
        clf = make_classifier(build(), input_shape=shape)
        if name == "normal":
            train = lambda: clf.fit(x_train, y_train, nb_epochs=args.epochs, batch_size=128, verbose=False)  # noqa: E731
        else:
            lmt = LipschitzMarginTrainer(clf, c=args.c, warmup_epochs=min(5, args.epochs), random_state=args.seed)
            train = lambda: lmt.fit(x_train, y_train, nb_epochs=args.epochs, batch_size=128)  # noqa: E731
        trained(run, name.split()[0], clf, train)
        r = (
            CertificateTightnessAnalysis(clf, random_state=args.seed)
            .analyse(x_test[: args.inputs], y_test[: args.inputs])
            .ratios
        )
        return {
            "training": name,
            "(B)/(A)": r.get("global/bound"),
            "(C)/(B)": r.get("local/global"),
            "(D)/(C)": r.get("attack/local"),
            "(C)/(A)": r.get("local/bound"),
            "(D)/(A)": r.get("attack/bound"),
        }

    for name in ("normal", f"LMT c={args.c}"):
        run.row(name, lambda n=name: analyse(n))
    run.finish(
        setting=f"MNIST ({fw}), {args.architecture}, {args.train_size} train images, {args.epochs} epochs, "
        f"{args.inputs} test inputs",
        tables={
            "paper (unregularised network)": [
                {
                    "(B)/(A)": PAPER_RATIOS["global/bound"],
                    "(C)/(B)": PAPER_RATIOS["local/global"],
                    "(D)/(C)": PAPER_RATIOS["attack/local"],
                }
            ]
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
