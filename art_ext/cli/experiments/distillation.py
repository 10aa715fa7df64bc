"""Defensive-distillation experiments shared by ``art-ext distillation`` and the demo's distillation section."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from art_ext.models import build_model, input_shape_of, make_classifier

__all__ = ["QUICK_ATTACKS", "compare", "comparison_figures", "train_pair"]

#: Attacks of the quick comparison (C&W and Square are left to the full run: they dominate the time).
QUICK_ATTACKS = ("fgsm_ce", "pgd_ce", "fgsm_margin", "pgd_margin", "transfer", "noise")


def train_pair(
    framework: str,
    digits: tuple,
    temperature: float = 100.0,
    nb_epochs: int = 15,
    learning_rate: float = 0.01,
    architecture: str = "digits_mlp",
    seed: int = 0,
    verbose: bool = False,
    status: Callable[[str], None] | None = None,
) -> tuple[Any, Any]:
    """
    A normally trained digits classifier and one distilled at `temperature`, same architecture and optimizer.

    :param verbose: Progress bars of the distillation.
    :param status: Called with a one-line status before each training phase (e.g. ``print``).
    """
    from art_ext.defences.trainer import DefensiveDistillationTrainer

    (x_train, y_train), _, _, _ = digits
    shape = input_shape_of(architecture, framework)
    if status:
        status(f"training the normal {architecture} ({nb_epochs} epochs)")
    normal = make_classifier(build_model(architecture, framework, seed=seed), shape, learning_rate=learning_rate)
    normal.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=64, verbose=False)
    distilled = make_classifier(build_model(architecture, framework, seed=seed), shape, learning_rate=learning_rate)
    if status:
        status(f"distilling at T={temperature:g} (teacher then student, {nb_epochs} epochs each)")
    DefensiveDistillationTrainer(distilled, temperature=temperature, random_state=seed, verbose=verbose).fit(
        x_train, y_train, nb_epochs=nb_epochs, batch_size=64
    )
    return normal, distilled


def compare(
    normal: Any, distilled: Any, x: np.ndarray, y: np.ndarray, quick: bool = False, seed: int = 0, **kwargs
) -> tuple[Any, Any]:
    """
    Gradient-masking reports of the normal and the distilled model. The normal model is the distilled model's
    transfer surrogate; the normal model's own analysis has no transfer attack.
    """
    from art_ext.evaluations import ATTACKS, GradientMaskingAnalysis

    attacks = list(QUICK_ATTACKS if quick else ATTACKS)
    settings = dict(random_state=seed, verbose=False)
    if quick:
        settings["pgd_steps"] = 5
    settings.update(kwargs)
    normal_report = GradientMaskingAnalysis(normal, attacks=[a for a in attacks if a != "transfer"], **settings)
    distilled_report = GradientMaskingAnalysis(distilled, attacks=attacks, surrogate=normal, **settings)
    return normal_report.analyse(x, y), distilled_report.analyse(x, y)


def comparison_figures(normal_report: Any, distilled_report: Any, temperature: float) -> tuple[Any, Any]:
    """Gradient-norm histograms (normal against distilled) and success-vs-eps curves."""
    import matplotlib.pyplot as plt

    fig_hist, ax = plt.subplots(figsize=(5.5, 3.5))
    normal_report.plot_gradients(ax, label="normal")
    distilled_report.plot_gradients(ax, label=f"distilled T={temperature:g}")
    ax.set_title("||grad_x CE|| at the test inputs")
    fig_curves, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    normal_report.plot_success(axes[0])
    axes[0].set_title("normal")
    distilled_report.plot_success(axes[1])
    axes[1].set_title(f"distilled T={temperature:g}")
    fig_curves.tight_layout()
    return fig_hist, fig_curves
