"""
The driver of the kernels tox envs (.ci/kernel_variants.py): which variants run, which run side by side, what counts as
passing, and the margins it reports from the ``outcome`` checks (tests/_outcomes.py).
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ci_module(name: str):
    """A script of .ci/ imported as a module."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, ".ci", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def driver():
    return _ci_module("kernel_variants")


def _plan(envs):
    return [
        (env.get("ATEN_CPU_CAPABILITY") or env["TF_ENABLE_ONEDNN_OPTS"], int(env["OMP_NUM_THREADS"])) for env in envs
    ]


def test_every_kernel_with_both_thread_counts_and_avx512_only_where_the_processor_has_it(driver):
    envs, skipped = driver.variants("pytorch", cover=False, flags={"avx", "avx2"})
    assert _plan(envs) == [("default", 1), ("default", 2), ("avx2", 1), ("avx2", 2)]
    assert len(skipped) == 1 and "avx512" in skipped[0] and "avx512f" in skipped[0]
    envs, skipped = driver.variants("pytorch", cover=False, flags={"avx2", "avx512f"})
    assert _plan(envs)[-2:] == [("avx512", 1), ("avx512", 2)] and skipped == []
    envs, _ = driver.variants("tensorflow", cover=False, flags=set())
    assert _plan(envs) == [("0", 1), ("0", 2), ("1", 1), ("1", 2)]
    assert all(env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] for env in envs)


def test_cover_runs_every_value_once_and_not_the_processors_own_setting_on_all_cores(driver):
    envs, _ = driver.variants("pytorch", cover=True, flags={"avx2", "avx512f"})
    assert _plan(envs) == [("default", 1), ("avx2", 2), ("avx512", 1)]
    envs, _ = driver.variants("pytorch", cover=True, flags={"avx2"})
    assert _plan(envs) == [("default", 2), ("avx2", 1)]
    envs, _ = driver.variants("tensorflow", cover=True, flags=set())
    assert _plan(envs) == [("0", 2), ("1", 1)]


def test_one_thread_variants_run_side_by_side_within_the_cores(driver):
    envs, _ = driver.variants("pytorch", cover=False, flags={"avx2"})
    plan = [("pytorch", env) for env in envs]
    waves = [[driver.short(*plan[i]) for i in wave] for wave in driver.schedule(plan, cores=2)]
    assert waves == [["pytorch/default/2"], ["pytorch/avx2/2"], ["pytorch/default/1", "pytorch/avx2/1"]]
    assert [len(w) for w in driver.schedule(plan, cores=1)] == [1, 1, 1, 1]
    assert [len(w) for w in driver.schedule(plan, cores=16)] == [4]


class _FakePopen:
    """Stands for pytest: writes the outcome lines of ``checks`` (value per variant) and exits with the next code."""

    codes: list = []
    calls: list = []
    checks: dict = {}

    def __init__(self, cmd, cwd, env, stdout, stderr):
        self.calls.append((cmd, env))
        variant = env.get("ATEN_CPU_CAPABILITY") or env["TF_ENABLE_ONEDNN_OPTS"], env["OMP_NUM_THREADS"]
        with open(env["ART_EXT_OUTCOMES"], "a") as f:
            for label, (op, threshold, values) in self.checks.items():
                value = values["/".join(variant)]
                margin = value - threshold if op.startswith(">") else threshold - value
                f.write(
                    json.dumps(
                        dict(
                            test="t.py::t",
                            framework="pytorch",
                            label=label,
                            value=value,
                            op=op,
                            threshold=threshold,
                            margin=margin,
                            relative_margin=margin / threshold,
                        )
                    )
                )
                f.write("\n")
        stdout.write("1 passed\n")
        self.rc = self.codes.pop(0)

    def wait(self):
        return self.rc


