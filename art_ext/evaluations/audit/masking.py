"""
Gradient-masking analysis: :class:`~art_ext.evaluations.GradientMaskingAnalysis` with the attacks that fit the input
(ART's Square only on square images; the transfer attack only with data outside the audited sample, on which an
undistilled surrogate is trained). Text classifiers are analysed in embedding space.
"""

from __future__ import annotations

import numpy as np

from art_ext.evaluations.audit.budget import shrink
from art_ext.evaluations.audit.context import SectionSkipped
from art_ext.evaluations.audit.models import build_student

KEY, TITLE, SHARE = "masking", "Gradient-masking analysis", 0.27
QUERY_SHARE = 0.0


def _masking_eps(ctx) -> list[float]:
    lo, hi = ctx.target_range
    return [float(f * (hi - lo)) for f in (0.05, 0.1, 0.2, 0.3)]


def battery(ctx) -> tuple[list[str], dict[str, str]]:
    """The attacks of the analysis that fit the input, and why each other one is left out."""
    from art_ext.evaluations.gradient_masking import ATTACKS

    why = {}
    if not ctx.kind.square_image:
        why["square"] = f"image-only (square images of 8 pixels or more a side); the inputs are {ctx.kind.describe()}"
    if ctx.kind.name == "tokens":
        why["transfer"] = "no surrogate over word embeddings is trained for a text classifier"
    elif ctx.spare_size < 50:
        why["transfer"] = "no data outside the audited sample (the audit never trains on it)"
    return [a for a in ATTACKS if a not in why], why


def _masking_seconds(ctx, p) -> float:
    c, k, m = ctx.cost, len(_masking_eps(ctx)), p["max_samples"]
    square = ctx.kind.square_image
    seconds = c.g(m) + 2 * ctx.nb_classes * c.g(m)  # gradient statistics (softmax and logit Jacobians)
    seconds += k * (2 + 2 * p["pgd_steps"]) * c.g(m)  # FGSM/PGD, cross-entropy and logit margin
    seconds += c.cw(m, p["cw_max_iter"] * p["cw_binary_search_steps"])
    seconds += k * ((c.square(m, p["square_max_iter"]) if square else 0.0) + p["noise_samples"] * c.f(m) + 8 * c.f(m))
    if p["surrogate_epochs"] and ctx.spare_size:
        n_train = min(ctx.spare_size, 5000)
        # a training step costs about one input gradient (two overestimated the masking section of
        # benchmarks/audit_mnist.py by a quarter)
        seconds += p["surrogate_epochs"] * 1.1 * c.g(n_train, calls=n_train / 64) + k * p["pgd_steps"] * c.g(m)
    return seconds


def plan(ctx, allotted):
    if ctx.framework is None:
        raise SectionSkipped(
            "needs the gradients of a PyTorch or TensorFlow classifier, and the model is audited as a black box "
            f"(answers only: {ctx.shared.get('black_box_of', type(ctx.classifier).__name__)}); audit the saved model "
            "(`art-ext audit MODEL`) for this section"
        )
    if not ctx.cost.has_gradients:
        raise SectionSkipped(
            "the classifier provides no gradients (ART loss_gradient); wrap the model so that gradients flow"
        )
    params = {
        "max_samples": min(len(ctx.x), 100),
        "pgd_steps": 10,
        "cw_max_iter": 10,
        "cw_binary_search_steps": 5,
        "square_max_iter": 100,
        "noise_samples": 5,
        "surrogate_epochs": 10,
    }
    params.update(ctx.options.get("masking", {}))
    params["max_samples"] = min(len(ctx.x), params["max_samples"])
    if "transfer" in battery(ctx)[1]:
        params["surrogate_epochs"] = 0
    steps = [
        ("surrogate_epochs", min(3, params["surrogate_epochs"]), "surrogate epochs"),
        ("square_max_iter", 30, "Square iterations"),
        ("cw_max_iter", 5, "C&W iterations"),
        ("cw_binary_search_steps", 3, "C&W binary-search steps"),
        ("max_samples", min(40, params["max_samples"]), "inputs"),
        ("pgd_steps", 5, "PGD steps"),
        ("max_samples", min(20, params["max_samples"]), "inputs"),
        ("noise_samples", min(2, params["noise_samples"]), "noise draws"),
        ("cw_max_iter", 3, "C&W iterations"),
        ("cw_binary_search_steps", 2, "C&W binary-search steps"),
        ("square_max_iter", 15, "Square iterations"),
        ("surrogate_epochs", min(2, params["surrogate_epochs"]), "surrogate epochs"),
    ]
    return shrink(params, lambda p: _masking_seconds(ctx, p), allotted, steps)


def run(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    from art_ext.evaluations.gradient_masking import ATTACKS, GradientMaskingAnalysis

    params = dict(params)
    epochs = params.pop("surrogate_epochs")
    attacks, left_out = battery(ctx)
    surrogate = None
    if epochs:
        surrogate = build_student(ctx, ctx.seed + 11)
        n_train = min(ctx.spare_size, 5000)
        surrogate.fit(ctx.x_spare[:n_train], ctx.y_spare[:n_train], nb_epochs=epochs, batch_size=64, verbose=False)
        note = (
            f"The transfer attack's surrogate (a fresh network, trained normally for {epochs} epochs) was trained on "
            f"{n_train} inputs that are not in the audited sample."
        )
    else:
        note = f"The transfer attack is left out: {left_out['transfer']}."
    analysis = GradientMaskingAnalysis(
        ctx.target,
        eps=_masking_eps(ctx),
        norm=np.inf,
        surrogate=surrogate,
        attacks=attacks,
        output=ctx.output,
        batch_size=ctx.batch_size,
        random_state=ctx.seed,
        verbose=ctx.verbose,
        surrogate_epochs=max(epochs, 1),
        **params,
    )
    with np.errstate(divide="ignore", invalid="ignore"):  # ART's Square divides 0 by 0 on converged rows
        report = analysis.analyse(ctx.xt, ctx.y)
    section.results.update(report.to_dict())
    section.results["transfer_surrogate_trained_on_audited_sample"] = False
    section.results["attacks_left_out"] = left_out
    verdict = "**Gradient masking suspected.**" if report.masking_suspected else "**No sign of gradient masking.**"
    section.text(
        f"{verdict} `GradientMaskingAnalysis` on {report.nb_samples} inputs ({report.nb_correct} classified "
        f"correctly and attacked), l-inf, on {ctx.kind.describe()}. {note}"
    )
    if left_out:
        section.text("Not run: " + "; ".join(f"{ATTACKS[k]}: {r}" for k, r in left_out.items()) + ".")
    section.table(
        ["warning sign", "triggered", "evidence"],
        [[s["title"], "yes" if s["triggered"] else "no", s["evidence"]] for s in report.signs],
    )
    section.table(
        ["attack"] + [f"success @ eps={e:g}" for e in report.eps],
        [[ATTACKS[k]] + list(v) for k, v in report.success.items()],
    )
    fig, ax = plt.subplots(figsize=(6, 3.8))
    report.plot_success(ax)
    ax.legend(fontsize=7)
    section.figure(fig, "masking_success.png", "Attack success against eps (share of correctly classified inputs)")
    if report.masking_suspected:
        section.finding(
            3,
            "Gradient masking suspected: gradient-based robustness numbers are not trustworthy ("
            + "; ".join(s["title"] for s in report.signs if s["triggered"])
            + ").",
        )
    else:
        section.finding(0, "No sign of gradient masking.")
