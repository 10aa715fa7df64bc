"""
Sections of the audit that only query and differentiate the audited classifier: clean accuracy and calibration,
robustness curves (ART's FGSM, PGD and SquareAttack or AutoAttack) and Lipschitz certification.

Each section has ``plan_<key>(ctx, allotted) -> (params, estimated seconds, shrink notes)`` and
``run_<key>(ctx, params, section)``; :mod:`art_ext.evaluations.audit_core` calls them in order.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from art_ext.evaluations.audit_budget import shrink
from art_ext.utils.outputs import predict_in_batches

#: Attacks of the robustness section (``"autoattack"`` may replace ``"square"``).
ROBUSTNESS_ATTACKS = ("fgsm", "pgd", "square")
_LABELS = {
    "fgsm": "FGSM",
    "pgd": "PGD",
    "square": "Square (black-box)",
    "autoattack": "AutoAttack protocol (APGD-CE, then Square)",
}


def _norm_label(norm: str) -> str:
    return "l-inf" if norm == "inf" else "l2"


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities(ctx, outputs: np.ndarray) -> np.ndarray:
    """Probabilities from the classifier's outputs (softmax of logits; probabilities unchanged)."""
    return softmax(outputs) if ctx.output == "logits" else np.asarray(outputs, dtype=np.float64)


# ------------------------------------------------------------------------------------------------------- clean
def plan_clean(ctx, allotted):
    return {"n": len(ctx.x)}, ctx.cost.f(len(ctx.x)) + 1.0, []


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


def run_clean(ctx, params, section) -> None:
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


# ------------------------------------------------------------------------------------------------------- robustness
def _robustness_seconds(ctx, params) -> float:
    c, n, seconds = ctx.cost, params["n"], 0.0
    for norm in ctx.norms:
        per_eps = {
            "fgsm": c.g(n) + c.f(n),
            "pgd": 1.3 * params["steps"] * c.g(n) + 2 * c.f(n),
            "square": c.square(n, params["square_iter"], norm) + c.f(n),
            "autoattack": 1.5 * params["steps"] * c.g(n) + c.square(n, params["square_iter"], norm),
        }
        seconds += len(ctx.eps[norm]) * sum(per_eps[a] for a in ctx.shared["robustness_attacks"])
    return seconds


def plan_robustness(ctx, allotted):
    from art.estimators.estimator import NeuralNetworkMixin

    # ART's attacks need a NeuralNetworkMixin estimator (e.g. BlackBoxClassifierNeuralNetwork for black boxes).
    attacks = [a for a in ctx.robustness_attacks if ctx.cost.has_gradients or a == "square"]
    if not attacks or not isinstance(ctx.classifier, NeuralNetworkMixin):
        return None, 0.0, []
    ctx.shared["robustness_attacks"] = attacks
    params = {"n": min(len(ctx.x), 500), "steps": 20, "square_iter": 200}
    params.update(ctx.options.get("robustness", {}))
    params["n"] = min(len(ctx.x), params["n"])
    steps = [("n", min(50, params["n"]), "inputs"), ("steps", 5, "PGD steps"), ("square_iter", 25, "Square iterations")]
    steps.append(("n", min(20, params["n"]), "inputs"))
    return shrink(params, lambda p: _robustness_seconds(ctx, p), allotted, steps)


def _fit_iterations(ctx, key, norm, params, calls_left, section) -> dict:
    """Square's iterations for the next call, lowered when the calls left would run past the section's deadline."""
    deadline = ctx.shared.get("section_deadline")
    if key not in ("square", "autoattack") or deadline is None:
        return params
    per_iteration = ctx.shared.get(f"square_per_iteration_{norm}")
    if per_iteration is None:
        per_iteration = ctx.cost.square(params["n"], 1, norm)
    fits = int(max(0.0, deadline - time.perf_counter()) / max(calls_left, 1) / max(per_iteration, 1e-6))
    iterations = max(10, min(params["square_iter"], fits))
    if iterations < params["square_iter"]:
        lowest = min(iterations, ctx.shared.get("square_lowest", iterations))
        ctx.shared["square_lowest"] = lowest
        note = f"Square iterations lowered to fit the section's share of the time budget (down to {lowest})"
        section.shrunk[:] = [s for s in section.shrunk if not s.startswith("Square iterations lowered")] + [note]
    return dict(params, square_iter=iterations)


