"""DataFreeModelExtraction on an MNIST-like 28x28 victim (the 8x8 digits upscaled and padded like MNIST): a small
LeNet-5 victim exposing probabilities is stolen with a few tens of thousands of queries and no data at all."""

from __future__ import annotations

import numpy as np
import pytest

from art_ext.attacks.extraction import DataFreeModelExtraction
from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

pytestmark = pytest.mark.usefixtures("single_thread")


def _upscale(x: np.ndarray, channels_first: bool) -> np.ndarray:
    """8x8 digits to 28x28: bilinear x3 (24x24) and a 2-pixel black border, like MNIST's centred digits."""
    from scipy.ndimage import zoom

    images = x[:, 0] if channels_first else x[..., 0]
    big = np.clip(zoom(images, (1, 3, 3), order=1), 0.0, 1.0)
    big = np.pad(big, ((0, 0), (2, 2), (2, 2)))
    return (big[:, None] if channels_first else big[..., None]).astype(np.float32)


@pytest.fixture(scope="module")
def mnist_like(framework, digits):
    (x_train, y_train), (x_test, y_test), _, _ = digits
    cf = framework == "pytorch"
    return (_upscale(x_train, cf), y_train), (_upscale(x_test, cf), y_test)


@pytest.fixture(scope="module")
def mnist_like_victim(framework, mnist_like):
    from art_ext.models import to_probability_classifier
    from art_ext.utils import set_seed

    set_seed(0, framework)
    (x_train, y_train), _ = mnist_like
    shape = ARCHITECTURES["lenet5"][0 if framework == "pytorch" else 1]
    victim = make_classifier(build_model("lenet5", framework, seed=0), input_shape=shape)
    victim.fit(x_train, y_train, nb_epochs=8, batch_size=64, verbose=False)
    return to_probability_classifier(victim)


@pytest.mark.kernels
def test_student_learns_an_mnist_like_victim_data_free(framework, mnist_like, mnist_like_victim, outcome):
    (_, _), (x_test, y_test) = mnist_like
    victim = mnist_like_victim
    victim_acc = float(np.mean(victim.predict(x_test).argmax(1) == y_test))
    # measured PyTorch 0.969, TensorFlow 0.955 over 8 kernel variants; smallest margin 0.055 (>= 0.9 needed,
    # tensorflow/onednn0/1)
    outcome.check("victim accuracy", victim_acc, ">=", 0.9)
    shape = ARCHITECTURES["lenet5"][0 if framework == "pytorch" else 1]
    student = make_classifier(build_model("lenet5", framework, seed=1), input_shape=shape)
    generator = make_generator(build_generator("generator_28x28", framework, ngf=16, seed=2))
    # The student sits at chance for the first ~7k (PyTorch) to 18k-26k (TensorFlow) queries, then climbs: 30k queries
    # ended on the slope (TensorFlow student 0.42 to 0.72 depending on oneDNN and threads); 40k end near the plateau.
    attack = DataFreeModelExtraction(victim, generator, max_queries=40_000, random_state=0, verbose=False)
    attack.extract(thieved_classifier=student)
    student_acc = float(np.mean(student.predict(x_test).argmax(1) == y_test))
    assert attack.queries_used <= 40_000
    # chance is 0.1; before issue 13's fix (a generator making pixel-level mid-grey noise, which the victim puts in
    # one or two classes) the PyTorch student stayed there, predicting one class for every test image.
    # measured PyTorch 0.919-0.93, TensorFlow 0.663-0.903 over 8 kernel variants; smallest margin 0.185 (0.663 >= 0.478
    # there, tensorflow/onednn0/2)
    outcome.check("student accuracy, vs 0.5 x victim's", student_acc, ">=", 0.5 * victim_acc)
    # measured PyTorch 10, TensorFlow 10 over 8 kernel variants; smallest margin 2 (>= 8 needed, pytorch/avx2/1)
    outcome.check("classes the student predicts", len(np.unique(student.predict(x_test).argmax(1))), ">=", 8)
