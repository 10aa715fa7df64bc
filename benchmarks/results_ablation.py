"""
The DFME ablation's table on the results page (``benchmarks/render_results.py``): one row per data set, budget, loss
and m, the mean over seeds, with the queries each seed needed to leave chance level, and a sentence for every run
that ended at chance where a longer run of the same seed shows when the student started learning.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_figures import ablation_rows  # noqa: E402

#: the DFME ablation's runs: the main row at 200k over three seeds, the loss and m rows at 100k with seed 0
ABLATION_COMMANDS = [
    "ART_EXT_DATA=<data root> python benchmarks/dfme_mnist.py --ablation --resume --budget 200000 --seeds 0,1,2",
    "ART_EXT_DATA=<data root> python benchmarks/dfme_mnist.py --ablation --resume --budget 100000 --loss l1,kl",
    "ART_EXT_DATA=<data root> python benchmarks/dfme_mnist.py --ablation --resume --budget 100000 --directions 2,5,10",
    "python benchmarks/dfme_mnist.py --ablation --resume --dataset digits28 --budget 200000 --seeds 0,1,2",
]
#: the ablation's data sets as the table names them
DATASET_LABELS = {"mnist": "MNIST", "digits28": "digits28"}


def ablation_table(items: list[tuple[str, dict[str, Any]]], list_table: Callable, wrap: Callable) -> list[str]:
    """The DFME ablation: one row per data set, budget, loss and m, the mean over its seeds (the page's
    ``list_table`` and ``wrap`` draw it), then :func:`late_starts`."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in ablation_rows(items):
        dataset = str(r.get("dataset", "mnist"))
        key = (dataset != "mnist", dataset, -int(r["budget"]), str(r["loss"]), int(r["n_directions"]))
        groups.setdefault(key, []).append(r)
    if not groups:
        return [
            "No ablation run has finished yet. These commands write its rows (each resumes; the page shows the rows "
            "finished so far):",
            "",
            ".. code-block:: bash",
            "",
            *[line for c in ABLATION_COMMANDS for line in wrap(c)],
            "",
        ]

    def mean(rows, key):
        return sum(float(r[key]) for r in rows) / len(rows)

    table = []
    for (_, dataset, budget, loss, m), rows in sorted(groups.items()):
        acc = [float(r["student_accuracy"]) for r in rows]
        spread = f" ({min(acc):.1%} to {max(acc):.1%})" if len(rows) > 1 else ""
        table.append(
            {
                "run": f"{DATASET_LABELS.get(dataset, dataset)}: loss {loss}, m={m}, {-budget // 1000}k queries",
                "seeds": ", ".join(str(r["seed"]) for r in rows),
                "student accuracy (x victim)": f"{mean(rows, 'student_accuracy'):.1%}{spread} "
                f"({mean(rows, 'student_victim_ratio'):.3f}x)",
                "generator's share of queries": f"{mean(rows, 'generator_share'):.1%}",
                "logit recovery error: mean abs. (relative)": f"{mean(rows, 'logit_mae'):.3f} "
                f"({mean(rows, 'logit_rel_error'):.1%})",
                "probed inputs with a probability under the floor": f"{mean(rows, 'floored_share'):.1%}",
                "queries until 0.2x (per seed)": ", ".join(_left_chance(r) for r in rows),
            }
        )
    return list_table(table, list(table[0]), widths=[20, 7, 20, 12, 17, 12, 12]) + late_starts(groups)


#: the student/victim ratio above which a DFME student has left chance level (10 classes: about 0.1x)
CHANCE_EXIT = 0.2


def _left_chance_at(row: dict[str, Any]) -> int | None:
    """Queries at the first measurement where the student passed :data:`CHANCE_EXIT` times the victim."""
    return next((int(c["queries"]) for c in row.get("curve") or [] if c.get("ratio", 0) >= CHANCE_EXIT), None)


def _left_chance(row: dict[str, Any]) -> str:
    q = _left_chance_at(row)
    return "never" if q is None else f"{q // 1000}k"


def late_starts(groups: dict[tuple, list[dict[str, Any]]]) -> list[str]:
    """A sentence per run that ended at chance level while the same data set, loss, m and seed left it in a longer
    run: the smaller budget stopped before the student started learning."""
    by_run = {}
    for (_, dataset, budget, loss, m), rows in groups.items():
        for r in rows:
            by_run[(dataset, loss, m, r["seed"], -budget)] = r
    lines = []
    for (dataset, loss, m, seed, budget), r in sorted(by_run.items(), key=str):
        if _left_chance_at(r) is not None:
            continue
        longer = [(b, o) for (d, lo, mm, s, b), o in by_run.items() if (d, lo, mm, s) == (dataset, loss, m, seed)]
        longer = [(b, o) for b, o in longer if b > budget and _left_chance_at(o) is not None]
        if longer:
            b, o = min(longer, key=lambda t: t[0])
            lines.append(
                f"- {DATASET_LABELS.get(dataset, dataset)}, loss {loss}, m={m}, seed {seed}: at chance level for all "
                f"of its {budget // 1000}k queries; the same run at {b // 1000}k passed {CHANCE_EXIT}x after "
                f"{_left_chance_at(o) // 1000}k queries and ended at {float(o['student_victim_ratio']):.3f}x."
            )
    if not lines:
        return []
    return [
        "A run that ends at chance level has not *collapsed*: its student has not yet left chance level. Measured "
        "where the same seed also ran with a larger budget:",
        "",
        *lines,
        "",
    ]
