"""
VAT on MNIST with 100 labels: test error of supervised only, VAT and VAT+EntMin (TPAMI 2018 anchor: 1.36% for VAT
with a larger network and 48k updates), the cost of a VAT step relative to a plain step in the same run, and the
speed of VirtualAdversarialPerturbation against ART's VirtualAdversarialMethod on the same model and inputs.

    ART_EXT_DATA=<data root> python benchmarks/vat_mnist.py --framework pytorch [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--epochs", type=int, default=30, help="passes over the 60k unlabelled images")
    p.add_argument("--unlabeled", type=int, default=None, help="use only this many unlabelled images")
    p.add_argument("--test", type=int, default=None, help="evaluate on this many test images")
    p.add_argument("--art-inputs", type=int, default=4, help="inputs for the ART speed comparison")
    p.add_argument("--quick", action="store_true", help="5k unlabelled, 3 epochs, 2k test images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.epochs, args.unlabeled, args.test = 3, args.unlabeled or 5000, args.test or 2000

    from art.attacks.evasion import VirtualAdversarialMethod

    from art_ext.attacks.evasion import VirtualAdversarialPerturbation
    from art_ext.cli.sections.vat import labelled_subset
    from art_ext.data import load_mnist
    from art_ext.defences.trainer import VirtualAdversarialTrainer
    from art_ext.models import ARCHITECTURES, build_model, make_classifier, to_probability_classifier
    from art_ext.utils.markdown import markdown_table

    cf = args.framework == "pytorch"
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(channels_first=cf)
    x_unl = x_train[: args.unlabeled] if args.unlabeled else x_train
    x_test, y_test = x_test[: args.test], y_test[: args.test]
    idx = labelled_subset(y_train, args.labels, args.seed)
    shape = ARCHITECTURES["lenet5"][0 if cf else 1]
    rows, step_times, clf = [], {}, None
    for name, kwargs in (
        ("supervised only", {"alpha": 0.0}),
        ("VAT", {"alpha": 1.0}),
        ("VAT+EntMin", {"alpha": 1.0, "entropy_minimization": True}),
    ):
        clf = make_classifier(build_model("lenet5", args.framework, seed=args.seed), input_shape=shape)
        trainer = VirtualAdversarialTrainer(clf, random_state=args.seed, **kwargs)
        start = time.perf_counter()
        # Supervised only: the same number of steps, on the labelled data only.
        trainer.fit(x_train[idx], y_train[idx], x_unlabeled=x_unl, nb_epochs=args.epochs, batch_size=128,
                    labeled_batch_size=32) if kwargs["alpha"] else trainer.fit(
            x_train[idx], y_train[idx], nb_epochs=args.epochs * int(np.ceil(len(x_unl) / 128)) // 4 + 1,
            batch_size=32)  # fmt: skip
        elapsed = time.perf_counter() - start
        steps = args.epochs * int(np.ceil(len(x_unl) / 128)) if kwargs["alpha"] else (
            (args.epochs * int(np.ceil(len(x_unl) / 128)) // 4 + 1) * int(np.ceil(len(idx) / 32)))  # fmt: skip
        step_times[name] = elapsed / steps
        error = 1.0 - float(np.mean(clf.predict(x_test).argmax(1) == y_test))
        rows.append([name, 100 * error, trainer.eps_, steps, elapsed])
        print(f"{name}: error {100 * error:.2f}%", flush=True)
    print(
        f"\nMNIST, {args.labels} labels, {len(x_unl)} unlabelled, {len(x_test)} test images, LeNet-5, {args.framework}"
    )
    print(markdown_table(["training", "test error (%)", "eps", "steps", "seconds"], rows, floatfmt=".3g"))
    print(
        "VAT step cost relative to a supervised step (same run; the VAT step also carries the 128 unlabelled "
        f"images): {step_times['VAT'] / step_times['supervised only']:.2f}x"
    )

    # Speed: ours (autograd) vs ART's finite differences, same model, same inputs (ART's on a probability copy).
    x = x_test[: args.art_inputs]
    ours = VirtualAdversarialPerturbation(clf, eps=2.0, xi=1.0, max_iter=1, batch_size=len(x), verbose=False)
    art = VirtualAdversarialMethod(
        to_probability_classifier(clf), eps=2.0, max_iter=1, batch_size=len(x), verbose=False
    )
    start = time.perf_counter()
    ours.generate(x)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    art.generate(x)
    t_art = time.perf_counter() - start
    print(
        markdown_table(
            ["method", f"seconds for {len(x)} MNIST images"],
            [["art_ext VirtualAdversarialPerturbation", t_ours], ["ART VirtualAdversarialMethod", t_art]],
            floatfmt=".4g",
        )
    )
    print(f"speed ratio (ART / ours): {t_art / t_ours:.0f}x")


if __name__ == "__main__":
    main()
