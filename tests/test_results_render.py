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


def _lmt(seed, verified, epochs=60, architecture="lipschitz_mlp", curve=True):
    config = {"architecture": architecture, "c": 1.58, "epochs": epochs, "seed": seed, "no_plain": seed > 0}
    row = {"key": "lmt", "training": "LMT c=1.58", "clean": 0.9, "verified_1.58": verified}
    if curve:
        row["certified_curve"] = [{"radius": 0.0, "accuracy": 0.9}, {"radius": 1.58, "accuracy": verified}]
    paper = {"citation": "Tsuzuku et al. 2018", "verified_at_1.58": {"LMT (reproduced)": 0.406, "GloRo": 0.628}}
    return {
        "benchmark": "lmt_mnist",
        "complete": True,
        "quick": False,
        "seed": seed,
        "config": config,
        "setting": f"MNIST, {architecture}, {epochs} epochs",
        "paper": paper,
        "rows": [row],
        "command": f"python benchmarks/lmt_mnist.py --data /some/where/data --epochs {epochs} --seed {seed}",
        "machine": {"cpu_count": 2, "gpu": None},
        "wall_s": 12.5,
    }


def _glance(text):
    """The rows of the at-a-glance table: {target: [ours, seeds, paper, verdict]}."""
    table = text.split("At a glance")[1].split("The papers' figures")[0]
    rows = {}
    for block in table.split("   * - ")[2:]:
        cells = [c.strip() for c in block.split("\n     - ")]
        rows[cells[0]] = [c.split("\n\n")[0] for c in cells[1:]]
    return rows


def _tables(text):
    """Every list-table of the page as its list of rows, each a list of cells."""
    tables = []
    for part in text.split(".. list-table::")[1:]:
        body = part.split("\n\n", 2)[1] if ":widths:" not in part.split("\n\n")[0] else part.split("\n\n", 2)[1]
        rows = [[c.strip() for c in r.split("\n     - ")] for r in body.split("   * - ")[1:]]
        tables.append(rows)
    return tables


LMT = "LMT: verified accuracy at l2 1.58 above the reproduced LMT"
GLORO = "State of the art: verified accuracy at l2 1.58 against GloRo's (our LMT or GloRo training)"


def test_one_row_per_target_mean_and_spread_over_seeds(tmp_path, render):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    docs.mkdir()
    # an early small run (another configuration, one seed, 0.0%) and a three-seed configuration
    _write(results, "lmt_mnist", _lmt(0, 0.0, epochs=15, architecture="gloro_small"))
    for seed, v in ((0, 0.44), (1, 0.43), (2, 0.45)):
        _write(results, f"lmt_mnist_mlp_s{seed}", _lmt(seed, v))
    text = render(str(results), str(docs / "results.rst"))
    assert text == (docs / "results.rst").read_text()
    glance = _glance(text)
    # one row per target, the three-seed configuration: mean, spread, seeds, the paper's number, the verdict
    assert glance[LMT] == ["44.0% (43.0% to 45.0%); clean 90.0%", "0, 1, 2", "40.6% (LMT, Lee et al. 2020)", "met"]
    assert glance[GLORO][3] == "missed, by 18.8 points"
    # the early small run is no target row: it is listed with the runs only
    assert sum("verified accuracy at l2 1.58" in t for t in glance) == 2
    top, runs = text.split("Runs behind the rows\n----")
    assert not any(cells[0].startswith("0.0%") for cells in glance.values()) and "gloro_small" not in top
    assert "lmt_mnist\n^^^^^^^^^" in runs and "gloro_small" in runs
    # the commands, without the machine's data path, and the runs behind each target row named
    assert "ART_EXT_DATA=<data root> python benchmarks/lmt_mnist.py \\\n       --epochs 60 --seed 1\n" in text
    assert "/some/where" not in text
    assert "behind the target rows: LMT; State of the art" in text
    # targets without any run say so
    assert glance["VAT (plain), MNIST, 100 labels: test error at most 1.5%"][0] == "not run"


