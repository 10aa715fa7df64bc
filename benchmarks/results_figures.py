"""
The papers' figures of the results page (``benchmarks/render_results.py``), redrawn from the result JSON: verified
accuracy against radius (LMT), VAT test error against epochs (and against labels where several label counts were
run), DFME student accuracy against queries, and the DFME ablation's curves.
"""

from __future__ import annotations

import os
from typing import Any

from results_targets import TARGETS, configurations


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in data.get("rows", []) if isinstance(r, dict)]


def plot(path: str, series, xlabel: str, ylabel: str, title: str, logx=False, anchors=(), hlines=()) -> None:
    """Write one line plot (PNG): `series` of ``(label, xs, ys)`` (a label starting with ``_`` is not listed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for label, xs, ys in series:
        thin = label.startswith("_")
        ax.plot(
            xs,
            ys,
            marker="" if thin else "o",
            markersize=3,
            lw=0.8 if thin else 1.5,
            alpha=0.5 if thin else 1,
            label=None if thin else label,
        )
    for label, x, y in anchors:
        ax.scatter([x], [y], marker="*", s=110, zorder=5, label=label)
    for label, y in hlines:
        ax.axhline(y, ls="--", color="gray", lw=1)
        ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7, va="bottom", color="dimgray")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # below the axes, where it hides no curve
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # the legend below the axes is never cut
    plt.close(fig)


def _points(curve: Any, x: str, y: str) -> tuple[list[float], list[float]]:
    pts = [(float(p[x]), float(p[y])) for p in curve or [] if p.get(x) is not None and p.get(y) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _mean_curve(curves: list[tuple[list[float], list[float]]]) -> tuple[list[float], list[float]]:
    """Pointwise mean of curves sharing their x values (else the first curve)."""
    curves = [c for c in curves if c[0]]
    if not curves or any(c[0] != curves[0][0] for c in curves):
        return curves[0] if curves else ([], [])
    return curves[0][0], [sum(c[1][i] for c in curves) / len(curves) for i in range(len(curves[0][0]))]


def _seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def _describe(data: dict[str, Any], *keys: str) -> str:
    config = data.get("config") or {}
    parts = []
    for k in keys:
        if config.get(k) is not None:
            parts.append(f"{config[k]} {k.replace('_', ' ')}" if k == "epochs" else str(config[k]))
    return ", ".join(parts)


class Figure(dict):
    """One figure of the page: its file, alt text and :func:`plot`'s arguments (``series`` first)."""

    def __init__(self, name: str, alt: str, series: list, xlabel: str, ylabel: str, title: str, **options) -> None:
        super().__init__(name=name, alt=alt, series=series, xlabel=xlabel, ylabel=ylabel, title=title, **options)


def _verified_vs_radius(items, by_stem) -> Figure:
    """One line per LMT/GloRo configuration (mean over its seeds), the plain networks, the papers' points."""
    series, anchors = [], []
    for group in configurations(items, TARGETS[1]):
        data = by_stem[group["stems"][0]]
        x, y = _mean_curve([_points(r.get("certified_curve"), "radius", "accuracy") for r in group["rows"]])
        if x:
            what = f"{str(group['rows'][0]['training']).split()[0]}, {_describe(data, 'architecture', 'epochs', 'framework')}"
            series.append((f"{what} ({_seeds(len(group['rows']))})", x, y))
        paper = (data.get("paper") or {}).get("verified_at_1.58") or {}
        anchors = anchors or [(f"{k} (paper)", 1.58, v) for k, v in paper.items() if isinstance(v, (int, float))]
    plain = [(s, r) for s, d in items for r in _rows(d) if r.get("training") == "plain" and r.get("certified_curve")]
    for stem, r in plain[:2]:
        x, y = _points(r["certified_curve"], "radius", "accuracy")
        series.append((f"plain, {_describe(by_stem[stem], 'architecture', 'epochs')}", x, y))
    return Figure(
        "lmt_verified_vs_radius.png",
        "verified accuracy against l2 radius",
        series,
        "l2 radius",
        "verified accuracy",
        "Verified accuracy against l2 radius (MNIST test set)",
        anchors=anchors,
    )


def _vat_vs_epochs(items, by_stem) -> Figure:
    """Per-epoch test error, recorded for the plot only (nothing is selected on it), or per-epoch error on the
    held-out validation split that selected the epoch."""
    series, vat_paper = [], None
    for target in TARGETS:
        if target.bench != "vat_mnist":
            continue
        for group in configurations(items, target):
            data = by_stem[group["stems"][0]]
            for key, split in (("error_curve", "test"), ("validation_error_curve", "held-out")):
                x, y = _mean_curve([_points(r.get(key), "epoch", "error") for r in group["rows"]])
                if x:
                    what = _describe(data, "epochs", "lr_schedule")
                    seeds = _seeds(len(group["rows"]))
                    series.append((f"{group['rows'][0]['method']}, {what}, {split} ({seeds})", x, y))
            vat_paper = vat_paper or ((data.get("paper") or {}).get("test_error_100_labels") or {}).get("VAT")
    return Figure(
        "vat_error_vs_epochs.png",
        "VAT error against epochs",
        series,
        "epochs over the unlabelled images",
        "error (100 labels)",
        "VAT error against epochs (MNIST, 100 labels; test or held-out validation)",
        hlines=[("VAT, paper: 1.36%", vat_paper)] if vat_paper else [],
    )


