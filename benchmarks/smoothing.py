"""
ART's randomized smoothing (Cohen, Rosenfeld and Kolter 2019) on a network the certified-training benchmarks trained:
``PyTorchRandomizedSmoothing`` / ``TensorFlowV2RandomizedSmoothing`` over the same trained model, certified accuracy at
the radii of the Lipschitz certificate, next to ``LipschitzCertifier`` on the same inputs. ART's ``certify`` needs
statsmodels (the ``bench`` extra).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

TABLE = "ART randomized smoothing of the same trained network (not trained under noise)"
RS_NOTE = (
    "ART's randomized smoothing (PyTorchRandomizedSmoothing / TensorFlowV2RandomizedSmoothing, Cohen et al. 2019's "
    "CERTIFY: n0 noise samples pick the class, n more bound its probability by Clopper-Pearson at level alpha, radius "
    "sigma x Phi^-1(lower bound), abstention below 1/2) wrapped around the same trained network as the Lipschitz "
    "rows, on the first --rs-inputs test images. The base network was NOT trained under Gaussian noise, as Cohen et "
    "al. train theirs: these numbers show what smoothing gives on this network, not smoothing's best. With n samples "
    "no radius above sigma x Phi^-1(alpha^(1/n)) can be certified (max_radius)."
)


def smoothed(clf: Any, sigma: float, n0: int, alpha: float) -> Any:
    """ART's randomized-smoothing estimator around the model of the ART classifier `clf` (same input shape, classes,
    clip values; ART's default identity preprocessing, which the check of `smoothing_row` holds to)."""
    common = dict(
        nb_classes=clf.nb_classes,
        input_shape=clf.input_shape,
        clip_values=clf.clip_values,
        sample_size=n0,
        scale=sigma,
        alpha=alpha,
    )
    if hasattr(clf.model, "state_dict"):
        import torch
        from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

        device = "gpu" if next(clf.model.parameters()).is_cuda else "cpu"
        return PyTorchRandomizedSmoothing(
            model=clf.model, loss=torch.nn.CrossEntropyLoss(), channels_first=True, device_type=device, **common
        )
    import tensorflow as tf
    from art.estimators.certification.randomized_smoothing import TensorFlowV2RandomizedSmoothing

    return TensorFlowV2RandomizedSmoothing(
        model=clf.model,
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        channels_first=False,
        **common,
    )


def smoothing_row(
    clf: Any,
    x: np.ndarray,
    y: np.ndarray,
    sigma: float,
    n: int,
    n0: int,
    alpha: float,
    radii: list[float],
    seed: int,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Certified accuracy of ART's smoothing of `clf` at sigma on (x, y) at `radii`, and the Lipschitz certifier's on
    the same inputs, with both times."""
    from scipy.stats import norm

    from art_ext.estimators.certification import LipschitzCertifier

    rs = smoothed(clf, sigma, n0, alpha)
    # the base classifier of the smoothing is the benchmark's network: same decisions on clean inputs
    probe = x[:256]
    base = rs._predict_classifier(probe, batch_size=256, training_mode=False).argmax(1)
    if not np.array_equal(base, clf.predict(probe, batch_size=256).argmax(1)):
        raise RuntimeError(
            "smoothing: ART's wrapper of the network decides differently from the benchmark's classifier"
        )
    np.random.seed(seed)  # ART draws its noise from NumPy's global generator
    start = time.perf_counter()
    pred, radius = rs.certify(x, n=n, batch_size=batch_size)
    t_rs = time.perf_counter() - start
    start = time.perf_counter()
    lip_pred, lip_radius = LipschitzCertifier(clf).certify(x, batch_size=256)
    t_lip = time.perf_counter() - start
    ok, lip_ok = pred == y, lip_pred == y
    return {
        "table": TABLE,
        "sigma": sigma,
        "inputs": int(len(x)),
        "n": n,
        "n0": n0,
        "alpha": alpha,
        "certified_0.3": float(np.mean(ok & (radius >= 0.3))),
        "certified_1.58": float(np.mean(ok & (radius >= 1.58))),
        "lipschitz_verified_0.3": float(np.mean(lip_ok & (lip_radius >= 0.3))),
        "lipschitz_verified_1.58": float(np.mean(lip_ok & (lip_radius >= 1.58))),
        "smoothed_clean": float(ok.mean()),
        "abstentions": int(np.sum(pred == -1)),
        "max_radius": float(sigma * norm.ppf(alpha ** (1.0 / n))),
        "base_trained_with_noise": False,
        "seconds_smoothing": round(t_rs, 2),
        "seconds_lipschitz": round(t_lip, 3),
        "certified_curve": [{"radius": r, "accuracy": float(np.mean(ok & (radius >= r)))} for r in radii],
        "lipschitz_curve": [{"radius": r, "accuracy": float(np.mean(lip_ok & (lip_radius >= r)))} for r in radii],
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``randomized_smoothing`` entry of a result file: per sigma, certified accuracy at 0.3 and 1.58,
    abstentions and seconds, with the settings and the note."""
    first = rows[0]
    return {
        "note": RS_NOTE,
        **{k: first[k] for k in ("inputs", "n", "n0", "alpha")},
        "by_sigma": {
            f"{r['sigma']:g}": {
                k: r[k] for k in ("certified_0.3", "certified_1.58", "abstentions", "max_radius", "seconds_smoothing")
            }
            for r in rows
        },
        "lipschitz_same_inputs": {k: first[k] for k in ("lipschitz_verified_0.3", "lipschitz_verified_1.58")},
    }
