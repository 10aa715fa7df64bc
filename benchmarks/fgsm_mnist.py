"""
The table of Goodfellow, Shlens and Szegedy (2015) on MNIST at eps = 0.25, with LeNet-5 in place of their maxout
network: error under FGSM of a normally trained and of an FGSM-adversarially-trained model (their anchors: 89.4%
and 17.9%), the 2x2 transfer matrix (their text: 19.6% from the normal to the trained model, 40.9% the other way),
plus R+FGSM and the iterative least-likely class method.

    python benchmarks/fgsm_mnist.py --framework pytorch --data $ART_EXT_DATA/mnist
    python benchmarks/fgsm_mnist.py --framework pytorch --quick      # 10k training images, 2 epochs, 2k test images

Prints markdown tables. Adversarial training follows the paper's objective: half of each batch replaced by FGSM examples
crafted on the current weights (ART's AdversarialTrainer, ratio 0.5). Attacks use the true labels, as in the paper.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    parser.add_argument("--data", default=None, help="MNIST folder (default: $ART_EXT_DATA/mnist)")
    parser.add_argument("--eps", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each model")
    parser.add_argument("--n-train", type=int, default=None, help="training images (default: all 60k)")
    parser.add_argument("--n-test", type=int, default=None, help="test images (default: all 10k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10k training images, 2 epochs, 2k test images")
    parser.add_argument("--plot", default=None, help="save the FGSM transfer heatmap there (PNG)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.n_train, args.n_test = 2, args.n_train or 10000, args.n_test or 2000

    from art.attacks.evasion import FastGradientMethod
    from art.defences.trainer import AdversarialTrainer

    from art_ext.attacks.evasion import LeastLikelyClassMethod, RandomFGSM
    from art_ext.data import load_mnist
    from art_ext.evaluations import transferability_matrix
    from art_ext.models import ARCHITECTURES, build_model, make_classifier
    from art_ext.utils import markdown_table

    folder = args.data or os.path.join(os.environ.get("ART_EXT_DATA", "."), "mnist")
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(folder, channels_first=args.framework == "pytorch")
    rng = np.random.default_rng(args.seed)
    if args.n_train:
        idx = rng.permutation(len(x_train))[: args.n_train]
        x_train, y_train = x_train[idx], y_train[idx]
    if args.n_test:
        x_test, y_test = x_test[: args.n_test], y_test[: args.n_test]
    shape = ARCHITECTURES["lenet5"][0 if args.framework == "pytorch" else 1]
    eps = args.eps

    start = time.perf_counter()
    normal = make_classifier(build_model("lenet5", args.framework, seed=args.seed), input_shape=shape)
    normal.fit(x_train, y_train, nb_epochs=args.epochs, batch_size=128)
    t_normal = time.perf_counter() - start
    start = time.perf_counter()
    robust = make_classifier(build_model("lenet5", args.framework, seed=args.seed + 1), input_shape=shape)
    AdversarialTrainer(robust, FastGradientMethod(robust, eps=eps, batch_size=256), ratio=0.5).fit(
        x_train, y_train, nb_epochs=args.epochs, batch_size=128
    )
    t_robust = time.perf_counter() - start
    models = {"normal": normal, "FGSM-trained": robust}

    def error(clf, x):
        return float(
            np.mean(np.concatenate([clf.predict(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)]) != y_test)
        )

    rows = []
    for name, clf in models.items():
        fgsm = FastGradientMethod(clf, eps=eps, batch_size=256).generate(x_test, y=y_test)
        rfgsm = RandomFGSM(clf, eps=eps, alpha=eps / 2, batch_size=256, random_state=args.seed, verbose=False)
        ll = LeastLikelyClassMethod(clf, eps=eps, batch_size=256, verbose=False)
        x_ll = ll.generate(x_test)
        reached = float(np.mean(clf.predict(x_ll).argmax(1) == ll.least_likely_class(x_test)))
        rows.append(
            [
                name,
                error(clf, x_test),
                error(clf, fgsm),
                error(clf, rfgsm.generate(x_test, y_test)),
                error(clf, x_ll),
                reached,
            ]
        )
    result = transferability_matrix(
        models, lambda clf: FastGradientMethod(clf, eps=eps, batch_size=256), x_test, y_test
    )

    print(
        f"\nMNIST, LeNet-5, {args.framework}, {len(x_train)} training / {len(x_test)} test images, "
        f"{args.epochs} epochs, eps {eps} (l-inf); training time normal {t_normal:.0f} s, "
        f"FGSM-trained {t_robust:.0f} s.\n"
    )
    print(
        markdown_table(
            ["model", "clean error", "FGSM error", "R+FGSM error (alpha=eps/2)", "least-likely error", "LL reached"],
            rows,
            floatfmt=".1%",
        )
    )
    print("Goodfellow et al. (maxout): FGSM error 89.4% normal, 17.9% adversarially trained.\n")
    print("FGSM transfer matrix (rows: crafted on, columns: evaluated on):\n")
    print(result.to_markdown())
    print("Goodfellow et al.: normal -> trained 19.6%, trained -> normal 40.9%.")
    if args.plot:
        result.plot(args.plot, title=f"FGSM eps {eps}, MNIST: error rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
