"""The results page renderer (benchmarks/render_results.py) and the benchmark harness (benchmarks/_common.py)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

import pytest
from png_checks import assert_png

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def render():
    pytest.importorskip("matplotlib")
    return _module("render_results").render


def _write(folder, name, data):
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump(data, f)


def test_render_tables_plots_and_targets(tmp_path, render):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    docs.mkdir()
    _write(
        results,
        "lmt_mnist",
        {
            "benchmark": "lmt_mnist",
            "command": "python benchmarks/lmt_mnist.py --data /some/where/data --epochs 3",
            "quick": False,
            "complete": True,
            "seed": 0,
            "wall_s": 12.5,
            "machine": {"cpu_count": 2, "gpu": None},
            "versions": {"python": "3.11", "numpy": "2.0"},
            "paper": {"citation": "Tsuzuku et al. 2018", "verified_at_1.58": {"LMT (reproduced)": 0.406}},
            "notes": "a note",
            "speedup": 7.25,
            "rows": [
                {
                    "key": "lmt",
                    "training": "LMT c=1.58",
                    "clean": 0.91234,
                    "verified_1.58": 0.5,
                    "certified_curve": [{"radius": 0.0, "accuracy": 0.9}, {"radius": 1.58, "accuracy": 0.5}],
                },
                {"key": "tightness/lmt", "table": "tightness chain", "model": "LMT", "(D)/(C)": 1.75},
            ],
        },
    )
    # The DFME helper's format: a "curve" of {"queries", "ratio"} and no paper/quick keys.
    _write(
        results,
        "dfme_mnist",
        {
            "benchmark": "dfme_mnist",
            "command": "python benchmarks/dfme_mnist.py",
            "seed": 1,
            "wall_s": 3.0,
            "machine": {"cpu_count": 2},
            "rows": [
                {
                    "budget": 1000,
                    "ratio": 0.42,
                    "curve": [{"queries": 10, "ratio": 0.1}, {"queries": 1000, "ratio": 0.42}],
                }
            ],
        },
    )
    _write(
        results,
        "vat_mnist_quick",
        {
            "benchmark": "vat_mnist",
            "command": "python benchmarks/vat_mnist.py --quick",
            "quick": True,
            "complete": False,
            "rows": [
                {"key": "VAT/labels=100", "method": "VAT", "labels": 100, "error": 0.3},
                {"key": "VAT/labels=1000", "method": "VAT", "labels": 1000, "error": 0.1},
            ],
        },
    )
    text = render(str(results), str(docs / "results.rst"))
    assert text == (docs / "results.rst").read_text()
    # one section per file, in the page's order (LMT before VAT before DFME)
    assert text.index("Lipschitz-margin training") < text.index("VAT: MNIST") < text.index("DFME")
    # the rows' numbers, formatted, with the paper's anchor beside them
    assert "     - 0.9123" in text and "   * - LMT c=1.58" in text and "0.406" in text
    # the command, without the machine's data path
    assert "ART_EXT_DATA=<data root> python benchmarks/lmt_mnist.py --epochs 3" in text
    assert "/some/where" not in text
    # rows naming a table go to a table of their own
    assert "*tightness chain*:" in text and "     - 1.75" in text and "   * - table" not in text
    # extra scalars, notes, run metadata, status of quick / incomplete runs
    assert "speedup: 7.25" in text and "Notes: a note" in text and "2 CPU cores, GPU: none" in text
    assert "**quick configuration**" in text and "**incomplete run**" in text
    # the targets table: the LMT target met (0.5 > 0.406); the quick VAT run is not checked
    assert "LMT verified accuracy at l2 1.58 > 40.6%" in text and "     - met" in text
    assert "VAT, MNIST 100 labels" not in text
    # plots written and referenced
    for png in ("lmt_mnist_certified_curve.png", "dfme_mnist_curve.png", "vat_mnist_quick_error_vs_labels.png"):
        assert_png(docs / "results" / png)
        assert f".. image:: results/{png}" in text


def test_render_reports_missed_targets(tmp_path, render):
    results = tmp_path / "results"
    results.mkdir()
    summary = [
        {"method": "baseline", "eps": "auto", "seeds": 3, "mean_accuracy": 0.75},
        {"method": "AT", "eps": 5.0, "seeds": 3, "mean_accuracy": 0.5},
        {"method": "AT", "eps": 1.0, "seeds": 3, "mean_accuracy": 0.77},
        {"method": "VAT", "eps": 1.0, "seeds": 3, "mean_accuracy": 0.74},
    ]
    data = {"benchmark": "vat_text", "config": {"eps": "1.0"}, "rows": [], "tables": {"summary": summary}}
    _write(results, "vat_text", data)
    text = render(str(results), str(tmp_path / "results.rst"))
    assert "AT beats the baseline" in text and "     - met" in text
    assert "missed (by 1.00% points)" in text
    assert "77.00% vs 75.00%" in text  # the eps of the command, not the other eps of a sweep


def test_render_averages_seeds_and_lists_earlier_commands(tmp_path, render):
    results = tmp_path / "results"
    results.mkdir()
    for seed, v in ((0, 0.40), (1, 0.43), (2, 0.44)):
        config = {"c": 1.58, "epochs": 30, "seed": seed, "no_plain": seed > 0}
        rows = [{"key": "lmt", "training": "LMT c=1.58", "clean": 0.9, "verified_1.58": v}]
        data = {"benchmark": "lmt_mnist", "complete": True, "config": config, "rows": rows, "command": f"s{seed}"}
        _write(results, f"lmt_mnist_s{seed}", data)
    # another configuration is not averaged in
    other = {"c": 1.58, "epochs": 60, "seed": 0}
    rows = [{"key": "lmt", "training": "LMT c=1.58", "clean": 0.9, "verified_1.58": 0.0}]
    _write(results, "lmt_mnist_z", {"benchmark": "lmt_mnist", "complete": True, "config": other, "rows": rows})
    vat = {"benchmark": "vat_mnist", "complete": True, "command": "python b.py --methods VAT+EntMin"}
    vat["resumed_from"] = ["python b.py --methods VAT"]
    vat["rows"] = [{"key": "v", "method": "VAT+EntMin", "labels": 100, "error": 0.0137}]
    _write(results, "vat_mnist", vat)
    text = render(str(results), str(tmp_path / "results.rst"))
    assert "mean over 3 seeds" in text and "42.33% (min 40.00%, max 44.00%" in text
    assert "missed (by 0.6% points)" in text  # the seed-0 file alone
    assert "VAT+EntMin, MNIST 100 labels: test error <= 2%" in text
    assert "Command of the last run" in text and "python b.py --methods VAT" in text.split("Earlier runs")[1]


def test_render_empty_folder(tmp_path, render):
    (tmp_path / "r").mkdir()
    assert "No results yet." in render(str(tmp_path / "r"), str(tmp_path / "results.rst"))


def test_harness_resumes_finished_rows(tmp_path, monkeypatch):
    common = _module("_common")
    out = str(tmp_path / "x.json")
    args = argparse.Namespace(data=None, seed=0, quick=True, out=out, fresh=False, seeds="0", n=3)
    calls = []

    def compute(i):
        calls.append(i)
        return {"value": float(i)}

    run = common.Run("x", args, {"citation": "c"})
    run.row("a", lambda: compute(1))
    run.finish()
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["rows"][0] == {"key": "a", "value": 1.0, "seconds": data["rows"][0]["seconds"]}
    assert data["complete"] and data["quick"] and data["benchmark"] == "x"
    assert {"python", "numpy", "torch", "tensorflow", "art", "art_ext"} <= set(data["versions"])
    assert {"cpu_count", "platform", "gpu"} <= set(data["machine"])
    # same configuration (a selector may differ): the finished row is kept, only the new one computed
    args.seeds = "0,1"
    monkeypatch.setattr(common, "command_line", lambda argv: "python x.py --seeds 0,1")
    run = common.Run("x", args, {}, selectors=("seeds",))
    assert run.row("a", lambda: compute(2))["value"] == 1.0
    run.row("b", lambda: compute(3))
    assert calls == [1, 3]
    # the file keeps the earlier command, whose rows the new command alone would not recompute
    assert json.loads((tmp_path / "x.json").read_text())["resumed_from"] == [data["command"]]
    # another configuration starts afresh
    args.n = 4
    run = common.Run("x", args, {}, selectors=("seeds",))
    assert run.done("a") is None
    # the command never holds the data path
    monkeypatch.undo()
    assert common.command_line(["benchmarks/x.py", "--data", "/a/b", "--quick"]) == "python benchmarks/x.py --quick"
