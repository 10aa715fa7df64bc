"""
Transferability of adversarial examples between classifiers: examples crafted on each source model, evaluated on every
target model (Szegedy et al., 2014; Goodfellow et al., 2015, section 8).

| Paper link: https://arxiv.org/abs/1412.6572
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from art_ext.utils.checks import (
    check_clip_values,
    check_finite,
    check_flag,
    check_labels,
    check_positive,
    check_sample_shape,
)
from art_ext.utils.markdown import markdown_table
from art_ext.utils.outputs import predict_in_batches

logger = logging.getLogger(__name__)


@dataclass
class TransferabilityResult:
    """
    Error rates of adversarial examples crafted on each source and evaluated on each target classifier.

    :param names: Classifier names, in the order of the rows (sources) and columns (targets).
    :param error_rates: ``error_rates[i, j]``: error rate on target ``names[j]`` of the examples crafted on source
        ``names[i]``, shape ``(nb_classifiers, nb_classifiers)``; the diagonal is the white-box error rate.
    :param clean_error_rates: Error rate of each classifier on the clean inputs, shape ``(nb_classifiers,)``.
    :param nb_samples: Number of inputs evaluated.
    :param attack_name: Name of the attack class used.
    :param mean_perturbation: Mean l-inf distance between inputs and adversarial examples, per source.
    """

    names: list[str]
    error_rates: np.ndarray
    clean_error_rates: np.ndarray
    nb_samples: int
    attack_name: str = ""
    mean_perturbation: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_markdown(self, floatfmt: str = ".1%") -> str:
        """
        The matrix as a markdown table: one row per source, one column per target, plus the clean error rate.

        :param floatfmt: Format of the rates (default: percentages with one decimal).
        :return: The table, ending with a newline.
        """
        headers = ["crafted on \\ evaluated on"] + self.names
        rows: list[list[Any]] = [[name] + [float(v) for v in self.error_rates[i]] for i, name in enumerate(self.names)]
        rows.append(["(clean inputs)"] + [float(v) for v in self.clean_error_rates])
        return markdown_table(headers, rows, floatfmt=floatfmt)

    def to_dict(self) -> dict:
        """A JSON-serialisable copy: names, error-rate matrix, clean error rates, sample count, attack, perturbation."""
        return {
            "names": list(self.names),
            "error_rates": np.asarray(self.error_rates, dtype=float).tolist(),
            "clean_error_rates": np.asarray(self.clean_error_rates, dtype=float).tolist(),
            "nb_samples": int(self.nb_samples),
            "attack_name": self.attack_name,
            "mean_perturbation": np.asarray(self.mean_perturbation, dtype=float).tolist(),
        }

    def plot(self, path: str | None = None, ax: Any = None, title: str | None = None) -> Any:
        """
        Heatmap of the error rates (rows: source, columns: target).

        :param path: Save the figure there (PNG by extension) when given.
        :param ax: A matplotlib ``Axes`` to draw into; a new figure when ``None``.
        :param title: Figure title (default: the attack's name).
        :return: The matplotlib ``Figure``.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            size = 1.3 + 1.1 * len(self.names)
            fig, ax = plt.subplots(figsize=(size + 1.2, size))
        else:
            fig = ax.figure
        image = ax.imshow(self.error_rates, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(self.names)), self.names, rotation=30, ha="right")
        ax.set_yticks(range(len(self.names)), self.names)
        ax.set_xlabel("evaluated on (target)")
        ax.set_ylabel("crafted on (source)")
        for i in range(len(self.names)):
            for j in range(len(self.names)):
                value = self.error_rates[i, j]
                ax.text(j, i, f"{value:.0%}", ha="center", va="center", color="black" if value > 0.6 else "white")
        ax.set_title(title if title is not None else f"{self.attack_name} error rate")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if path is not None:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        return fig


def transferability_matrix(
    classifiers: Mapping[str, Any],
    attack: Callable[[Any], Any],
    x: np.ndarray,
    y: np.ndarray,
    use_labels: bool = True,
    batch_size: int = 128,
    verbose: bool = True,
) -> TransferabilityResult:
    """
    Craft adversarial examples on every source classifier and measure their error rate on every target classifier.

    :param classifiers: ``{name: ART classifier}``, at least one; all take inputs shaped like `x`.
    :param attack: A callable building the attack for a source classifier, e.g.
        ``lambda clf: FastGradientMethod(clf, eps=0.25)``; its result must have ``generate(x, y)``.
    :param x: Inputs of shape ``(nb_samples, ...)``.
    :param y: True labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
    :param use_labels: Pass the true labels to ``generate`` (as Goodfellow et al. do); ``False`` lets the attack use
        the source model's predictions, which avoids label leaking on adversarially trained sources.
    :param batch_size: Batch size of the predictions.
    :param verbose: Show a progress bar over the sources.
    :return: A :class:`TransferabilityResult`.
    """
    if not isinstance(classifiers, Mapping) or len(classifiers) == 0:
        raise TypeError("`classifiers` must be a non-empty mapping {name: classifier}.")
    names = [str(name) for name in classifiers]
    models = list(classifiers.values())
    for name, model in zip(names, models):
        if not hasattr(model, "predict") or not hasattr(model, "nb_classes"):
            raise TypeError(f"`classifiers[{name!r}]` is not an ART classifier (no predict / nb_classes).")
    nb_classes = {model.nb_classes for model in models}
    if len(nb_classes) != 1:
        raise ValueError(f"`classifiers` disagree on the number of classes: {sorted(nb_classes)}.")
    if not callable(attack):
        raise TypeError("`attack` must be a callable mapping a classifier to an attack, e.g. lambda clf: FGSM(clf).")
    check_positive(batch_size, "batch_size", integer=True)
    check_flag(use_labels, "use_labels")
    check_flag(verbose, "verbose")
    x = check_finite(x, "x")
    for model in models:
        check_sample_shape(x, getattr(model, "input_shape", None))
        check_clip_values(x, getattr(model, "clip_values", None))
    x = x.astype(np.float32, copy=False)
    labels = check_labels(y, nb_classes.pop(), n=len(x))

    clean = np.array([np.mean(predict_in_batches(m, x, batch_size).argmax(1) != labels) for m in models])
    errors = np.zeros((len(models), len(models)))
    perturbation = np.zeros(len(models))
    attack_name = ""
    for i, source in enumerate(tqdm(models, desc="transferability (sources)", disable=not verbose)):
        built = attack(source)
        if not hasattr(built, "generate"):
            raise TypeError(f"`attack` returned {type(built).__name__}, which has no generate(x, y) method.")
        attack_name = type(built).__name__
        x_adv = built.generate(x, y=labels if use_labels else None)
        perturbation[i] = float(np.mean(np.abs(x_adv - x).reshape(len(x), -1).max(axis=1)))
        for j, target in enumerate(models):
            errors[i, j] = np.mean(predict_in_batches(target, x_adv, batch_size).argmax(1) != labels)
        logger.info("Crafted on %s: error rates %s", names[i], np.round(errors[i], 3).tolist())
    return TransferabilityResult(
        names=names,
        error_rates=errors,
        clean_error_rates=clean,
        nb_samples=len(x),
        attack_name=attack_name,
        mean_perturbation=perturbation,
    )
