"""The console script: doctor, a quick demo run that writes a report with plots, and up-front option checks."""

import os
import subprocess
import sys

import numpy as np
import pytest
from png_checks import assert_png

from art_ext.cli import doctor
from art_ext.cli.main import COMMANDS, build_parser, main


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
    assert len(pngs) >= 2
    for f in pngs:
        assert_png(out / f)
        assert f"({f})" in text  # referenced by the report


def test_demo_rejects_unknown_section(tmp_path, framework, capsys):
    assert main(["demo", "--framework", framework, "--out", str(tmp_path), "--sections", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown section(s) nope" in err and len(err.strip().splitlines()) == 1


BAD_OPTIONS = [
    (["vat", "--epochs", "0"], "--epochs"),
    (["vat", "--labels", "0"], "--labels"),
    (["vat", "--labels", "5"], "--labels"),
    (["dfme", "--victim-epochs", "0"], "--victim-epochs"),
    (["dfme", "--victim-epochs", "-1"], "--victim-epochs"),
    (["dfme", "--budget", "0"], "--budget"),
    (["lmt", "--epochs", "-3"], "--epochs"),
    (["lmt", "--c", "nan"], "--c"),
    (["distillation", "--eps", "0.3,abc"], "--eps"),
    (["distill", "--eps", "0.3,0.1"], "--eps"),
    (["distill", "--temperature", "0"], "--temperature"),
    (["demo", "--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("argv, option", BAD_OPTIONS)
def test_bad_options_fail_in_one_line_before_training(argv, option, tmp_path, capsys):
    code = None
    try:
        code = main(argv + ["--out", str(tmp_path / "out")])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert option in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", ["lmt", "vat", "dfme", "distillation", "demo"])
def test_unusable_out_fails_in_one_line(command, tmp_path, capsys):
    existing = tmp_path / "a_file"
    existing.write_text("x")
    for out in (str(existing), "/proc/art_ext_no/such/folder"):
        assert main([command, "--out", out]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_runtime_error_is_one_line_and_verbose_gives_traceback(tmp_path, capsys):
    argv = ["dfme", "--dataset", "mnist", "--data", str(tmp_path), "--quick"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "mnist" in err.lower(), err
    assert main(["-v"] + argv) == 1
    assert "Traceback" in capsys.readouterr().err


def test_every_command_has_description_examples_and_option_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)
    for name in ("doctor", "demo", "dfme", "distillation", "lmt", "vat"):
        command = sub.choices[name]
        assert command.description, name
        if name != "doctor":
            assert command.epilog and command.epilog.startswith("examples:"), name
            options = {o for a in command._actions for o in a.option_strings}
            assert {"--out", "--quick", "--seed", "--verbose"} <= options, name
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings} has no help text"
    assert sub.choices["distill"] is sub.choices["distillation"]


@pytest.mark.kernels
def test_lmt_curve_starts_at_clean_accuracy(framework, digits, outcome):
    from art_ext.cli.experiments.lmt import certified_curves
    from art_ext.models import build_model, input_shape_of, make_classifier

    (x_train, y_train), (x_test, y_test), _, _ = digits
    clf = make_classifier(build_model("digits_cnn", framework, seed=0), input_shape_of("digits_cnn", framework))
    clf.fit(x_train[:200], y_train[:200], nb_epochs=1, batch_size=64)
    rows, radii_of = certified_curves({"net": clf}, x_test[:60], y_test[:60])
    clean = rows[0][3]
    # measured PyTorch 0.333, TensorFlow 0.383 over 8 kernel variants; smallest margin 0.617 (< 1 needed,
    # tensorflow/onednn0/1)
    outcome.check("clean accuracy after 1 epoch on 200 digits", clean, "<", 1.0)
    assert np.mean(radii_of["net"] >= 0.0) == pytest.approx(clean)


def test_labelled_subset_is_exact_and_balanced():
    from art_ext.cli.experiments.vat import labelled_subset

    y = np.repeat(np.arange(10), 30)
    for n in (10, 25, 50, 99):
        idx = labelled_subset(y, n)
        assert len(idx) == n and len(set(idx)) == n
        counts = np.bincount(y[idx], minlength=10)
        assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="n_labels"):
        labelled_subset(y, 0)


@pytest.mark.only_with_framework("tensorflow")
def test_tensorflow_is_quiet_unless_verbose():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    quiet = subprocess.run([sys.executable, "-m", "art_ext.cli", "doctor"], capture_output=True, text=True, env=env)
    assert quiet.returncode == 0
    assert "oneDNN" not in quiet.stderr and "cuInit" not in quiet.stderr and "absl" not in quiet.stderr, quiet.stderr


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "art_ext.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "doctor" in result.stdout and "demo" in result.stdout
