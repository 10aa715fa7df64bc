"""
Render every ``benchmarks/results/*.json`` into ``docs/results.rst`` (and its figures into ``docs/results/``), and
the measured table of ``docs/choosing_certified.rst`` into ``docs/choosing_certified_table.inc``.

    python benchmarks/render_results.py [--results benchmarks/results] [--out docs/results.rst]

The page opens with one row per target (``benchmarks/results_targets.py``: ours as the mean and spread over seeds,
the paper's number, the verdict), then the papers' figures redrawn from our JSON (verified accuracy against radius,
VAT error against epochs and labels, DFME accuracy against queries), the DFME ablation, and the runs behind the rows
(settings, seeds, commands, every row of every result file). The page is generated: edit the JSON (by rerunning the
benchmark) or this script, never the page.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_ablation import ablation_table  # noqa: E402
from results_choosing import write as write_choosing  # noqa: E402
from results_figures import figures  # noqa: E402
from results_targets import target_rows  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TITLES = {
    "lmt_mnist": "Lipschitz-margin training: verified accuracy on MNIST",
    "lmt_tightness_mnist": "Lipschitz-margin training: certificate tightness (LMT paper, Sec. 6)",
    "vat_mnist": "VAT: MNIST with few labels",
    "vat_text": "Text: embedding-space AT and VAT on rt-polarity",
    "fgsm_mnist": "FGSM and adversarial training on MNIST (Goodfellow et al.)",
    "distillation_mnist": "Defensive distillation on MNIST",
    "dfme_mnist_ablation": "DFME ablation: loss and zeroth-order directions (Truong et al., Sec. 5)",
    "dfme_digits28_ablation": "DFME ablation on the second 28x28 data set (digits upsampled to 28x28)",
    "dfme_mnist": "DFME: data-free extraction of an MNIST victim",
}
ORDER = list(TITLES)
#: most columns of one table on the page (wider row sets are split into several tables)
MAX_COLUMNS = 7
#: the row's name in a runs table: the first of these keys a row has
LABELS = ("training", "method", "model", "thief", "key")


def clean_command(command: str) -> str:
    """The command without a machine's data path: the data root is ``$ART_EXT_DATA``."""
    words, out, skip = shlex.split(command), [], False
    for i, w in enumerate(words):
        if skip:
            skip = False
        elif w == "--data" or (w == "--out" and i + 1 < len(words) and os.path.isabs(words[i + 1])):
            skip = True  # the data root, or a result file outside the repository
        elif not w.startswith("--data="):
            out.append(w)
    return "ART_EXT_DATA=<data root> " + " ".join(shlex.quote(w) for w in out)


def wrap(command: str, width: int = 58) -> list[str]:
    """A command as code-block lines of at most about `width` characters, continued with backslashes (an option
    stays on the line of its value)."""
    prefix = "ART_EXT_DATA=<data root>"
    groups: list[str] = [prefix] if command.startswith(prefix) else []
    words = shlex.split(command[len(prefix) :] if groups else command)
    for w in words:
        quoted = shlex.quote(w) if "=" not in w or w.startswith("-") else w
        if groups and not w.startswith("-") and groups[-1].startswith("-") and " " not in groups[-1]:
            groups[-1] += " " + quoted  # an option and its value
        else:
            groups.append(quoted)
    lines, line = [], ""
    for g in groups:
        if line and len(line) + 1 + len(g) > width:
            lines.append(line + " \\")
            line = "    " + g
        else:
            line = f"{line} {g}" if line else g
    return ["   " + x for x in lines + [line]]


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in data.get("rows", []) if isinstance(r, dict)]


def _bench(stem: str, data: dict[str, Any]) -> str:
    bench = str(data.get("benchmark", stem))
    return next((b for b in ORDER if bench.startswith(b)), bench)


