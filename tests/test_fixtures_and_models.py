"""Reference models and the shared fixtures: trained classifiers reach 90%+, both output variants agree."""

import numpy as np
import pytest

from art_ext.backend import framework_of, get_backend
from art_ext.models import (
    ARCHITECTURES,
    build_model,
    clone_classifier,
    input_shape_of,
    make_classifier,
    to_probability_classifier,
)


@pytest.mark.kernels
def test_fixture_classifiers_are_accurate(digits_mlp_classifier, digits_cnn_classifier, framework, outcome):
    # measured PyTorch 0.981, TensorFlow 0.972 over 8 kernel variants; smallest margin 0.072 (>= 0.9 needed,
    # tensorflow/onednn0/1)
    outcome.check("MLP test accuracy", digits_mlp_classifier.test_accuracy, ">=", 0.90)
    # measured PyTorch 0.975-0.978, TensorFlow 0.986 over 8 kernel variants; smallest margin 0.025 (>= 0.95 needed,
    # pytorch/avx2/1)
    outcome.check("CNN test accuracy", digits_cnn_classifier.test_accuracy, ">=", 0.95)
    assert framework_of(digits_cnn_classifier) == framework


def test_probability_variant_shares_weights(digits, digits_cnn_classifier, digits_cnn_classifier_probabilities):
    x = digits[1][0][:50]
    logits = digits_cnn_classifier.predict(x)
    probs = digits_cnn_classifier_probabilities.predict(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (logits < 0).any() and (probs >= 0).all()
    np.testing.assert_array_equal(logits.argmax(1), probs.argmax(1))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architectures_have_the_same_shapes_in_both_frameworks(name, framework):
    model = build_model(name, framework, seed=0)
    shape = input_shape_of(name, framework)
    ops = get_backend(framework)
    x = ops.asarray(np.zeros((2,) + shape, np.float32))
    out = ops.call_model(model, x)
    assert ops.shape(out) == (2, 10)
    n_params = sum(int(np.prod(ops.shape(w))) for w in ops.trainable_weights(model))
    expected = {"digits_mlp": 9610, "digits_cnn": 38282, "lenet5": 61706, "lipschitz_mlp": 1863690}[name]
    assert n_params == expected


def test_make_classifier_rejects_bad_output(framework):
    with pytest.raises(ValueError, match="output"):
        make_classifier(("digits_mlp", framework), input_shape=(1, 8, 8), output="labels")
    with pytest.raises(ValueError, match="architecture"):
        build_model("resnet", framework)


def test_build_model_is_seeded(framework):
    ops = get_backend(framework)
    a = ops.get_weights(build_model("digits_mlp", framework, seed=3))
    b = ops.get_weights(build_model("digits_mlp", framework, seed=3))
    c = ops.get_weights(build_model("digits_mlp", framework, seed=4))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


@pytest.mark.gpu
def test_classifier_trains_on_cuda(framework, digits):
    (x_train, y_train), (x_test, y_test), _, _ = digits
    shape = input_shape_of("digits_cnn", framework)
    clf = make_classifier(build_model("digits_cnn", framework, seed=0), input_shape=shape)
    if framework == "pytorch":
        assert clf.device.type == "cuda"
    clf.fit(x_train, y_train, nb_epochs=10, batch_size=64)
    assert np.mean(clf.predict(x_test).argmax(1) == y_test) > 0.9


def test_classifier_helpers_live_with_the_estimators(framework, digits_mlp_classifier, digits):
    """clone_classifier / to_probability_classifier: same objects from both homes, and they behave."""
    from art_ext.estimators import classification

    assert classification.clone_classifier is clone_classifier
    assert classification.to_probability_classifier is to_probability_classifier
    x = digits[1][0][:20]
    copy = clone_classifier(digits_mlp_classifier, reinitialise=False)
    np.testing.assert_allclose(copy.predict(x), digits_mlp_classifier.predict(x), rtol=1e-5, atol=1e-5)
    fresh = clone_classifier(digits_mlp_classifier, reinitialise=True, seed=1)
    assert not np.allclose(fresh.predict(x), digits_mlp_classifier.predict(x))
    probs = to_probability_classifier(digits_mlp_classifier).predict(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
