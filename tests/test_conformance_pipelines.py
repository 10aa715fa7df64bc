"""
Conformance with ART (docs/conformance.rst), continued: the trainers as ART ``Trainer`` objects, distillation as ART's
``DefensiveDistillation`` transformer, ``LipschitzCertifier`` as an ART certification estimator, and DFME in ART's
extraction call pattern; on every estimator kind of the run's framework.
"""

from __future__ import annotations

import numpy as np
import pytest
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
from art.defences.trainer import AdversarialTrainer
from art.defences.trainer.trainer import Trainer
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin, NeuralNetworkMixin
from test_conformance import FRAMEWORK_OF_KIND, KINDS, NB_CLASSES, accuracy, make_estimator, trained

from art_ext.defences.trainer import DefensiveDistillationTrainer, LipschitzMarginTrainer, VirtualAdversarialTrainer
from art_ext.defences.transformer.evasion import DefensiveDistillation
from art_ext.estimators.certification import LipschitzCertifier

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def flat_digits():
    from art_ext.data import load_digits

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(channels_first=True)
    return (x_train.reshape(len(x_train), -1), y_train), (x_test.reshape(len(x_test), -1), y_test)


@pytest.fixture(params=KINDS)
def kind(request, framework):
    if FRAMEWORK_OF_KIND[request.param] != framework:
        pytest.skip(f"{request.param} runs on {FRAMEWORK_OF_KIND[request.param]}; this run is {framework}")
    return request.param


@pytest.fixture
def estimator(kind, framework, flat_digits):
    return trained(kind, framework, flat_digits)


def _plain_initializer(shape, dtype=None):
    """A plain-function initialiser, as ART's test models use (Keras cannot rebuild it from its config)."""
    rng = np.random.default_rng(int(np.prod(shape)))
    return (0.3 * rng.standard_normal(shape)).astype("float32")


# ------------------------------------------------------------------------------------------------- distillation
@pytest.mark.parametrize("plain_initializer", [False, True])
def test_distillation_trains_its_own_teacher_on_any_kind(kind, flat_digits, plain_initializer):
    if plain_initializer and kind == "PyTorchClassifier":
        pytest.skip("Keras initialisers only")
    (x_train, y_train), (x_test, y_test) = flat_digits
    clf = make_estimator(kind, seed=3, initializer=_plain_initializer if plain_initializer else None)
    trainer = DefensiveDistillationTrainer(clf, temperature=5.0, random_state=0, verbose=False)
    assert isinstance(trainer, Trainer) and trainer.get_classifier() is clf
    trainer.fit(x_train, y_train, nb_epochs=8, batch_size=64)
    assert trainer.teacher is not clf and len(trainer.history["teacher"]) == 8
    assert accuracy(trainer.teacher, x_test, y_test) >= 0.8
    assert accuracy(clf, x_test, y_test) >= 0.8
    np.testing.assert_array_equal(trainer.predict(x_test[:8]), clf.predict(x_test[:8]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -1.0},
        {"temperature": "hot"},
        {"teacher_epochs": 0},
        {"output": "scores"},
        {"teacher_output": "scores"},
        {"random_state": -1},
        {"verbose": "yes"},
        {"teacher_factory": 3},
    ],
)
def test_distillation_trainer_bad_parameters(estimator, kwargs):
    with pytest.raises(ValueError):
        DefensiveDistillationTrainer(estimator, **kwargs)


def test_distillation_transformer_call_pattern(kind, estimator, flat_digits):
    """ART's test: ``transformer(x=x, transformed_classifier=...)`` returns the student, close to the teacher."""
    (x_train, _), (x_test, _) = flat_digits
    transformer = DefensiveDistillation(classifier=estimator, batch_size=64, nb_epochs=8)
    student = make_estimator(kind, seed=4)
    out = transformer(x=x_train, transformed_classifier=student)
    assert out is student
    agreement = np.mean(estimator.predict(x_test).argmax(1) == student.predict(x_test).argmax(1))
    assert agreement >= 0.85
    for bad in ({"batch_size": -1}, {"nb_epochs": -1}, {"temperature": "hot"}):
        with pytest.raises(ValueError):
            DefensiveDistillation(estimator, **bad)
    params = {name: getattr(transformer, name) for name in transformer.params}
    transformer.set_params(**params)
    assert {name: getattr(transformer, name) for name in transformer.params} == params


