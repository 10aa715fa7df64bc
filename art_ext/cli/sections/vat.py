"""Demo section: semi-supervised VAT on digits, accuracy against the number of labels, VAT vs supervised only."""

from __future__ import annotations

from tqdm.auto import tqdm

from art_ext.cli.experiments.vat import compare_on_digits, labelled_subset  # noqa: F401 (their former home)

TITLE = "Virtual adversarial training: accuracy against the number of labels"


def run(ctx) -> None:
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
        f"labelled images are a class-balanced subset. VAT with its default scales eps = {res['eps']:.2f} "
        f"(an eighth of the median image norm) and xi = {res['xi']:.2f} (a quarter), one power iteration, alpha = 1."
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
