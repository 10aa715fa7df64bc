"""
What every section of the audit receives (:class:`AuditContext`), built by :func:`make_context` once every argument
of :func:`~art_ext.evaluations.audit` is checked, and :class:`SectionSkipped`, how a section says in one line why it
cannot run and what the user can do.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from art_ext.evaluations.audit.budget import CostModel
from art_ext.evaluations.audit.inputs import InputKind, embedding_view, input_kind
from art_ext.utils.checks import check_finite, check_labels
from art_ext.utils.outputs import output_kind_of

__all__ = ["AuditContext", "SectionSkipped", "default_eps", "make_context", "probabilities"]

#: Robustness attacks the caller may ask for: key -> label.
ROBUSTNESS_LABELS = {
    "fgsm": "FGSM",
    "pgd": "PGD",
    "square": "Square (black-box)",
    "hopskipjump": "HopSkipJump (black-box, decision-based)",
    "autoattack": "ART AutoAttack",
}
#: Section options the caller may override: section -> keys.
SECTION_OPTIONS = {
    "robustness": {"n", "steps", "square_iter", "hsj_iter"},
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
DEFENCE_KEYS = ("none", "reverse_sigmoid", "rounded")


class SectionSkipped(Exception):
    """Raised by a section's plan or run: the section cannot run; the message says why and what to do, in one line."""


def default_eps(clip_values: Sequence[float], input_shape: Sequence[int]) -> dict[str, list[float]]:
    """
    Default eps grids relative to the input range ``r``: l-inf ``r * (0.02, 0.05, 0.1, 0.2, 0.3)``, l2
    ``r * sqrt(d) * (0.01, 0.025, 0.05, 0.1, 0.15)`` with ``d`` input dimensions (about 0.3 to 4.2 on MNIST).
    """
    r = float(np.max(clip_values[1])) - float(np.min(clip_values[0]))
    d = float(np.prod(input_shape))
    return {
        "inf": [round(r * f, 6) for f in (0.02, 0.05, 0.1, 0.2, 0.3)],
        "2": [round(r * math.sqrt(d) * f, 4) for f in (0.01, 0.025, 0.05, 0.1, 0.15)],
    }


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities(ctx: AuditContext, outputs: np.ndarray) -> np.ndarray:
    """Probabilities from the classifier's outputs (softmax of logits; probabilities unchanged)."""
    return softmax(outputs) if ctx.output == "logits" else np.asarray(outputs, dtype=np.float64)


@dataclass
class AuditContext:
    """
    What every section receives. ``target`` and ``xt`` are what the attacks perturb: the classifier and `x`, or for
    a text classifier its embedding-space view and the embeddings of `x` (``kind.name == "tokens"``).
    """

    classifier: Any
    x: np.ndarray
    y: np.ndarray
    x_spare: np.ndarray | None
    y_spare: np.ndarray | None
    output: str
    eps: dict
    norms: list[str]
    framework: str | None
    kind: InputKind
    target: Any
    xt: np.ndarray
    target_range: tuple
    cost: CostModel
    robustness_attacks: list[str]
    defences: list[str]
    seed: int = 0
    verbose: bool = True
    batch_size: int = 128
    options: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)
    #: Inputs sent to the model, against ``max_queries`` (a ``QueryBudget``; ``None`` for a white-box audit).
    queries: Any = None
    #: Framework of the networks the audit trains (DFME's student): the model's, else the one installed.
    student_framework: str | None = None

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


def _check_choices(values: Sequence[str], allowed: Sequence[str], name: str) -> list[str]:
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"`{name}` must be a non-empty subset of {list(allowed)}, got {list(values)}.")
    return [v for v in allowed if v in values]


def _check_options(section_options: dict | None) -> dict:
    options = dict(section_options or {})
    for key, values in options.items():
        bad = set(values) - SECTION_OPTIONS.get(key, set())
        if key not in SECTION_OPTIONS or bad or not all(isinstance(v, int) and v >= 0 for v in values.values()):
            raise ValueError(
                f"`section_options` accepts {SECTION_OPTIONS} with non-negative integers, got {section_options}."
            )
    return options


def _eps_grids(clip_values, input_shape, eps, eps_l2) -> dict:
    grids = default_eps(clip_values, input_shape)
    for key, given in (("inf", eps), ("2", eps_l2)):
        if given is not None:
            values = [float(e) for e in np.atleast_1d(given)]
            if not values or any(not (math.isfinite(e) and e > 0) for e in values) or sorted(values) != values:
                name = "eps" if key == "inf" else "eps_l2"
                raise ValueError(f"`{name}` must be increasing positive budgets, got {list(given)}.")
            grids[key] = values
    return grids


