"""
Runs the audit's sections in order, each with its share of the time budget: plan (sizes shrunk to fit, an estimate
printed), run (a progress bar), timing. A section that cannot run says why in one line (:class:`SectionSkipped`);
an exception inside a section is a bug of the audit, reported as such without losing the other sections.
"""

from __future__ import annotations

import logging
import time
from types import ModuleType

from art_ext.evaluations.audit.context import AuditContext, SectionSkipped
from art_ext.evaluations.audit.queries import allotted_queries
from art_ext.evaluations.audit.report import SectionResult

logger = logging.getLogger(__name__)

#: Share of ``budget_minutes`` planned for; the rest absorbs estimation error.
BUDGET_SAFETY = 0.8


def run_sections(ctx: AuditContext, sections: list[ModuleType], deadline: float | None) -> list[SectionResult]:
    """Plan and run each section module (``KEY``, ``TITLE``, ``SHARE``, ``plan``, ``run``) in order."""
    results: list[SectionResult] = []
    for i, module in enumerate(sections):
        allotted = None
        if deadline is not None:
            left = max(0.0, deadline - time.perf_counter())
            allotted = left * module.SHARE / sum(m.SHARE for m in sections[i:])
        if ctx.queries is None:
            section = _run_one(ctx, module, allotted, _slowdown(results), f"{i + 1}/{len(sections)}")
        else:
            # Audited through queries: the section may send its share of the queries left, and says what it sent.
            share = allotted_queries(ctx.queries, sections[i:])
            ctx.shared["query_allotment"], before = share, ctx.queries.used
            with ctx.queries.section(share):
                section = _run_one(ctx, module, allotted, _slowdown(results), f"{i + 1}/{len(sections)}")
            section.queries = ctx.queries.used - before
        results.append(section)
    return results


def _failed(section: SectionResult, stage: str, error: BaseException) -> None:
    # The traceback goes to the log at debug level (logging.basicConfig(level=logging.DEBUG) shows it); the report
    # and the command's output keep to one line.
    logger.debug("Section %s failed while %s", section.key, stage, exc_info=True)
    section.status = "failed"
    section.reason = (
        f"internal error of the audit while {stage} (a bug: please report it with this line): "
        f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    )
    section.finding(2, f"Section failed: {section.reason}")


def _run_one(ctx: AuditContext, module: ModuleType, allotted: float | None, slowdown: float, step: str):
    section = SectionResult(module.KEY, module.TITLE)
    start = time.perf_counter()
    params, estimate = None, 0.0
    try:
        # Sections that ran slower than estimated (a loaded machine) make the next estimates slower too.
        params, estimate, section.shrunk = module.plan(ctx, None if allotted is None else allotted / slowdown)
        section.raw_estimate = estimate + (time.perf_counter() - start)
        estimate *= slowdown
    except SectionSkipped as skip:
        section.status, section.reason = "skipped", str(skip)
    except Exception as error:  # noqa: BLE001 (one section failing never loses the others)
        _failed(section, "planning", error)
    section.estimated_seconds = estimate + (time.perf_counter() - start)
    if ctx.verbose:
        budget = "" if allotted is None else f" (its share of the budget: {allotted:.0f} s)"
        shrunk = f"; shrunk: {', '.join(section.shrunk)}" if section.shrunk else ""
        share = ctx.shared.get("query_allotment") if ctx.queries is not None else None
        queries = f", up to {share:,} queries" if share is not None else ""
        what = f"estimated {section.estimated_seconds:.0f} s{queries}{budget}{shrunk}"
        state = what if section.status == "done" else f"{section.status}: {section.reason}"
        print(f"[art-ext audit] {step} {module.TITLE}: {state}", flush=True)
    if section.status == "done":
        ctx.shared["section_deadline"] = None if allotted is None else start + max(allotted, estimate) * 1.2
        try:
            module.run(ctx, params, section)
        except SectionSkipped as skip:
            section.status, section.reason = "skipped", str(skip)
        except Exception as error:  # noqa: BLE001
            _failed(section, "running", error)
    section.seconds = time.perf_counter() - start
    return section


def _slowdown(done: list) -> float:
    """Measured over estimated time of the sections done (those estimated at 2 s or more), clamped to [0.5, 4]."""
    pairs = [(s.seconds, getattr(s, "raw_estimate", s.estimated_seconds)) for s in done if s.status == "done"]
    pairs = [p for p in pairs if p[1] >= 2.0]
    if not pairs:
        return 1.0
    return float(min(4.0, max(0.5, sum(p[0] for p in pairs) / sum(p[1] for p in pairs))))
