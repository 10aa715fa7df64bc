"""
The same weights and the same seed give the same VAT and LMT numbers on PyTorch and on TensorFlow (within float32
tolerance): the algorithms are written once over art_ext.backend. Needs both frameworks; runs once (PyTorch run).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = [
    pytest.mark.only_with_framework("pytorch"),
    pytest.mark.skipif(
        importlib.util.find_spec("torch") is None or importlib.util.find_spec("tensorflow") is None,
        reason="needs both PyTorch and TensorFlow",
    ),
]


@pytest.fixture(scope="module")
def twins():
    """A digits MLP on each framework with identical weights, and the digits in each layout."""
    from art_ext.data import load_digits
    from art_ext.models import build_model, input_shape_of, make_classifier

    torch_model = build_model("digits_mlp", "pytorch", seed=0)
    keras_model = build_model("digits_mlp", "tensorflow", seed=0)
    w1, b1, w2, b2 = (p.detach().numpy() for p in torch_model.parameters())
    keras_model.set_weights([w1.T, b1, w2.T, b2])  # Linear (out, in) -> Dense (in, out); Flatten agrees (one channel)
    classifiers = {
        fw: make_classifier(model, input_shape_of("digits_mlp", fw), learning_rate=0.01, device_type="cpu")
        for fw, model in (("pytorch", torch_model), ("tensorflow", keras_model))
    }
    data = {fw: load_digits(channels_first=fw == "pytorch") for fw in classifiers}
    np.testing.assert_allclose(
        classifiers["pytorch"].predict(data["pytorch"][1][0][:50]),
        classifiers["tensorflow"].predict(data["tensorflow"][1][0][:50]),
        rtol=1e-4,
        atol=1e-4,
    )
    return classifiers, data


def _copy(classifiers):
    from art_ext.models import clone_classifier

    return {fw: clone_classifier(clf, reinitialise=False) for fw, clf in classifiers.items()}


@pytest.mark.kernels
def test_vat_same_numbers_on_both_frameworks(twins):
    from art_ext.defences.trainer import VirtualAdversarialTrainer

    classifiers, data = twins
    lds, accuracy = {}, {}
    for fw, clf in _copy(classifiers).items():
        (x_train, y_train), (x_test, y_test), _, _ = data[fw]
        before = VirtualAdversarialTrainer(clf, eps=0.5, xi=0.5, random_state=0, verbose=False)
        lds[fw] = before.virtual_adversarial_loss(x_test[:100])
        trainer = VirtualAdversarialTrainer(clf, eps=0.5, xi=0.5, random_state=0, verbose=False)
        trainer.fit(x_train[:300], y_train[:300], nb_epochs=2, batch_size=64)
        accuracy[fw] = float(np.mean(clf.predict(x_test).argmax(1) == y_test))
    assert lds["pytorch"] == pytest.approx(lds["tensorflow"], rel=1e-3, abs=1e-5), lds
    assert abs(accuracy["pytorch"] - accuracy["tensorflow"]) <= 0.03, accuracy


@pytest.mark.kernels
def test_lmt_same_numbers_on_both_frameworks(twins):
    from art_ext.defences.trainer import LipschitzMarginTrainer
    from art_ext.estimators.certification import LipschitzCertifier

    classifiers, data = twins
    bound, radius, bound_after, accuracy = {}, {}, {}, {}
    for fw, clf in _copy(classifiers).items():
        (x_train, y_train), (x_test, _), _, _ = data[fw]
        certifier = LipschitzCertifier(clf)
        bound[fw] = certifier.lipschitz_bound()
        radius[fw] = certifier.certify(x_test[:100])[1]
        LipschitzMarginTrainer(clf, c=0.1, random_state=0, verbose=False).fit(
            x_train[:300], y_train[:300], nb_epochs=2, batch_size=64
        )
        bound_after[fw] = LipschitzCertifier(clf).lipschitz_bound()
        accuracy[fw] = float(np.mean(clf.predict(x_test).argmax(1) == data[fw][1][1]))
    assert bound["pytorch"] == pytest.approx(bound["tensorflow"], rel=1e-4), bound
    np.testing.assert_allclose(radius["pytorch"], radius["tensorflow"], rtol=1e-3, atol=1e-5)
    assert bound_after["pytorch"] == pytest.approx(bound_after["tensorflow"], rel=0.02), bound_after
    assert abs(accuracy["pytorch"] - accuracy["tensorflow"]) <= 0.03, accuracy