def load(folder: str) -> list[tuple[str, dict[str, Any]]]:
    """All result files of ``folder`` as ``(stem, data)``, in the page's order."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                data = json.load(f)
            if isinstance(data, dict):
                out.append((name[:-5], data))
    rank = {b: i for i, b in enumerate(ORDER)}
    return sorted(out, key=lambda item: (rank.get(_bench(*item), len(ORDER)), item[0]))


def fmt(value: Any) -> str:
    """A table cell."""
    if value is None or value == "":
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value).replace("|", "/")


def list_table(rows: list[dict[str, Any]], cols: list[str], widths: list[int] | None = None) -> list[str]:
    """reST list-tables of ``rows`` over ``cols``; more than :data:`MAX_COLUMNS` columns are split into several
    tables, each repeating the first (naming) column."""
    if len(cols) > MAX_COLUMNS:
        out: list[str] = []
        for i in range(1, len(cols), MAX_COLUMNS - 1):
            out += list_table(rows, [cols[0]] + cols[i : i + MAX_COLUMNS - 1])
        return out
    lines = [".. list-table::", "   :header-rows: 1", "   :class: results"]
    if widths:
        lines.append("   :widths: " + " ".join(str(w) for w in widths))
    lines.append("")
    lines.append("   * - " + "\n     - ".join(c.replace("_", " ") for c in cols))
    for row in rows:
        lines.append("   * - " + "\n     - ".join(fmt(row.get(c)) for c in cols))
    return lines + [""]


def scalar_columns(rows: list[dict[str, Any]], first: str | None = None) -> list[str]:
    """Keys holding scalars, in order of first appearance, `first` first (the row key only when nothing names it)."""
    cols: list[str] = [first] if first else []
    for row in rows:
        for k, v in row.items():
            if k not in cols and not isinstance(v, (list, dict)) and k not in ("key", "table"):
                cols.append(k)
    return cols


def paper_line(paper: Any) -> str:
    """The paper's anchors in one line."""
    if not isinstance(paper, dict):
        return fmt(paper)

    def flat(d, prefix=""):
        for k, v in d.items():
            if k in ("citation", "scale"):
                continue
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k.replace('_', ' ')}, ")
            else:
                yield f"{prefix}{k.replace('_', ' ')}: {fmt(v)}"

    return "; ".join(flat(paper))


def run_section(stem: str, data: dict[str, Any], used_by: dict[str, list[str]], previous_notes: str) -> list[str]:
    """The reST of one result file in the runs section: setting, seeds, commands, rows, notes."""
    lines = [stem, "^" * len(stem), ""]
    facts = []
    if used_by.get(stem):
        facts.append("behind the target rows: " + "; ".join(used_by[stem]))
    if data.get("quick"):
        facts.append("**quick configuration** (not the paper's scale)")
    if data.get("complete") is False:
        facts.append("**incomplete run** (the rows finished so far)")
    if data.get("setting"):
        facts.append(f"setting: {data['setting']}")
    seeds = sorted({str(r["seed"]) for r in _rows(data) if "seed" in r}) or [str(data.get("seeds", data.get("seed")))]
    facts.append("seed(s) " + ", ".join(seeds))
    m = data.get("machine") or {}
    machine = m if isinstance(m, str) else f"{m.get('cpu_count', '?')} CPU cores, GPU: {m.get('gpu') or 'none'}"
    if data.get("wall_s") is not None:
        facts.append(f"wall time {fmt(float(data['wall_s']))} s on {machine}")
    v = data.get("versions") or {}
    if v:
        facts.append(", ".join(f"{k} {val}" for k, val in v.items() if val))
    lines += [f"- {f}" for f in facts] + [""]
    commands = [c for c in data.get("resumed_from") or [] if isinstance(c, str)]
    commands += [m["command"] for m in data.get("merged_from") or [] if isinstance(m, dict) and m.get("command")]
    if data.get("command"):
        commands.append(data["command"])
    if commands:
        lines += ["Commands (each resumes: rerun to finish an interrupted run):" if len(commands) > 1 else "Command:"]
        lines += ["", ".. code-block:: bash", ""] + [line for c in commands for line in wrap(clean_command(c))] + [""]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(data):  # rows naming a "table" go to a table of their own
        groups.setdefault(str(row.get("table", "")), []).append(row)
    tables = [(name, rows) for name, rows in groups.items()]
    tables += [
        (k.replace("_", " "), [r for r in t if isinstance(r, dict)]) for k, t in (data.get("tables") or {}).items()
    ]
    for name, rows in tables:
        if not rows:
            continue
        first = next((k for k in LABELS if any(k in r for r in rows)), None)
        cols = scalar_columns(rows, first)
        rows = [dict(r, **{first: r.get(first, r.get("key"))}) if first else r for r in rows]
        if name:
            lines += [f"*{name}*:", ""]
        lines += list_table(rows, cols)
    if data.get("notes") and data["notes"] != previous_notes:
        lines += [f"Notes: {data['notes']}", ""]
    return lines


