"""
Conformance with ART (docs/conformance.rst): the contract checks ART's own tests make of each counterpart, run on
art_ext's class and on every estimator kind ART users hold (``PyTorchClassifier`` on a PyTorch run,
``TensorFlowV2Classifier`` and ``KerasClassifier`` on a TensorFlow run, ``BlackBoxClassifier`` where only queries are
needed). The evasion attacks are here; trainers, certification and extraction are in test_conformance_pipelines.py.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
from art.attacks.evasion import AutoAttack, FastGradientMethod
from art.defences.trainer import AdversarialTrainer
from art.exceptions import EstimatorError

from art_ext.attacks.evasion import (
    LeastLikelyClassMethod,
    LogitMarginAttack,
    RandomFGSM,
    VirtualAdversarialPerturbation,
)

pytestmark = pytest.mark.usefixtures("single_thread")

NB_FEATURES, NB_CLASSES = 64, 10
KINDS = ("PyTorchClassifier", "TensorFlowV2Classifier", "KerasClassifier")
FRAMEWORK_OF_KIND = {
    "PyTorchClassifier": "pytorch",
    "TensorFlowV2Classifier": "tensorflow",
    "KerasClassifier": "tensorflow",
}


# ------------------------------------------------------------------------------------------------------ estimators
def _mlp(framework: str, seed: int, initializer=None):
    from art_ext.utils.seed import set_seed

    set_seed(seed, framework)
    if framework == "pytorch":
        import torch

        return torch.nn.Sequential(torch.nn.Linear(NB_FEATURES, 32), torch.nn.Tanh(), torch.nn.Linear(32, NB_CLASSES))
    import keras

    extra = {} if initializer is None else {"kernel_initializer": initializer, "bias_initializer": initializer}
    return keras.Sequential(
        [
            keras.Input((NB_FEATURES,)),
            keras.layers.Dense(32, activation="tanh", **extra),
            keras.layers.Dense(NB_CLASSES, **extra),
        ]
    )


def make_estimator(kind: str, seed: int = 0, initializer=None, **kwargs):
    """An untrained logit-output estimator of `kind` on 64 features in [0, 1] (Adam, as ART's test helpers)."""
    kwargs.setdefault("clip_values", (0.0, 1.0))
    model = _mlp(FRAMEWORK_OF_KIND[kind], seed, initializer)
    if kind == "PyTorchClassifier":
        import torch
        from art.estimators.classification import PyTorchClassifier

        return PyTorchClassifier(
            model,
            loss=torch.nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            input_shape=(NB_FEATURES,),
            nb_classes=NB_CLASSES,
            **kwargs,
        )
    import keras
    import tensorflow as tf

    if kind == "TensorFlowV2Classifier":
        from art.estimators.classification import TensorFlowV2Classifier

        return TensorFlowV2Classifier(
            model,
            nb_classes=NB_CLASSES,
            input_shape=(NB_FEATURES,),
            loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=True),
            optimizer=tf.keras.optimizers.Adam(1e-2),
            **kwargs,
        )
    from art.estimators.classification import KerasClassifier

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    return KerasClassifier(model, use_logits=True, **kwargs)


def accuracy(clf, x, y) -> float:
    return float(np.mean(np.asarray(clf.predict(x)).argmax(1) == y))


@pytest.fixture(scope="session")
def flat_digits():
    """``(x_train, y_train), (x_test, y_test)``: the built-in 8x8 digits in [0, 1], flattened, index labels."""
    from art_ext.data import load_digits

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(channels_first=True)
    return (x_train.reshape(len(x_train), -1), y_train), (x_test.reshape(len(x_test), -1), y_test)


_TRAINED: dict = {}


