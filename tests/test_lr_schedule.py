"""The trainers' ``lr_schedule``: applied every epoch, the optimizer handed back as it was, bad values refused."""

from __future__ import annotations

import numpy as np
import pytest

from art_ext.backend import get_backend
from art_ext.defences.trainer import LipschitzMarginTrainer, VirtualAdversarialTrainer
from art_ext.defences.trainer._loop import lr_factor
from art_ext.models import ARCHITECTURES, build_model, make_classifier


def _mlp(framework):
    shape = ARCHITECTURES["digits_mlp"][0 if framework == "pytorch" else 1]
    return make_classifier(build_model("digits_mlp", framework, seed=0), input_shape=shape, learning_rate=0.01)


def _weights(clf):
    ops = get_backend(clf)
    return [np.array(ops.to_numpy(w)) for w in ops.trainable_weights(ops.model_of(clf))]


TRAINERS = {
    "VAT": lambda clf, schedule: VirtualAdversarialTrainer(clf, random_state=0, verbose=False, lr_schedule=schedule),
    "LMT": lambda clf, schedule: LipschitzMarginTrainer(
        clf, c=0.1, warmup_epochs=0, random_state=0, verbose=False, lr_schedule=schedule
    ),
}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_the_schedule_sets_the_rate_of_every_epoch_and_restores_it(framework, digits, name):
    (x, y), _, _, _ = digits
    x, y = x[:96], y[:96]
    seen = []

    def zero_after_first(epoch):  # epoch 0 at the full rate, then frozen
        seen.append(epoch)
        return 1.0 if epoch == 0 else 0.0

    clf = _mlp(framework)
    ops = get_backend(clf)
    TRAINERS[name](clf, zero_after_first).fit(x, y, nb_epochs=1, batch_size=32)
    after_one = _weights(clf)
    TRAINERS[name](clf, zero_after_first).fit(x, y, nb_epochs=3, batch_size=32)
    assert seen == [0, 0, 1, 2]
    # the second fit moved the weights in its epoch 0 only: epochs 1 and 2 ran at rate 0
    moved = [np.abs(a - b).max() for a, b in zip(after_one, _weights(clf))]
    assert max(moved) > 0
    frozen = _weights(clf)
    TRAINERS[name](clf, lambda epoch: 0.0).fit(x, y, nb_epochs=2, batch_size=32)
    for a, b in zip(frozen, _weights(clf)):
        np.testing.assert_array_equal(a, b)
    assert ops.get_learning_rate(ops.optimizer_of(clf)) == pytest.approx(0.01)  # handed back unchanged


def test_linear_keeps_the_first_half_then_decays_towards_zero():
    factors = [lr_factor("linear", e, 10) for e in range(10)]
    assert factors[:5] == [1.0] * 5
    assert all(a > b > 0 for a, b in zip(factors[4:], factors[5:]))
    assert lr_factor(None, 7, 10) == 1.0


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_bad_schedules_are_refused_before_training(framework, digits, name):
    clf = _mlp(framework)
    with pytest.raises(ValueError, match="lr_schedule"):
        TRAINERS[name](clf, "cosine")
    (x, y), _, _, _ = digits
    before = _weights(clf)
    with pytest.raises(ValueError, match="lr_schedule"):
        TRAINERS[name](clf, lambda epoch: -1.0).fit(x[:64], y[:64], nb_epochs=1, batch_size=32)
    for a, b in zip(before, _weights(clf)):
        np.testing.assert_array_equal(a, b)


def test_a_keras_schedule_on_the_optimizer_is_refused_before_training(framework, digits):
    if framework != "tensorflow":
        pytest.skip("only for tensorflow; running pytorch")
    import keras

    clf = _mlp(framework)
    ops = get_backend(clf)
    model = ops.model_of(clf)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy")
    from art.estimators.classification import KerasClassifier

    keras_clf = KerasClassifier(model, use_logits=True, clip_values=(0.0, 1.0))
    (x, y), _, _, _ = digits
    before = _weights(keras_clf)
    with pytest.raises(ValueError, match="lr_schedule"):
        VirtualAdversarialTrainer(keras_clf, verbose=False, lr_schedule="linear").fit(x[:64], y[:64], nb_epochs=1)
    for a, b in zip(before, _weights(keras_clf)):
        np.testing.assert_array_equal(a, b)