def test_verdict_is_computed_from_the_json(tmp_path, render):
    results = tmp_path / "results"
    results.mkdir()
    for seed, v in ((0, 0.40), (1, 0.41), (2, 0.40)):  # mean 40.33%: below the reproduced LMT's 40.6%
        _write(results, f"lmt_s{seed}", _lmt(seed, v))
    vat = {"benchmark": "vat_mnist", "complete": False, "config": {"epochs": 16}, "seed": 0}
    vat["rows"] = [{"key": "v", "method": "VAT", "labels": 100, "error": 0.0149}]
    _write(results, "vat_mnist", vat)
    glance = _glance(render(str(results), str(tmp_path / "results.rst")))
    assert glance[LMT][0].startswith("40.3% (40.0% to 41.0%)") and glance[LMT][3] == "missed, by 0.3 points"
    vat_row = glance["VAT (plain), MNIST, 100 labels: test error at most 1.5%"]
    assert vat_row == ["1.49%", "0", "1.36% (VAT)", "met (run incomplete)"]
    # a missed FGSM row says what differs from the paper, from the run's own configuration and rows
    fgsm = {"benchmark": "fgsm_mnist", "config": {"architecture": "maxout", "epochs": 10, "adv_epochs": 5}}
    fgsm["rows"] = [{"key": "n", "model": "normal", "fgsm_error": 0.95, "clean_error": 0.025}]
    fgsm["rows"].append({"key": "a", "model": "FGSM-trained", "fgsm_error": 0.19, "clean_error": 0.04})
    _write(results, "fgsm_mnist", fgsm)
    text = render(str(results), str(tmp_path / "results.rst"))
    glance = _glance(text)
    normal = glance["FGSM (eps 0.25) error on the maxout network, within 3 points"]
    assert normal[3] == "missed, +5.6 points (why: below)"
    assert (
        "- *FGSM (eps 0.25) error on the maxout network, within 3 points*: 10 epochs of Adam, not the paper's SGD "
        "trained to early stopping; clean error 2.50% against the paper's 0.94%.\n" in text
    )
    assert glance["FGSM error on the FGSM-trained maxout network, within 3 points"][3] == "met"  # nothing to explain
    # with runs of several lengths, a missed row gives the error after each
    fgsm["config"] = dict(fgsm["config"], adv_epochs=2)
    fgsm["rows"][1] = dict(fgsm["rows"][1], fgsm_error=0.40)
    _write(results, "fgsm_mnist", fgsm)
    short = dict(fgsm, config=dict(fgsm["config"], adv_epochs=1), rows=[dict(fgsm["rows"][1], fgsm_error=0.5)])
    _write(results, "fgsm_mnist_short", short)
    text = render(str(results), str(tmp_path / "results.rst"))
    assert "FGSM error 50.0% after 1 epochs, 40.0% after 2 epochs.\n" in text
    # the distillation row carries the measured JSMA split
    distilled = {"key": "d", "model": "distilled T=100", "JSMA (softmax)": 0.05}
    distilled |= {"JSMA (softmax): zero target gradient": 0.9, "JSMA (softmax) success, zero gradient": 0.0}
    distilled["JSMA (softmax) success, non-zero gradient"] = 0.5
    config = {"epochs": 50, "train_size": 60000}
    _write(results, "distillation_mnist", {"benchmark": "distillation_mnist", "config": config, "rows": [distilled]})
    # the paper's loop as the mean over the seeds it ran
    for seed, ratio, ours in ((0, 0.90, 0.95), (1, 0.96, 0.93)):
        loop = {"thief_key": "reference", "thief": "reference loop", "queries": 199_000, "student_victim_ratio": ratio}
        thief = dict(loop, thief_key="art_ext-pytorch", thief="art_ext pytorch", student_victim_ratio=ours)
        _write(results, f"dfme_mnist_200000_s{seed}", {"benchmark": "dfme_mnist", "seed": seed, "rows": [thief, loop]})
    text = render(str(results), str(tmp_path / "results.rst"))
    glance = _glance(text)
    jsma = glance["Distillation (T=100): JSMA success on the distilled network, within 2 points"]
    assert (
        jsma[0]
        == "5.0%; target gradient exactly zero on 90.0% of inputs, success 0.0% where zero, success 50.0% where non-zero"
    )
    assert jsma[3] == "missed, +4.6 points (why: below)"
    assert "cause measured: 0% of the successes start from an all-zero saliency map, where ART's JSMA goes on changing pixels no gradient chose; an attack stopping there would succeed on at most 5.0%.\n" in text  # fmt: skip
    dfme = glance["DFME on MNIST, 200k queries: student / victim accuracy at least the paper's loop"]
    assert dfme[2] == "0.930x (the paper's loop, our runs at 200k, mean of seeds 0, 1, 0.900x to 0.960x)"
    assert dfme[:2] == ["0.940x (0.930x to 0.950x)", "0, 1"] and dfme[3] == "met"


def test_tables_fit_the_page_and_figures_are_drawn(tmp_path, render):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    docs.mkdir()
    for seed in (0, 1):
        _write(results, f"lmt_s{seed}", _lmt(seed, 0.42))
    wide = {"key": "w", "model": "wide"} | {f"column {i}": i / 7 for i in range(15)}
    long = "python benchmarks/fgsm_mnist.py " + " ".join(f"--option-{i} {i}" for i in range(20))
    _write(results, "fgsm_mnist", {"benchmark": "fgsm_mnist", "command": long, "rows": [wide]})
    curve = [{"epoch": e, "error": 0.1 / e} for e in range(1, 5)]
    vat = {"benchmark": "vat_mnist", "complete": True, "config": {"epochs": 4}, "seed": 0}
    vat["rows"] = [{"key": "v", "method": "VAT+EntMin", "labels": 100, "error": 0.025, "error_curve": curve}]
    vat["rows"].append({"key": "v1000", "method": "VAT+EntMin", "labels": 1000, "error": 0.02})
    _write(results, "vat_mnist", vat)
    ratio = [{"queries": q, "ratio": q / 4000} for q in (1000, 2000, 4000)]
    dfme = {"benchmark": "dfme_mnist", "seed": 0}
    dfme["rows"] = [{"thief": "art_ext pytorch", "thief_key": "art_ext-pytorch", "queries": 4000, "curve": ratio}]
    _write(results, "dfme_mnist_4000", dfme)
    text = render(str(results), str(docs / "results.rst"))
    tables = _tables(text)
    assert tables and all(len(row) <= 7 for table in tables for row in table)  # MAX_COLUMNS
    # the 16 columns of the wide row are all there, split over tables that each repeat the row's name
    cells = [c for table in tables for row in table for c in row]
    assert all(f"column {i}" in cells for i in range(15)) and cells.count("wide") == 3
    # commands are wrapped: no code line runs off the page
    code = [line for line in text.splitlines() if line.startswith("   ") and "--option-" in line]
    assert len(code) > 2 and all(len(line) <= 66 for line in code)
    assert "--option-19 19" in text
    for png in ("lmt_verified_vs_radius", "vat_error_vs_epochs", "vat_error_vs_labels", "dfme_accuracy_vs_queries"):
        assert_png(docs / "results" / f"{png}.png")
        assert f".. image:: results/{png}.png" in text


