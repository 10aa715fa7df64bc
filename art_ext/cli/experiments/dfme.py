"""Data-free model extraction experiments shared by ``art-ext dfme`` and the demo's DFME section."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from art_ext.models import build_generator, build_model, input_shape_of, make_classifier, make_generator

__all__ = ["DATASETS", "load_dataset", "steal", "train_victim"]

#: dataset -> (victim architecture, generator)
DATASETS = {"digits": ("digits_cnn", "generator_8x8"), "mnist": ("lenet5", "generator_28x28")}


def load_dataset(name: str, framework: str, path: str | None = None) -> tuple:
    """``(x_train, y_train), (x_test, y_test), min, max`` of ``digits`` or ``mnist`` in the framework's layout."""
    from art_ext.data import load_digits, load_mnist

    channels_first = framework == "pytorch"
    if name == "digits":
        return load_digits(channels_first=channels_first)
    return load_mnist(None if path is None else f"{path}/mnist", channels_first=channels_first)


#: Default victim training epochs per dataset.
VICTIM_EPOCHS = {"digits": 30, "mnist": 3}


def train_victim(
    framework: str,
    dataset: str,
    data: tuple,
    epochs: int | None = None,
    seed: int = 0,
    probabilities: bool = True,
    verbose: bool = False,
) -> Any:
    """
    A reference victim trained on `data` (``digits_cnn`` for digits, LeNet-5 for MNIST); ``.test_accuracy`` set.

    :param epochs: Training epochs, at least 1 (``None``: :data:`VICTIM_EPOCHS` of the dataset).
    :param verbose: A progress bar over the epochs.
    """
    from tqdm.auto import trange

    from art_ext.estimators.classification.utils import to_probability_classifier

    if epochs is None:
        epochs = VICTIM_EPOCHS[dataset]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int, got {epochs!r}.")
    architecture = DATASETS[dataset][0]
    (x_train, y_train), (x_test, y_test), _, _ = data
    shape = input_shape_of(architecture, framework)
    victim = make_classifier(build_model(architecture, framework, seed=seed), input_shape=shape)
    for _ in trange(epochs, desc=f"training the victim ({architecture})", disable=not verbose):
        victim.fit(x_train, y_train, nb_epochs=1, batch_size=64, verbose=False)
    if probabilities:
        victim = to_probability_classifier(victim)
    victim.test_accuracy = float(np.mean(victim.predict(x_test, batch_size=512).argmax(1) == y_test))
    return victim


def steal(
    victim: Any,
    framework: str,
    dataset: str,
    x_val: np.ndarray,
    y_val: np.ndarray,
    budget: int,
    seed: int = 0,
    verbose: bool = True,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    **attack_kwargs,
) -> dict:
    """
    Run DFME against `victim` with a fresh student of the victim's architecture and the dataset's generator.
    `x_val`/`y_val` track (and, with ``restore_best``, select) the student; the accuracy reported is measured on
    `x_test`/`y_test` when given, else on the validation data.

    :return: dict with ``student``, ``attack``, ``student_accuracy``, ``seconds`` and the ``curve`` of
             ``(queries, validation accuracy)``.
    """
    from art_ext.attacks.extraction import DataFreeModelExtraction

    architecture, generator_name = DATASETS[dataset]
    shape = input_shape_of(architecture, framework)
    student = make_classifier(build_model(architecture, framework, seed=seed + 1), input_shape=shape)
    generator = make_generator(build_generator(generator_name, framework, seed=seed + 2))
    attack = DataFreeModelExtraction(
        victim, generator, max_queries=budget, random_state=seed, verbose=verbose, **attack_kwargs
    )
    start = time.perf_counter()
    attack.extract(thieved_classifier=student, x_val=x_val, y_val=y_val)
    seconds = time.perf_counter() - start
    x_eval, y_eval = (x_val, y_val) if x_test is None else (x_test, y_test)
    accuracy = float(np.mean(student.predict(x_eval, batch_size=512).argmax(1) == y_eval))
    curve = [(r["queries"], r["val_accuracy"]) for r in attack.history if r.get("val_accuracy") is not None]
    return {"student": student, "attack": attack, "student_accuracy": accuracy, "seconds": seconds, "curve": curve}
