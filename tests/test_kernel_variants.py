"""The driver of the kernels tox envs (.ci/kernel_variants.py): which variants run, and what counts as passing."""

from __future__ import annotations

import importlib.util
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location(
        "kernel_variants", os.path.join(REPO_ROOT, ".ci", "kernel_variants.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert _plan(envs) == [("0", 2)]


def test_no_test_collected_passes_and_any_failed_variant_fails(driver, monkeypatch, capsys):
    calls = []

    def fake_call(cmd, cwd, env):
        calls.append((cmd, env))
        return codes.pop(0)

    monkeypatch.setattr(driver.subprocess, "call", fake_call)
    monkeypatch.setattr(driver, "cpu_flags", lambda: {"avx2"})
    codes = [5]
    assert driver.main(["--framework", "tensorflow", "--cover"]) == 0
    assert "no test collected, counted as passed" in capsys.readouterr().out
    cmd, env = calls[0]
    assert cmd[-5:] == ["--framework", "tensorflow", "-m", "kernels", "-q"] and env["TF_ENABLE_ONEDNN_OPTS"] == "0"
    codes = [0, 1, 0, 0]
    assert driver.main(["--framework", "pytorch", "--", "-k", "dfme"]) == 1
    assert calls[-1][0][-2:] == ["-k", "dfme"]
    assert "FAILED pytorch: ATEN_CPU_CAPABILITY=default threads=2" in capsys.readouterr().out
