"""Demo section: a digits CNN under ART's FGSM and PGD (l-inf) at several eps."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

TITLE = "Baseline: a digits CNN under ART's FGSM and PGD"


def run(ctx) -> None:
    import matplotlib.pyplot as plt
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    (_, _), (x_test, y_test), _, _ = ctx.digits
    clf = ctx.train_classifier("digits_cnn", nb_epochs=15 if ctx.quick else 30)
    n = 100 if ctx.quick else 359
    x, y = x_test[:n], y_test[:n]
    clean = float(np.mean(clf.predict(x).argmax(1) == y))
    eps_list = [0.05, 0.1, 0.2, 0.3]
    rows, curves, examples = [], {"FGSM": [], "PGD": []}, {}
    for eps in tqdm(eps_list, desc="FGSM/PGD", disable=not ctx.verbose):
        attacks = {
            "FGSM": FastGradientMethod(clf, norm=np.inf, eps=eps),
            "PGD": ProjectedGradientDescent(
                clf, norm=np.inf, eps=eps, eps_step=eps / 4, max_iter=10 if ctx.quick else 20, verbose=False
            ),
        }
        row = [eps]
        for name, attack in attacks.items():
            x_adv = attack.generate(x)
            acc = float(np.mean(clf.predict(x_adv).argmax(1) == y))
            curves[name].append(acc)
            row.append(acc)
            if name == "PGD" and eps == 0.2:
                examples = {"x": x[:8], "x_adv": x_adv[:8], "pred": clf.predict(x_adv[:8]).argmax(1)}
        rows.append(row)
    ctx.report.text(f"Clean test accuracy: **{clean:.3f}** on {n} test images.")
    ctx.report.table(["eps (l-inf)", "accuracy under FGSM", "accuracy under PGD"], rows, floatfmt=".3f")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, accs in curves.items():
        ax.plot([0.0] + eps_list, [clean] + accs, marker="o", label=name)
    ax.set_xlabel("eps (l-inf)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.report.figure(fig, "baseline_accuracy_vs_eps.png", "Accuracy against eps for FGSM and PGD")

    if examples:
        fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
        for i in range(8):
            for row, key in enumerate(("x", "x_adv")):
                img = np.asarray(examples[key][i]).reshape(8, 8)
                axes[row, i].imshow(img, cmap="gray", vmin=0, vmax=1)
                axes[row, i].axis("off")
            axes[0, i].set_title(f"y={y[i]}", fontsize=8)
            axes[1, i].set_title(f"pred={examples['pred'][i]}", fontsize=8)
        ctx.report.figure(fig, "baseline_adversarial_examples.png", "Clean digits (top) and PGD at eps 0.2 (bottom)")