def make_context(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    x_spare: np.ndarray | None,
    y_spare: np.ndarray | None,
    eps: Sequence[float] | None,
    eps_l2: Sequence[float] | None,
    norms: Sequence[Any],
    budget_minutes: float | None,
    output: str,
    robustness_attacks: Sequence[str],
    extraction_queries: int,
    defences: Sequence[str],
    section_options: dict | None,
    batch_size: int,
    seed: int,
    verbose: bool,
    max_queries: int | None = None,
    student_framework: str | None = None,
) -> AuditContext:
    """Check every argument of :func:`~art_ext.evaluations.audit` (``ValueError`` naming it), then time the model."""
    from art.estimators.classification.classifier import ClassifierMixin

    from art_ext.backend import framework_of

    if not isinstance(classifier, ClassifierMixin):
        raise TypeError(f"`classifier` must be an ART classifier, got {type(classifier).__name__}.")
    if max_queries is not None and (
        isinstance(max_queries, bool) or not isinstance(max_queries, numbers.Integral) or max_queries <= 0
    ):
        raise ValueError(f"`max_queries` must be a positive integer or None, got {max_queries!r}.")
    if student_framework not in (None, "pytorch", "tensorflow"):
        raise ValueError(f"`student_framework` must be 'pytorch', 'tensorflow' or None, got {student_framework!r}.")
    try:
        framework = None if max_queries is not None else framework_of(classifier)
    except TypeError:
        framework = None  # audited as a black box: clean accuracy, gradient-free attacks, the certification line
    kind = input_kind(classifier)
    if classifier.clip_values is None and kind.name != "tokens":
        raise ValueError("`classifier` needs `clip_values` (the input range) for the attacks and the generator.")
    x = check_finite(x, "x")
    x = classifier.check_ids(x, "x") if kind.name == "tokens" else x.astype(np.float32)
    if tuple(x.shape[1:]) != tuple(classifier.input_shape):
        raise ValueError(f"`x` has sample shape {x.shape[1:]}, the classifier expects {tuple(classifier.input_shape)}.")
    y = check_labels(y, classifier.nb_classes, n=len(x))
    if x_spare is not None:
        x_spare = check_finite(x_spare, "x_spare")
        x_spare = classifier.check_ids(x_spare, "x_spare") if kind.name == "tokens" else x_spare.astype(np.float32)
        if y_spare is None or tuple(x_spare.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError("`x_spare` needs `y_spare` and the sample shape of `x`.")
        y_spare = check_labels(y_spare, classifier.nb_classes, n=len(x_spare), name="y_spare")
    norms = list(dict.fromkeys(_norm_key(n) for n in norms))
    attacks = _check_choices(list(robustness_attacks), list(ROBUSTNESS_LABELS), "robustness_attacks")
    defences = _check_choices(list(defences), DEFENCE_KEYS, "defences")
    if budget_minutes is not None and (
        isinstance(budget_minutes, bool) or not isinstance(budget_minutes, numbers.Real) or not budget_minutes > 0
    ):
        raise ValueError(f"`budget_minutes` must be a positive number, got {budget_minutes!r}.")
    if not isinstance(extraction_queries, numbers.Integral) or extraction_queries <= 0:
        raise ValueError(f"`extraction_queries` must be a positive integer, got {extraction_queries!r}.")
    options = _check_options(section_options)
    queries, shared = None, {}
    if framework is None:
        if kind.name == "tokens":
            raise ValueError("A text classifier is audited in embedding space: give it whole (without `max_queries`).")
        from art_ext.evaluations.audit.queries import QueryBudget, counted_classifier

        setup = setup_queries(len(x), output, max_queries)
        if max_queries is not None and max_queries < len(x) + setup:
            raise ValueError(
                f"`max_queries` ({max_queries}) must be at least {len(x) + setup}: one query per audited input "
                f"({len(x)}) for the clean section, and {setup} to detect the outputs and time the model."
            )
        url = getattr(classifier, "url", None)
        shared["black_box_of"] = type(classifier).__name__ + (f" at {url}" if isinstance(url, str) else "")
        queries = QueryBudget(max_queries)
        classifier = counted_classifier(classifier, queries, batch_size)
    output = output_kind_of(classifier, x, output, batch_size)
    if kind.name == "tokens":
        if output != "logits":
            raise ValueError("A text classifier must return logits (`output='logits'`): its view over embeddings does.")
        target, xt, (lo, hi) = embedding_view(classifier, x, batch_size)
        real = max(1.0, float(np.median((x != 0).sum(1))))
        grids = _eps_grids((lo, hi), (real * (xt.shape[-1] - 1),), eps, eps_l2)
    else:
        target, xt = classifier, x
        lo, hi = classifier.clip_values
        grids = _eps_grids(classifier.clip_values, classifier.input_shape, eps, eps_l2)
    if verbose:
        print(f"[art-ext audit] timing the model on {min(128, len(x))} inputs ({kind.describe()}) ...", flush=True)
    return AuditContext(
        classifier=classifier,
        x=x,
        y=y,
        x_spare=x_spare,
        y_spare=y_spare,
        output=output,
        eps=grids,
        norms=norms,
        framework=framework,
        kind=kind,
        target=target,
        xt=xt,
        target_range=(float(np.min(lo)), float(np.max(hi))),
        cost=CostModel(target, xt, batch_size, probe=_probe_size(max_queries)),
        robustness_attacks=attacks,
        defences=defences,
        seed=seed,
        verbose=verbose,
        batch_size=batch_size,
        options={**options, "extraction": {"queries": int(extraction_queries)}},
        queries=queries,
        shared=shared,
        student_framework=framework or student_framework or _installed_framework(),
    )


def _probe_size(max_queries: int | None) -> int:
    """Inputs the cost model times: 128, fewer under a small query budget (each is a query)."""
    return 128 if max_queries is None else min(128, max(8, max_queries // 200))


def setup_queries(n: int, output: str, max_queries: int | None) -> int:
    """Queries of the audit's set-up on a black box: output detection (``output="auto"``) and the cost model's timing."""
    from art_ext.utils.outputs import PROBE_SIZE

    probe = min(_probe_size(max_queries), n)
    return (min(PROBE_SIZE, n) if output == "auto" else 0) + min(2, probe) + 3 + 2 * probe


def _installed_framework() -> str | None:
    """PyTorch where it is installed, else TensorFlow, else ``None`` (the audit then trains no network)."""
    import importlib.util

    return next(
        (f for f, m in (("pytorch", "torch"), ("tensorflow", "tensorflow")) if importlib.util.find_spec(m)), None
    )