# ------------------------------------------------------------------------------------------- ART Trainer contract
@pytest.mark.parametrize("trainer_cls", [VirtualAdversarialTrainer, LipschitzMarginTrainer], ids=lambda c: c.__name__)
def test_trainers_follow_arts_trainer_contract(kind, flat_digits, trainer_cls):
    (x_train, y_train), (x_test, y_test) = flat_digits
    clf = make_estimator(kind, seed=6)
    kwargs = {"warmup_epochs": 1} if trainer_cls is LipschitzMarginTrainer else {"eps": 0.5, "xi": 0.5}
    trainer = trainer_cls(clf, random_state=0, verbose=False, **kwargs)
    assert isinstance(trainer, Trainer) and trainer.get_classifier() is clf
    trainer.fit(x_train, np.eye(NB_CLASSES)[y_train], nb_epochs=6, batch_size=64)  # one-hot, as ART's fit takes
    assert accuracy(clf, x_test, y_test) >= 0.7
    np.testing.assert_array_equal(trainer.predict(x_test[:8]), clf.predict(x_test[:8]))


@pytest.mark.parametrize(
    "trainer_cls, kwargs",
    [
        (VirtualAdversarialTrainer, {"n_power_iterations": 0}),
        (VirtualAdversarialTrainer, {"n_power_iterations": 1.0}),
        (VirtualAdversarialTrainer, {"eps": -1.0}),
        (VirtualAdversarialTrainer, {"random_state": -1}),
        (VirtualAdversarialTrainer, {"verbose": "yes"}),
        (LipschitzMarginTrainer, {"c": -1.0}),
        (LipschitzMarginTrainer, {"warmup_epochs": -1}),
        (LipschitzMarginTrainer, {"pairwise": "yes"}),
        (LipschitzMarginTrainer, {"objective": "nothing"}),
        (LipschitzMarginTrainer, {"random_state": -1}),
    ],
)
def test_trainer_bad_parameters(estimator, trainer_cls, kwargs):
    with pytest.raises(ValueError):
        trainer_cls(estimator, **kwargs)


# ------------------------------------------------------------------------------------------------- certification
def test_lipschitz_certifier_is_an_art_certification_estimator(estimator, flat_digits):
    """Like ART's certifiers, a classifier that certifies: ART's attacks take it, certify returns (prediction, radius)."""
    _, (x_test, y_test) = flat_digits
    x = x_test[:60]
    cert = LipschitzCertifier(estimator)
    for base in (BaseEstimator, ClassifierMixin, LossGradientsMixin, NeuralNetworkMixin):
        assert isinstance(cert, base)
    assert cert.nb_classes == NB_CLASSES and cert.input_shape == (64,) and cert.clip_values is not None
    np.testing.assert_allclose(cert.predict(x), estimator.predict(x), rtol=1e-6)
    one_hot = np.eye(NB_CLASSES, dtype=np.float32)[y_test[:4]]
    np.testing.assert_allclose(cert.loss_gradient(x[:4], one_hot), estimator.loss_gradient(x[:4], one_hot))
    prediction, radius = cert.certify(x)
    assert prediction.shape == radius.shape == (len(x),) and np.all(radius >= 0)
    np.testing.assert_array_equal(prediction, estimator.predict(x).argmax(1))
    # ART's randomized-smoothing call: certify(x, n=...) (n, the noise samples, has no use here)
    np.testing.assert_array_equal(cert.certify(x, n=100)[1], radius)
    with pytest.raises(ValueError):
        cert.certify(x, n=0)
    # Radii an attack cannot beat: ART's PGD (l2) run on the certifier itself within 0.99 radius never flips.
    target = radius > 0.05
    assert target.sum() >= 10
    eps = (0.99 * radius[target]).astype(np.float32)
    pgd = ProjectedGradientDescent(cert, norm=2, eps=0.1, eps_step=0.05, max_iter=10, verbose=False)
    for e_value in np.unique(np.round(eps, 2)):
        rows = np.where(target)[0][np.round(eps, 2) == e_value]
        e_value = float(min(e_value, eps[np.round(eps, 2) == e_value].min()))
        pgd.set_params(eps=e_value, eps_step=e_value / 4)
        x_adv = pgd.generate(x[rows])
        np.testing.assert_array_equal(cert.predict(x_adv).argmax(1), prediction[rows])
    # FGSM on the certifier is FGSM on the classifier
    np.testing.assert_allclose(
        FastGradientMethod(cert, eps=0.1).generate(x[:8]), FastGradientMethod(estimator, eps=0.1).generate(x[:8])
    )