def trained(kind: str, framework: str, flat_digits):
    if FRAMEWORK_OF_KIND[kind] != framework:
        pytest.skip(f"{kind} runs on {FRAMEWORK_OF_KIND[kind]}; this run is {framework}")
    if kind not in _TRAINED:
        (x_train, y_train), (x_test, y_test) = flat_digits
        clf = make_estimator(kind)
        clf.fit(x_train, np.eye(NB_CLASSES, dtype=np.float32)[y_train], nb_epochs=20, batch_size=64)
        assert accuracy(clf, x_test, y_test) >= 0.9
        _TRAINED[kind] = clf
    return _TRAINED[kind]


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def estimator(kind, framework, flat_digits):
    """A trained estimator of each kind this run's framework provides (shared, never trained further)."""
    return trained(kind, framework, flat_digits)


@pytest.fixture
def batch(flat_digits):
    (_, _), (x_test, y_test) = flat_digits
    return x_test[:40].copy(), y_test[:40].copy()


# ------------------------------------------------------------------------------------------------ the attacks
# Each attack with a fast configuration, its l-inf (or l2) budget and the counterpart ART's tests check it against.
FAST = {
    LogitMarginAttack: dict(eps=0.2, max_iter=5),
    RandomFGSM: dict(eps=0.2, alpha=0.05, verbose=False, random_state=0),
    LeastLikelyClassMethod: dict(eps=0.2, eps_step=0.05, max_iter=6, verbose=False),
    VirtualAdversarialPerturbation: dict(eps=1.0, max_iter=2, batch_size=40, verbose=False, random_state=0),
}
MASKED = (LogitMarginAttack, RandomFGSM, LeastLikelyClassMethod)

BAD_PARAMS = [
    (LogitMarginAttack, {"norm": 0}),
    (LogitMarginAttack, {"norm": "l1"}),
    (LogitMarginAttack, {"eps": -1}),
    (LogitMarginAttack, {"eps": np.array([-1, -1, -1])}),
    (LogitMarginAttack, {"eps": 1, "eps_step": -1}),
    (LogitMarginAttack, {"eps": np.array([1, 1, 1]), "eps_step": np.array([-1, -1, -1])}),
    (LogitMarginAttack, {"eps": 1, "eps_step": np.array([1, 1, 1])}),
    (LogitMarginAttack, {"eps": np.array([1, 1]), "eps_step": np.array([1, 1, 1])}),
    (LogitMarginAttack, {"norm": 2, "eps": np.array([1, 1, 1])}),
    (LogitMarginAttack, {"max_iter": 0}),
    (LogitMarginAttack, {"max_iter": 1.5}),
    (LogitMarginAttack, {"targeted": "true"}),
    (LogitMarginAttack, {"batch_size": -1}),
    (LogitMarginAttack, {"num_random_init": -1}),
    (LogitMarginAttack, {"num_random_init": 1.0}),
    (LogitMarginAttack, {"random_state": -1}),
    (LogitMarginAttack, {"output": "scores"}),
    (LogitMarginAttack, {"verbose": "yes"}),
    (RandomFGSM, {"eps": -1}),
    (RandomFGSM, {"eps": np.array([-1, -1, -1])}),
    (RandomFGSM, {"alpha": -0.1}),
    (RandomFGSM, {"eps": 0.1, "alpha": 0.1}),
    (RandomFGSM, {"eps": np.full(64, 0.1), "alpha": np.full(64, 0.2)}),
    (RandomFGSM, {"eps": np.zeros(64), "alpha": 0.05}),
    (RandomFGSM, {"targeted": "true"}),
    (RandomFGSM, {"batch_size": -1}),
    (RandomFGSM, {"batch_size": 1.0}),
    (RandomFGSM, {"random_state": -1}),
    (RandomFGSM, {"random_state": 1.5}),
    (RandomFGSM, {"verbose": "yes"}),
    (LeastLikelyClassMethod, {"eps": -1}),
    (LeastLikelyClassMethod, {"eps": np.array([-1, -1, -1]), "eps_step": np.array([1, 1, 1])}),
    (LeastLikelyClassMethod, {"eps": 1, "eps_step": -1}),
    (LeastLikelyClassMethod, {"eps": np.array([1, 1, 1]), "eps_step": np.array([-1, -1, -1])}),
    (LeastLikelyClassMethod, {"eps": 1, "eps_step": np.array([1, 1, 1])}),
    (LeastLikelyClassMethod, {"max_iter": 0}),
    (LeastLikelyClassMethod, {"max_iter": 1.0}),
    (LeastLikelyClassMethod, {"targeted": "true"}),
    (LeastLikelyClassMethod, {"batch_size": -1}),
    (LeastLikelyClassMethod, {"verbose": "yes"}),
    (VirtualAdversarialPerturbation, {"max_iter": -1}),
    (VirtualAdversarialPerturbation, {"max_iter": 1.0}),
    (VirtualAdversarialPerturbation, {"finite_diff": 1}),
    (VirtualAdversarialPerturbation, {"finite_diff": -1.0}),
    (VirtualAdversarialPerturbation, {"eps": -1}),
    (VirtualAdversarialPerturbation, {"batch_size": -1}),
    (VirtualAdversarialPerturbation, {"verbose": "true"}),
    (VirtualAdversarialPerturbation, {"xi": 0}),
    (VirtualAdversarialPerturbation, {"output": "scores"}),
    (VirtualAdversarialPerturbation, {"random_state": "0"}),
]


