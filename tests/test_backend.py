"""The backend contract both frameworks implement."""

import numpy as np
import pytest

from art_ext.backend import framework_of, get_backend


@pytest.fixture
def ops(framework):
    return get_backend(framework)


def test_value_and_grad_matches_analytic(ops):
    x = ops.asarray(np.array([[1.0, -2.0, 3.0]], np.float32))
    value, (g,) = ops.value_and_grad(lambda t: ops.sum(t * t * t), [x])
    assert float(ops.to_numpy(value)) == pytest.approx(1 - 8 + 27)
    np.testing.assert_allclose(ops.to_numpy(g), 3 * np.array([[1.0, 4.0, 9.0]]), rtol=1e-6)


def test_losses_match_numpy(ops):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    y = np.array([0, 3, 1, 4])
    pa = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    pb = np.exp(b) / np.exp(b).sum(1, keepdims=True)
    ce = -np.log(pa[np.arange(4), y]).mean()
    kl = (pa * (np.log(pa) - np.log(pb))).sum(1).mean()
    ta, tb = ops.asarray(a), ops.asarray(b)
    assert float(ops.to_numpy(ops.cross_entropy(ta, ops.asarray(y, "int64")))) == pytest.approx(ce, rel=1e-5)
    assert float(ops.to_numpy(ops.kl_divergence_logits(ta, tb))) == pytest.approx(kl, rel=1e-5)
    np.testing.assert_allclose(ops.to_numpy(ops.gather_rows(ta, ops.asarray(y, "int64"))), a[np.arange(4), y])


def test_l2_normalize_and_norms(ops):
    x = ops.asarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    n = ops.to_numpy(ops.per_sample_norm(ops.l2_normalize(x)))
    np.testing.assert_allclose(n, 1.0, rtol=1e-5)


def test_train_step_reduces_loss_and_weights_roundtrip(ops, framework):
    from art_ext.models import build_model

    model = build_model("digits_mlp", framework, seed=0)
    rng = np.random.default_rng(0)
    shape = (16, 1, 8, 8) if framework == "pytorch" else (16, 8, 8, 1)
    x, y = ops.asarray(rng.random(shape, dtype=np.float32)), ops.asarray(rng.integers(0, 10, 16), "int64")
    snapshot = ops.get_weights(model)
    opt = ops.make_optimizer(ops.trainable_weights(model), "sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    losses = [
        ops.train_step(model, opt, lambda: ops.cross_entropy(ops.call_model(model, x, True), y)) for _ in range(20)
    ]
    assert losses[-1] < 0.5 * losses[0]
    ops.set_weights(model, snapshot)
    restored = ops.get_weights(model)
    assert all(np.array_equal(u, v) for u, v in zip(snapshot, restored))


def test_forward_applies_art_preprocessing(ops, framework):
    from art_ext.models import build_model, make_classifier

    shape = (1, 8, 8) if framework == "pytorch" else (8, 8, 1)
    clf = make_classifier(build_model("digits_mlp", framework, seed=0), shape, preprocessing=(0.5, 0.25))
    x = np.random.default_rng(0).random((3,) + shape, dtype=np.float32)
    out = ops.to_numpy(ops.forward(clf, ops.asarray(x)))
    np.testing.assert_allclose(out, clf.predict(x), rtol=1e-5, atol=1e-5)


def test_frozen_batchnorm_keeps_running_statistics(ops, framework):
    if framework == "pytorch":
        import torch

        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
        x = ops.asarray(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    else:
        import tensorflow as tf

        model = tf.keras.Sequential(
            [tf.keras.Input((4,)), tf.keras.layers.Dense(3), tf.keras.layers.BatchNormalization()]
        )
        x = ops.asarray(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    before = [w.copy() for w in ops.get_weights(model)]
    with ops.frozen_batchnorm_stats(model):
        ops.call_model(model, x + 5.0, training=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, ops.get_weights(model)))
    ops.call_model(model, x + 5.0, training=True)
    assert not all(np.array_equal(a, b) for a, b in zip(before, ops.get_weights(model)))


def test_framework_of_rejects_unknown():
    with pytest.raises(TypeError, match="framework"):
        framework_of(np.zeros(3))
    with pytest.raises(ValueError, match="Unknown framework"):
        framework_of("jax")
