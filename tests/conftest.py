"""
Test harness: ``--framework {pytorch,tensorflow}`` (default: whichever is installed, PyTorch first, without importing
the other), framework markers, a ``gpu`` marker, the ``outcome`` fixture of the ``kernels`` tests, and session fixtures
with small trained digits classifiers.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

FRAMEWORKS = ("pytorch", "tensorflow")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")


def _installed(framework: str) -> bool:
    return importlib.util.find_spec("torch" if framework == "pytorch" else "tensorflow") is not None


def pytest_addoption(parser):
    parser.addoption(
        "--framework",
        choices=FRAMEWORKS,
        default=None,
        help="backend the suite runs on (default: PyTorch if installed, else TensorFlow)",
    )


def _framework(config) -> str:
    chosen = config.getoption("--framework")
    if chosen is None:
        chosen = next((f for f in FRAMEWORKS if _installed(f)), None)
        if chosen is None:
            raise pytest.UsageError("Neither PyTorch nor TensorFlow is installed.")
    elif not _installed(chosen):
        raise pytest.UsageError(f"--framework {chosen} given, but it is not installed.")
    return chosen


def pytest_configure(config):
    config._art_ext_framework = _framework(config)


def pytest_report_header(config):
    return f"art_ext framework: {config._art_ext_framework}"


def _cuda_available(framework: str) -> bool:
    if framework == "pytorch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    framework = config._art_ext_framework
    cuda = None
    for item in items:
        only = item.get_closest_marker("only_with_framework")
        if only and framework not in only.args:
            item.add_marker(pytest.mark.skip(reason=f"only for {', '.join(only.args)}; running {framework}"))
        skip = item.get_closest_marker("skip_framework")
        if skip and framework in skip.args:
            item.add_marker(pytest.mark.skip(reason=f"not for {framework}"))
        if item.get_closest_marker("gpu"):
            if cuda is None:
                cuda = _cuda_available(framework)
            if not cuda:
                item.add_marker(pytest.mark.skip(reason=f"needs CUDA; {framework} sees none"))


@pytest.fixture(scope="session")
def framework(request) -> str:
    """``"pytorch"`` or ``"tensorflow"``: the backend this run tests."""
    return request.config._art_ext_framework


@pytest.fixture
def outcome(request, framework):
    """
    ``outcome.check(label, value, op, threshold)``: asserts an outcome of training with its margin in the message and,
    where ``ART_EXT_OUTCOMES`` names a file, records it there for ``.ci/kernel_variants.py`` (tests/_outcomes.py).
    """
    from _outcomes import Outcome

    return Outcome(request.node.nodeid, framework)


@pytest.fixture(scope="session")
def channels_first(framework) -> bool:
    return framework == "pytorch"


@pytest.fixture(scope="session")
def digits(channels_first):
    """Built-in digits in the framework's channel order: ``(x_train, y_train), (x_test, y_test), min, max``."""
    from art_ext.data import load_digits

    return load_digits(channels_first=channels_first)


@pytest.fixture(scope="session")
def digits_npz(digits, tmp_path_factory):
    """The digits test split as an ``.npz`` with arrays ``x`` and ``y`` (the audit's DATA), its path."""
    _, (x_test, y_test), _, _ = digits
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x_test, y=y_test)
    return str(path)


def _trained(framework, digits, architecture, nb_epochs, seed=0):
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    (x_train, y_train), (x_test, y_test), _, _ = digits
    shape = ARCHITECTURES[architecture][0 if framework == "pytorch" else 1]
    clf = make_classifier(build_model(architecture, framework, seed=seed), input_shape=shape)
    clf.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=64)
    accuracy = float(np.mean(clf.predict(x_test).argmax(1) == y_test))
    assert accuracy >= 0.90, f"{architecture} on {framework} reached only {accuracy:.3f} test accuracy"
    clf.test_accuracy = accuracy
    return clf


@pytest.fixture(scope="session")
def digits_mlp_classifier(framework, digits):
    """An MLP trained on digits (logit outputs), at least 90% test accuracy; ``.test_accuracy`` holds it."""
    return _trained(framework, digits, "digits_mlp", nb_epochs=40)


@pytest.fixture(scope="session")
def digits_cnn_classifier(framework, digits):
    """A CNN trained on digits (logit outputs), at least 90% test accuracy; ``.test_accuracy`` holds it."""
    return _trained(framework, digits, "digits_cnn", nb_epochs=30)


@pytest.fixture(scope="session")
def digits_mlp_classifier_probabilities(digits_mlp_classifier):
    """The trained MLP returning probabilities (shared weights)."""
    from art_ext.models import to_probability_classifier

    return to_probability_classifier(digits_mlp_classifier)


@pytest.fixture(scope="session")
def digits_cnn_classifier_probabilities(digits_cnn_classifier):
    """The trained CNN returning probabilities (shared weights)."""
    from art_ext.models import to_probability_classifier

    return to_probability_classifier(digits_cnn_classifier)


def _data_folder(name: str) -> str | None:
    root = os.environ.get("ART_EXT_DATA")
    for base in ([root] if root else []) + [SHARED_DATA]:
        folder = os.path.join(base, name)
        if os.path.isdir(folder):
            return folder
    return None


@pytest.fixture(scope="session")
def mnist(channels_first):
    """MNIST from ``$ART_EXT_DATA/mnist`` or ``../shared/data/mnist``; skips with the reason when absent."""
    folder = _data_folder("mnist")
    if folder is None:
        pytest.skip("MNIST not found: set ART_EXT_DATA or place the IDX files in ../shared/data/mnist")
    from art_ext.data import load_mnist

    return load_mnist(folder, channels_first=channels_first)


@pytest.fixture(scope="session")
def rt_polarity_folder():
    """Folder of the rt-polarity files; skips with the reason when absent."""
    folder = _data_folder("rt-polarity")
    if folder is None:
        pytest.skip("rt-polarity not found: set ART_EXT_DATA or place the files in ../shared/data/rt-polarity")
    return folder


@pytest.fixture(scope="module")
def single_thread(framework):
    """
    One BLAS and torch thread for a module (``pytestmark = pytest.mark.usefixtures("single_thread")``): on a loaded
    2-core machine, threads of tiny models spin against each other (measured up to 70x slower).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        if framework != "pytorch":
            yield
            return
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(previous)
