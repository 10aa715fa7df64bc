"""
Certificate tightness on MNIST (Tsuzuku et al. 2018, Sec. 6): mean ratios between (A) margin / layer-wise bound,
(B) margin / global constant, (C) margin / local Jacobian norm and (D) the smallest adversarial perturbation found,
for a normally trained and an LMT-trained LeNet-5, next to the paper's 39.9 / 1.13 / 1.82 (unregularised network).

    ART_EXT_DATA=path/to/data python -m benchmarks.lmt_tightness_mnist [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--c", type=float, default=0.3)
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--inputs", type=int, default=200, help="test inputs analysed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5,000 train images, 3 epochs, 30 inputs")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.train_size, args.inputs = min(args.epochs, 3), 5000, 30

    from art_ext.data import load_mnist
    from art_ext.defences.trainer import LipschitzMarginTrainer
    from art_ext.evaluations import CertificateTightnessAnalysis
    from art_ext.evaluations.certificate_tightness import PAPER_RATIOS
    from art_ext.models import ARCHITECTURES, build_model, make_classifier
    from art_ext.utils.markdown import markdown_table

    fw = args.framework
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(args.data, channels_first=fw == "pytorch")
    idx = np.random.default_rng(args.seed).permutation(len(x_train))[: args.train_size]
    x_train, y_train = x_train[idx], y_train[idx]
    shape = ARCHITECTURES["lenet5"][0 if fw == "pytorch" else 1]
    rows = []
    for name in ("normal", f"LMT c={args.c}"):
        clf = make_classifier(build_model("lenet5", fw, seed=args.seed), input_shape=shape)
        if name == "normal":
            clf.fit(x_train, y_train, nb_epochs=args.epochs, batch_size=128, verbose=False)
        else:
            LipschitzMarginTrainer(clf, c=args.c, warmup_epochs=min(5, args.epochs), random_state=args.seed).fit(
                x_train, y_train, nb_epochs=args.epochs, batch_size=128
            )
        report = CertificateTightnessAnalysis(clf, random_state=args.seed).analyse(
            x_test[: args.inputs], y_test[: args.inputs]
        )
        r = report.ratios

        def fmt(v):
            return "n/a" if v is None else round(v, 3)

        rows.append(
            [
                name,
                fmt(r["global/bound"]),
                fmt(r["local/global"]),
                fmt(r["attack/local"]),
                fmt(r.get("local/bound")),
                fmt(r["attack/bound"]),
            ]
        )
    rows.append(
        [
            "paper (unregularised)",
            PAPER_RATIOS["global/bound"],
            PAPER_RATIOS["local/global"],
            PAPER_RATIOS["attack/local"],
            "",
            "",
        ]
    )
    print(f"MNIST ({fw}), LeNet-5, {args.train_size} train images, {args.epochs} epochs, {args.inputs} test inputs")
    print(markdown_table(["training", "(B)/(A)", "(C)/(B)", "(D)/(C)", "(C)/(A)", "(D)/(A)"], rows, ".3g"))
    print("(B) needs a small dense ReLU net: n/a for LeNet-5, so (C)/(A) stands in for (B)/(A) x (C)/(B).")


if __name__ == "__main__":
    main()
