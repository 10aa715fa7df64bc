"""
Clean accuracy and calibration: accuracy, mean confidence, expected calibration error, NLL, Brier score, the least
accurate classes and a reliability diagram.
"""

from __future__ import annotations

import numpy as np

from art_ext.evaluations.audit.context import probabilities
from art_ext.utils.outputs import predict_in_batches

KEY, TITLE, SHARE = "clean", "Clean accuracy and calibration", 0.03
#: Audited through queries, the section takes the queries it needs (one per input) before the others share the rest.
QUERY_SHARE = None


def plan(ctx, allotted):
    return {"n": len(ctx.x)}, ctx.cost.f(len(ctx.x)) + ctx.cost.figure(), []


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> tuple[float, list]:
    """ECE over `bins` equal-width confidence bins, and the rows ``(lo, hi, count, confidence, accuracy)``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, rows = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if mask.any():
            conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
            ece += mask.mean() * abs(conf - acc)
            rows.append((float(lo), float(hi), int(mask.sum()), conf, acc))
    return float(ece), rows


def run(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    outputs = predict_in_batches(ctx.classifier, ctx.x, ctx.batch_size)
    p = probabilities(ctx, outputs)
    pred = p.argmax(1)
    correct = pred == ctx.y
    accuracy = float(correct.mean())
    confidence = p.max(1)
    ece, rows = expected_calibration_error(confidence, correct)
    nll = float(-np.mean(np.log(np.maximum(p[np.arange(len(p)), ctx.y], 1e-12))))
    onehot = np.eye(ctx.nb_classes)[ctx.y]
    brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    per_class = {int(c): float(correct[ctx.y == c].mean()) for c in np.unique(ctx.y)}
    ctx.shared["clean_correct"] = correct
    ctx.shared["clean_predictions"] = pred  # the model's labels of ctx.x, so later sections need not ask again
    ctx.shared["clean_accuracy"] = accuracy
    section.results.update(
        {
            "nb_samples": len(ctx.x),
            "accuracy": accuracy,
            "mean_confidence": float(confidence.mean()),
            "ece": ece,
            "nll": nll,
            "brier": brier,
            "per_class_accuracy": per_class,
            "reliability": [dict(zip(("lo", "hi", "count", "confidence", "accuracy"), r)) for r in rows],
        }
    )
    section.text(
        f"On {len(ctx.x)} inputs. Confidence is the largest {'softmax of the logits' if ctx.output == 'logits' else 'probability'}; "
        "the expected calibration error (ECE, 15 bins) is the average gap between confidence and accuracy."
    )
    section.table(
        ["accuracy", "mean confidence", "ECE", "NLL", "Brier"], [[accuracy, float(confidence.mean()), ece, nll, brier]]
    )
    worst = sorted(per_class.items(), key=lambda kv: kv[1])[:3]
    section.text("Least accurate classes: " + ", ".join(f"{c}: {a:.1%}" for c, a in worst) + ".")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    centers = [(r[0] + r[1]) / 2 for r in rows]
    axes[0].bar(centers, [r[4] for r in rows], width=1 / 15, edgecolor="k", alpha=0.7, label="accuracy")
    axes[0].plot([0, 1], [0, 1], "k--", label="perfect calibration")
    axes[0].set_xlabel("confidence")
    axes[0].set_ylabel("accuracy")
    axes[0].legend()
    axes[1].hist(confidence, bins=20, range=(0, 1))
    axes[1].set_xlabel("confidence")
    axes[1].set_ylabel("inputs")
    section.figure(fig, "clean_calibration.png", "Reliability diagram and confidence histogram")
    section.finding(0, f"Clean accuracy {accuracy:.1%} on {len(ctx.x)} inputs.")
    if ece > 0.1:
        section.finding(1, f"Poorly calibrated: ECE {ece:.3f} (mean confidence {confidence.mean():.1%}).")
