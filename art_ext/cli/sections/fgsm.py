"""
Demo section: the Goodfellow et al. (2015) experiment in small. A normal and an FGSM-adversarially-trained digits MLP,
attacked with FGSM, R+FGSM and the iterative least-likely class method; FGSM examples crafted on each model are
evaluated on each (transferability).
"""

from __future__ import annotations

import numpy as np

TITLE = "FGSM family: adversarial training, R+FGSM, least-likely class, transferability"

EPS = 0.3


def run(ctx) -> None:
    import matplotlib.pyplot as plt
    from art.attacks.evasion import FastGradientMethod
    from art.defences.trainer import AdversarialTrainer

    from art_ext.attacks.evasion import LeastLikelyClassMethod, RandomFGSM
    from art_ext.evaluations import transferability_matrix
    from art_ext.models import build_model, input_shape_of, make_classifier

    (x_train, y_train), (x_test, y_test), _, _ = ctx.digits
    epochs = 10 if ctx.quick else 30
    normal = ctx.train_classifier("digits_mlp", nb_epochs=2 * epochs)
    shape = input_shape_of("digits_mlp", ctx.framework)
    robust = make_classifier(build_model("digits_mlp", ctx.framework, seed=ctx.seed + 1), input_shape=shape)
    # Goodfellow et al.'s objective: half clean, half FGSM examples crafted on the current weights.
    AdversarialTrainer(robust, FastGradientMethod(robust, eps=EPS), ratio=0.5).fit(
        x_train, y_train, nb_epochs=epochs, batch_size=128
    )
    models = {"normal": normal, "FGSM-trained": robust}
    n = 150 if ctx.quick else len(x_test)
    x, y = x_test[:n], y_test[:n]

    rows = []
    for name, clf in models.items():
        clean_error = float(np.mean(clf.predict(x).argmax(1) != y))
        fgsm_error = float(np.mean(clf.predict(FastGradientMethod(clf, eps=EPS).generate(x)).argmax(1) != y))
        rfgsm = RandomFGSM(clf, eps=EPS, alpha=EPS / 2, random_state=ctx.seed, verbose=False)
        rfgsm_error = float(np.mean(clf.predict(rfgsm.generate(x)).argmax(1) != y))
        ll = LeastLikelyClassMethod(clf, eps=EPS, eps_step=0.02, max_iter=20, batch_size=128, verbose=False)
        ll_reached = float(np.mean(clf.predict(ll.generate(x)).argmax(1) == ll.least_likely_class(x)))
        rows.append([name, clean_error, fgsm_error, rfgsm_error, ll_reached])
    ctx.report.text(
        f"Two digits MLPs: one trained normally ({2 * epochs} epochs), one with ART's `AdversarialTrainer` and FGSM at "
        f"eps {EPS} ({epochs} epochs, half of each batch adversarial). "
        f"White-box attacks at eps {EPS} (l-inf) on {n} test images; R+FGSM with alpha = eps / 2; least-likely "
        "class with 20 steps of 0.02. Every attack, in this table and in the transfer matrices below, uses the "
        "attacked model's predictions as labels (no label leaking), so the white-box error here is the diagonal "
        "of the matrices."
    )
    ctx.report.table(
        ["model", "clean error", "FGSM error", "R+FGSM error", "least-likely class reached"], rows, floatfmt=".1%"
    )

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (label, make_attack) in zip(
        axes,
        [
            ("FGSM", lambda clf: FastGradientMethod(clf, eps=EPS)),
            ("R+FGSM", lambda clf: RandomFGSM(clf, eps=EPS, alpha=EPS / 2, random_state=ctx.seed, verbose=False)),
        ],
    ):
        result = transferability_matrix(models, make_attack, x, y, use_labels=False, verbose=False)
        ctx.report.text(
            f"**{label}** examples crafted on each model (rows, the model's predictions as labels), error rate "
            "against the true labels on each model (columns):"
        )
        ctx.report.text(result.to_markdown())
        result.plot(ax=ax, title=f"{label}, eps {EPS}: error rate")
    fig.tight_layout()
    ctx.report.figure(fig, "fgsm_transferability.png", "Transferability of FGSM and R+FGSM examples between models")
