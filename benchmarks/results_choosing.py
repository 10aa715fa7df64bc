"""
The measured table of ``docs/choosing_certified.rst`` (written by ``benchmarks/render_results.py`` into
``docs/choosing_certified_table.inc``, which that page includes): one row per certified-training configuration of
``benchmarks/lmt_mnist.py`` (LMT, the GloRo-style objective, plain training), the mean over its seeds and the spread,
with its training length, the time of ``certify`` over ``predict`` and the result of the benchmark's own check of the
certificates (an l2 PGD on the logit margin at 0.99 x the certified radius); and, where a run has them, ART's
randomized smoothing of the same trained network per noise scale beside the certifier on the same inputs.
"""

from __future__ import annotations

from typing import Any, Callable

from results_targets import LMT_IGNORE, Target, configurations

#: the benchmark's networks in words
NETWORKS = {
    "lipschitz_mlp": "ReLU MLP 2x1024",
    "maxmin_mlp": "MaxMin MLP 2x1024",
    "gloro_small": "ReLU CNN 2C2F",
    "lenet5": "LeNet-5",
}
#: the issue's bound on certify / predict time
TIME_TARGET = 1.5
#: fewer epochs or training images than this makes a run *short*
FULL_EPOCHS, FULL_TRAIN = 30, 60000
COLUMNS = [
    "run",
    "training images",
    "seeds",
    "clean",
    "verified at l2 0.3",
    "verified at l2 1.58",
    "certify / predict time",
    "certificate check (PGD at 0.99 x radius)",
]


def _spread(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1%}"
    return f"{mean:.1%} ({min(values):.1%} to {max(values):.1%})"


