"""
VAT on MNIST with few labels: test error of supervised only, VAT and VAT+EntMin (TPAMI 2018 anchor: 1.36% for VAT
with 100 labels, a larger network and 48k updates), the cost of a VAT step relative to a plain step in the same run,
and the speed of VirtualAdversarialPerturbation against ART's VirtualAdversarialMethod on the same model and inputs.
``--labels`` takes several values (a curve of error against labels).

    python benchmarks/vat_mnist.py --framework pytorch --data <data root> --labels 100
    python benchmarks/vat_mnist.py --quick

Writes benchmarks/results/vat_mnist.json (resumable: finished (method, labels) rows are kept).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run, parser  # noqa: E402

PAPER = {
    "citation": "Miyato, Maeda, Koyama and Ishii, Virtual Adversarial Training: A Regularization Method for "
    "Supervised and Semi-Supervised Learning, TPAMI 2018 (MNIST, 100 labels, Table 4)",
    "test_error_100_labels": {"VAT": 0.0136, "VAT+EntMin": None},
    "scale": "a larger network than LeNet-5, 48k updates",
}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--labels", default="100", help="comma-separated numbers of labelled images")
    p.add_argument("--epochs", type=int, default=30, help="passes over the unlabelled images")
    p.add_argument("--unlabeled", type=int, default=None, help="use only this many unlabelled images")
    p.add_argument("--test", type=int, default=None, help="evaluate on this many test images")
    p.add_argument("--methods", default="supervised only,VAT,VAT+EntMin")
    p.add_argument(
        "--eps",
        type=float,
        default=None,
        help="l2 norm of the virtual adversarial perturbation (default: the trainer's, an eighth of the "
        "median image norm, 1.2 on MNIST)",
    )
    p.add_argument(
        "--lr-schedule",
        default="linear",
        choices=("constant", "linear", "exponential"),
        help="learning rate from 1e-3: constant, decayed linearly over the second half of the epochs, or "
        "exponentially by 0.9 every 500 steps from the start (the authors' reference code)",
    )
    p.add_argument(
        "--curve", action="store_true", help="record the test error after every epoch of VAT (a curve per row)"
    )
    p.add_argument(
        "--validation",
        type=int,
        default=0,
        help="labelled training images held out (a seeded draw, never trained on) to select the epoch of VAT on: "
        "the weights of the epoch with the lowest error on them are kept (restore_best). 0: the last epoch's weights",
    )
    p.add_argument("--art-inputs", type=int, default=4, help="inputs for the ART speed comparison (0: skip)")
    args = p.parse_args(argv)
    if not 0 <= args.validation <= 50_000:
        p.error(f"--validation must be between 0 and 50000 held-out training images, got {args.validation}")
    if args.quick:
        args.epochs, args.unlabeled, args.test = 3, args.unlabeled or 5000, args.test or 2000

    from art_ext.cli.sections.vat import labelled_subset
    from art_ext.data import load_mnist
    from art_ext.defences.trainer import VirtualAdversarialTrainer
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    run = Run(
        "vat_mnist" + ("" if args.framework == "pytorch" else "_tensorflow"),
        args,
        PAPER,
        notes="LeNet-5 (Adam from 1e-3, eps from --eps or the trainer's default) instead of the paper's network; supervised only takes the same number of labelled-batch steps. What separates this run from the "
        "anchor: the number of updates (the 'steps' column, against the paper's 48k) and the network.",
        selectors=("labels", "methods", "art_inputs", "curve"),
    )
    cf = args.framework == "pytorch"
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(channels_first=cf)
    held_out = np.random.default_rng(10_000 + args.seed).permutation(len(x_train))[: args.validation]
    x_val, y_val = x_train[held_out], y_train[held_out]
    keep = np.setdiff1d(np.arange(len(x_train)), held_out)
    x_train, y_train = x_train[keep], y_train[keep]
    x_unl = x_train[: args.unlabeled] if args.unlabeled else x_train
    x_test, y_test = x_test[: args.test], y_test[: args.test]
    shape = ARCHITECTURES["lenet5"][0 if cf else 1]
    settings = {
        "supervised only": {"alpha": 0.0},
        "VAT": {"alpha": 1.0},
        "VAT+EntMin": {"alpha": 1.0, "entropy_minimization": True},
    }
    per_epoch = int(np.ceil(len(x_unl) / 128))
    steps = args.epochs * per_epoch
    last = {}

    def train(name: str, labels: int) -> dict:
        kwargs = settings[name]
        idx = labelled_subset(y_train, labels, args.seed)
        clf = make_classifier(build_model("lenet5", args.framework, seed=args.seed), input_shape=shape)
        schedule = {
            "constant": None,
            "linear": "linear",
            "exponential": lambda epoch: 0.9 ** (epoch * per_epoch / 500),
        }[args.lr_schedule]
        trainer = VirtualAdversarialTrainer(clf, eps=args.eps, random_state=args.seed, lr_schedule=schedule, **kwargs)
        start = time.perf_counter()
        if kwargs["alpha"]:
            if args.validation:  # selected on the held-out training images; the test set is only measured
                extra = {"validation_data": (x_val, y_val), "restore_best": True}
            else:  # a test-error curve for the figure (nothing is selected on it)
                extra = {"validation_data": (x_test, y_test)} if args.curve else {}
            trainer.fit(x_train[idx], y_train[idx], x_unlabeled=x_unl, nb_epochs=args.epochs, batch_size=128,
                        labeled_batch_size=32, **extra)  # fmt: skip
            n_steps = steps
        else:  # the same number of steps, on the labelled data only
            epochs = max(1, steps // int(np.ceil(len(idx) / 32)))
            trainer.fit(x_train[idx], y_train[idx], nb_epochs=epochs, batch_size=32)
            n_steps = epochs * int(np.ceil(len(idx) / 32))
        elapsed = time.perf_counter() - start
        last["clf"] = clf
        error = 1.0 - float(np.mean(clf.predict(x_test).argmax(1) == y_test))
        curve = [{"epoch": e + 1, "error": 1.0 - a} for e, a in enumerate(trainer.validation_history)]
        if args.validation and kwargs["alpha"]:
            selection = {
                "selected_epoch": trainer.best_epoch,
                "selected_on": f"{len(x_val)} training images held out (validation split, seed {args.seed})",
                "validation_error": 1.0 - max(trainer.validation_history),
                "validation_error_curve": curve,
            }
        else:
            selection = {"error_curve": curve} if curve else {}
        return {
            "method": name,
            "labels": labels,
            "error": error,
            "paper_error": PAPER["test_error_100_labels"].get(name) if labels == 100 else None,
            "eps": trainer.eps_,
            "steps": n_steps,
            "seconds_per_step": elapsed / n_steps,
            **selection,
        }

    for labels in [int(v) for v in args.labels.split(",")]:
        for name in args.methods.split(","):
            run.row(f"{name}/labels={labels}", lambda n=name, k=labels: train(n, k))

    extra = {}
    by = {r["method"]: r["seconds_per_step"] for r in run.rows}
    if "VAT" in by and "supervised only" in by:
        extra["vat_step_over_supervised_step"] = by["VAT"] / by["supervised only"]
    if args.art_inputs and "clf" in last:
        from art.attacks.evasion import VirtualAdversarialMethod

        from art_ext.attacks.evasion import VirtualAdversarialPerturbation
        from art_ext.models import to_probability_classifier

        clf, x = last["clf"], x_test[: args.art_inputs]
        ours = VirtualAdversarialPerturbation(clf, eps=2.0, xi=1.0, max_iter=1, batch_size=len(x), verbose=False)
        art = VirtualAdversarialMethod(
            to_probability_classifier(clf), eps=2.0, max_iter=1, batch_size=len(x), verbose=False
        )
        start = time.perf_counter()
        ours.generate(x)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        art.generate(x)
        extra["speedup_vs_art_virtual_adversarial_method"] = (time.perf_counter() - start) / t_ours
    run.finish(
        setting=f"MNIST, {len(x_unl)} unlabelled, {len(x_test)} test images, LeNet-5, {args.epochs} epochs over the "
        f"unlabelled images ({steps} VAT steps), learning rate {args.lr_schedule}, eps "
        f"{'default' if args.eps is None else args.eps}, {args.framework}"
        + (
            f"; the epoch of each VAT model selected on {args.validation} training images held out of both the "
            "labelled and the unlabelled sets (never on the test set)"
            if args.validation
            else ""
        ),
        **extra,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