@pytest.mark.parametrize("cls, kwargs", BAD_PARAMS, ids=lambda v: getattr(v, "__name__", None) or str(v)[:40])
def test_bad_parameters_raise_value_error(estimator, cls, kwargs):
    with pytest.raises(ValueError):
        cls(estimator, **kwargs)


def test_eps_and_eps_step_of_different_kinds_raise_type_error_as_in_art(estimator):
    # ART's FGSM/BIM test: TypeError for eps=1, eps_step=array; ours is both a TypeError and a ValueError.
    for cls in (LogitMarginAttack, LeastLikelyClassMethod):
        with pytest.raises(TypeError):
            cls(estimator, eps=1, eps_step=np.array([1, 1, 1]))


@pytest.mark.parametrize("cls", list(FAST), ids=lambda c: c.__name__)
def test_set_params_round_trip(estimator, cls):
    attack = cls(estimator, **FAST[cls])
    before = {name: getattr(attack, name) for name in attack.attack_params if name != "estimator"}
    attack.set_params(**before)
    after = {name: getattr(attack, name) for name in before}
    assert after.keys() == before.keys() and all(np.all(after[k] == before[k]) for k in before)
    with pytest.raises(ValueError):
        attack.set_params(batch_size=-1)
    with pytest.raises(ValueError):
        attack.set_params(not_a_parameter=1)


@pytest.mark.parametrize("cls", list(FAST), ids=lambda c: c.__name__)
def test_input_untouched_dtype_shape_clip_and_budget(estimator, batch, cls):
    x, y = batch
    x_before = x.copy()
    x_adv = cls(estimator, **FAST[cls]).generate(x, np.eye(NB_CLASSES)[y])
    np.testing.assert_array_equal(x, x_before)
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if cls is VirtualAdversarialPerturbation:
        assert np.all(np.linalg.norm(x_adv - x, axis=1) <= FAST[cls]["eps"] + 1e-5)
        assert np.mean(np.linalg.norm(x_adv - x, axis=1)) > 0.5
    else:
        assert np.abs(x_adv - x).max() <= FAST[cls]["eps"] + 1e-5
        # the attack works: accuracy drops well below the clean accuracy
        assert accuracy(estimator, x_adv, y) <= accuracy(estimator, x, y) - 0.3