def _trainings(items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    names: list[str] = []
    for _, data in items:
        if str(data.get("benchmark", "")).startswith(("lmt_mnist", "gloro_mnist")) and not data.get("quick"):
            for row in data.get("rows") or []:
                name = row.get("training") if isinstance(row, dict) else None
                if name and isinstance(row.get("verified_1.58"), (int, float)) and name not in names:
                    names.append(name)
    return names


def _check(files: list[dict[str, Any]], training: str) -> str:
    """The certificate_check rows of `training` in `files`, summed over seeds."""
    rows = [r for d in files for r in d.get("rows") or [] if r.get("key") == f"certificate_check/{training}"]
    if not rows:
        return "not run"
    flips, inputs = sum(int(r["flips"]) for r in rows), sum(int(r["inputs"]) for r in rows)
    verdict = "0 flips" if flips == 0 else f"**{flips} flips (unsound)**"
    return f"{verdict} in {inputs} certified inputs"


def configuration_rows(items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (training, configuration) of the certified-training benchmarks, most seeds first."""
    by_stem = dict(items)
    out = []
    for training in _trainings(items):
        target = Target(
            training,
            "",
            ("lmt_mnist", "gloro_mnist"),
            lambda r, t=training: r.get("verified_1.58") if r.get("training") == t else None,
            lambda v, ref: True,
            lambda v, ref: "",
            lambda v: v,
            ignore=LMT_IGNORE,
        )
        for group in configurations(items, target):
            files = [by_stem[s] for s in group["stems"]]
            config = files[0].get("config") or {}
            rows = group["rows"]
            epochs, train = int(config.get("epochs", 0)), int(config.get("train_size", 0))
            short = training != "plain" and (epochs < FULL_EPOCHS or train < FULL_TRAIN)
            ratios = [float(r["certify_over_predict_time"]) for r in rows if "certify_over_predict_time" in r]
            time = "n/a"
            if ratios:
                time = f"{min(ratios):.2f}x" if len(ratios) == 1 else f"{min(ratios):.2f}x to {max(ratios):.2f}x"
                if max(ratios) > TIME_TARGET:
                    time += f" (over {TIME_TARGET}x)"
            arch = str(config.get("architecture", rows[0].get("architecture", "?")))
            out.append(
                {
                    "run": f"{training}, {NETWORKS.get(arch, arch)}, {config.get('framework', 'pytorch')}, {epochs} epochs"
                    + (" (short run)" if short else ""),
                    "training": training,
                    "training images": f"{train:,}",
                    "seeds": ", ".join(str(s) for s in sorted(group["seeds"], key=str)),
                    "clean": _spread([float(r["clean"]) for r in rows]),
                    "verified at l2 0.3": _spread([float(r["verified_0.3"]) for r in rows if "verified_0.3" in r]),
                    "verified at l2 1.58": _spread(group["values"]),
                    "certify / predict time": time,
                    "certificate check (PGD at 0.99 x radius)": _check(files, training),
                    "mean_1.58": sum(group["values"]) / len(group["values"]),
                    "stems": group["stems"],
                    "short": short,
                }
            )
    return sorted(out, key=lambda r: (r["training"].startswith("plain"), -len(r["stems"]), -r["mean_1.58"]))


#: the side-by-side table of ART's randomized smoothing and the certifier
SMOOTHING_COLUMNS = [
    "run",
    "sigma (inputs)",
    "smoothed: certified at l2 0.3",
    "smoothed: certified at l2 1.58",
    "smoothed: abstained",
    "certifier on the same inputs: 0.3 / 1.58",
    "smoothing / certifier time",
]


def smoothing_rows(items: list[tuple[str, dict[str, Any]]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration row and noise scale: the ``randomized_smoothing/<training> sigma=<s>`` rows of its files
    (benchmarks/smoothing.py), over seeds."""
    by_stem = dict(items)
    out = []
    for row in rows:
        found: dict[float, list[dict[str, Any]]] = {}
        for stem in row["stems"]:
            for r in by_stem[stem].get("rows") or []:
                if str(r.get("key", "")).startswith(f"randomized_smoothing/{row['training']} sigma="):
                    found.setdefault(float(r["sigma"]), []).append(r)
        for sigma, rs in sorted(found.items()):
            inputs = sorted({int(r["inputs"]) for r in rs})
            n = sorted({int(r["n"]) for r in rs})
            ratios = [float(r["seconds_smoothing"]) / float(r["seconds_lipschitz"]) for r in rs]
            out.append(
                {
                    "run": row["run"],
                    "sigma (inputs)": f"{sigma:g} ({', '.join(str(i) for i in inputs)}, n={', '.join(map(str, n))})",
                    "smoothed: certified at l2 0.3": _spread([float(r["certified_0.3"]) for r in rs]),
                    "smoothed: certified at l2 1.58": _spread([float(r["certified_1.58"]) for r in rs])
                    + (" (above its largest radius)" if max(float(r["max_radius"]) for r in rs) < 1.58 else ""),
                    "smoothed: abstained": _spread([int(r["abstentions"]) / int(r["inputs"]) for r in rs]),
                    "certifier on the same inputs: 0.3 / 1.58": _spread(
                        [float(r["lipschitz_verified_0.3"]) for r in rs]
                    )
                    + " / "
                    + _spread([float(r["lipschitz_verified_1.58"]) for r in rs]),
                    "smoothing / certifier time": f"{min(ratios):.0f}x"
                    + ("" if len(ratios) == 1 else f" to {max(ratios):.0f}x"),
                    "n0": sorted({int(r["n0"]) for r in rs}),
                    "alpha": sorted({float(r["alpha"]) for r in rs}),
                }
            )
    return out


def _gloro_target(items: list[tuple[str, dict[str, Any]]]) -> float | None:
    for _, data in items:
        paper = data.get("paper")
        if isinstance(paper, dict) and isinstance(paper.get("verified_at_1.58"), dict):
            value = paper["verified_at_1.58"].get("GloRo")
            if isinstance(value, (int, float)):
                return float(value)
    return None


def _smoothing(items: list[tuple[str, dict[str, Any]]]) -> str:
    """What the result files say about ART's randomized smoothing."""
    values = [d["speedup_vs_art_randomized_smoothing"] for _, d in items if "speedup_vs_art_randomized_smoothing" in d]
    measured = [float(v) for v in values if isinstance(v, (int, float))]
    if measured:
        return (
            f"ART's ``PyTorchRandomizedSmoothing.certify`` was measured beside the certifier in {len(measured)} "
            f"run(s): the certifier was {min(measured):.0f}x to {max(measured):.0f}x faster per input."
        )
    reasons = sorted({str(v) for v in values})
    why = f" (the runs that tried recorded: {'; '.join(reasons)})" if reasons else ""
    return f"ART's randomized smoothing has not been measured on these networks yet{why}."


Table = Callable[[list[dict[str, Any]], list[str]], list[str]]


def choosing_table(items: list[tuple[str, dict[str, Any]]], list_table: Table) -> list[str]:
    """The reST of the measured table (drawn by `list_table`, the results page's) and the lines that state what it
    shows, all read from the JSON."""
    lines = [
        ".. This file is generated by benchmarks/render_results.py from benchmarks/results/*.json: do not edit.",
        "",
    ]
    rows = configuration_rows(items)
    if not rows:
        return lines + ["No certified-training run has finished yet.", ""]
    lines += list_table(rows, COLUMNS[:5])
    lines += list_table(rows, [COLUMNS[0]] + COLUMNS[5:])
    files = "; ".join(f"``{', '.join(r['stems'])}``" for r in rows)
    lines += [f"Result files, row by row: {files}.", ""]
    short = [r for r in rows if r["short"]]
    if short:
        lines += [
            f"*Short run*: fewer than {FULL_EPOCHS} epochs or fewer than {FULL_TRAIN:,} training images; "
            f"{len(short)} of the {len(rows)} rows are short.",
            "",
        ]
    target = _gloro_target(items)
    best = max((r for r in rows if not r["training"].startswith("plain")), key=lambda r: r["mean_1.58"], default=None)
    if target is not None and best is not None:
        reached = best["mean_1.58"] >= target
        lines += [
            f"Best mean verified accuracy at l2 1.58: {best['mean_1.58']:.1%} ({best['run']}, "
            f"seeds {best['seeds']}). GloRo's {target:.1%} (the issue's target) is "
            + (
                "reached."
                if reached
                else f"**not reached yet** ({100 * (target - best['mean_1.58']):.1f} points short)."
            ),
            "",
        ]
    smoothed = smoothing_rows(items, rows)
    if smoothed:
        n0 = sorted({v for r in smoothed for v in r["n0"]})
        alpha = sorted({v for r in smoothed for v in r["alpha"]})
        lines += [
            "ART's randomized smoothing (Cohen et al. 2019's certify: ``PyTorchRandomizedSmoothing`` / "
            "``TensorFlowV2RandomizedSmoothing``) around the same trained networks, on the first test images, at the "
            f"same radii: n noise samples bound the class probability at alpha {', '.join(f'{a:g}' for a in alpha)} "
            f"after {', '.join(map(str, n0))} samples pick the class. *Certified* means correct and not abstained "
            "with a radius at least the column's; the certifier's verified accuracy on the same inputs is beside it. "
            "The networks were **not** trained under Gaussian noise, as Cohen et al. train theirs: this is what "
            "smoothing gives on these networks, not its best. With n samples no radius above sigma x "
            "Phi^-1(alpha^(1/n)) can be certified (about 2.46 sigma at n=1000, alpha 0.001). The time is that of "
            "smoothing's certify over the certifier's (a fresh one, reading the model included) on the same inputs, "
            "one run each on a shared machine: read it as an order of magnitude.",
            "",
        ]
        lines += list_table(smoothed, SMOOTHING_COLUMNS)
    else:
        lines += [_smoothing(items), ""]
    return lines


def write(items: list[tuple[str, dict[str, Any]]], out: str, list_table: Table) -> str:
    """Write the table to `out`; returns its text."""
    text = "\n".join(choosing_table(items, list_table)).rstrip() + "\n"
    with open(out, "w") as f:
        f.write(text)
    return text
