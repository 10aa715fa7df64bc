"""
Robustness curves: accuracy under ART's attacks over an eps grid, chosen by what the input is. Gradient attacks
(FGSM, PGD, ART's ``AutoAttack``) take any shape; the gradient-free check is ``SquareAttack`` on square images
(ART's Square draws square tiles and breaks on other shapes) and ``HopSkipJump`` (decision-based, any shape)
elsewhere. Text classifiers are attacked in embedding space, padding and the mask channel untouched.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from art_ext.evaluations.audit.budget import shrink
from art_ext.evaluations.audit.context import ROBUSTNESS_LABELS, SectionSkipped
from art_ext.evaluations.audit.queries import QueryBudgetExhausted, fit_queries
from art_ext.utils.outputs import predict_in_batches

KEY, TITLE, SHARE = "robustness", "Robustness curves", 0.30
#: Share of the queries left (audits through queries only), beside the extraction's.
QUERY_SHARE = 0.45
_LABELS = ROBUSTNESS_LABELS
#: Attacks that need the classifier's gradients.
GRADIENT_ATTACKS = ("fgsm", "pgd", "autoattack")
#: Attacks run once per norm with unbounded (minimal) perturbations, counted at each eps.
MINIMAL_ATTACKS = ("hopskipjump",)


def _norm_label(norm: str) -> str:
    return "l-inf" if norm == "inf" else "l2"


def choose_attacks(ctx) -> tuple[list[str], dict[str, str]]:
    """The asked-for attacks that fit the classifier and its input, and why each other one is left out."""
    from art.estimators.estimator import NeuralNetworkMixin

    kind, ran, why = ctx.kind, [], {}
    neural = isinstance(ctx.target, NeuralNetworkMixin)
    for key in ctx.robustness_attacks:
        if key in GRADIENT_ATTACKS and not (ctx.cost.has_gradients and neural):
            why[key] = "needs the classifier's gradients (ART loss_gradient), which it does not provide"
        elif key == "autoattack" and not _has_multiprocess():
            why[key] = "ART's AutoAttack needs the `multiprocess` package: pip install multiprocess"
        elif key == "square" and not kind.square_image:
            why[key] = f"image-only (square images of 8 pixels or more a side); the inputs are {kind.describe()}"
        elif key == "square" and not neural:
            why[key] = "ART's SquareAttack needs a NeuralNetworkMixin estimator (e.g. BlackBoxClassifierNeuralNetwork)"
        elif key == "hopskipjump" and "square" in ctx.robustness_attacks and kind.square_image and neural:
            why[key] = "Square is the gradient-free check on square images (HopSkipJump is for other inputs)"
        else:
            ran.append(key)
    return ran, why


def _has_multiprocess() -> bool:
    import importlib.util

    return importlib.util.find_spec("multiprocess") is not None


def _seconds(ctx, params) -> float:
    return sum(_attack_seconds(ctx, params).values())


def _attack_seconds(ctx, params) -> dict:
    """
    Estimated seconds of each attack in ``params["attacks"]`` over every norm and eps (Square is timed on the
    model only where it runs, alone or inside AutoAttack).
    """
    c, n, apgd = ctx.cost, params["n"], 2 if ctx.nb_classes > 2 else 1

    def per_run(key, norm):
        if key == "hopskipjump":  # one run per norm, one input at a time: per iteration a gradient estimate of up
            # to 100 queries in one call and about 25 single-input queries of the binary and step-size searches
            return n * (params["hsj_iter"] * (c.f(100, calls=1) + c.f(25, calls=25)) + c.f(40, calls=40))
        runs_square = key == "square" or (key == "autoattack" and ctx.kind.square_image)
        square = c.square(n, params["square_iter"], norm) if runs_square else 0.0
        per_eps = {
            "fgsm": c.g(n) + c.f(n),
            "pgd": 1.3 * params["steps"] * c.g(n) + 2 * c.f(n),
            "square": square + c.f(n),
            "autoattack": params["autoattack"] * (apgd * 1.5 * params["steps"] * c.g(n) + square),
        }
        return len(ctx.eps[norm]) * per_eps[key]

    return {key: sum(per_run(key, norm) for norm in ctx.norms) for key in params["attacks"]}


def _queries(ctx, params) -> int:
    """
    Most queries of the gradient-free attacks on a black box (ART's Square asks for every input not yet fooled up to
    3 times per iteration, HopSkipJump about ``100 + 25`` per iteration and input), the checks of their answers and
    the timing of Square on the cost model's probe (runs of 1 and 6 iterations: 3 x the probe at each start and each
    iteration, 27 x in all).
    """
    n, total = params["n"], 0
    for norm in ctx.norms:
        if "square" in params["attacks"]:
            total += len(ctx.eps[norm]) * n * (3 * params["square_iter"] + 4)
            total += 0 if norm in ctx.cost.square_iteration else 27 * ctx.cost.probe_size
        if "hopskipjump" in params["attacks"]:
            total += n * (params["hsj_iter"] * 125 + 41)
    return total + (0 if "clean_predictions" in ctx.shared else n)


def _query_steps(params, uses) -> list:
    """Sizes lowered for the query budget, further than for time (a deployed model's queries are the scarce part)."""
    steps = [
        ("n", min(50, params["n"]), "inputs"),
        ("square_iter", 25, "Square iterations"),
        ("hsj_iter", 3, "HopSkipJump iterations"),
        ("n", min(10, params["n"]), "inputs"),
        ("square_iter", 10, "Square iterations"),
        ("hsj_iter", 1, "HopSkipJump iterations"),
    ]
    return [step for step in steps if uses.get(step[0], True)]


def plan(ctx, allotted):
    attacks, why = choose_attacks(ctx)
    if not attacks:
        raise SectionSkipped(
            "no asked-for attack fits this classifier ("
            + "; ".join(f"{_LABELS[k]}: {r}" for k, r in why.items())
            + "); give a PyTorch/TensorFlow classifier with gradients, or a BlackBoxClassifier for HopSkipJump"
        )
    params = {"n": min(len(ctx.x), 500), "steps": 20, "square_iter": 200, "hsj_iter": 10, "autoattack": 1}
    params.update(ctx.options.get("robustness", {}))
    params["n"] = min(len(ctx.x), params["n"])
    params["autoattack"] = int("autoattack" in attacks)
    params["attacks"], params["left_out"] = attacks, why
    square = "square" in attacks or ("autoattack" in attacks and ctx.kind.square_image)
    uses = {"steps": "pgd" in attacks or "autoattack" in attacks, "square_iter": square}
    uses.update(hsj_iter="hopskipjump" in attacks, autoattack="autoattack" in attacks)
    steps = [
        ("n", min(50, params["n"]), "inputs"),
        ("steps", 5, "PGD steps"),
        ("square_iter", 25, "Square iterations"),
        ("hsj_iter", 3, "HopSkipJump iterations"),
        ("autoattack", 0, "AutoAttack runs"),
        ("n", min(20, params["n"]), "inputs"),
    ]
    steps = [step for step in steps if uses.get(step[0], True)]
    params, query_notes = fit_queries(ctx, params, lambda p: _queries(ctx, p), _query_steps(params, uses))
    params, seconds, notes = shrink(params, lambda p: _seconds(ctx, p), allotted, steps)
    notes = query_notes + notes
    if "autoattack" in attacks and not params["autoattack"]:
        params["attacks"] = [a for a in attacks if a != "autoattack"]
        params["left_out"] = dict(why, autoattack="does not fit the time budget (a larger --budget-minutes runs it)")
        notes = [n for n in notes if not n.startswith("AutoAttack runs")] + ["ART AutoAttack left out"]
    return params, seconds, notes


def _fit_iterations(ctx, key, norm, params, calls_left, section) -> dict:
    """Square's iterations for the next call, lowered when the calls left would run past the section's deadline."""
    deadline = ctx.shared.get("section_deadline")
    if key not in ("square", "autoattack") or deadline is None or not ctx.kind.square_image:
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


def _attack(ctx, key, norm, eps, params):
    from art.attacks.evasion import (
        AutoAttack,
        AutoProjectedGradientDescent,
        FastGradientMethod,
        HopSkipJump,
        ProjectedGradientDescent,
        SquareAttack,
    )

    clf, batch_size, steps = ctx.target, ctx.batch_size, params["steps"]
    norm_value = np.inf if norm == "inf" else 2
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
    if key == "hopskipjump":
        return HopSkipJump(
            _decisions(ctx), batch_size=batch_size, norm=norm_value, max_iter=params["hsj_iter"], max_eval=100, init_eval=10,
            init_size=20, verbose=False,
        )  # fmt: skip
    square = SquareAttack(
        clf,
        norm=norm_value,
        eps=eps,
        max_iter=params["square_iter"],
        nb_restarts=1,
        batch_size=batch_size,
        verbose=False,
    )
    if key == "square":
        return square
    losses = ["cross_entropy"] + (["difference_logits_ratio"] if ctx.nb_classes > 2 and ctx.output == "logits" else [])
    attacks = [
        AutoProjectedGradientDescent(
            clf,
            norm=norm_value,
            eps=eps,
            eps_step=2 * eps / 10,
            max_iter=steps,
            batch_size=batch_size,
            loss_type=loss,
            verbose=False,
        )  # fmt: skip
        for loss in losses
    ] + ([square] if ctx.kind.square_image else [])
    return AutoAttack(clf, norm=norm_value, eps=eps, eps_step=2 * eps / 10, attacks=attacks, batch_size=batch_size)


def _decisions(ctx):
    """The classifier as a black box answering float32 queries (ART's HopSkipJump sends float64 ones)."""
    from art.estimators.classification import BlackBoxClassifier

    def predict(x):
        return predict_in_batches(ctx.target, np.asarray(x, dtype=np.float32), ctx.batch_size)

    return BlackBoxClassifier(
        predict, tuple(ctx.target.input_shape), ctx.nb_classes, clip_values=ctx.target.clip_values
    )


def attack_mask(ctx, x: np.ndarray) -> dict:
    """``generate`` keyword arguments: for text, a mask keeping padding and the mask channel untouched."""
    if ctx.kind.name != "tokens":
        return {}
    mask = np.zeros_like(x)
    mask[..., :-1] = x[..., -1:] > 0
    return {"mask": mask}


def _distances(x_adv, x, norm):
    flat = (x_adv - x).reshape(len(x), -1).astype(np.float64)
    return np.abs(flat).max(1) if norm == "inf" else np.sqrt((flat**2).sum(1))


def run(ctx, params, section) -> None:
    rng = np.random.default_rng(ctx.seed)
    n = params["n"]
    idx = np.sort(rng.choice(len(ctx.x), n, replace=False)) if n < len(ctx.x) else np.arange(len(ctx.x))
    x, y = ctx.xt[idx], ctx.y[idx]
    known = ctx.shared.get("clean_predictions") if ctx.kind.name != "tokens" else None
    clean = (known[idx] if known is not None else predict_in_batches(ctx.target, x, ctx.batch_size).argmax(1)) == y
    onehot = np.eye(ctx.nb_classes, dtype=np.float32)[y]
    attacks = list(params["attacks"])
    total = sum(len(ctx.eps[norm]) for norm in ctx.norms) * len(attacks)
    curves: dict = {norm: {"eps": [0.0] + list(ctx.eps[norm]), "accuracy": {}} for norm in ctx.norms}
    robust_all = {norm: [clean.copy() for _ in curves[norm]["eps"]] for norm in ctx.norms}
    left_out = dict(params["left_out"])
    bar = tqdm(total=total, desc="robustness", disable=not ctx.verbose)
    done, timing, estimates = [], {}, _attack_seconds(ctx, params)
    for key in attacks:  # cheapest first: past the section's deadline, the remaining attacks are left out
        if done and ctx.past_deadline():
            left_out[key] = "the section ran past its share of the time budget"
            section.shrunk.append(f"{_LABELS[key]} left out: the section ran past its share of the time budget")
            bar.update(sum(len(ctx.eps[norm]) for norm in ctx.norms))
            continue
        start = time.perf_counter()
        try:
            per_norm = _run_attack(ctx, key, x, y, onehot, clean, params, rng, section, bar)
        except QueryBudgetExhausted as exhausted:
            left_out[key] = f"stopped: {exhausted}"
            section.shrunk.append(f"{_LABELS[key]} stopped: its share of the query budget ran out")
            continue
        finally:
            timing[key] = {"estimated_s": float(estimates[key]), "actual_s": time.perf_counter() - start}
        for norm, (accs, oks) in per_norm.items():
            curves[norm]["accuracy"][key] = accs
            for i, ok in enumerate(oks):
                robust_all[norm][i + 1] &= ok
        done.append(key)
    bar.close()
    if not done:
        raise SectionSkipped(
            "no attack finished (" + "; ".join(f"{_LABELS[k]}: {r}" for k, r in left_out.items()) + ")"
        )
    for norm in ctx.norms:
        curves[norm]["accuracy"]["worst_case"] = [float(r.mean()) for r in robust_all[norm]]
    ctx.shared["robustness"] = curves
    section.results.update(
        {
            "nb_samples": n,
            "pgd_steps": params["steps"],
            "square_iter": params["square_iter"],
            "input_kind": ctx.kind.name,
            "attacks_ran": done,
            "attacks_left_out": left_out,
            "seconds_by_attack": timing,
            "curves": curves,
        }
    )
    _write(ctx, section, params, curves, done, left_out)


def _run_attack(ctx, key, x, y, onehot, clean, params, rng, section, bar) -> dict:
    """One attack over every norm and eps: ``{norm: (accuracy per eps with 0 first, robust mask per eps)}``."""
    calls_left, out = sum(len(ctx.eps[norm]) for norm in ctx.norms), {}
    for norm in ctx.norms:
        accs, oks = [float(clean.mean())], []
        if key in MINIMAL_ATTACKS:
            np.random.seed(int(rng.integers(2**31)))  # ART's HopSkipJump draws from numpy's global generator
            x_adv = _attack(ctx, key, norm, None, params).generate(x, onehot, **attack_mask(ctx, x))
            fooled = predict_in_batches(ctx.target, x_adv, ctx.batch_size).argmax(1) != y
            dist = _distances(x_adv, x, norm)
        for eps in ctx.eps[norm]:
            if key in MINIMAL_ATTACKS:
                ok = ~(fooled & (dist <= eps * (1 + 1e-6)))
            else:
                np.random.seed(int(rng.integers(2**31)))  # ART's SquareAttack draws from numpy's global generator
                call_params = _fit_iterations(ctx, key, norm, params, calls_left, section)
                attack = _attack(ctx, key, norm, eps, call_params)
                start = time.perf_counter()
                with np.errstate(divide="ignore", invalid="ignore"):  # ART's Square divides 0 by 0 when converged
                    x_adv = attack.generate(x, onehot, **attack_mask(ctx, x))
                if key == "square":
                    seconds = time.perf_counter() - start
                    ctx.shared[f"square_per_iteration_{norm}"] = seconds / call_params["square_iter"]
                ok = predict_in_batches(ctx.target, x_adv, ctx.batch_size).argmax(1) == y
            calls_left -= 1
            accs.append(float(np.mean(ok & clean)))
            oks.append(ok)
            bar.update(1)
        out[norm] = (accs, oks)
    return out


def _write(ctx, section, params, curves, done, left_out) -> None:
    import matplotlib.pyplot as plt

    space = " (perturbing the word embeddings)" if ctx.kind.name == "tokens" else ""
    section.text(
        f"Accuracy under attack on {params['n']} inputs, {ctx.kind.describe()}{space} (an input counts as robust "
        "when it is classified correctly before and after the attack). Worst case: robust against every attack."
    )
    why_ran = {
        "fgsm": "one gradient step, any input shape",
        "pgd": f"{params['steps']} gradient steps of 2.5 eps / steps, any input shape",
        "autoattack": "ART's AutoAttack: APGD (cross-entropy"
        + (", DLR" if ctx.nb_classes > 2 and ctx.output == "logits" else "")
        + ")"
        + (", then Square" if ctx.kind.square_image else "")
        + ", the standard robustness numbers are compared by",
        "square": f"gradient-free, {params['square_iter']} iterations, square images (the black-box check: if it "
        "beats PGD, gradients are not to be trusted)",
        "hopskipjump": f"gradient-free and decision-based, {params['hsj_iter']} iterations, any input shape (the "
        "black-box check); its minimal perturbations are counted at each eps",
    }
    lines = [f"- {_LABELS[k]}: ran ({why_ran[k]})" for k in done]
    lines += [f"- {_LABELS[k]}: not run ({r})" for k, r in left_out.items()]
    section.text("\n".join(lines))
    fig, axes = plt.subplots(1, len(ctx.norms), figsize=(5 * len(ctx.norms), 3.5), squeeze=False)
    for ax, norm in zip(axes[0], ctx.norms):
        c = curves[norm]
        headers = [f"eps ({_norm_label(norm)})"] + [_LABELS[a] for a in done] + ["worst case"]
        rows = [
            [e] + [c["accuracy"][a][i] for a in done] + [c["accuracy"]["worst_case"][i]] for i, e in enumerate(c["eps"])
        ]
        section.table(headers, rows)
        for a in done + ["worst_case"]:
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
            f"{worst[mid]:.1%} at eps={c['eps'][mid]:g} (worst case over {', '.join(_LABELS[a] for a in done)}).",
        )
        free = next((a for a in ("square", "hopskipjump") if a in done), None)
        if free and "pgd" in done:
            gap = max(p - s for p, s in zip(c["accuracy"]["pgd"], c["accuracy"][free]))
            if gap > 0.1:
                section.finding(
                    2,
                    f"{_norm_label(norm)}: gradient-free {_LABELS[free].split(' (')[0]} beats PGD by {gap:.0%} of "
                    "accuracy: gradient-based numbers overstate robustness.",
                )
    section.figure(fig, "robustness_curves.png", "Accuracy under attack against eps")
