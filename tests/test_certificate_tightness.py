"""CertificateTightnessAnalysis: the LMT chain of radii (A) bound <= (B) global <= (C) local, and (A) <= (D)."""

from __future__ import annotations

import numpy as np
import pytest
from png_checks import assert_png

from art_ext.defences.trainer import LipschitzMarginTrainer
from art_ext.evaluations import CertificateTightnessAnalysis, CertificateUnsoundError
from art_ext.models import make_classifier

N = 30


pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny(framework):
    """64 -> 10 ReLU -> 10: 2^10 activation patterns, all realisable, so L_global is exact."""
    from art_ext.utils.seed import set_seed

    set_seed(0, framework)
    if framework == "pytorch":
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10)), (1, 8, 8)
    import keras

    layers = keras.layers
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(10, activation="relu"), layers.Dense(10)]
    )
    return model, (8, 8, 1)


@pytest.fixture(scope="module")
def tiny_nets(framework, digits):
    (x_train, y_train), _, _, _ = digits
    nets = {}
    for name in ("standard", "lmt"):
        model, shape = _tiny(framework)
        clf = make_classifier(model, input_shape=shape)
        if name == "standard":
            clf.fit(x_train, y_train, nb_epochs=15, batch_size=128, verbose=False)
        else:
            trainer = LipschitzMarginTrainer(clf, c=0.2, warmup_epochs=3, random_state=0, verbose=False)
            trainer.fit(x_train, y_train, nb_epochs=15, batch_size=128)
        nets[name] = clf
    return nets


@pytest.fixture(scope="module")
def reports(tiny_nets, digits):
    _, (x_test, y_test), _, _ = digits
    return {
        name: CertificateTightnessAnalysis(
            clf, cw_max_iter=10, cw_binary_search_steps=3, random_state=0, verbose=False
        ).analyse(x_test[:N], y_test[:N])
        for name, clf in tiny_nets.items()
    }


def test_chain_of_radii_holds_on_every_input(reports):
    for report in reports.values():
        r = report.radii
        assert report.global_reason.startswith("exact")
        assert np.all(r["bound"] <= r["global"] * (1 + 1e-9))
        assert np.all(r["global"] <= r["local"] * (1 + 1e-9))
        assert np.all(r["bound"] <= r["attack"])
        assert np.all(r["certified"] <= r["attack"])
        assert np.isfinite(r["attack"]).mean() >= 0.9
        assert set(report.attack_used) <= {"DeepFool", "CarliniL2", ""}
        assert report.ratios["attack/bound"] >= 1.0


def test_lmt_shrinks_the_gap_between_bound_and_attack(reports):
    # measured (30 digits, 15 epochs): standard 4.03 / 3.81, LMT 3.13 / 2.63 (PyTorch / TensorFlow)
    std, lmt = reports["standard"].ratios["attack/bound"], reports["lmt"].ratios["attack/bound"]
    print(f"(D)/(A): standard {std:.3f}, LMT {lmt:.3f}")
    assert lmt < std, (std, lmt)


def test_unsound_bound_is_refused_loudly(tiny_nets, digits):
    _, (x_test, _), _, _ = digits
    analysis = CertificateTightnessAnalysis(tiny_nets["standard"], local_samples=2, cw_max_iter=5, verbose=False)
    analysis.certifier.lipschitz_bound = lambda: 1e-3  # a "bound" far below the truth
    with pytest.raises(CertificateUnsoundError, match="unsound|wrong"):
        analysis.analyse(x_test[:5])


def test_cnn_reports_no_global_constant_with_reason_and_plots(framework, digits, tmp_path):
    from art_ext.models import ARCHITECTURES, build_model

    (x_train, y_train), (x_test, _), _, _ = digits
    shape = ARCHITECTURES["digits_cnn"][0 if framework == "pytorch" else 1]
    clf = make_classifier(build_model("digits_cnn", framework, seed=0), input_shape=shape)
    clf.fit(x_train, y_train, nb_epochs=3, batch_size=128, verbose=False)
    analysis = CertificateTightnessAnalysis(
        clf, local_samples=4, cw_max_iter=5, cw_binary_search_steps=2, verbose=False
    )
    report = analysis.analyse(x_test[:8])
    assert report.radii["global"] is None and "Conv" in report.global_reason
    assert report.ratios["global/bound"] is None and report.ratios["local/bound"] >= 1.0
    text = report.to_markdown()
    assert "n/a" in text and "39.9" in text
    path = tmp_path / "radii.png"
    report.plot(str(path))
    assert_png(path)
    with pytest.raises(ValueError, match="x"):
        analysis.analyse(x_test[:3].reshape(3, -1))
    with pytest.raises(ValueError, match="local_samples"):
        CertificateTightnessAnalysis(clf, local_samples=-1)


def test_analysis_follows_weights_changed_after_construction(framework, digits):
    """The tightness analysis never reports a bound of weights the model no longer holds."""
    (x_train, y_train), (x_test, _), _, _ = digits
    model, shape = _tiny(framework)
    clf = make_classifier(model, input_shape=shape)
    analysis = CertificateTightnessAnalysis(clf, local_samples=2, cw_max_iter=5, verbose=False)
    before = analysis.certifier.lipschitz_bound()
    before_global, _ = analysis.global_lipschitz()
    clf.fit(x_train, y_train, nb_epochs=3, batch_size=128, verbose=False)
    fresh = CertificateTightnessAnalysis(clf, local_samples=2, cw_max_iter=5, verbose=False)
    assert analysis.certifier.lipschitz_bound() == pytest.approx(fresh.certifier.lipschitz_bound(), rel=1e-9)
    assert analysis.global_lipschitz()[0] == pytest.approx(fresh.global_lipschitz()[0], rel=1e-9)
    assert analysis.certifier.lipschitz_bound() != pytest.approx(before, rel=1e-3)
    assert analysis.global_lipschitz()[0] != pytest.approx(before_global, rel=1e-3)
    report = analysis.analyse(x_test[:5])
    assert np.all(report.radii["bound"] <= report.radii["attack"])
