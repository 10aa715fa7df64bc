"""
Sections of the audit that build a second model: the gradient-masking analysis (whose transfer attack needs an
undistilled surrogate) and the extraction risk (DFME's student). Neither ever trains on the audited sample: the
surrogate is trained on the *spare* data (the training split of a built-in set, or what the sample left out of the
user's data), and DFME's student only sees generated inputs and the victim's answers to them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from art_ext.evaluations.audit_budget import shrink
from art_ext.utils.outputs import predict_in_batches

#: Output defences of the extraction section: key -> (label, factory of ART's postprocessor).
DEFENCES = {
    "none": "no defence (probabilities)",
    "reverse_sigmoid": "ART ReverseSigmoid (beta=1, gamma=0.1)",
    "rounded": "ART Rounded (1 decimal)",
}


# ------------------------------------------------------------------------------------------------------- models
def build_student(ctx, seed: int) -> Any:
    """
    A fresh classifier for the audited input shape (the surrogate and DFME's student): the reference
    ``digits_cnn`` / ``lenet5`` when the shape is theirs, else a small CNN; logits, Adam.
    """
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    shape = tuple(ctx.classifier.input_shape)
    fw = ctx.framework
    for name in ("digits_cnn", "lenet5"):
        if shape == ARCHITECTURES[name][0 if fw == "pytorch" else 1] and ctx.nb_classes >= 2:
            model = build_model(name, fw, nb_classes=ctx.nb_classes, seed=seed)
            return make_classifier(model, shape, ctx.nb_classes, clip_values=ctx.classifier.clip_values)
    from art_ext.utils.seed import set_seed

    set_seed(seed, fw)
    if fw == "pytorch":
        from torch import nn

        channels = shape[0]
        model = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * 16, 128),
            nn.ReLU(),
            nn.Linear(128, ctx.nb_classes),
        )
    else:
        import keras

        model = keras.Sequential(
            [
                keras.Input(shape),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                keras.layers.AveragePooling2D(max(1, shape[0] // 4)),
                keras.layers.Flatten(),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(ctx.nb_classes),
            ]
        )
    return make_classifier(model, shape, ctx.nb_classes, clip_values=ctx.classifier.clip_values)


def _image_shape(ctx) -> tuple[int, int, int] | None:
    """``(channels, height, width)`` when the input is a square image with a side divisible by 4, else ``None``."""
    shape = tuple(ctx.classifier.input_shape)
    if len(shape) != 3:
        return None
    c, h, w = shape if ctx.framework == "pytorch" else (shape[2], shape[0], shape[1])
    return (c, h, w) if h == w and h % 4 == 0 else None


# ------------------------------------------------------------------------------------------------------- masking
def _masking_eps(ctx) -> list[float]:
    lo, hi = ctx.classifier.clip_values
    return [float(f * (hi - lo)) for f in (0.05, 0.1, 0.2, 0.3)]


def _masking_seconds(ctx, p) -> float:
    c, k, m = ctx.cost, len(_masking_eps(ctx)), p["max_samples"]
    seconds = c.g(m) + 2 * ctx.nb_classes * c.g(m)  # gradient statistics (softmax and logit Jacobians)
    seconds += k * (2 + 2 * p["pgd_steps"]) * c.g(m)  # FGSM/PGD, cross-entropy and logit margin
    seconds += c.cw(m, p["cw_max_iter"] * p["cw_binary_search_steps"])
    seconds += k * (c.square(m, p["square_max_iter"]) + p["noise_samples"] * c.f(m) + 8 * c.f(m))
    if p["surrogate_epochs"] and ctx.spare_size:
        n_train = min(ctx.spare_size, 5000)
        seconds += p["surrogate_epochs"] * 2 * c.g(n_train, calls=n_train / 64) + k * p["pgd_steps"] * c.g(m)
    return seconds


def plan_masking(ctx, allotted):
    if ctx.framework is None or not ctx.cost.has_gradients:
        return None, 0.0, []
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
    if ctx.spare_size < 50:
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


def run_masking(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    from art_ext.evaluations import ATTACKS, GradientMaskingAnalysis

    params = dict(params)
    epochs = params.pop("surrogate_epochs")
    attacks = list(ATTACKS)
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
        attacks.remove("transfer")
        note = "No data outside the audited sample: the transfer attack is left out (the audit never trains on it)."
    analysis = GradientMaskingAnalysis(
        ctx.classifier,
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
        report = analysis.analyse(ctx.x, ctx.y)
    section.results.update(report.to_dict())
    section.results["transfer_surrogate_trained_on_audited_sample"] = False
    verdict = "**Gradient masking suspected.**" if report.masking_suspected else "**No sign of gradient masking.**"
    section.text(
        f"{verdict} `GradientMaskingAnalysis` on {report.nb_samples} inputs ({report.nb_correct} classified "
        f"correctly and attacked), l-inf. {note}"
    )
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


# ------------------------------------------------------------------------------------------------------- extraction
def _victims(ctx) -> dict:
    """The audited model behind an API returning softmax probabilities, bare and with ART's output defences."""
    from art.defences.postprocessor import ReverseSigmoid, Rounded
    from art.estimators.classification import BlackBoxClassifier

    from art_ext.evaluations.audit_sections import probabilities

    def predict(x):
        return probabilities(ctx, predict_in_batches(ctx.classifier, np.asarray(x, np.float32), ctx.batch_size))

    defences = {"none": None, "reverse_sigmoid": ReverseSigmoid(beta=1.0, gamma=0.1), "rounded": Rounded(decimals=1)}
    return {
        key: BlackBoxClassifier(
            predict,
            tuple(ctx.classifier.input_shape),
            ctx.nb_classes,
            clip_values=ctx.classifier.clip_values,
            postprocessing_defences=[d] if d is not None else None,
        )
        for key, d in defences.items()
        if key in ctx.defences
    }


def _attack(ctx, victim, budget: int, seed: int, batch_size: int):
    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import build_generator, make_generator

    c, h, _ = _image_shape(ctx)
    name = {8: "generator_8x8", 28: "generator_28x28", 32: "generator_32x32"}.get(h)
    if name is not None:
        model = build_generator(name, ctx.framework, channels=c, seed=seed)
    else:
        from art_ext.utils.seed import set_seed

        set_seed(seed, ctx.framework)
        if ctx.framework == "pytorch":
            from art_ext.models import pytorch as module
        else:
            from art_ext.models import tensorflow as module
        builder = module.multiscale_generator if h >= 16 else module.dfme_generator  # as GENERATORS chooses
        model = builder(img_size=h, channels=c, ngf=32)
    student = build_student(ctx, seed + 1)
    attack = DataFreeModelExtraction(
        victim,
        make_generator(model),
        max_queries=budget,
        batch_size=batch_size,
        eval_every=max(1, budget // (8 * 7 * batch_size)),
        restore_best=False,
        victim_output="probabilities",
        random_state=seed,
        verbose=ctx.verbose,
    )
    return attack, student


def plan_extraction(ctx, allotted):
    if ctx.framework is None or _image_shape(ctx) is None:
        return None, 0.0, []
    queries = ctx.options.get("extraction", {}).get("queries", 20_000)
    per_round = 7 * 32  # the smallest round: batches of 32
    if ctx.shared.get("dfme_seconds_per_query") is None:
        # Calibrate on one small round against the bare victim (its cost is part of the section's time).
        victim = _victims(ctx).get("none") or next(iter(_victims(ctx).values()))
        attack, student = _attack(ctx, victim, per_round, ctx.seed, 32)
        attack.verbose = False
        start = time.perf_counter()
        attack.extract(thieved_classifier=student)
        ctx.shared["dfme_seconds_per_query"] = (time.perf_counter() - start) / per_round
    per_query = ctx.shared["dfme_seconds_per_query"]
    params = {"queries": max(per_round, int(queries))}
    n_victims = len(ctx.defences)

    def estimate(p):
        return n_victims * (p["queries"] * per_query + 9 * ctx.cost.f(len(ctx.x)))

    params, seconds, notes = shrink(params, estimate, allotted, [("queries", per_round, "DFME queries per victim")])
    # Batches of up to 128 generated inputs, smaller when the budget would otherwise hold fewer than 8 rounds.
    params["batch_size"] = next((b for b in (128, 64) if params["queries"] >= 8 * 7 * b), 32)
    return params, seconds, notes


def run_extraction(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    budget = params["queries"]
    victims = _victims(ctx)
    labels = predict_in_batches(ctx.classifier, ctx.x, ctx.batch_size).argmax(1)
    results = {}
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for key, victim in victims.items():
        if results and ctx.past_deadline():
            section.shrunk.append(
                f"victim '{DEFENCES[key]}' left out: the section ran past its share of the time budget"
            )
            continue
        attack, student = _attack(ctx, victim, budget, ctx.seed, params["batch_size"])
        start = time.perf_counter()
        attack.extract(thieved_classifier=student, x_val=ctx.x, y_val=labels)
        seconds = time.perf_counter() - start
        agreement = float(np.mean(predict_in_batches(student, ctx.x, ctx.batch_size).argmax(1) == labels))
        accuracy = float(np.mean(predict_in_batches(student, ctx.x, ctx.batch_size).argmax(1) == ctx.y))
        curve = [
            (int(r["queries"]), float(r["val_accuracy"])) for r in attack.history if r.get("val_accuracy") is not None
        ]
        results[key] = {
            "queries_used": int(attack.queries_used),
            "agreement": agreement,
            "student_accuracy": accuracy,
            "seconds": seconds,
            "curve": [{"queries": q, "agreement": a} for q, a in curve],
        }
        if curve:
            ax.plot(*zip(*curve), "o-", label=DEFENCES[key])
    section.results.update({"budget": budget, "batch_size": params["batch_size"], "victims": results})
    section.text(
        "Data-free model extraction (DFME): a generator and a fresh student query the model as a black box behind an "
        "API that returns softmax probabilities, with no data at all; agreement is the share of the audited inputs on "
        f"which the student predicts the model's label (the student never trains on them). Budget: {budget:,} "
        "queries per victim (finite-difference queries included); a larger budget (`extraction_queries`, "
        "`--extraction-queries`) continues the curve."
    )
    section.table(
        ["API output", "queries", "agreement", "student accuracy", "seconds"],
        [
            [DEFENCES[k], r["queries_used"], r["agreement"], r["student_accuracy"], r["seconds"]]
            for k, r in results.items()
        ],
    )
    ax.set_xlabel("victim queries")
    ax.set_ylabel("agreement with the model")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    section.figure(fig, "extraction_agreement.png", "Student agreement against victim queries")
    if "none" in results:
        a = results["none"]["agreement"]
        severity = 3 if a >= 0.8 else 2 if a >= 0.5 else 1 if a >= 0.25 else 0
        section.finding(
            severity, f"A data-free thief agrees with the model on {a:.1%} of the inputs after {budget:,} queries."
        )
        for key in ("reverse_sigmoid", "rounded"):
            if key in results:
                drop = a - results[key]["agreement"]
                section.finding(0, f"{DEFENCES[key]} changes the thief's agreement by {-drop:+.1%}.")