@pytest.mark.parametrize("cls", MASKED, ids=lambda c: c.__name__)
def test_mask_leaves_masked_features_untouched(estimator, batch, cls):
    x, y = batch
    attack = cls(estimator, **FAST[cls])
    np.testing.assert_array_equal(attack.generate(x, y, mask=np.zeros_like(x)), x)
    half = np.zeros(NB_FEATURES, dtype=np.float32)
    half[::2] = 1.0
    x_adv = attack.generate(x, y, mask=half)
    np.testing.assert_array_equal(x_adv[:, 1::2], x[:, 1::2])
    assert np.abs(x_adv[:, ::2] - x[:, ::2]).max() > 0.1
    # one mask per sample, as ART takes it
    per_sample = np.ones_like(x)
    per_sample[: len(x) // 2] = 0.0
    x_adv = attack.generate(x, y, mask=per_sample)
    np.testing.assert_array_equal(x_adv[: len(x) // 2], x[: len(x) // 2])


@pytest.mark.parametrize("cls", MASKED, ids=lambda c: c.__name__)
def test_targeted_reaches_the_given_targets(estimator, batch, cls):
    x, y = batch
    targets = (y + 3) % NB_CLASSES
    kwargs = dict(FAST[cls], eps=0.3)
    if cls is not RandomFGSM:
        kwargs.update(max_iter=10, eps_step=0.05)
    targeted = cls(estimator, targeted=True, **kwargs)
    assert targeted.targeted is True
    hit = np.mean(estimator.predict(targeted.generate(x, np.eye(NB_CLASSES)[targets])).argmax(1) == targets)
    untargeted = cls(estimator, **kwargs).generate(x, y)
    assert hit >= np.mean(estimator.predict(untargeted).argmax(1) == targets) + 0.2
    if cls is not LeastLikelyClassMethod:
        with pytest.raises(ValueError):
            targeted.generate(x)


@pytest.mark.parametrize("cls", MASKED, ids=lambda c: c.__name__)
def test_per_feature_and_per_sample_eps(estimator, batch, cls):
    x, y = batch
    eps = np.where(np.arange(NB_FEATURES) % 2 == 0, 0.2, 0.0).astype(np.float32)
    kwargs = dict(FAST[cls], eps=eps)
    if cls is RandomFGSM:
        kwargs["alpha"] = eps / 4
    else:
        kwargs["eps_step"] = np.full_like(eps, 0.05)
    x_adv = cls(estimator, **kwargs).generate(x, y)
    np.testing.assert_array_equal(x_adv[:, 1::2], x[:, 1::2])
    assert np.all(np.abs(x_adv - x) <= eps + 1e-5) and np.abs(x_adv - x).max() > 0.1
    # ART's "eps of array type 1": one eps per sample and feature
    eps_full = np.full(x.shape, 0.1, dtype=np.float32)
    eps_full[::2] = 0.0
    kwargs = dict(FAST[cls], eps=eps_full, batch_size=16)
    if cls is RandomFGSM:
        kwargs["alpha"] = eps_full / 2
    else:
        kwargs["eps_step"] = np.full_like(eps_full, 0.05)
    x_adv = cls(estimator, **kwargs).generate(x, y)
    np.testing.assert_array_equal(x_adv[::2], x[::2])
    assert np.all(np.abs(x_adv - x) <= eps_full + 1e-5) and np.abs(x_adv[1::2] - x[1::2]).max() > 0.05


def test_estimator_requirements_as_art(framework, flat_digits):
    """RandomFGSM needs what ART's FGSM needs (loss gradients); a query-only estimator is refused, VAP takes it."""
    from art.estimators.classification import BlackBoxClassifier

    assert RandomFGSM._estimator_requirements == FastGradientMethod._estimator_requirements
    blackbox = BlackBoxClassifier(
        lambda x: np.full((len(x), NB_CLASSES), 0.1), (NB_FEATURES,), NB_CLASSES, clip_values=(0.0, 1.0)
    )
    for cls in MASKED:
        with pytest.raises(EstimatorError):
            cls(blackbox)
    VirtualAdversarialPerturbation(blackbox, verbose=False)


def test_blackbox_vap_is_query_only(estimator, batch):
    from art.estimators.classification import BlackBoxClassifier

    x, _ = batch
    blackbox = BlackBoxClassifier(
        lambda q: estimator.predict(np.asarray(q, np.float32)), (NB_FEATURES,), NB_CLASSES, clip_values=(0.0, 1.0)
    )
    attack = VirtualAdversarialPerturbation(
        blackbox, max_iter=1, finite_diff=1e-3, eps=1.0, batch_size=5, verbose=False
    )
    x_adv = attack.generate(x[:5])
    # 5 predictions detect the output kind, 5 more at x, then 5 * (1 + 64) forward differences
    assert attack.queries_used == 5 + 5 + 5 * (1 + NB_FEATURES)
    assert np.all(np.linalg.norm(x_adv - x[:5], axis=1) <= 1.0 + 1e-5)


# ---------------------------------------------------------------------------------------------- ART pipelines
@pytest.mark.parametrize("cls", list(FAST), ids=lambda c: c.__name__)
def test_inside_art_adversarial_trainer(kind, framework, flat_digits, cls):
    if FRAMEWORK_OF_KIND[kind] != framework:
        pytest.skip(f"{kind} runs on {FRAMEWORK_OF_KIND[kind]}")
    (x_train, y_train), (x_test, y_test) = flat_digits
    clf = make_estimator(kind, seed=5)
    attack = cls(clf, **FAST[cls])
    assert not attack.targeted
    AdversarialTrainer(clf, attack, ratio=0.5).fit(
        x_train[:512], np.eye(NB_CLASSES)[y_train[:512]], nb_epochs=4, batch_size=64
    )
    assert accuracy(clf, x_test, y_test) >= 0.6


@pytest.mark.parametrize("cls", MASKED, ids=lambda c: c.__name__)
@pytest.mark.parametrize("targeted", [False, True])
def test_inside_art_autoattack(estimator, batch, cls, targeted, monkeypatch):
    if importlib.util.find_spec("multiprocess") is None:  # imported by AutoAttack for its parallel mode only
        monkeypatch.setitem(sys.modules, "multiprocess", types.ModuleType("multiprocess"))
    x, y = batch
    attack = cls(estimator, **FAST[cls])
    auto = AutoAttack(
        estimator, norm=np.inf, eps=0.2, eps_step=0.05, attacks=[attack], targeted=targeted, batch_size=40
    )
    x_adv = auto.generate(x, y=np.eye(NB_CLASSES)[y])
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-5
    assert accuracy(estimator, x_adv, y) <= accuracy(estimator, x, y) - 0.3


@pytest.mark.parametrize("norm", [np.inf, 2])
def test_logit_margin_random_init_as_arts_pgd(estimator, batch, norm):
    """ART's PGD/FGSM ``num_random_init``: random starts in the ball, masked features kept, the best end kept."""
    x, y = batch
    eps = 0.2 if norm == np.inf else 1.0
    plain = LogitMarginAttack(estimator, norm=norm, eps=eps, max_iter=3).generate(x, y)
    starts = LogitMarginAttack(estimator, norm=norm, eps=eps, max_iter=3, num_random_init=3, random_state=0)
    x_adv = starts.generate(x, y)
    assert not np.array_equal(x_adv, plain)
    np.testing.assert_array_equal(x_adv, starts.generate(x, y))  # an int seed: every call the same
    if norm == np.inf:
        assert np.abs(x_adv - x).max() <= eps + 1e-5
    else:
        assert np.linalg.norm(x_adv - x, axis=1).max() <= eps + 1e-4
    assert accuracy(estimator, x_adv, y) <= accuracy(estimator, x, y) - 0.3
    half = np.zeros(NB_FEATURES, dtype=np.float32)
    half[::2] = 1.0
    np.testing.assert_array_equal(starts.generate(x, y, mask=half)[:, 1::2], x[:, 1::2])