def _attack(key, clf, norm, eps, params, batch_size, seed):
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent, SquareAttack

    norm_value = np.inf if norm == "inf" else 2
    steps = params["steps"]
    if key == "fgsm":
        return FastGradientMethod(clf, norm=norm_value, eps=eps, batch_size=batch_size)
    if key == "pgd":
        return ProjectedGradientDescent(
            clf,
            norm=norm_value,
            eps=eps,
            eps_step=2.5 * eps / steps,
            max_iter=steps,
            batch_size=batch_size,
            verbose=False,
        )
    if key == "square":
        return SquareAttack(
            clf,
            norm=norm_value,
            eps=eps,
            max_iter=params["square_iter"],
            nb_restarts=1,
            batch_size=batch_size,
            verbose=False,
        )
    from art.attacks.evasion import AutoProjectedGradientDescent

    attacks = [
        AutoProjectedGradientDescent(
            clf, norm=norm_value, eps=eps, eps_step=2 * eps / 10, max_iter=steps, batch_size=batch_size, verbose=False
        ),
        SquareAttack(
            clf, norm=norm_value, eps=eps, max_iter=params["square_iter"], batch_size=batch_size, verbose=False
        ),
    ]
    return _Sequence(clf, attacks, batch_size)


class _Sequence:
    """
    AutoAttack's protocol (ART's ``AutoAttack`` needs the ``multiprocess`` package): run the attacks one after the
    other, each on the inputs the previous ones did not fool, and keep the first adversarial example found.
    """

    def __init__(self, classifier, attacks, batch_size) -> None:
        self.classifier, self.attacks, self.batch_size = classifier, attacks, batch_size

    def generate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        labels = y.argmax(1)
        x_adv = x.copy()
        for attack in self.attacks:
            left = predict_in_batches(self.classifier, x_adv, self.batch_size).argmax(1) == labels
            if not left.any():
                break
            x_adv[left] = attack.generate(x[left], y[left])
        return x_adv