def render(results: str, out: str, plots_dir: str | None = None, intro: str = "", choosing: str | None = None) -> str:
    """Write the page ``out`` (and its figures) from the JSON files of ``results``; returns the page's text. With
    `choosing`, also the measured table of the certified-training choice (``benchmarks/results_choosing.py``)."""
    plots_dir = plots_dir or os.path.join(os.path.dirname(os.path.abspath(out)), "results")
    plots_rel = os.path.relpath(plots_dir, os.path.dirname(os.path.abspath(out))).replace(os.sep, "/")
    title = "Results at the papers' scale"
    lines = [
        ".. This page is generated by benchmarks/render_results.py from benchmarks/results/*.json: do not edit.",
        "",
        title,
        "=" * len(title),
        "",
        "Every number on this page comes from a JSON file in ``benchmarks/results/`` written by the benchmark whose "
        "command is listed under `Runs behind the rows`_; ``python benchmarks/render_results.py`` regenerates the "
        "page.",
        "",
    ]
    if intro:
        lines += [intro, ""]
    items = load(results)
    if choosing:
        write_choosing(items, choosing, list_table)
    if not items:
        return _write(out, lines + ["No results yet.", ""])
    checked = target_rows(items)
    lines += ["At a glance", "-----------", ""]
    lines += [
        "One row per target. *Ours* is the mean over the seeds of one configuration, with the spread (lowest to "
        "highest) when there are several; the configuration shown is the one with the most seeds (the best among "
        "ties); every other run is listed below. The verdict judges the mean.",
        "",
    ]
    lines += list_table(checked, ["target", "ours", "seeds", "paper", "verdict"], widths=[34, 22, 9, 18, 17])
    whys = [row for row in checked if row.get("why")]
    if whys:
        lines += ["What separates the missed rows from the papers, measured in the runs behind them:", ""]
        lines += [f"- *{row['target']}*: {row['why']}." for row in whys] + [""]
    lines += ["The papers' figures, redrawn from our JSON", "-" * 42, ""] + figures(items, plots_dir, plots_rel)
    lines += [TITLES["dfme_mnist_ablation"], "-" * len(TITLES["dfme_mnist_ablation"]), ""]
    lines += [
        "art_ext's PyTorch thief against the LeNet-5 victim exposing probabilities, with the attack's defaults but "
        "the loss and the number m of zeroth-order directions (``benchmarks/dfme_mnist.py --ablation``). The "
        "generator's share counts the queries its steps sent. The logit recovery error compares the logits the "
        "attack recovers from the probabilities with the victim's true logits (both centred per input) on a sample "
        "of the generated queries; a probability under the attack's floor (``probability_floor``, 1e-6) loses its "
        "logit, so the last column says how often that happened. The attack offers the losses l1 and KL; "
        "cross-entropy on the victim's probabilities is not one of its losses and was not run. The main row (l1, "
        "m=1) runs at 200k queries over three seeds, the other losses and m at 100k queries with seed 0 (the time "
        "this shared machine left). The second 28x28 data set, *digits28*, is scikit-learn's handwritten digits "
        "(UCI: 1,797 images of 8x8 by other writers than MNIST's; 1,437 train, 360 test) upsampled bilinearly to "
        "28x28, against a LeNet-5 victim trained on them for 30 epochs (``--dataset digits28``; the only other "
        "image data available to the benchmarks offline); the same attack, student and generator, every row at "
        "200k queries.",
        "",
    ]
    lines += ablation_table(items, list_table, wrap)
    used_by: dict[str, list[str]] = {}
    for row in checked:
        for stem in row.get("runs", []):
            used_by.setdefault(stem, []).append(row["target"].split(":")[0])
    lines += ["Runs behind the rows", "--------------------", ""]
    lines += [
        "Every result file, grouped by benchmark: its setting, seeds and commands, then all its rows. The commands "
        "write the same file again; a rerun resumes an interrupted run.",
        "",
    ]
    current, notes = None, ""
    for stem, data in items:
        bench = _bench(stem, data)
        if bench != current:
            current, notes = bench, ""
            heading = TITLES.get(bench, bench)
            lines += [heading, "~" * len(heading), ""]
            paper = data.get("paper") or {}
            if paper:
                cite = paper.get("citation", "") if isinstance(paper, dict) else ""
                lines += [f"Paper{': ' + cite if cite else ''}. Anchors: {paper_line(paper)}.", ""]
                if isinstance(paper, dict) and paper.get("scale"):
                    lines += [f"The paper's scale: {paper['scale']}.", ""]
        lines += run_section(stem, data, used_by, notes)
        notes = data.get("notes") or ""
    return _write(out, lines)


def _write(out: str, lines: list[str]) -> str:
    text = "\n".join(lines).rstrip() + "\n"
    with open(out, "w") as f:
        f.write(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results.rst"))
    p.add_argument("--plots", default=None, help="folder of the figures (default: results/ beside the page)")
    p.add_argument("--intro", default=None, help="reST file whose text goes below the page's title")
    p.add_argument(
        "--choosing",
        default=os.path.join(ROOT, "docs", "choosing_certified_table.inc"),
        help="where the table of docs/choosing_certified.rst is written ('' for none)",
    )
    args = p.parse_args(argv)
    intro = ""
    if args.intro:
        with open(args.intro) as f:
            intro = f.read().strip()
    render(args.results, args.out, args.plots, intro, args.choosing or None)
    print(
        f"wrote {os.path.relpath(args.out, ROOT)}"
        + (f" and {os.path.relpath(args.choosing, ROOT)}" if args.choosing else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
