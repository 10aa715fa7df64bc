"""The console script: doctor and a quick demo run that writes a report with plots."""

import os
import subprocess
import sys

from art_ext.cli import doctor
from art_ext.cli.main import main


def test_doctor_reports_versions_and_data(tmp_path, capsys, framework):
    (tmp_path / "rt-polarity").mkdir()
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        (tmp_path / "rt-polarity" / name).write_text("x\n")
    info = doctor.collect(str(tmp_path))
    assert info["art_ext"] and info["adversarial-robustness-toolbox"].startswith("1.20")
    assert info["data: rt-polarity"].endswith("rt-polarity") and info["data: mnist"] == "not found"
    assert info["torch" if framework == "pytorch" else "tensorflow"] != "not installed"
    assert main(["doctor", "--data", str(tmp_path)]) == 0
    assert "CUDA" in capsys.readouterr().out


def test_demo_quick_writes_report(tmp_path, framework):
    out = tmp_path / "report"
    assert main(["demo", "--framework", framework, "--out", str(out), "--quick", "--sections", "baseline"]) == 0
    text = (out / "report.md").read_text()
    assert "Clean test accuracy" in text and "| eps (l-inf)" in text
    pngs = [f for f in os.listdir(out) if f.endswith(".png")]
    assert len(pngs) >= 2 and all(os.path.getsize(out / f) > 1000 for f in pngs)


def test_demo_rejects_unknown_section(tmp_path, framework):
    import pytest

    with pytest.raises(ValueError, match="Unknown demo section"):
        main(["demo", "--framework", framework, "--out", str(tmp_path), "--sections", "nope"])


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "art_ext.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "doctor" in result.stdout and "demo" in result.stdout