def run_robustness(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(ctx.seed)
    n = params["n"]
    idx = np.sort(rng.choice(len(ctx.x), n, replace=False)) if n < len(ctx.x) else np.arange(len(ctx.x))
    x, y = ctx.x[idx], ctx.y[idx]
    clean = predict_in_batches(ctx.classifier, x, ctx.batch_size).argmax(1) == y
    onehot = np.eye(ctx.nb_classes, dtype=np.float32)[y]
    attacks = list(ctx.shared["robustness_attacks"])
    total = sum(len(ctx.eps[norm]) for norm in ctx.norms) * len(attacks)
    curves: dict = {norm: {"eps": [0.0] + list(ctx.eps[norm]), "accuracy": {}} for norm in ctx.norms}
    robust_all = {norm: [clean.copy() for _ in curves[norm]["eps"]] for norm in ctx.norms}
    bar = tqdm(total=total, desc="robustness", disable=not ctx.verbose)
    done = []
    for key in attacks:  # cheapest first: past the section's deadline, the remaining attacks are left out
        if done and ctx.past_deadline():
            section.shrunk.append(f"{_LABELS[key]} left out: the section ran past its share of the time budget")
            bar.update(sum(len(ctx.eps[norm]) for norm in ctx.norms))
            continue
        calls_left = sum(len(ctx.eps[norm]) for norm in ctx.norms)
        for norm in ctx.norms:
            accs = [float(clean.mean())]
            for i, eps in enumerate(ctx.eps[norm]):
                np.random.seed(int(rng.integers(2**31)))  # ART's SquareAttack draws from numpy's global generator
                call_params = _fit_iterations(ctx, key, norm, params, calls_left, section)
                attack = _attack(key, ctx.classifier, norm, eps, call_params, ctx.batch_size, ctx.seed)
                start = time.perf_counter()
                with np.errstate(divide="ignore", invalid="ignore"):  # ART's Square divides 0 by 0 on converged rows
                    x_adv = attack.generate(x, onehot)
                if key in ("square", "autoattack"):
                    ctx.shared[f"square_per_iteration_{norm}"] = (time.perf_counter() - start) / call_params[
                        "square_iter"
                    ]
                calls_left -= 1
                ok = predict_in_batches(ctx.classifier, x_adv, ctx.batch_size).argmax(1) == y
                accs.append(float(np.mean(ok & clean)))
                robust_all[norm][i + 1] &= ok
                bar.update(1)
            curves[norm]["accuracy"][key] = accs
        done.append(key)
    for norm in ctx.norms:
        curves[norm]["accuracy"]["worst_case"] = [float(r.mean()) for r in robust_all[norm]]
    attacks = done
    bar.close()
    ctx.shared["robustness"] = curves
    section.results.update({"nb_samples": n, "pgd_steps": params["steps"], "square_iter": params["square_iter"]})
    section.results["curves"] = curves
    section.text(
        f"Accuracy under attack on {n} inputs (an input counts as robust when it is classified correctly before and "
        f"after the attack). PGD: {params['steps']} steps of 2.5 eps / steps; Square: {params['square_iter']} "
        "iterations, gradient-free (the black-box check: if it beats PGD, gradients are not to be trusted). "
        "Worst case: robust against every attack."
    )
    fig, axes = plt.subplots(1, len(ctx.norms), figsize=(5 * len(ctx.norms), 3.5), squeeze=False)
    for ax, norm in zip(axes[0], ctx.norms):
        c = curves[norm]
        headers = [f"eps ({_norm_label(norm)})"] + [_LABELS[a] for a in attacks] + ["worst case"]
        rows = [
            [e] + [c["accuracy"][a][i] for a in attacks] + [c["accuracy"]["worst_case"][i]]
            for i, e in enumerate(c["eps"])
        ]
        section.table(headers, rows)
        for a in attacks + ["worst_case"]:
            ax.plot(
                c["eps"], c["accuracy"][a], "o-" if a != "worst_case" else "k--", label=_LABELS.get(a, "worst case")
            )
        ax.set_xlabel(f"eps ({_norm_label(norm)})")
        ax.set_ylabel("accuracy under attack")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        worst = c["accuracy"]["worst_case"]
        mid = len(c["eps"]) // 2
        severity = 2 if worst[1] < 0.5 * max(worst[0], 1e-9) else (1 if worst[mid] < 0.5 * max(worst[0], 1e-9) else 0)
        section.finding(
            severity,
            f"{_norm_label(norm)}: accuracy falls from {worst[0]:.1%} to {worst[1]:.1%} at eps={c['eps'][1]:g} and "
            f"{worst[mid]:.1%} at eps={c['eps'][mid]:g} (worst case over {', '.join(_LABELS[a] for a in attacks)}).",
        )
        if "square" in attacks and "pgd" in attacks:
            gap = max(p - s for p, s in zip(c["accuracy"]["pgd"], c["accuracy"]["square"]))
            if gap > 0.1:
                section.finding(
                    2,
                    f"{_norm_label(norm)}: gradient-free Square beats PGD by {gap:.0%} of accuracy: gradient-based "
                    "numbers overstate robustness.",
                )
    section.figure(fig, "robustness_curves.png", "Accuracy under attack against eps")


# ------------------------------------------------------------------------------------------------------- certification
def plan_certification(ctx, allotted):
    return {"n": len(ctx.x)}, ctx.cost.f(len(ctx.x)) + 1.0, []


def _not_certifiable_reason(ctx, error: BaseException) -> str:
    model = getattr(ctx.classifier, "model", None)
    if type(model).__name__.startswith("RecursiveScriptModule") or "ScriptModule" in str(error):
        return (
            "a TorchScript model cannot be read layer by layer (its layers are compiled code); load it as "
            "package.module:factory with its state_dict to certify it"
        )
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def run_certification(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    from art_ext.estimators.certification import LipschitzCertifier

    lmt = (
        "Train with Lipschitz-margin training (`art_ext.defences.trainer.LipschitzMarginTrainer`, `art-ext lmt`) to get "
        "a certifiable model with non-trivial radii."
    )
    if ctx.output != "logits":
        reason = "the model outputs probabilities; certificates are computed on logits (remove the final softmax)"
    else:
        reason = None
        try:
            certifier = LipschitzCertifier(ctx.classifier)
            bound = certifier.lipschitz_bound()
        except (TypeError, ValueError, RuntimeError, NotImplementedError, AttributeError) as error:
            reason = _not_certifiable_reason(ctx, error)
    if reason is not None:
        section.results.update({"certifiable": False, "reason": reason})
        section.text(f"Not certifiable: {reason}. {lmt}")
        section.finding(0, f"Not certifiable: {reason}; see LMT.")
        return
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
