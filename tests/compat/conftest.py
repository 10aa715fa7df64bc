"""
Fixtures of the compatibility suite, in the style of ART's own tests: small classifiers of the three estimator kinds
ART users hold (the run's framework classifier, a Keras ``KerasClassifier`` and a query-only ``BlackBoxClassifier``),
on the built-in 8x8 digits flattened to 64 features, with or without preprocessing defences.
"""

from __future__ import annotations

import numpy as np
import pytest
from compat_helpers import NB_CLASSES, NB_FEATURES, accuracy, fit, framework_classifier, keras_classifier


@pytest.fixture(scope="session")
def tabular_digits():
    """``(x_train, y_train), (x_test, y_test)``: digits in [0, 1], flattened, float32, index labels."""
    from art_ext.data import load_digits

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(channels_first=True)
    return (x_train.reshape(len(x_train), -1), y_train), (x_test.reshape(len(x_test), -1), y_test)


@pytest.fixture(scope="session")
def trained_framework_classifier(framework, tabular_digits):
    """The run's framework classifier (logits), trained to >= 90% test accuracy."""
    clf = fit(framework_classifier(framework), tabular_digits)
    assert accuracy(clf, *tabular_digits[1]) >= 0.9
    return clf


@pytest.fixture(scope="session")
def trained_keras_classifier(framework, tabular_digits):
    """A KerasClassifier (softmax outputs), trained to >= 90% test accuracy."""
    if framework != "tensorflow":
        pytest.skip("KerasClassifier runs on TensorFlow")
    clf = fit(keras_classifier(), tabular_digits)
    assert accuracy(clf, *tabular_digits[1]) >= 0.9
    return clf


@pytest.fixture(scope="session")
def blackbox_classifier(trained_framework_classifier):
    """A query-only ``BlackBoxClassifier`` answering the trained classifier's probabilities (float64)."""
    from art.estimators.classification import BlackBoxClassifier

    def predict(x):
        z = trained_framework_classifier.predict(np.asarray(x, dtype=np.float32)).astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    return BlackBoxClassifier(predict, (NB_FEATURES,), NB_CLASSES, clip_values=(0.0, 1.0))


@pytest.fixture(params=["framework", "keras", "blackbox"])
def trained_estimator(request, framework):
    """Each of the three estimator kinds, trained (Keras only on a TensorFlow run)."""
    name = {
        "framework": "trained_framework_classifier",
        "keras": "trained_keras_classifier",
        "blackbox": "blackbox_classifier",
    }
    return request.getfixturevalue(name[request.param])
