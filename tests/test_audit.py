"""``art-ext audit`` and :func:`art_ext.evaluations.audit`: end to end on saved models, verdicts, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import time

import numpy as np
import pytest

from art_ext.cli.main import main
from art_ext.evaluations import AUDIT_SECTIONS, audit
from art_ext.models import ARCHITECTURES, build_model, make_classifier

pytestmark = pytest.mark.usefixtures("single_thread")

BUDGET_MINUTES = 0.5
FAST = ["--sample-size", "60", "--budget-minutes", str(BUDGET_MINUTES), "--extraction-queries", "1800", "--quiet"]
MASKING = dict(
    max_samples=50, pgd_steps=10, cw_max_iter=3, cw_binary_search_steps=2, square_max_iter=30, noise_samples=3
)


def _check_outputs(out, budget_minutes=BUDGET_MINUTES, certifiable=None):
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).stat().st_size > 1000, name
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "art_ext.audit/1"
    assert sorted(results["sections"]) == sorted(AUDIT_SECTIONS)
    for key, section in results["sections"].items():
        assert section["status"] == "done", (key, section["reason"])
        assert section["estimated_seconds"] > 0
    assert results["summary"] and all(f["section"] in AUDIT_SECTIONS for f in results["summary"])
    # The budget caps the run (plus a margin for the estimates' error on a loaded machine).
    # A 30 s budget is below what the sections need at their smallest sizes; loading and the first (traced)
    # TensorFlow calls add ~10 s on a loaded 2-core machine. The 5-minute budget on MNIST is in docs/audit.rst.
    assert results["seconds"] <= 60 * budget_minutes * 1.5 + 30, results["seconds"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and 'src="robustness' not in html
    md = (out / "report.md").read_text()
    assert "## Summary" in md and "(#masking)" in md and "![" in md
    assert all((out / f).exists() for f in ("robustness_curves.png", "extraction_agreement.png"))
    robustness = results["sections"]["robustness"]["results"]["curves"]
    assert set(robustness) == {"inf", "2"} and len(robustness["inf"]["accuracy"]["worst_case"]) == 6
    # Attacks run cheapest first; past the section's deadline the rest are left out and the report says so.
    ran = set(robustness["inf"]["accuracy"]) - {"worst_case"}
    assert "fgsm" in ran and ({"fgsm", "pgd", "square"} <= ran or "left out" in md)
    # Each asked-for attack ran or the report says why not (HopSkipJump: Square is the check on square images).
    left_out = results["sections"]["robustness"]["results"]["attacks_left_out"]
    assert ran | set(left_out) == {"fgsm", "pgd", "square", "hopskipjump", "autoattack"}, (ran, left_out)
    # Each attack that ran (or was stopped) has its estimate beside its time, as benchmarks/audit_mnist.py reports.
    timing = results["sections"]["robustness"]["results"]["seconds_by_attack"]
    assert ran <= set(timing) and all(t["estimated_s"] > 0 and t["actual_s"] >= 0 for t in timing.values()), timing
    cert = results["sections"]["certification"]["results"]
    if certifiable is not None:
        assert cert["certifiable"] is certifiable, cert
    victims = results["sections"]["extraction"]["results"]["victims"]
    assert "none" in victims and (len(victims) == 3 or "left out" in md)
    assert all(v["queries_used"] <= 1800 for v in victims.values())
    return results


@pytest.mark.only_with_framework("pytorch")
@pytest.mark.kernels
def test_audit_torchscript_model(digits_cnn_classifier, digits_npz, tmp_path, outcome):
    import torch

    model_path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.script(digits_cnn_classifier.model.eval()), str(model_path))
    out = tmp_path / "report"
    start = time.perf_counter()
    assert main(["audit", str(model_path), "--data", digits_npz, "--out", str(out)] + FAST) == 0
    assert time.perf_counter() - start < 180
    results = _check_outputs(out, certifiable=True)
    # The audit does not refuse TorchScript: the certifier reads the scripted graph.
    cert = results["sections"]["certification"]["results"]
    assert cert["lipschitz_bound"] > 0
    # measured PyTorch 0.967 over 4 kernel variants; smallest margin 0.067 (>= 0.9 needed, pytorch/avx2/1)
    outcome.check("certified accuracy at radius 0", cert["certified_accuracy"][0], ">=", 0.9)
    # measured PyTorch 0.967 over 4 kernel variants; smallest margin 0.067 (>= 0.9 needed, pytorch/avx2/1)
    outcome.check("clean accuracy", results["sections"]["clean"]["results"]["accuracy"], ">=", 0.9)


@pytest.mark.only_with_framework("pytorch")
@pytest.mark.kernels
def test_audit_factory_and_state_dict(digits_cnn_classifier, digits_npz, tmp_path, monkeypatch, outcome):
    import torch

    (tmp_path / "audit_test_models.py").write_text(
        "from art_ext.models import build_model\n\n\ndef digits_cnn():\n"
        '    return build_model("digits_cnn", "pytorch")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "cnn_state.pt"
    torch.save(digits_cnn_classifier.model.state_dict(), str(weights))
    out = tmp_path / "report"
    argv = ["audit", "audit_test_models:digits_cnn", "--weights", str(weights), "--data", digits_npz]
    assert main(argv + ["--out", str(out)] + FAST) == 0
    results = _check_outputs(out, certifiable=True)
    cert = results["sections"]["certification"]["results"]
    assert cert["lipschitz_bound"] > 0
    # measured PyTorch 0.967 over 4 kernel variants; smallest margin 0.067 (>= 0.9 needed, pytorch/avx2/1)
    outcome.check("certified accuracy at radius 0", cert["certified_accuracy"][0], ">=", 0.9)
    # The weights were loaded: the clean accuracy is the trained model's, not a fresh one's.
    # measured PyTorch 0.967 over 4 kernel variants; smallest margin 0.067 (>= 0.9 needed, pytorch/avx2/1)
    outcome.check("clean accuracy", results["sections"]["clean"]["results"]["accuracy"], ">=", 0.9)


@pytest.mark.only_with_framework("tensorflow")
@pytest.mark.kernels
def test_audit_keras_file(digits_cnn_classifier, digits_npz, tmp_path, outcome):
    model_path = tmp_path / "cnn.keras"
    digits_cnn_classifier.model.save(str(model_path))
    out = tmp_path / "report"
    assert main(["audit", str(model_path), "--data", digits_npz, "--out", str(out)] + FAST) == 0
    results = _check_outputs(out, certifiable=True)
    # measured TensorFlow 0.967 over 4 kernel variants; smallest margin 0.067 (>= 0.9 needed, tensorflow/onednn0/1)
    outcome.check("clean accuracy", results["sections"]["clean"]["results"]["accuracy"], ">=", 0.9)


@pytest.mark.only_with_framework("tensorflow")
def test_saved_model_loads_like_the_keras_model(digits_cnn_classifier, digits, tmp_path):
    from art_ext.estimators.loading import load_classifier

    _, (x_test, _), _, _ = digits
    digits_cnn_classifier.model.export(str(tmp_path / "saved"), verbose=False)
    loaded = load_classifier(str(tmp_path / "saved"), x_test[:32])
    assert loaded.kind == "savedmodel" and loaded.output == "logits" and loaded.classifier.nb_classes == 10
    np.testing.assert_allclose(
        loaded.classifier.predict(x_test[:32]), digits_cnn_classifier.predict(x_test[:32]), rtol=1e-4, atol=1e-4
    )


def _mlp(framework, seed=1):
    shape = ARCHITECTURES["digits_mlp"][0 if framework == "pytorch" else 1]
    return make_classifier(build_model("digits_mlp", framework, seed=seed), shape, learning_rate=0.01)


@pytest.mark.kernels
def test_distilled_model_flags_masking_and_normal_does_not(framework, digits, tmp_path):
    from art_ext.defences.trainer import DefensiveDistillationTrainer

    (x_train, y_train), (x_test, y_test), _, _ = digits
    normal = _mlp(framework)
    normal.fit(x_train, y_train, nb_epochs=15, batch_size=64, verbose=False)
    distilled = _mlp(framework)
    DefensiveDistillationTrainer(distilled, temperature=100.0, random_state=0, verbose=False).fit(
        x_train, y_train, nb_epochs=15, batch_size=64
    )
    reports = {}
    for name, clf in (("normal", normal), ("distilled", distilled)):
        reports[name] = audit(
            clf,
            x_test[:100],
            y_test[:100],
            x_spare=x_train,
            y_spare=y_train,
            sections=["clean", "masking"],
            section_options={"masking": dict(MASKING, surrogate_epochs=6)},
            out_dir=str(tmp_path / name),
            verbose=False,
        )
    distilled_masking = reports["distilled"].section("masking").results
    assert distilled_masking["masking_suspected"] is True
    assert distilled_masking["transfer_surrogate_trained_on_audited_sample"] is False
    top = reports["distilled"].findings[0]
    assert top.section == "masking" and top.severity == 3 and "masking suspected" in top.text
    assert "Gradient masking suspected" in (tmp_path / "distilled" / "report.md").read_text()
    normal_masking = reports["normal"].section("masking").results
    assert normal_masking["masking_suspected"] is False, normal_masking["reasons"]
    assert all(f.severity < 3 for f in reports["normal"].findings)


@pytest.mark.kernels
def test_lmt_model_has_a_non_trivial_certified_curve(framework, digits, outcome):
    from art_ext.defences.trainer import LipschitzMarginTrainer

    (x_train, y_train), (x_test, y_test), _, _ = digits
    shape = ARCHITECTURES["digits_cnn"][0 if framework == "pytorch" else 1]
    lmt = make_classifier(build_model("digits_cnn", framework, seed=0), input_shape=shape)
    LipschitzMarginTrainer(lmt, c=0.1, random_state=0, verbose=False).fit(x_train, y_train, nb_epochs=8, batch_size=96)
    report = audit(lmt, x_test, y_test, sections=["certification"], eps_l2=(0.05, 0.1, 0.2, 0.3), verbose=False)
    cert = report.section("certification").results
    assert cert["certifiable"] is True and cert["radii"] == [0.0, 0.05, 0.1, 0.2, 0.3]
    curve = cert["certified_accuracy"]
    # measured PyTorch 0.93, TensorFlow 0.939 over 8 kernel variants; smallest margin 0.13 (>= 0.8 needed,
    # pytorch/avx2/1)
    outcome.check("certified accuracy at radius 0", curve[0], ">=", 0.8)
    # measured PyTorch 0.685-0.688, TensorFlow 0.749 over 8 kernel variants; smallest margin 0.385 (>= 0.3 needed,
    # pytorch/default/1)
    outcome.check("certified accuracy at l2 radius 0.1", curve[2], ">=", 0.3)  # non-trivial
    assert all(a >= b for a, b in zip(curve, curve[1:])), curve


# ------------------------------------------------------------------------------------------------------ bad input
def _bad(argv, capsys, out, match):
    code = main(["audit"] + argv + ["--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert err.startswith("art-ext audit: error:") and match in err, err
    assert not out.exists() or out.is_file() or not os.listdir(out)


@pytest.fixture()
def saved_model(framework, digits_mlp_classifier, tmp_path):
    if framework == "pytorch":
        import torch

        path = tmp_path / "mlp.pt"
        torch.jit.save(torch.jit.script(digits_mlp_classifier.model.eval()), str(path))
    else:
        path = tmp_path / "mlp.keras"
        digits_mlp_classifier.model.save(str(path))
    return str(path)


def test_bad_model_and_options(saved_model, digits_npz, tmp_path, capsys):
    out = tmp_path / "out"
    _bad([str(tmp_path / "missing.pt"), "--data", digits_npz], capsys, out, "MODEL")
    (tmp_path / "garbage.pt").write_text("not a model")
    torch_installed = importlib.util.find_spec("torch") is not None
    expected = "not a TorchScript file" if torch_installed else "needs PyTorch: install it"
    _bad([str(tmp_path / "garbage.pt"), "--data", digits_npz], capsys, out, expected)
    _bad(["nosuchpackage.module:factory", "--data", digits_npz], capsys, out, "cannot import")
    _bad([saved_model, "--data", digits_npz, "--clip-values", "1,0"], capsys, out, "--clip-values")
    _bad([saved_model, "--data", digits_npz, "--sections", "clean,nope"], capsys, out, "--sections")
    _bad([saved_model, "--data", digits_npz, "--eps", "0.3,0.1"], capsys, out, "--eps")
    (tmp_path / "a_file").write_text("x")
    _bad([saved_model, "--data", digits_npz], capsys, tmp_path / "a_file", "--out")
    assert (tmp_path / "a_file").read_text() == "x"


def test_bad_data(saved_model, digits, tmp_path, capsys):
    _, (x_test, y_test), _, _ = digits
    out = tmp_path / "out"
    _bad([saved_model, "--data", str(tmp_path / "none.npz")], capsys, out, "DATA")
    np.savez(tmp_path / "flat.npz", x=x_test.reshape(len(x_test), 8, 8)[:, :7], y=y_test)
    _bad([saved_model, "--data", str(tmp_path / "flat.npz")], capsys, out, "does not accept DATA inputs")
    np.savez(tmp_path / "labels.npz", x=x_test, y=np.where(y_test == 3, 12, y_test))
    _bad([saved_model, "--data", str(tmp_path / "labels.npz")], capsys, out, "holds class 12")
    np.savez(tmp_path / "nolabels.npz", x=x_test)
    _bad([saved_model, "--data", str(tmp_path / "nolabels.npz")], capsys, out, "has no array 'y'")
    x_nan = x_test.copy()
    x_nan[0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x_nan, y=y_test)
    _bad([saved_model, "--data", str(tmp_path / "nan.npz")], capsys, out, "NaN")


def test_python_api_rejects_bad_arguments(digits_mlp_classifier, digits):
    _, (x_test, y_test), _, _ = digits
    with pytest.raises(ValueError, match="sections"):
        audit(digits_mlp_classifier, x_test, y_test, sections=["nope"], verbose=False)
    with pytest.raises(ValueError, match="budget_minutes"):
        audit(digits_mlp_classifier, x_test, y_test, budget_minutes=0, verbose=False)
    with pytest.raises(ValueError, match="sample shape"):
        audit(digits_mlp_classifier, x_test[:, :, :4], y_test, verbose=False)
    with pytest.raises(ValueError, match="outside"):
        audit(digits_mlp_classifier, x_test, y_test + 10, verbose=False)
    with pytest.raises(ValueError, match="section_options"):
        audit(digits_mlp_classifier, x_test, y_test, section_options={"masking": {"nope": 1}}, verbose=False)


def test_black_box_classifier_is_audited_with_square_only(digits_mlp_classifier, digits):
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    _, (x_test, y_test), _, _ = digits
    black_box = BlackBoxClassifierNeuralNetwork(
        digits_mlp_classifier.predict,
        tuple(digits_mlp_classifier.input_shape),
        10,
        channels_first=digits_mlp_classifier.channels_first,
        clip_values=(0.0, 1.0),
    )
    report = audit(
        black_box,
        x_test[:40],
        y_test[:40],
        norms=["inf"],
        eps=(0.1, 0.3),
        section_options={"robustness": {"n": 40, "square_iter": 30}},
        extraction_queries=448,
        defences=["none"],
        verbose=False,
    )
    status = {s.key: s.status for s in report.sections}
    assert status == {
        "clean": "done",
        "robustness": "done",
        "masking": "skipped",
        "certification": "skipped",
        "extraction": "done",
    }
    curves = report.section("robustness").results["curves"]["inf"]["accuracy"]
    assert set(curves) == {"square", "worst_case"} and curves["square"][-1] < curves["square"][0]
    # Audited through its answers: every section says what it sent, and what needs the weights says why it cannot.
    assert report.queries["budget"] is None and report.queries["sent"] > sum(s.queries for s in report.sections)
    assert report.section("certification").queries == 0 and report.section("clean").queries == 40
    assert report.section("extraction").results["victims"]["none"]["queries_used"] <= 448
    assert "black box" in report.section("masking").reason and "black box" in report.section("certification").reason


def test_audit_data_image_folder_and_sample_split(digits, tmp_path):
    from PIL import Image

    from art_ext.data import AuditDataError, load_audit_data

    _, (x_test, y_test), _, _ = digits
    images = x_test.reshape(len(x_test), 8, 8)
    for i in range(30):
        folder = tmp_path / "imgs" / f"class_{y_test[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((images[i] * 255).round().astype(np.uint8), mode="L").save(folder / f"{i}.png")
    data = load_audit_data(str(tmp_path / "imgs"), channels_first=True, sample_size=20, seed=0)
    assert data.x.shape == (20, 1, 8, 8) and data.x_spare.shape == (10, 1, 8, 8)
    assert data.class_names == sorted(f"class_{c}" for c in set(y_test[:30].tolist()))
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    # The audited sample and the spare data are disjoint.
    flat = {x.tobytes() for x in data.x}
    assert not any(x.tobytes() in flat for x in data.x_spare)
    last = load_audit_data(str(tmp_path / "imgs"), channels_first=False)
    assert last.x.shape == (30, 8, 8, 1) and last.x_spare is None
    Image.fromarray(np.zeros((9, 9), dtype=np.uint8), mode="L").save(tmp_path / "imgs" / "class_0" / "odd.png")
    with pytest.raises(AuditDataError, match="odd.png"):
        load_audit_data(str(tmp_path / "imgs"))
    builtin = load_audit_data("digits", channels_first=False, sample_size=50)
    assert builtin.x.shape == (50, 8, 8, 1) and len(builtin.x_spare) == len(digits[0][0])  # the training split


@pytest.mark.kernels
def test_autoattack_protocol_in_the_robustness_curves(digits_mlp_classifier, digits, outcome):
    _, (x_test, y_test), _, _ = digits
    report = audit(
        digits_mlp_classifier,
        x_test[:40],
        y_test[:40],
        sections=["robustness"],
        norms=["inf"],
        eps=(0.05, 0.3),
        robustness_attacks=("fgsm", "autoattack"),
        section_options={"robustness": {"n": 40, "steps": 10, "square_iter": 20}},
        verbose=False,
    )
    curves = report.section("robustness").results["curves"]["inf"]["accuracy"]
    assert set(curves) == {"fgsm", "autoattack", "worst_case"}
    auto = curves["autoattack"]
    # measured PyTorch 0.975, TensorFlow 0.95 over 8 kernel variants; smallest margin 0.15 (>= 0.8 needed,
    # tensorflow/onednn0/1)
    outcome.check("AutoAttack curve, accuracy at eps 0.05", auto[0], ">=", 0.8)
    # measured PyTorch 0, TensorFlow 0 over 8 kernel variants; smallest margin 0.1 (<= 0.1 needed, pytorch/avx2/1)
    outcome.check("AutoAttack curve, accuracy at eps 0.3", auto[-1], "<=", 0.1)
    # measured PyTorch 0, TensorFlow 0 over 8 kernel variants; smallest margin 0 (<= 0 needed, pytorch/avx2/1)
    outcome.check("AutoAttack accuracy at eps 0.3, vs FGSM's", auto[-1], "<=", curves["fgsm"][-1])


def test_a_section_that_raises_is_a_bug_reported_in_one_line_and_fails_the_command(
    saved_model, digits_npz, tmp_path, monkeypatch, capsys
):
    from art_ext.evaluations.audit import certification

    def broken(ctx, params, section):
        raise RuntimeError("deliberately broken\nsecond line")

    monkeypatch.setattr(certification, "run", broken)
    out = tmp_path / "report"
    argv = ["audit", saved_model, "--data", digits_npz, "--out", str(out), "--sections", "clean,certification"]
    assert main(argv + ["--sample-size", "40", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "section(s) certification failed" in err and "Traceback" not in err
    results = json.loads((out / "results.json").read_text())
    assert results["sections"]["clean"]["status"] == "done"
    cert = results["sections"]["certification"]
    assert cert["status"] == "failed" and cert["reason"].startswith("internal error of the audit while running")
    assert "deliberately broken" in cert["reason"] and "\n" not in cert["reason"]
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    assert "Exit status" in capsys.readouterr().out


@pytest.mark.only_with_framework("pytorch")
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_the_certifier_refuses_gets_its_one_line_reason(how, digits):
    import torch
    from torch import nn

    class Squared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 10)

        def forward(self, x):
            h = self.a(x)
            return self.b(h * h)  # a product of activations: not Lipschitz

    torch.manual_seed(0)
    model = Squared().eval()
    compiled = torch.jit.script(model) if how == "script" else torch.jit.trace(model, torch.zeros(2, 64))
    _, (x_test, y_test), _, _ = digits
    x = x_test.reshape(len(x_test), 64)[:30]
    report = audit(make_classifier(compiled, (64,)), x, y_test[:30], sections=["certification"], verbose=False)
    section = report.section("certification")
    assert section.status == "done" and section.results["certifiable"] is False
    reason = section.results["reason"]
    assert "aten::mul" in reason and "\n" not in reason, reason


def test_cost_model_times_square_on_inputs_it_classifies_correctly(digits_cnn_classifier, digits):
    # ART's Square drops the inputs already misclassified under the labels it is given: timed with wrong labels, it
    # predicts about a tenth of the inputs per iteration and the robustness estimate came out 1.8x short on MNIST.
    from art_ext.evaluations.audit.budget import CostModel

    _, (x_test, _), _, _ = digits
    clf, seen = digits_cnn_classifier, []
    predict = clf.predict

    def counting(x, *args, **kwargs):
        seen.append(len(x))
        return predict(x, *args, **kwargs)

    clf.predict = counting
    try:
        cost = CostModel(clf, x_test[:64], batch_size=64)
        before = sum(seen)
        per_iteration = cost.square(64, 1, "inf")
    finally:
        del clf.predict
    # Runs of 1 and 6 iterations: a start and each iteration predict every input, then the loss of those still
    # robust twice: 27 x 64 inputs when none is fooled at the probe's small eps, about 11 x 64 with wrong labels.
    assert sum(seen) - before >= 20 * 64, sum(seen) - before
    assert np.array_equal(cost._labels.argmax(1), predict(x_test[:64]).argmax(1))
    assert per_iteration > 0