def _vat_vs_labels(items, by_stem) -> Figure:
    """Drawn where some method was run with several label counts."""
    labels: dict[str, dict[float, float]] = {}
    for _, data in items:
        for r in _rows(data):
            if {"method", "labels", "error"} <= set(r) and not data.get("quick"):
                labels.setdefault(str(r["method"]), {})[float(r["labels"])] = float(r["error"])
    series = [(m, sorted(v), [v[k] for k in sorted(v)]) for m, v in labels.items()]
    series = series if any(len(v) > 1 for v in labels.values()) else []
    return Figure(
        "vat_error_vs_labels.png",
        "VAT test error against labelled images",
        series,
        "labelled images",
        "test error",
        "VAT test error against labels",
        logx=True,
    )


def _dfme_vs_queries(items, by_stem) -> Figure:
    """The paper-scale runs and the ablation's main row (l1, m=1, 200k), undefended victims only."""
    series = []
    for _, data in items:
        for r in _rows(data):
            x, y = _points(r.get("curve"), "queries", "ratio")
            if not x or (r.get("defence") not in (None, "none")) or "knockoff" in str(r.get("thief_key")):
                continue
            if r.get("dataset", "mnist") != "mnist":
                continue
            if "loss" in r:
                if r.get("loss") == "l1" and r.get("n_directions") == 1 and r.get("budget") == 200_000:
                    series.append((f"art_ext pytorch, 200k, seed {r['seed']}", x, y))
            else:
                series.append((f"{r['thief']}, {r['queries'] / 1e6:.1f}M", x, y))
    return Figure(
        "dfme_accuracy_vs_queries.png",
        "DFME student accuracy against queries",
        series,
        "queries to the victim",
        "student accuracy / victim accuracy",
        "DFME on MNIST: accuracy against queries",
        logx=True,
        hlines=[("0.97x", 0.97)],
    )


def _dfme_ablation(items, by_stem) -> Figure:
    series = []
    for r in ablation_rows(items):
        x, y = _points(r.get("curve"), "queries", "ratio")
        dataset = r.get("dataset", "mnist")
        if x and (r.get("budget") != 200_000 or dataset != "mnist"):
            what = f"loss {r['loss']}, m={r['n_directions']}, seed {r['seed']}"
            series.append((f"{what}, {r['budget'] // 1000}k" + ("" if dataset == "mnist" else f", {dataset}"), x, y))
    return Figure(
        "dfme_ablation.png",
        "DFME ablation: accuracy against queries per loss and m",
        series,
        "queries to the victim",
        "student accuracy / victim accuracy",
        "DFME ablation (MNIST at 100k, digits28 at 200k): loss and directions m",
    )


def _smoothing_vs_certifier(items, by_stem) -> Figure:
    """
    ART's randomized smoothing of a certified-training network beside the certifier on the same inputs
    (benchmarks/smoothing.py's rows): one line per noise scale and one for the certifier, per result file.
    """
    series = []
    for _, data in items:
        smoothed = [r for r in _rows(data) if str(r.get("key", "")).startswith("randomized_smoothing/")]
        if not smoothed or data.get("quick"):
            continue
        what = f"{str(smoothed[0]['key']).split('/')[1].split()[0]}, {_describe(data, 'framework')}"
        x, y = _points(smoothed[0].get("lipschitz_curve"), "radius", "accuracy")
        if x:
            series.append((f"{what}: certifier", x, y))
        for r in smoothed:
            x, y = _points(r.get("certified_curve"), "radius", "accuracy")
            if x:
                series.append((f"{what}: smoothing, sigma {float(r['sigma']):g}", x, y))
    return Figure(
        "smoothing_vs_certifier.png",
        "certified accuracy of ART's smoothing and of the certifier",
        series,
        "l2 radius",
        "certified accuracy",
        "ART's randomized smoothing and the certifier, same networks and inputs",
    )


#: The page's figures, in order; one without a series is left out.
FIGURES = (
    _verified_vs_radius,
    _vat_vs_epochs,
    _vat_vs_labels,
    _dfme_vs_queries,
    _dfme_ablation,
    _smoothing_vs_certifier,
)


def figures(items: list[tuple[str, dict[str, Any]]], plots_dir: str, plots_rel: str) -> list[str]:
    """The papers' figures redrawn from the JSON, two a row: reST image directives."""
    os.makedirs(plots_dir, exist_ok=True)
    by_stem = dict(items)
    lines = []
    for build in FIGURES:
        figure = build(items, by_stem)
        if not figure["series"]:
            continue
        name, alt = figure.pop("name"), figure.pop("alt")
        plot(os.path.join(plots_dir, name), **figure)
        lines += [
            f".. image:: {plots_rel}/{name}",
            f"   :alt: {alt}",
            "   :width: 49%",
            f"   :target: {plots_rel}/{name}",
            "",
        ]
    return lines


def ablation_rows(items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of the DFME ablation files (``benchmarks/dfme_ablation.py``), complete or not."""
    return [
        r
        for stem, d in items
        if str(d.get("benchmark", stem)).startswith(("dfme_mnist_ablation", "dfme_digits28_ablation"))
        for r in _rows(d)
        if "loss" in r
    ]
