"""benchmarks/dfme_mnist.py's extra thieves (ART's postprocessing defences on the victim, KnockoffNets on noise) and its
ablation (benchmarks/dfme_ablation.py: the generator's share of queries, the error of logit recovery)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

torch_only = pytest.mark.only_with_framework("pytorch")

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "dfme_mnist.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dfme_mnist_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _victim():
    """An untrained LeNet-5 exposing probabilities (shape and kind of the benchmark's victim), and a tiny test set."""
    pytest.importorskip("torch")
    from art_ext.estimators.classification.utils import to_probability_classifier
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    clf = make_classifier(build_model("lenet5", "pytorch", seed=0), input_shape=ARCHITECTURES["lenet5"][0])
    victim = to_probability_classifier(clf)
    rng = np.random.default_rng(0)
    x_test = rng.random((64, 1, 28, 28), dtype=np.float32)
    y_test = victim.predict(x_test).argmax(1)  # the victim is right on every test image
    victim.test_accuracy = 1.0
    return clf, victim, x_test, y_test


@torch_only
@pytest.mark.parametrize("defence", ["rounded", "reverse_sigmoid"])
def test_defence_is_arts_postprocessor_on_the_victims_answers(bench, defence):
    from art.defences.postprocessor import ReverseSigmoid, Rounded

    from art_ext.estimators.classification.utils import to_probability_classifier

    clf, victim, x_test, y_test = _victim()
    plain = to_probability_classifier(clf)  # shares the weights, carries no defence
    described, accuracy = bench.defend(victim, defence, x_test, y_test)
    raw = plain.predict(x_test)
    post = Rounded() if defence == "rounded" else ReverseSigmoid()
    np.testing.assert_allclose(victim.predict(x_test), post(raw), rtol=0, atol=1e-6)
    assert not np.allclose(victim.predict(x_test), raw)
    assert described == ("Rounded(decimals=3)" if defence == "rounded" else "ReverseSigmoid(beta=1.0, gamma=0.1)")
    assert accuracy == np.mean(post(raw).argmax(1) == y_test)


@torch_only
def test_defended_dfme_row_keeps_the_budget_and_the_undefended_reference(bench):
    _, victim, x_test, y_test = _victim()
    victim.test_accuracy = 0.5  # the ratio must be taken against this, not the defended accuracy
    row = bench.art_ext_thief("pytorch", victim, x_test, y_test, 1792, 0, 1792, defence="rounded")
    assert 0 < row["queries"] <= 1792
    assert row["defence"] == "Rounded(decimals=3)" and row["victim_accuracy"] == 0.5
    assert row["defended_victim_accuracy"] == pytest.approx(np.mean(victim.predict(x_test).argmax(1) == y_test), 1e-4)
    assert row["student_victim_ratio"] == row["curve"][-1]["ratio"]


@torch_only
def test_knockoff_noise_spends_exactly_its_budget_and_reports_one_point(bench):
    _, victim, x_test, y_test = _victim()
    row = bench.knockoff_thief(victim, x_test, y_test, 600, 0, 1, 128)
    assert row["queries"] == 600 and row["defence"] == "none"
    assert len(row["curve"]) == 1 and row["curve"][0]["queries"] == 600
    assert 0.0 <= row["student_victim_ratio"] <= 1.0


def test_knockoff_budget_refused_before_anything_is_spent(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--budget", "600000", "--thieves", "knockoff-noise", "--out", os.devnull])
    assert "knockoff-noise" in capsys.readouterr().err


def test_table_renders_rows_written_before_the_defence_columns(bench):
    old = {"thief": "art_ext pytorch", "queries": 10, "victim_accuracy": 0.98, "student_victim_ratio": 0.5}
    old.update({"seconds": 1.0, "queries_per_second": 10.0, "curve": []})
    old.update({f"{k}_to_{lv:.2f}x": None for k in ("queries", "seconds") for lv in bench.LEVELS})
    text = bench.table([old, dict(old, thief="defended", defended_victim_accuracy=0.9)])
    assert "victim (defended) acc" in text and "| defended | 10 | 0.980 | 0.900 |" in text


@torch_only
def test_ablation_options_refused_before_anything_is_spent(bench, capsys):
    with pytest.raises(SystemExit):  # the attack's losses are l1 and kl: its own message, nothing trained
        bench.main(["--ablation", "--loss", "l1,ce", "--out", os.devnull])
    err = capsys.readouterr().err
    assert "--loss ce" in err and "'l1', 'kl'" in err
    for argv in (
        ["--ablation", "--directions", "0"],
        ["--loss", "kl"],
        ["--ablation", "--thieves", "reference"],
        ["--dataset", "digits28"],  # the second data set is an ablation option
        ["--ablation", "--dataset", "cifar10"],
    ):
        with pytest.raises(SystemExit):
            bench.main([*argv, "--out", os.devnull])
        assert "--" in capsys.readouterr().err


@torch_only
def test_probe_counts_the_generators_queries_and_measures_logit_recovery(bench):
    from dfme_ablation import QueryProbe, whole_batch_victim

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

    logits, victim, x_test, y_test = _victim()
    student = make_classifier(build_model("lenet5", "pytorch", seed=1), input_shape=ARCHITECTURES["lenet5"][0])
    generator = make_generator(build_generator("generator_28x28", "pytorch", seed=2))
    meter = bench.Meter(lambda: 0.5, 10**9, 1.0)
    probe = QueryProbe(logits, 256, 1e-6, "mean")
    budget = 2 * 256 * (3 + 5)  # two rounds at m=2: one generator step of 256 * 3 queries, five student steps
    attack = DataFreeModelExtraction(
        whole_batch_victim(victim, meter, probe), generator, max_queries=budget, n_directions=2, verbose=False
    )
    attack.extract(thieved_classifier=student)
    summary = probe.summary()
    assert attack.queries_used == meter.queries == budget
    assert summary["generator_queries"] == 2 * 256 * 3 and summary["generator_share"] == 0.375
    # an untrained victim's probabilities stay far above the floor: the recovery is exact up to float32 rounding
    assert summary["probed_queries"] > 0 and summary["floored_share"] == 0.0
    assert summary["logit_mae"] < 1e-4


def test_probe_logit_error_is_the_probability_floors(bench):
    from dfme_ablation import QueryProbe

    z = np.zeros((4, 10))
    z[:, 0] = 30.0  # the other classes' probabilities (about 1e-13) fall under the floor 1e-6

    class Logits:
        def predict(self, x, batch_size=None):
            return z[: len(x)]

    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    probe = QueryProbe(Logits(), 2, 1e-6, "mean")
    probe(np.zeros((4, 1, 28, 28)), p)  # 4 > 2 inputs in one call: a generator step's
    recovered = np.log(np.maximum(p, 1e-6))
    recovered -= recovered.mean(1, keepdims=True)
    expected = np.abs(recovered - (z - z.mean(1, keepdims=True))).mean()
    summary = probe.summary()
    assert summary["generator_share"] == 1.0 and summary["floored_share"] == 1.0
    assert summary["logit_mae"] == pytest.approx(expected, abs=1e-4) and summary["logit_mae"] > 2.5
    assert summary["logit_rel_error"] == pytest.approx(expected * 10 / (27 + 9 * 3), abs=1e-4)


@torch_only
def test_digits28_is_the_digits_upsampled_to_28x28_in_the_unit_box():
    import sys

    sys.path.insert(0, os.path.dirname(BENCH))
    from dfme_ablation import load_digits28

    from art_ext.data import load_digits

    (x_train, y_train), (x_test, y_test), lo, hi = load_digits28()
    (d_train, dy_train), (d_test, _), _, _ = load_digits(channels_first=True)
    assert x_train.shape == (len(d_train), 1, 28, 28) and x_test.shape == (len(d_test), 1, 28, 28)
    assert x_train.dtype == np.float32 and (lo, hi) == (0.0, 1.0) and x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert np.array_equal(y_train, dy_train)
    # an upsampling, not new data: averaging 28x28 back to 7x7 blocks follows the 8x8 image's mass
    coarse = x_train[:, 0].reshape(len(x_train), 7, 4, 7, 4).mean(axis=(2, 4))
    assert np.corrcoef(coarse.sum(axis=(1, 2)), d_train.sum(axis=(1, 2, 3)))[0, 1] > 0.99
