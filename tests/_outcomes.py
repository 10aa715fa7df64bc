"""
Checks of an outcome of training (accuracy reached, an attack's success, agreement) against its threshold.

A test marked ``kernels`` writes ``outcome.check("student/victim agreement", value, ">=", 0.5)`` instead of a bare
``assert``: the failure message gives the value, the threshold and the margin, and when ``ART_EXT_OUTCOMES`` names a
file each check appends one JSON line to it (test, label, value, operator, threshold, margin and the kernel variant's
environment), which ``.ci/kernel_variants.py`` gathers into the margins of every check across the variants.
"""

from __future__ import annotations

import json
import math
import operator
import os

OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
ENV = "ART_EXT_OUTCOMES"
VARIANT_KEYS = ("ATEN_CPU_CAPABILITY", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def margin_of(value: float, op: str, threshold: float) -> float:
    """How far `value` is from `threshold` on the passing side (negative: on the failing side), in its units."""
    return value - threshold if op in (">=", ">") else threshold - value


def variant() -> dict:
    """The kernel variant's settings from the environment (absent keys: the processor's own choice, all cores)."""
    return {k: os.environ[k] for k in VARIANT_KEYS if k in os.environ}


class Outcome:
    """The ``outcome`` fixture of one test: ``check`` asserts and records one measured value."""

    def __init__(self, nodeid: str, framework: str | None = None):
        self.nodeid = nodeid
        self.framework = framework
        self.labels: list[str] = []

    def check(self, label: str, value, op: str, threshold) -> float:
        """Assert ``value op threshold`` (op one of ``>= > <= <``); returns the value as a float."""
        if op not in OPERATORS:
            raise ValueError(f"op must be one of {sorted(OPERATORS)}, got {op!r}")
        if label in self.labels:
            raise ValueError(f"check label {label!r} used twice in {self.nodeid}: each check needs its own label")
        self.labels.append(label)
        value, threshold = float(value), float(threshold)
        margin = margin_of(value, op, threshold)
        relative = margin / abs(threshold) if threshold != 0 and math.isfinite(margin) else None
        passed = bool(OPERATORS[op](value, threshold))
        path = os.environ.get(ENV)
        if path:
            row = {
                "test": self.nodeid,
                "framework": self.framework,
                "label": label,
                "value": value,
                "op": op,
                "threshold": threshold,
                "margin": margin,
                "relative_margin": relative,
                "passed": passed,
                "variant": variant(),
            }
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        assert passed, f"{label}: measured {value:.6g}, needs {op} {threshold:.6g} (margin {margin:+.6g})"
        return value
