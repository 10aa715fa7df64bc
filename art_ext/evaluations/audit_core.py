"""
:func:`audit`: one report on a user's classifier and data: clean accuracy and calibration, robustness curves, a
gradient-masking analysis, Lipschitz certification and the risk of data-free extraction, each section with a time
estimate, a progress bar and, under ``budget_minutes``, sizes shrunk to fit (and said so).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from art_ext.evaluations.audit_budget import CostModel
from art_ext.evaluations.audit_report import AuditReport, SectionResult
from art_ext.utils.checks import check_finite, check_labels
from art_ext.utils.outputs import output_kind_of

logger = logging.getLogger(__name__)

__all__ = ["SECTIONS", "audit", "default_eps"]

#: Sections in report order: key -> (title, share of the time budget).
SECTIONS = {
    "clean": ("Clean accuracy and calibration", 0.03),
    "robustness": ("Robustness curves", 0.30),
    "masking": ("Gradient-masking analysis", 0.27),
    "certification": ("Lipschitz certification", 0.05),
    "extraction": ("Extraction risk (data-free model extraction)", 0.35),
}

#: Share of ``budget_minutes`` planned for; the rest absorbs estimation error.
BUDGET_SAFETY = 0.8


def default_eps(clip_values: Sequence[float], input_shape: Sequence[int]) -> dict[str, list[float]]:
    """
    Default eps grids relative to the input range ``r``: l-inf ``r * (0.02, 0.05, 0.1, 0.2, 0.3)``, l2
    ``r * sqrt(d) * (0.01, 0.025, 0.05, 0.1, 0.15)`` with ``d`` input dimensions (about 0.3 to 4.2 on MNIST).
    """
    r = float(clip_values[1]) - float(clip_values[0])
    d = float(np.prod(input_shape))
    return {
        "inf": [round(r * f, 6) for f in (0.02, 0.05, 0.1, 0.2, 0.3)],
        "2": [round(r * math.sqrt(d) * f, 4) for f in (0.01, 0.025, 0.05, 0.1, 0.15)],
    }


@dataclass
class AuditContext:
    """What every section receives."""

    classifier: Any
    x: np.ndarray
    y: np.ndarray
    x_spare: np.ndarray | None
    y_spare: np.ndarray | None
    output: str
    eps: dict
    norms: list[str]
    framework: str
    cost: CostModel
    robustness_attacks: list[str]
    defences: list[str]
    seed: int = 0
    verbose: bool = True
    batch_size: int = 128
    options: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)

    @property
    def nb_classes(self) -> int:
        return int(self.classifier.nb_classes)

    def past_deadline(self) -> bool:
        """Whether the running section is past its share of the time budget (never without a budget)."""
        deadline = self.shared.get("section_deadline")
        return deadline is not None and time.perf_counter() > deadline

    @property
    def spare_size(self) -> int:
        return 0 if self.x_spare is None else len(self.x_spare)


def _norm_key(norm: Any) -> str:
    if norm in ("inf", np.inf, float("inf")):
        return "inf"
    if norm in (2, "2", 2.0):
        return "2"
    raise ValueError(f"`norms` must hold 'inf' and/or 2, got {norm!r}.")


def _section_module(key: str):
    from art_ext.evaluations import audit_analysis, audit_sections

    return audit_sections if key in ("clean", "robustness", "certification") else audit_analysis


def audit(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    x_spare: np.ndarray | None = None,
    y_spare: np.ndarray | None = None,
    sections: Sequence[str] | None = None,
    eps: Sequence[float] | None = None,
    eps_l2: Sequence[float] | None = None,
    norms: Sequence[Any] = ("inf", 2),
    budget_minutes: float | None = None,
    output: str = "auto",
    robustness_attacks: Sequence[str] = ("fgsm", "pgd", "square"),
    extraction_queries: int = 20_000,
    defences: Sequence[str] = ("none", "reverse_sigmoid", "rounded"),
    section_options: dict | None = None,
    out_dir: str | None = None,
    formats: Sequence[str] = ("md", "html", "json"),
    title: str = "art_ext audit",
    header: dict | None = None,
    batch_size: int = 128,
    seed: int = 0,
    verbose: bool = True,
    start_time: float | None = None,
) -> AuditReport:
    """
    Audit an ART classifier on labelled data.

    :param classifier: ART classifier with ``clip_values`` (logits or probabilities). Every section runs on a
                       ``PyTorchClassifier`` or ``TensorFlowV2Classifier``; any other ART classifier (e.g.
                       ``BlackBoxClassifierNeuralNetwork``) is audited as a black box: clean accuracy, Square-only robustness
                       curves (when it has no gradients) and the certification line; masking and extraction are
                       skipped with the reason.
    :param x: Audited inputs ``(nb_samples, *input_shape)`` (all of them are used; sample beforehand).
    :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
    :param x_spare: Optional inputs that are *not* audited; only the masking analysis's transfer surrogate trains on
                    them (without them the transfer attack is left out). The audited `x` is never trained on.
    :param y_spare: Their labels.
    :param sections: Keys of :data:`SECTIONS` to run (default: all).
    :param eps: l-inf budgets, increasing (default: :func:`default_eps`).
    :param eps_l2: l2 budgets, increasing (default: :func:`default_eps`).
    :param norms: Norms of the robustness curves: ``"inf"`` and/or ``2``.
    :param budget_minutes: Cap on the whole run; sections shrink their sample sizes and budgets to fit and the
                           report says so. ``None``: the default sizes.
    :param output: ``"auto"`` (detected), ``"logits"`` or ``"probabilities"``.
    :param robustness_attacks: Among ``"fgsm"``, ``"pgd"``, ``"square"``, ``"autoattack"``.
    :param extraction_queries: DFME query budget per victim (before any shrinking).
    :param defences: Victims of the extraction section: ``"none"``, ``"reverse_sigmoid"``, ``"rounded"``.
    :param section_options: Default sizes to override, per section: ``{"robustness": {"n", "steps",
                            "square_iter"}, "masking": {"max_samples", "pgd_steps", "cw_max_iter",
                            "cw_binary_search_steps", "square_max_iter", "noise_samples", "surrogate_epochs"}}``
                            (a time budget may still shrink them).
    :param out_dir: When given, the report is written there (see :meth:`AuditReport.write`).
    :param formats: Files written to `out_dir`: ``"md"``, ``"html"``, ``"json"``.
    :param title: Report title.
    :param header: Extra header lines (e.g. the model and data descriptions).
    :param batch_size: Batch size of the forward and gradient passes.
    :param seed: Seed of every random choice.
    :param verbose: Print time estimates and progress bars.
    :param start_time: ``time.perf_counter()`` value `budget_minutes` counts from (default: now); the command passes
                       the time it started loading the model and data.
    :return: The :class:`~art_ext.evaluations.audit_report.AuditReport`.
    """
    from art.estimators.classification.classifier import ClassifierMixin

    from art_ext.backend import framework_of
    from art_ext.evaluations.audit_sections import _LABELS, ROBUSTNESS_ATTACKS

    start_all = time.perf_counter() if start_time is None else float(start_time)
    if not isinstance(classifier, ClassifierMixin):
        raise TypeError(f"`classifier` must be an ART classifier, got {type(classifier).__name__}.")
    try:
        framework = framework_of(classifier)
    except TypeError:
        framework = None  # audited as a black box: clean accuracy, Square and the certification line only
    if classifier.clip_values is None:
        raise ValueError("`classifier` needs `clip_values` (the input range) for the attacks and the generator.")
    x = check_finite(x, "x").astype(np.float32)
    if tuple(x.shape[1:]) != tuple(classifier.input_shape):
        raise ValueError(f"`x` has sample shape {x.shape[1:]}, the classifier expects {tuple(classifier.input_shape)}.")
    y = check_labels(y, classifier.nb_classes, n=len(x))
    if x_spare is not None:
        x_spare = check_finite(x_spare, "x_spare").astype(np.float32)
        if y_spare is None or tuple(x_spare.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError("`x_spare` needs `y_spare` and the sample shape of `x`.")
        y_spare = check_labels(y_spare, classifier.nb_classes, n=len(x_spare), name="y_spare")
    sections = list(SECTIONS) if sections is None else list(sections)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"`sections` must be a non-empty subset of {list(SECTIONS)}, got {sections}.")
    sections = [s for s in SECTIONS if s in sections]
    norms = list(dict.fromkeys(_norm_key(n) for n in norms))
    bad = [a for a in robustness_attacks if a not in _LABELS]
    if bad or not robustness_attacks:
        raise ValueError(
            f"`robustness_attacks` must be a non-empty subset of {list(_LABELS)}, got {robustness_attacks}."
        )
    bad = [d for d in defences if d not in ("none", "reverse_sigmoid", "rounded")]
    if bad or not defences:
        raise ValueError(
            f"`defences` must be a non-empty subset of ['none', 'reverse_sigmoid', 'rounded'], got {defences}."
        )
    if budget_minutes is not None and (
        isinstance(budget_minutes, bool) or not isinstance(budget_minutes, numbers.Real) or not budget_minutes > 0
    ):
        raise ValueError(f"`budget_minutes` must be a positive number, got {budget_minutes!r}.")
    if not isinstance(extraction_queries, numbers.Integral) or extraction_queries <= 0:
        raise ValueError(f"`extraction_queries` must be a positive integer, got {extraction_queries!r}.")
    known = {
        "robustness": {"n", "steps", "square_iter"},
        "masking": {
            "max_samples",
            "pgd_steps",
            "cw_max_iter",
            "cw_binary_search_steps",
            "square_max_iter",
            "noise_samples",
            "surrogate_epochs",
        },
    }
    known_options = dict(section_options or {})
    for key, values in known_options.items():
        bad = set(values) - known.get(key, set())
        if key not in known or bad or not all(isinstance(v, int) and v >= 0 for v in values.values()):
            raise ValueError(f"`section_options` accepts {known} with non-negative integers, got {section_options}.")
    grids = default_eps(classifier.clip_values, classifier.input_shape)
    for key, given in (("inf", eps), ("2", eps_l2)):
        if given is not None:
            values = [float(e) for e in np.atleast_1d(given)]
            if not values or any(not (math.isfinite(e) and e > 0) for e in values) or sorted(values) != values:
                name = "eps" if key == "inf" else "eps_l2"
                raise ValueError(f"`{name}` must be increasing positive budgets, got {list(given)}.")
            grids[key] = values
    output = output_kind_of(classifier, x, output, batch_size)
    if verbose:
        print(f"[art-ext audit] timing the model on {min(128, len(x))} inputs ...", flush=True)
    ctx = AuditContext(
        classifier=classifier,
        x=x,
        y=y,
        x_spare=x_spare,
        y_spare=y_spare,
        output=output,
        eps=grids,
        norms=norms,
        framework=framework,
        cost=CostModel(classifier, x, batch_size),
        robustness_attacks=[a for a in _LABELS if a in robustness_attacks] or list(ROBUSTNESS_ATTACKS),
        defences=list(defences),
        seed=seed,
        verbose=verbose,
        batch_size=batch_size,
        options={**known_options, "extraction": {"queries": int(extraction_queries)}},
    )
    deadline = None if budget_minutes is None else start_all + 60.0 * budget_minutes * BUDGET_SAFETY
    results = []
    for i, key in enumerate(sections):
        title_i, _ = SECTIONS[key]
        section = SectionResult(key, title_i)
        module = _section_module(key)
        allotted = None
        if deadline is not None:
            left = max(0.0, deadline - time.perf_counter())
            weights = [SECTIONS[k][1] for k in sections[i:]]
            allotted = left * weights[0] / sum(weights)
        plan_start = time.perf_counter()
        # Sections that ran slower than estimated (a loaded machine) make the next estimates slower too.
        slowdown = _slowdown(results)
        try:
            params, estimate, notes = getattr(module, f"plan_{key}")(
                ctx, None if allotted is None else allotted / slowdown
            )
            section.raw_estimate = estimate + (time.perf_counter() - plan_start)
            estimate *= slowdown
        except Exception as error:  # noqa: BLE001 (one section failing never loses the others)
            logger.exception("Planning section %s failed", key)
            params, estimate, notes = None, 0.0, []
            section.status, section.reason = "failed", f"{type(error).__name__}: {error}"
        if params is None and section.status == "done":
            section.status = "skipped"
            section.reason = _skip_reason(key, ctx)
        section.estimated_seconds = estimate + (time.perf_counter() - plan_start)
        section.shrunk = notes
        if verbose:
            budget = "" if allotted is None else f" (its share of the budget: {allotted:.0f} s)"
            shrunk = f"; shrunk: {', '.join(notes)}" if notes else ""
            what = f"estimated {section.estimated_seconds:.0f} s{budget}{shrunk}"
            print(
                f"[art-ext audit] {i + 1}/{len(sections)} {title_i}: {what if section.status == 'done' else section.status}",
                flush=True,
            )
        if section.status == "done":
            ctx.shared["section_deadline"] = None if allotted is None else plan_start + max(allotted, estimate) * 1.2
            try:
                getattr(module, f"run_{key}")(ctx, params, section)
            except Exception as error:  # noqa: BLE001
                logger.exception("Section %s failed", key)
                section.status, section.reason = "failed", f"{type(error).__name__}: {error}"
                section.finding(2, f"Section failed: {section.reason}")
        section.seconds = time.perf_counter() - plan_start
        results.append(section)
    header = dict(header or {})
    header.setdefault(
        "model", f"{type(classifier).__name__} ({framework}), input shape {tuple(classifier.input_shape)}"
    )
    header["model outputs"] = output
    header["audited inputs"] = f"{len(x)} (spare inputs for the transfer surrogate: {ctx.spare_size})"
    header["time budget"] = "none" if budget_minutes is None else f"{budget_minutes:g} minutes"
    header["seed"] = seed
    report = AuditReport(title, header, results)
    report.seconds = time.perf_counter() - start_all
    report.header["total time"] = f"{report.seconds:.0f} s"
    if out_dir is not None:
        report.write(out_dir, formats)
    return report


def _slowdown(done: list) -> float:
    """Measured over estimated time of the sections done (those estimated at 2 s or more), clamped to [0.5, 4]."""
    pairs = [(s.seconds, getattr(s, "raw_estimate", s.estimated_seconds)) for s in done if s.status == "done"]
    pairs = [p for p in pairs if p[1] >= 2.0]
    if not pairs:
        return 1.0
    return float(min(4.0, max(0.5, sum(p[0] for p in pairs) / sum(p[1] for p in pairs))))


def _skip_reason(key: str, ctx: AuditContext) -> str:
    if ctx.framework is None and key in ("masking", "extraction"):
        return f"needs a PyTorch or TensorFlow classifier, got {type(ctx.classifier).__name__} (audited as a black box)"
    if key == "extraction":
        return f"DFME needs square images with a side divisible by 4; the input shape is {tuple(ctx.classifier.input_shape)}"
    if key == "robustness":
        return (
            "ART's attacks need gradients (loss_gradient) or, for Square, a NeuralNetworkMixin estimator such as "
            "BlackBoxClassifierNeuralNetwork (with Square among the attacks)"
        )
    return "the classifier provides no gradients (ART loss_gradient)"