def test_lipschitz_certifier_in_arts_adversarial_trainer_and_set_params(kind, flat_digits):
    (x_train, y_train), (x_test, _) = flat_digits
    clf = make_estimator(kind, seed=8)
    cert = LipschitzCertifier(clf)
    before = cert.lipschitz_bound()
    AdversarialTrainer(cert, FastGradientMethod(cert, eps=0.1), ratio=0.5).fit(
        x_train[:256], np.eye(NB_CLASSES)[y_train[:256]], nb_epochs=2, batch_size=64
    )
    after = cert.lipschitz_bound()
    assert after != before and after == pytest.approx(LipschitzCertifier(clf).lipschitz_bound(), rel=1e-9)
    np.testing.assert_allclose(cert.certify(x_test[:64])[1], LipschitzCertifier(clf).certify(x_test[:64])[1])
    params = cert.get_params()
    cert.set_params(pairwise=params["pairwise"], float_tolerance=params["float_tolerance"])
    assert cert.get_params()["pairwise"] == params["pairwise"]
    for bad in ({"pairwise": "yes"}, {"float_tolerance": 1.0}, {"check_fraction": 0.0}):
        with pytest.raises(ValueError):
            cert.set_params(**bad)
        with pytest.raises(ValueError):
            LipschitzCertifier(clf, **bad)
    cert.set_params(pairwise=True, float_tolerance=1e-5, check_fraction=0.1)


# ---------------------------------------------------------------------------------------------------- extraction
def test_dfme_in_arts_extraction_call_pattern(framework, estimator, flat_digits):
    """CopycatCNN/KnockoffNets's call: ``extract(x, y, thieved_classifier=...)`` returns the trained thief; the
    victim is only queried through ``predict`` (a BlackBoxClassifier), within the budget."""
    from art.estimators.classification import BlackBoxClassifier

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    shape = ARCHITECTURES["digits_cnn"][0 if framework == "pytorch" else 1]
    queries = []

    def answer(x):
        queries.append(len(x))
        return estimator.predict(np.asarray(x, np.float32).reshape(len(x), -1))

    victim = BlackBoxClassifier(answer, shape, NB_CLASSES, clip_values=(0.0, 1.0))
    thief = make_classifier(build_model("digits_cnn", framework, seed=1), input_shape=shape)
    (x_train, y_train), _ = flat_digits
    x = x_train[:64].reshape((64,) + tuple(shape))
    attack = DataFreeModelExtraction(victim, max_queries=1_000, batch_size=32, random_state=0, verbose=False)
    out = attack.extract(x, np.eye(NB_CLASSES)[y_train[:64]], thieved_classifier=thief)
    assert out is thief
    assert 64 < sum(queries) <= 1_000
    with pytest.raises(ValueError):
        DataFreeModelExtraction(victim, max_queries=0)