def test_dfme_ablation_table_from_the_ablation_files(tmp_path, render):
    results = tmp_path / "results"
    results.mkdir()

    def row(seed, loss, m, acc, share, budget=200_000):
        curve = [{"queries": 1000, "ratio": acc / 2}, {"queries": budget, "ratio": acc}]
        return {
            "key": f"{loss}-m{m}-seed{seed}",
            "seed": seed,
            "loss": loss,
            "n_directions": m,
            "budget": budget,
            "student_accuracy": acc,
            "student_victim_ratio": acc,
            "generator_share": share,
            "logit_mae": 0.5,
            "logit_rel_error": 0.1,
            "floored_share": 0.25,
            "curve": curve,
        }

    base = {"benchmark": "dfme_mnist_ablation_200000", "config": {"budget": 200000, "seeds": "0"}, "complete": True}
    _write(results, "dfme_mnist_ablation_200000", dict(base, rows=[row(0, "l1", 1, 0.96, 2 / 7)]))
    _write(results, "dfme_mnist_ablation_200000_seed1", dict(base, rows=[row(1, "l1", 1, 0.94, 2 / 7)]))
    rows = [row(0, "kl", 1, 0.5, 2 / 7, 100_000), row(0, "l1", 10, 0.9, 11 / 16, 100_000)]
    rows.append(dict(row(0, "l1", 1, 0.09, 2 / 7, 100_000), curve=[{"queries": 100_000, "ratio": 0.09}]))
    _write(results, "dfme_mnist_ablation_100000", {"benchmark": "dfme_mnist_ablation_100000", "rows": rows})
    digits = {"benchmark": "dfme_digits28_ablation_200000", "config": {"dataset": "digits28"}}
    _write(results, "dfme_digits28_ablation_200000", dict(digits, rows=[dict(row(0, "l1", 1, 0.99, 0.3), dataset="digits28")]))  # fmt: skip
    text = render(str(results), str(tmp_path / "results.rst"))
    ablation = text.split("DFME ablation: loss and zeroth-order directions")[1].split("Runs behind the rows\n----")[0]
    assert "MNIST: loss l1, m=1, 200k queries\n     - 0, 1\n     - 95.0% (94.0% to 96.0%) (0.950x)" in ablation
    assert "digits28: loss l1, m=1, 200k queries\n     - 0\n     - 99.0% (0.990x)" in ablation
    # a run ending at chance, with the same seed longer: when its student left chance level
    assert "MNIST, loss l1, m=1, seed 0: at chance level for all of its 100k queries; the same run at 200k passed " \
        "0.2x after 1k queries and ended at 0.960x." in ablation  # fmt: skip
    assert "loss l1, m=10, 100k queries" in ablation and "68.8%" in ablation  # the generator's share at m=10
    assert "loss kl, m=1, 100k queries" in ablation and "0.500 (10.0%)" in ablation
    # the ablation is a table of its own: the target compares the side-by-side runs with the paper's loop
    glance = _glance(text)
    assert glance["DFME on MNIST, 200k queries: student / victim accuracy at least the paper's loop"][0] == "not run"


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
    run.data["train_seconds"] = {"model": 5.0}  # what trained() records when it trains
    run.finish()
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["rows"][0] == {"key": "a", "value": 1.0, "seconds": data["rows"][0]["seconds"]}
    assert data["complete"] and data["quick"] and data["benchmark"] == "x"
    assert {"python", "numpy", "torch", "tensorflow", "art", "art_ext", "art_ext_commit"} <= set(data["versions"])
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
    # and the training times of the earlier run (a resumed run loads its weights from the cache, training nothing)
    assert json.loads((tmp_path / "x.json").read_text())["train_seconds"] == {"model": 5.0}
    # another configuration starts afresh
    args.n = 4
    run = common.Run("x", args, {}, selectors=("seeds",))
    assert run.done("a") is None
    # the command never holds the data path
    monkeypatch.undo()
    assert common.command_line(["benchmarks/x.py", "--data", "/a/b", "--quick"]) == "python benchmarks/x.py --quick"
