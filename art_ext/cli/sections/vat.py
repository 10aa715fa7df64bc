"""Demo section: semi-supervised VAT on digits, accuracy against the number of labels, VAT vs supervised only."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

TITLE = "Virtual adversarial training: accuracy against the number of labels"


def labelled_subset(y: np.ndarray, n_labels: int, seed: int = 0, nb_classes: int = 10) -> np.ndarray:
    """Indices of a class-balanced labelled subset of `n_labels` examples."""
    rng = np.random.default_rng(seed)
    per_class = max(1, n_labels // nb_classes)
    return np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(nb_classes)])


def compare_on_digits(
    framework: str,
    digits: tuple,
    n_labels: int,
    nb_epochs: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    entropy_minimization: bool = False,
    eps: float | None = None,
    xi: float | None = None,
) -> dict:
    """
    Train the digits MLP on `n_labels` labels alone and with VAT on the rest as unlabelled data.

    :return: ``{"supervised": accuracy, "vat": accuracy, "eps": ..., "xi": ...}`` on the test split.
    """
    from art_ext.defences.trainer import VirtualAdversarialTrainer
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    (x_train, y_train), (x_test, y_test), _, _ = digits
    idx = labelled_subset(y_train, n_labels, seed)
    shape = ARCHITECTURES["digits_mlp"][0 if framework == "pytorch" else 1]
    result = {}
    for name, alpha in (("supervised", 0.0), ("vat", 1.0)):
        clf = make_classifier(build_model("digits_mlp", framework, seed=seed), input_shape=shape, learning_rate=0.01)
        trainer = VirtualAdversarialTrainer(
            clf,
            eps=eps,
            xi=xi,
            alpha=alpha,
            entropy_minimization=entropy_minimization and alpha > 0,
            random_state=seed,
            verbose=False,
        )
        trainer.fit(
            x_train[idx],
            y_train[idx],
            x_unlabeled=x_train,
            nb_epochs=nb_epochs,
            batch_size=batch_size,
            labeled_batch_size=32,
        )
        result[name] = float(np.mean(clf.predict(x_test).argmax(1) == y_test))
        result["eps"], result["xi"] = trainer.eps_, trainer.xi_
    return result


def run(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label_counts = [50] if ctx.quick else [20, 50, 100]
    epochs = 10 if ctx.quick else 30
    rows, sup, vat = [], [], []
    for n in tqdm(label_counts, desc="VAT", disable=not ctx.verbose):
        res = compare_on_digits(ctx.framework, ctx.digits, n, nb_epochs=epochs, seed=ctx.seed)
        rows.append([n, res["supervised"], res["vat"], res["vat"] - res["supervised"]])
        sup.append(res["supervised"])
        vat.append(res["vat"])
    ctx.report.text(
        f"Digits MLP, Adam (lr 0.01), {epochs} passes over the 1,438 training images used as unlabelled data; the "
        f"labelled images are a class-balanced subset. VAT with its default scales eps = xi = {res['eps']:.2f} "
        "(a quarter of the median image norm), one power iteration, alpha = 1."
    )
    ctx.report.table(["labels", "supervised only", "VAT", "gain"], rows, floatfmt=".3f")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(label_counts, sup, marker="o", label="supervised only")
    ax.plot(label_counts, vat, marker="o", label="VAT (labelled + unlabelled)")
    ax.set_xlabel("number of labelled images")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.report.figure(fig, "vat_accuracy_vs_labels.png", "Test accuracy against the number of labels")
