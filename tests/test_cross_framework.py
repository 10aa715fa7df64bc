"""
The same weights and the same seed give the same VAT, LMT and DFME numbers on PyTorch and on TensorFlow (within float32
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
def test_vat_same_numbers_on_both_frameworks(twins, outcome):
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
    tolerance = max(1e-3 * abs(lds["tensorflow"]), 1e-5)  # pytest.approx(rel=1e-3, abs=1e-5)
    # measured PyTorch 0.00057-0.00069 over 4 kernel variants; smallest margin 0.999 (<= 1 needed, pytorch/default/1)
    outcome.check(
        "|LDS PyTorch - TensorFlow| / tolerance", abs(lds["pytorch"] - lds["tensorflow"]) / tolerance, "<=", 1
    )
    assert lds["pytorch"] == pytest.approx(lds["tensorflow"], rel=1e-3, abs=1e-5), lds
    # measured PyTorch 0.0028 over 4 kernel variants; smallest margin 0.027 (<= 0.03 needed, pytorch/avx2/1)
    outcome.check("|accuracy PyTorch - TensorFlow|", abs(accuracy["pytorch"] - accuracy["tensorflow"]), "<=", 0.03)


@pytest.mark.kernels
def test_lmt_same_numbers_on_both_frameworks(twins, outcome):
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
    after = abs(bound_after["pytorch"] / bound_after["tensorflow"] - 1)
    # measured PyTorch 0.003 over 4 kernel variants; smallest margin 0.017 (<= 0.02 needed, pytorch/default/1)
    outcome.check("|bound after LMT, PyTorch / TensorFlow - 1|", after, "<=", 0.02)
    assert bound_after["pytorch"] == pytest.approx(bound_after["tensorflow"], rel=0.02), bound_after
    # measured PyTorch 0.0028 over 4 kernel variants; smallest margin 0.027 (<= 0.03 needed, pytorch/avx2/1)
    outcome.check("|accuracy PyTorch - TensorFlow|", abs(accuracy["pytorch"] - accuracy["tensorflow"]), "<=", 0.03)


def _dfme_twins():
    """A flat digits MLP student and DFME's dense generator (``generator="auto"`` for 64 features) on each framework,
    with identical weights."""
    import tensorflow as tf
    import torch

    from art_ext.estimators.generation import build_auto_generator
    from art_ext.models import make_classifier

    tf.keras.utils.set_random_seed(0)  # Glorot-uniform weights, zero biases (PyTorch's default init plateaus here)
    torch_mlp = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    keras_mlp = tf.keras.Sequential(
        [tf.keras.Input((64,)), tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(10)]
    )
    with torch.no_grad():
        for p, w in zip(torch_mlp.parameters(), keras_mlp.get_weights()):
            p.copy_(torch.from_numpy(w.T.copy() if w.ndim == 2 else w))
    students = {
        "pytorch": make_classifier(torch_mlp, (64,), device_type="cpu"),
        "tensorflow": make_classifier(keras_mlp, (64,)),
    }
    generators = {fw: build_auto_generator((64,), fw, seed=0, device_type="cpu")[0] for fw in students}
    torch_gen, keras_gen = generators["pytorch"].model, generators["tensorflow"].model
    weights = []
    for module in torch_gen.body:
        if isinstance(module, torch.nn.Linear):
            weights += [module.weight.detach().numpy().T, module.bias.detach().numpy()]
        elif isinstance(module, torch.nn.BatchNorm1d):
            weights += [
                t.detach().numpy() for t in (module.weight, module.bias, module.running_mean, module.running_var)
            ]
    keras_gen.set_weights(weights)
    return students, generators


def test_dfme_same_numbers_on_both_frameworks():
    """
    Same student and generator weights, same victim, same seed: the first round's losses agree within float32
    tolerance (every random draw comes from one numpy generator), the next ones drift only as far as the optimizers'
    float32 arithmetic makes them, and the stolen students end equally accurate.
    """
    from art.estimators.classification import BlackBoxClassifier

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.data import load_digits

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(flatten=True)
    w = np.linalg.lstsq(x_train, np.eye(10)[y_train] * 8.0, rcond=None)[0].astype(np.float32)  # a linear victim

    def victim_predict(x):
        logits = x.reshape(len(x), 64) @ w
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    victim = BlackBoxClassifier(victim_predict, input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0))
    victim_accuracy = float(np.mean(victim_predict(x_test).argmax(1) == y_test))
    students, generators = _dfme_twins()
    history, accuracy = {}, {}
    for fw, student in students.items():
        attack = DataFreeModelExtraction(
            victim, generators[fw], max_queries=10_000, batch_size=64, random_state=0, verbose=False
        )
        attack.extract(thieved_classifier=student)
        history[fw] = attack.history
        accuracy[fw] = float(np.mean(student.predict(x_test).argmax(1) == y_test))
    for key in ("loss_generator", "loss_student", "diversity"):
        first = [history[fw][0][key] for fw in students]
        assert first[0] == pytest.approx(first[1], rel=2e-3), (key, first)
        early = [[r[key] for r in history[fw][:3]] for fw in students]
        np.testing.assert_allclose(early[0], early[1], rtol=0.03, err_msg=key)
    assert [r["queries"] for r in history["pytorch"]] == [r["queries"] for r in history["tensorflow"]]
    # at this budget the student of this linear victim still sits on one class on both frameworks (measured 0.111 on
    # both); how far DFME gets is tested in tests/test_dfme*.py, the sameness here
    assert abs(accuracy["pytorch"] - accuracy["tensorflow"]) <= 0.1, (accuracy, victim_accuracy)
