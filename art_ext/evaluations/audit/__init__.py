"""
:func:`audit`: one report on a user's classifier and data: clean accuracy and calibration, robustness curves, a
gradient-masking analysis, Lipschitz certification and the risk of data-free extraction, each section with a time
estimate, a progress bar and, under ``budget_minutes``, sizes shrunk to fit (and said so).

One module per section (:mod:`.clean`, :mod:`.robustness`, :mod:`.masking`, :mod:`.certification`,
:mod:`.extraction`), each with its ``plan`` and ``run``, beside :mod:`.budget` (time estimates), :mod:`.report`
(``report.md``, ``report.html``, ``results.json``), :mod:`.context` (argument checks, what the sections share) and
:mod:`.inputs` (what the inputs are). ``art_ext.evaluations.audit`` is this function.
"""

from __future__ import annotations

import sys
import time
import types
from typing import Any, Sequence

import numpy as np

from art_ext.evaluations.audit import certification, clean, extraction, masking, robustness
from art_ext.evaluations.audit.context import SectionSkipped, default_eps, make_context
from art_ext.evaluations.audit.report import AuditReport
from art_ext.evaluations.audit.runner import BUDGET_SAFETY, run_sections

__all__ = ["SECTIONS", "AuditReport", "SectionSkipped", "audit", "default_eps"]

#: The sections, in report order.
SECTION_MODULES = (clean, robustness, masking, certification, extraction)
#: Sections in report order: key -> (title, share of the time budget).
SECTIONS = {m.KEY: (m.TITLE, m.SHARE) for m in SECTION_MODULES}


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
    robustness_attacks: Sequence[str] = ("fgsm", "pgd", "square", "hopskipjump", "autoattack"),
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
    max_queries: int | None = None,
    student_framework: str | None = None,
) -> AuditReport:
    """
    Audit an ART classifier on labelled data.

    :param classifier: ART classifier with ``clip_values`` (logits or probabilities), over feature vectors, 1-D
                       signals, images (either layout, any size) or token ids (``PyTorchTextClassifier`` /
                       ``TensorFlowV2TextClassifier``, attacked in embedding space; no ``clip_values`` needed). Every section runs on a
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
    :param robustness_attacks: Among ``"fgsm"``, ``"pgd"``, ``"square"``, ``"hopskipjump"``, ``"autoattack"`` (ART's
                               ``AutoAttack``); each runs where it fits the input (Square on square images,
                               HopSkipJump as the gradient-free check elsewhere) and the report says which ran and
                               why the others did not.
    :param extraction_queries: DFME query budget per victim (before any shrinking).
    :param defences: Victims of the extraction section: ``"none"``, ``"reverse_sigmoid"``, ``"rounded"``.
    :param section_options: Default sizes to override, per section: ``{"robustness": {"n", "steps",
                            "square_iter", "hsj_iter"}, "masking": {"max_samples", "pgd_steps", "cw_max_iter",
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
    :param max_queries: Audit through the model's answers only, sending at most this many inputs to ``predict``
                        (a deployed model's query budget): clean accuracy, the gradient-free robustness curves and
                        extraction run within it (clean first, then 45% and 55% of the rest), the gradient-masking
                        analysis and certification are skipped with the reason, and each section records the queries
                        it sent. Black-box classifiers (e.g. :class:`~art_ext.estimators.classification.RemoteClassifier`)
                        are always audited this way, counted, with no limit when ``None``.
    :param student_framework: ``"pytorch"`` or ``"tensorflow"``: the framework of DFME's student and generator
                              when auditing a black box (default: PyTorch where installed); a PyTorch or TensorFlow
                              classifier's own framework otherwise.
    :return: The :class:`~art_ext.evaluations.audit.report.AuditReport`.
    """
    start = time.perf_counter() if start_time is None else float(start_time)
    keys = list(SECTIONS) if sections is None else list(sections)
    if not keys or any(k not in SECTIONS for k in keys):
        raise ValueError(f"`sections` must be a non-empty subset of {list(SECTIONS)}, got {keys}.")
    ctx = make_context(
        classifier, x, y, x_spare, y_spare, eps, eps_l2, norms, budget_minutes, output, robustness_attacks,
        extraction_queries, defences, section_options, batch_size, seed, verbose, max_queries, student_framework,
    )  # fmt: skip
    deadline = None if budget_minutes is None else start + 60.0 * budget_minutes * BUDGET_SAFETY
    results = run_sections(ctx, [m for m in SECTION_MODULES if m.KEY in keys], deadline)
    header = dict(header or {})
    header.setdefault(
        "model", f"{type(classifier).__name__} ({ctx.framework}), input shape {tuple(classifier.input_shape)}"
    )
    header["inputs"] = ctx.kind.describe()
    header["model outputs"] = ctx.output
    header["audited inputs"] = f"{len(ctx.x)} (spare inputs for the transfer surrogate: {ctx.spare_size})"
    header["time budget"] = "none" if budget_minutes is None else f"{budget_minutes:g} minutes"
    header["seed"] = seed
    if ctx.queries is not None:
        header["queries"] = (
            f"{ctx.queries.used:,} sent to the model"
            + ("" if max_queries is None else f" (budget {max_queries:,})")
            + f", {ctx.queries.used - sum(s.queries or 0 for s in results):,} of them to detect its outputs and time it"
        )
    report = AuditReport(title, header, results)
    report.seconds = time.perf_counter() - start
    report.header["total time"] = f"{report.seconds:.0f} s"
    if ctx.queries is not None:
        report.queries = {"sent": ctx.queries.used, "budget": max_queries}
    if out_dir is not None:
        report.write(out_dir, formats)
    return report


class _CallableModule(types.ModuleType):
    """The package is callable like :func:`audit`, so ``art_ext.evaluations.audit(...)`` works however it is reached."""

    def __call__(self, *args, **kwargs) -> AuditReport:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
