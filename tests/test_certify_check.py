"""
LipschitzCertifier.certify checks its rebuilt graph against the classifier on every call, on each path it can take
(on TensorFlow: eager until a graph was checked on more than EAGER_CHUNKS chunks, compiled after), and the compiled
check is traced once.
"""

from __future__ import annotations

import numpy as np
import pytest

from art_ext.estimators.certification import LipschitzCertifier
from art_ext.estimators.certification.lipschitz import CHECK_CHUNK, EAGER_CHUNKS
from art_ext.models import make_classifier

pytestmark = pytest.mark.usefixtures("single_thread")

SHAPE = {"pytorch": (1, 8, 8), "tensorflow": (8, 8, 1)}


def _classifier(framework):
    from art_ext.utils.seed import set_seed

    set_seed(0, framework)
    if framework == "pytorch":
        from torch import nn

        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    else:
        import keras

        layers = [keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)]
        model = keras.Sequential([keras.Input(SHAPE[framework]), *layers])
    return make_classifier(model, input_shape=SHAPE[framework])


def _inputs(framework, n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE[framework])).astype(np.float32)


def _disguise(clf):
    """The classifier now answers something its layers do not compute (its weights, hence the fingerprint, kept)."""
    own = clf.predict
    clf.predict = lambda x, **kwargs: 3.0 * own(x, **kwargs) + 1.0


def _compiled(cert, framework):
    return framework == "tensorflow" and getattr(cert.graph, "_tf_run", None) is not None


def test_every_certify_path_checks_the_graph(framework):
    small = _inputs(framework, 200)  # 64 rows checked: one chunk
    # the first chunks a graph is checked on (eager on TensorFlow)
    clf = _classifier(framework)
    first = LipschitzCertifier(clf)
    pred, radius = first.certify(small)
    assert np.all(radius > 0) and np.array_equal(pred, clf.predict(small).argmax(1))
    _disguise(clf)
    with pytest.raises(TypeError, match="reproduce"):
        first.certify(small)
    assert not _compiled(first, framework)
    # once more than EAGER_CHUNKS chunks were checked (compiled on TensorFlow)
    clf = _classifier(framework)
    later = LipschitzCertifier(clf)
    for _ in range(EAGER_CHUNKS):
        later.certify(small)
    _disguise(clf)
    with pytest.raises(TypeError, match="reproduce"):
        later.certify(small)
    assert _compiled(later, framework) == (framework == "tensorflow")
    # a first call on many chunks (compiled at once on TensorFlow), every input checked
    clf = _classifier(framework)
    many = LipschitzCertifier(clf, check_fraction=1.0)
    _disguise(clf)
    with pytest.raises(TypeError, match="reproduce"):
        many.certify(_inputs(framework, (EAGER_CHUNKS + 1) * CHECK_CHUNK))
    assert _compiled(many, framework) == (framework == "tensorflow")


def test_disguise_on_few_inputs_is_caught_by_the_sampled_check(framework):
    """Only the inputs the check draws are compared: a model disguised on every input is caught at 10%."""
    clf = _classifier(framework)
    cert = LipschitzCertifier(clf)
    _disguise(clf)
    for n in (1, 64, 1000):
        with pytest.raises(TypeError, match="reproduce"):
            cert.certify(_inputs(framework, n, seed=n))


@pytest.mark.only_with_framework("tensorflow")
def test_compiled_check_is_traced_once():
    clf = _classifier("tensorflow")
    cert = LipschitzCertifier(clf)
    for n in (200, 300, 1000, 77, 5000, 3000, 150):  # 1, 1, 1, 1, 4, 3, 1 chunks: compiled from the fifth call
        cert.certify(_inputs("tensorflow", n, seed=n))
    assert cert.graph._tf_run.experimental_get_tracing_count() == 1