def test_no_test_collected_passes_and_any_failed_variant_fails(driver, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(driver.subprocess, "Popen", _FakePopen)
    monkeypatch.setattr(driver, "cpu_flags", lambda: {"avx2"})
    _FakePopen.codes, _FakePopen.calls, _FakePopen.checks = [5, 5], [], {}
    assert driver.main(["--framework", "tensorflow", "--cover", "--cores", "2"]) == 0
    assert "no test collected, counted as passed" in capsys.readouterr().out
    cmd, env = _FakePopen.calls[0]
    assert (
        cmd[-8:-1] == ["--framework", "tensorflow", "-m", "kernels", "-q", "-p", "no:cacheprovider"]
        and env["TF_ENABLE_ONEDNN_OPTS"] == "0"
    )
    assert cmd[-1].startswith("--basetemp=")
    values = {"default/1": 0.9, "default/2": 0.8, "avx2/1": 0.95, "avx2/2": 0.85}
    _FakePopen.codes, _FakePopen.checks = [0, 1, 0, 0], {"accuracy": (">=", 0.5, values)}
    report = tmp_path / "margins.json"
    argv = ["--framework", "pytorch", "--cores", "2", "--report", str(report), "--outcomes-dir", str(tmp_path / "kept")]
    assert driver.main(argv + ["--", "-k", "dfme"]) == 1
    assert _FakePopen.calls[-1][0][-2:] == ["-k", "dfme"]
    out = capsys.readouterr().out
    assert "FAILED pytorch: ATEN_CPU_CAPABILITY=avx2 threads=2" in out
    assert "measured 0.8-0.95 over 4; smallest margin +0.3 (+60.0%) at pytorch/default/2" in out
    written = json.loads(report.read_text())
    (row,) = written["checks"]
    assert row["values"] == {f"pytorch/{k}": v for k, v in values.items()} and row["threshold"] == 0.5
    assert row["smallest_margin"] == pytest.approx(0.3) and row["passed_everywhere"]
    assert written["generated_by"].startswith("python .ci/kernel_variants.py --framework pytorch")
    assert [v["exit"] for v in written["variants"]] == [0, 0, 0, 1]  # plan order; avx2/2 ran second
    # The kept variants give the same report again without running anything.
    again = tmp_path / "again.json"
    assert driver.main(["--from-outcomes", str(tmp_path / "kept"), "--report", str(again)]) == 1
    assert json.loads(again.read_text())["checks"] == written["checks"]
    assert len(_FakePopen.calls) == 6
    envs, _ = driver.variants("tensorflow", cover=False, flags=set(), threads=(1,))
    assert _plan(envs) == [("0", 1), ("1", 1)]


def test_outcome_check_asserts_with_its_margin_and_records_the_variant(tmp_path, monkeypatch):
    from _outcomes import Outcome

    path = tmp_path / "outcomes.jsonl"
    monkeypatch.setenv("ART_EXT_OUTCOMES", str(path))
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    outcome = Outcome("tests/t.py::t", "pytorch")
    assert outcome.check("accuracy", 0.93, ">=", 0.9) == 0.93
    with pytest.raises(AssertionError, match=r"error: measured 0.4, needs <= 0.3 \(margin -0.1\)"):
        outcome.check("error", 0.4, "<=", 0.3)
    with pytest.raises(ValueError, match="used twice"):
        outcome.check("accuracy", 0.93, ">=", 0.9)
    with pytest.raises(ValueError, match="op"):
        outcome.check("other", 1.0, "==", 1.0)
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert (
        first["margin"] == pytest.approx(0.03) and first["passed"] and first["variant"]["ATEN_CPU_CAPABILITY"] == "avx2"
    )
    assert second["margin"] == pytest.approx(-0.1) and not second["passed"]


@pytest.fixture(scope="module")
def comments():
    return _ci_module("kernel_comments")


def test_every_check_comment_states_what_the_committed_report_measured(comments, capsys):
    # .ci/kernel_comments.py writes them from .ci/kernel_margins.json: a threshold, a check or a report changed
    # without the other fails here.
    assert comments.main([os.path.join(REPO_ROOT, ".ci", "kernel_margins.json"), "--check"]) == 0, capsys.readouterr()
    assert "not in the report" not in capsys.readouterr().out


def test_comment_takes_every_case_and_the_smallest_margin(comments):
    def row(test, values, thresholds, op=">="):
        margins = {v: values[v] - thresholds[v] for v in values}
        worst = min(margins, key=margins.get)
        return {"test": test, "op": op, "values": values, "thresholds": thresholds, "margins": margins,
                "smallest_margin": margins[worst], "smallest_margin_variant": worst}  # fmt: skip

    a = row("t.py::test_x[a]", {"pytorch/default/1": 0.91, "tensorflow/onednn0/2": 0.95}, dict.fromkeys(["pytorch/default/1", "tensorflow/onednn0/2"], 0.8))  # fmt: skip
    b = row("t.py::test_x[b]", {"pytorch/default/1": 0.85, "tensorflow/onednn0/2": 0.97}, dict.fromkeys(["pytorch/default/1", "tensorflow/onednn0/2"], 0.8))  # fmt: skip
    text = comments.comment([a, b])
    assert text == (
        "measured PyTorch 0.85-0.91, TensorFlow 0.95-0.97 over 2 kernel variants x 2 cases; smallest margin 0.05 "
        "(>= 0.8 needed, pytorch/default/1)"
    )
    c = row("t.py::test_y", {"pytorch/avx2/2": 0.5}, {"pytorch/avx2/2": 0.45})
    c["thresholds"]["pytorch/default/2"], c["values"]["pytorch/default/2"] = 0.4, 0.6
    c["margins"]["pytorch/default/2"] = 0.2
    assert comments.comment([c]).endswith("smallest margin 0.05 (0.5 >= 0.45 there, pytorch/avx2/2)")
