"""
Lipschitz certification: :class:`~art_ext.estimators.certification.LipschitzCertifier`'s sound l2 bound, per-layer
bounds and certified accuracy against the radius, beside the empirical curve; or the certifier's one-line reason.
"""

from __future__ import annotations

import numpy as np

from art_ext.evaluations.audit.context import SectionSkipped

KEY, TITLE, SHARE = "certification", "Lipschitz certification", 0.05
QUERY_SHARE = 0.0


def plan(ctx, allotted):
    if ctx.queries is not None:
        raise SectionSkipped(
            "a certificate bounds the model's layers, and the model is audited as a black box (answers only: "
            f"{ctx.shared.get('black_box_of', 'a black box')}); audit the saved model (`art-ext audit MODEL`) to certify it"
        )
    if ctx.kind.name == "tokens":
        raise SectionSkipped(
            "token ids are discrete and the certifier bounds the model from its input; certify the classifier over "
            "embeddings (its `classify` part) with LipschitzCertifier to get radii in embedding space"
        )
    certifier, reason, check = _certifier(ctx)
    params = {"n": len(ctx.x), "certifier": certifier, "reason": reason}
    if reason is not None:
        return params, 0.0, []
    return params, ctx.cost.f(len(ctx.x)) + check + ctx.cost.figure(), []


def _certifier(ctx):
    """
    ``(certifier, reason, seconds)``: the certifier with its bound computed, or the one-line reason there is none,
    and the seconds of its check of the graph against the model in :meth:`certify` (timed here on one chunk, after a
    first call that compiles the graph).
    """
    import math
    import time

    from art_ext.estimators.certification import LipschitzCertifier
    from art_ext.estimators.certification.lipschitz import CHECK_CHUNK

    if ctx.output != "logits":
        return (
            None,
            "the model outputs probabilities; certificates are computed on logits (remove the final softmax)",
            0,
        )
    try:
        certifier = LipschitzCertifier(ctx.classifier)
        certifier.lipschitz_bound()
        probe = ctx.x[:CHECK_CHUNK]
        certifier.certify(probe, batch_size=ctx.batch_size)
        start = time.perf_counter()
        certifier.certify(probe, batch_size=ctx.batch_size)
        per_chunk = max(0.0, time.perf_counter() - start - ctx.cost.f(len(probe)))
    except (TypeError, ValueError, RuntimeError, NotImplementedError, AttributeError) as error:
        return None, _not_certifiable_reason(ctx, error), 0
    checked = min(len(ctx.x), max(64, math.ceil(certifier.check_fraction * len(ctx.x))))
    return certifier, None, per_chunk * math.ceil(checked / CHECK_CHUNK)


def _not_certifiable_reason(ctx, error: BaseException) -> str:
    """The certifier's own one-line reason (it names the layer or construct it cannot bound)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    lmt = (
        "Train with Lipschitz-margin training (`art_ext.defences.trainer.LipschitzMarginTrainer`, `art-ext lmt`) to get "
        "a certifiable model with non-trivial radii."
    )
    certifier, reason = params["certifier"], params["reason"]
    if reason is not None:
        section.results.update({"certifiable": False, "reason": reason})
        section.text(f"Not certifiable: {reason}. {lmt}")
        section.finding(0, f"Not certifiable: {reason}; see LMT.")
        return
    bound = certifier.lipschitz_bound()
    pred, radii = certifier.certify(ctx.x, batch_size=ctx.batch_size)
    correct = pred == ctx.y
    grid = [0.0] + list(ctx.eps.get("2", ()))
    if len(grid) == 1:
        hi = float(np.quantile(radii[correct], 0.9)) if correct.any() else 1.0
        grid = [0.0] + [hi * f for f in (0.25, 0.5, 0.75, 1.0)]
    cert = [float(np.mean(correct & (radii >= r))) for r in grid]
    section.results.update(
        {
            "certifiable": True,
            "lipschitz_bound": bound,
            "radii": grid,
            "certified_accuracy": cert,
            "median_radius_correct": float(np.median(radii[correct])) if correct.any() else 0.0,
            "layer_bounds": [[name, float(b)] for name, b in certifier.layer_bounds()],
        }
    )
    section.text(
        f"`LipschitzCertifier`: a guaranteed upper bound L = {bound:.4g} of the l2 Lipschitz constant of the logits "
        "(exact per-layer spectral norms), so no l2 perturbation below the certified radius changes a prediction. "
        "Certified accuracy at r: correct and certified up to at least r. The empirical curve (PGD, worst case of "
        "the robustness section) is an upper bound of the true robust accuracy, the certified one a lower bound."
    )
    empirical = ctx.shared.get("robustness", {}).get("2")
    rows = []
    for i, (r, c) in enumerate(zip(grid, cert)):
        emp = empirical["accuracy"]["worst_case"][i] if empirical and len(empirical["eps"]) == len(grid) else None
        rows.append([r, c, "-" if emp is None else emp])
        if emp is not None and c > emp + 1.0 / max(1, len(ctx.x)) + 0.05:
            # Different samples: only a gap far beyond sampling noise is reported as a contradiction.
            section.finding(3, f"Certificate contradicted at r={r:g}: certified {c:.1%} > empirical {emp:.1%}.")
    section.table(["l2 radius", "certified accuracy", "empirical (attacks)"], rows)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(grid, cert, "o-", label="certified (sound)")
    if empirical and len(empirical["eps"]) == len(grid):
        ax.plot(grid, empirical["accuracy"]["worst_case"], "s--", label="empirical (attacks)")
    ax.set_xlabel("l2 radius")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    section.figure(fig, "certified_accuracy.png", "Certified accuracy against l2 radius")
    mid = len(grid) // 2
    if cert[1] < 0.05:
        section.finding(
            1,
            f"Certified accuracy is {cert[1]:.1%} at r={grid[1]:g} (L = {bound:.3g}): certificates are trivial; see LMT.",
        )
    else:
        section.finding(0, f"Certified accuracy {cert[1]:.1%} at r={grid[1]:g} and {cert[mid]:.1%} at r={grid[mid]:g}.")
