"""ART's contracts on parameters: names, positional order, defaults, ValueError for bad values, set_params round trips."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from art_ext.attacks.evasion import LeastLikelyClassMethod, RandomFGSM, VirtualAdversarialPerturbation
from art_ext.defences.trainer import DefensiveDistillationTrainer, VirtualAdversarialTrainer
from art_ext.defences.transformer.evasion import DefensiveDistillation


def _params(cls):
    return [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]


@pytest.mark.parametrize(
    "ours, art_path",
    [
        (VirtualAdversarialPerturbation, "art.attacks.evasion.VirtualAdversarialMethod"),
        (DefensiveDistillation, "art.defences.transformer.evasion.DefensiveDistillation"),
    ],
)
def test_art_parameters_come_first_with_art_defaults(ours, art_path):
    module, name = art_path.rsplit(".", 1)
    art_cls = getattr(__import__(module, fromlist=[name]), name)
    art = _params(art_cls)
    mine = _params(ours)[: len(art)]
    assert [p.name for p in mine] == [p.name for p in art]
    assert [p.default for p in mine[1:]] == [p.default for p in art[1:]]


def test_vap_positional_call_reads_as_art(trained_framework_classifier):
    # ART: VirtualAdversarialMethod(clf, 10, 1e-6, 2) is max_iter=10, finite_diff=1e-6, eps=2.
    attack = VirtualAdversarialPerturbation(trained_framework_classifier, 10, 1e-6, 2, 5, False)
    assert (attack.max_iter, attack.finite_diff, attack.eps, attack.batch_size, attack.verbose) == (
        10,
        1e-6,
        2,
        5,
        False,
    )


def test_transformer_positional_call_and_default_temperature(trained_framework_classifier):
    transformer = DefensiveDistillation(trained_framework_classifier, 16, 3)
    assert (transformer.batch_size, transformer.nb_epochs, transformer.temperature) == (16, 3, 1.0)
    assert "random_state" in transformer.params and "temperature" in transformer.params


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_iter": 1.0},
        {"max_iter": -1},
        {"eps": -1},
        {"finite_diff": 1},
        {"finite_diff": -1.0},
        {"batch_size": -1},
        {"batch_size": 1.0},
        {"verbose": "true"},
        {"output": "scores"},
        {"random_state": "0"},
    ],
)
def test_vap_bad_values_raise_value_error(trained_framework_classifier, kwargs):
    with pytest.raises(ValueError):
        VirtualAdversarialPerturbation(trained_framework_classifier, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_size": 1.0}, {"batch_size": -1}, {"nb_epochs": 1.0}, {"nb_epochs": -1}, {"temperature": "hot"}],
)
def test_transformer_bad_values_raise_value_error(trained_framework_classifier, kwargs):
    with pytest.raises(ValueError):
        DefensiveDistillation(trained_framework_classifier, **kwargs)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (RandomFGSM, {"targeted": "true"}),
        (RandomFGSM, {"batch_size": 1.0}),
        (RandomFGSM, {"eps": "0.1"}),
        (RandomFGSM, {"random_state": 1.5}),
        (LeastLikelyClassMethod, {"max_iter": 1.0}),
        (LeastLikelyClassMethod, {"batch_size": -1}),
        (LeastLikelyClassMethod, {"targeted": "true"}),
        (LeastLikelyClassMethod, {"eps": np.array([0.1, -0.1])}),
        (LeastLikelyClassMethod, {"eps": np.full(64, 0.1), "eps_step": 0.01}),
        (VirtualAdversarialTrainer, {"n_power_iterations": 1.0}),
        (VirtualAdversarialTrainer, {"random_state": -1}),
        (DefensiveDistillationTrainer, {"temperature": "hot"}),
        (DefensiveDistillationTrainer, {"random_state": "seed"}),
    ],
)
def test_bad_values_raise_value_error(trained_framework_classifier, cls, kwargs):
    with pytest.raises(ValueError):
        cls(trained_framework_classifier, **kwargs)


def test_value_errors_stay_type_errors_for_older_code(trained_framework_classifier):
    with pytest.raises(TypeError):
        RandomFGSM(trained_framework_classifier, batch_size=1.0)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (VirtualAdversarialPerturbation, {"eps": 0.5, "max_iter": 2, "verbose": False}),
        (RandomFGSM, {"eps": 0.2, "alpha": 0.1, "verbose": False}),
        (LeastLikelyClassMethod, {"eps": 0.2, "verbose": False}),
        (DefensiveDistillation, {"batch_size": 16, "nb_epochs": 2}),
    ],
)
def test_set_params_round_trip(trained_framework_classifier, cls, kwargs):
    obj = cls(trained_framework_classifier, **kwargs)
    names = obj.attack_params if hasattr(obj, "attack_params") else obj.params
    before = {name: getattr(obj, name) for name in names if name != "estimator"}
    obj.set_params(**before)
    assert {name: getattr(obj, name) for name in before} == before
    with pytest.raises(ValueError):
        obj.set_params(batch_size=-1)


def test_vap_set_params_random_state_is_effective(trained_framework_classifier, tabular_digits):
    x = tabular_digits[1][0][:8]
    fresh = VirtualAdversarialPerturbation(trained_framework_classifier, max_iter=1, random_state=3, verbose=False)
    reseeded = VirtualAdversarialPerturbation(trained_framework_classifier, max_iter=1, random_state=0, verbose=False)
    reseeded.generate(x)
    reseeded.set_params(random_state=3)
    np.testing.assert_array_equal(fresh.generate(x), reseeded.generate(x))


@pytest.mark.parametrize("cls", [RandomFGSM, LeastLikelyClassMethod])
def test_estimator_keyword_as_in_art(trained_framework_classifier, cls):
    attack = cls(estimator=trained_framework_classifier, eps=0.1)
    assert attack.estimator is trained_framework_classifier
    with pytest.raises(ValueError, match="once"):
        cls(trained_framework_classifier, estimator=trained_framework_classifier)
    with pytest.raises(ValueError, match="required"):
        cls(eps=0.1)
