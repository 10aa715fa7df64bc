"""
Extraction risk: :class:`~art_ext.attacks.extraction.DataFreeModelExtraction` against the audited model behind an API
returning softmax probabilities, bare and with ART's output defences. DFME's student only ever sees generated inputs
and the model's answers to them; the audited sample only measures its agreement with the model.
"""

from __future__ import annotations

import time

import numpy as np

from art_ext.evaluations.audit.budget import shrink
from art_ext.evaluations.audit.context import SectionSkipped, probabilities
from art_ext.evaluations.audit.models import build_student
from art_ext.utils.outputs import predict_in_batches

KEY, TITLE, SHARE = "extraction", "Extraction risk (data-free model extraction)", 0.35
#: Share of the queries left (audits through queries only), beside the robustness curves'.
QUERY_SHARE = 0.55

#: Output defences of the extraction section: key -> (label, factory of ART's postprocessor).
DEFENCES = {
    "none": "no defence (probabilities)",
    "reverse_sigmoid": "ART ReverseSigmoid (beta=1, gamma=0.1)",
    "rounded": "ART Rounded (1 decimal)",
}


def _reference_generator(ctx) -> str | None:
    """
    The DFME paper's generator (``art_ext.models.GENERATORS``) for square images of 8, 28 or 32 pixels in the
    framework's usual layout (channels first on PyTorch, last on TensorFlow), the benchmarks' setting; else ``None``
    and DFME builds its generator for the input shape (``generator="auto"``).
    """
    kind = ctx.kind
    if not kind.square_image or kind.channels_first != (ctx.student_framework == "pytorch"):
        return None
    return {8: "generator_8x8", 28: "generator_28x28", 32: "generator_32x32"}.get(kind.spatial[0])


def _victims(ctx) -> dict:
    """The audited model behind an API returning softmax probabilities, bare and with ART's output defences."""
    from art.defences.postprocessor import ReverseSigmoid, Rounded
    from art.estimators.classification import BlackBoxClassifier

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

    name = _reference_generator(ctx)
    if name is not None:
        generator = make_generator(build_generator(name, ctx.student_framework, channels=ctx.kind.channels, seed=seed))
    else:
        generator = "auto"
    student = build_student(ctx, seed + 1)
    attack = DataFreeModelExtraction(
        victim,
        generator,
        max_queries=budget,
        batch_size=batch_size,
        eval_every=max(1, budget // (8 * 7 * batch_size)),
        restore_best=False,
        victim_output="probabilities",
        random_state=seed,
        verbose=ctx.verbose,
    )
    return attack, student


def _generator_line(ctx, attack) -> str:
    name = _reference_generator(ctx)
    if name is not None:
        return f"the DFME paper's generator ({name})"
    plan = attack.generator_plan
    return "DFME's generator for the input shape" + (f": {plan.describe()}" if plan is not None else "")


def plan(ctx, allotted):
    if ctx.student_framework is None:
        raise SectionSkipped("DFME trains a PyTorch or TensorFlow student: install torch or tensorflow")
    if ctx.kind.name == "tokens":
        raise SectionSkipped(
            "DFME generates continuous inputs and a text classifier takes token ids; extraction of text models is not "
            "covered by the audit"
        )
    queries = ctx.options.get("extraction", {}).get("queries", 20_000)
    per_round = 7 * 32  # the smallest round: batches of 32
    n_victims = len(ctx.defences)
    params = {"queries": max(per_round, int(queries))}
    params, query_notes = _fit_queries(ctx, params, n_victims, per_round)
    batch = _batch_size(params["queries"])
    key = f"dfme_round_seconds_{batch}"
    if ctx.shared.get(key) is None:
        ctx.shared[key] = _calibrate(ctx, batch)
    round_seconds = ctx.shared[key]

    def estimate(p):
        rounds = p["queries"] / (7 * _batch_size(p["queries"]))
        return n_victims * rounds * round_seconds * _batch_size(p["queries"]) / batch

    params, seconds, notes = shrink(params, estimate, allotted, [("queries", per_round, "DFME queries per victim")])
    params["batch_size"] = _batch_size(params["queries"])
    return params, seconds, query_notes + notes


def _queries(ctx, queries: int, n_victims: int) -> int:
    """Queries of the section: DFME's exact budget per victim, the two calibration rounds, the model's labels."""
    labels = 0 if "clean_predictions" in ctx.shared else len(ctx.x)
    return n_victims * queries + 2 * 7 * _batch_size(queries) + labels


def _fit_queries(ctx, params, n_victims: int, per_round: int) -> tuple[dict, list[str]]:
    """DFME's budget per victim lowered to the section's share of the query budget (audits through queries)."""
    share = ctx.shared.get("query_allotment")
    if ctx.queries is None or share is None:
        return params, []
    labels = _queries(ctx, 0, n_victims) - 2 * 7 * _batch_size(0)
    candidates = [min(params["queries"], (share - labels - 2 * 7 * b) // max(n_victims, 1)) for b in (128, 64, 32)]
    fits = max((q for q in candidates if q > 0 and _queries(ctx, q, n_victims) <= share), default=0)
    if fits < per_round:
        raise SectionSkipped(
            f"DFME needs at least {_queries(ctx, per_round, n_victims):,} queries here and its share of the query "
            f"budget is {share:,}; a larger --max-queries (`max_queries`) runs it"
        )
    if fits >= params["queries"]:
        return params, []
    return dict(params, queries=int(fits)), [f"DFME queries per victim {params['queries']} -> {fits} (query budget)"]


def _labels(ctx) -> np.ndarray:
    """The model's labels of the audited inputs (the clean section's, else asked for once)."""
    if "clean_predictions" not in ctx.shared:
        ctx.shared["clean_predictions"] = predict_in_batches(ctx.classifier, ctx.x, ctx.batch_size).argmax(1)
    return ctx.shared["clean_predictions"]


def _batch_size(queries: int) -> int:
    """Batches of up to 128 generated inputs, smaller when the budget would otherwise hold fewer than 8 rounds."""
    return next((b for b in (128, 64) if queries >= 8 * 7 * b), 32)


def _calibrate(ctx, batch: int) -> float:
    """
    Seconds of one DFME round at ``batch``: two rounds against the bare victim, evaluated on the audited inputs after
    each as the run evaluates them (their cost is part of the section's time; the one-off start-up cost is shared by
    two rounds, so the estimate errs on the long side).
    """
    victim = _victims(ctx).get("none") or next(iter(_victims(ctx).values()))
    attack, student = _attack(ctx, victim, 2 * 7 * batch, ctx.seed, batch)
    attack.verbose = False
    attack.eval_every = 1
    labels = _labels(ctx)
    start = time.perf_counter()
    attack.extract(thieved_classifier=student, x_val=ctx.x, y_val=labels)
    return (time.perf_counter() - start) / 2


def run(ctx, params, section) -> None:
    import matplotlib.pyplot as plt

    budget = params["queries"]
    victims = _victims(ctx)
    labels = _labels(ctx)
    results, generator = {}, ""
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
        generator = _generator_line(ctx, attack)
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
    section.results["generator"] = generator
    section.text(
        "Data-free model extraction (DFME): a generator and a fresh student query the model as a black box behind an "
        "API that returns softmax probabilities, with no data at all; agreement is the share of the audited inputs on "
        f"which the student predicts the model's label (the student never trains on them). Budget: {budget:,} "
        "queries per victim (finite-difference queries included); a larger budget (`extraction_queries`, "
        f"`--extraction-queries`) continues the curve. Generator: {generator}."
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
