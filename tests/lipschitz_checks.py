"""
Soundness checks shared by the certification tests: exact Jacobian norms and a strong margin PGD (l2) that a sound
certificate must survive at 0.99 x radius.
"""

from __future__ import annotations

import numpy as np

from art_ext.backend import get_backend


def layer_jacobian_norm(ops, record):
    n = int(np.prod(record.in_shape))
    eye = np.eye(n, dtype=np.float32).reshape((n,) + tuple(record.in_shape))
    jac = ops.to_numpy(record.apply(ops.asarray(eye))).reshape(n, -1).astype(np.float64)
    gram = jac @ jac.T if jac.shape[0] <= jac.shape[1] else jac.T @ jac
    return float(np.sqrt(np.linalg.eigvalsh(gram)[-1]))


def input_jacobian_norms(clf, x):
    ops = get_backend(clf)
    norms = []
    for i in range(len(x)):
        rows = []
        for k in range(clf.nb_classes):
            _, (g,) = ops.value_and_grad(lambda t, k=k: ops.sum(ops.forward(clf, t)[:, k]), [ops.asarray(x[i : i + 1])])
            rows.append(ops.to_numpy(g).reshape(-1))
        norms.append(np.linalg.norm(np.asarray(rows, dtype=np.float64), 2))
    return np.asarray(norms)


def pgd_flips(clf, x, pred, eps, steps=40, restarts=2, seed=0):
    """
    Whether a strong l2 PGD changes each prediction: per-sample budget `eps`, margin loss, normalised-gradient steps
    of 2.5 eps / steps, `restarts` random starts in the ball (plus one from x), no box constraint (a certificate holds
    for any perturbation), a flip at any iterate counts.
    """
    ops = get_backend(clf)
    rng = np.random.default_rng(seed)
    n, dims = len(x), int(np.prod(x.shape[1:]))
    eps = np.asarray(eps, dtype=np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    one_hot = ops.asarray(np.eye(clf.nb_classes, dtype=np.float32)[pred])
    x_t, eps_t = ops.asarray(x), ops.asarray(eps)
    flipped = np.zeros(n, dtype=bool)

    def margin(delta):
        logits = ops.forward(clf, x_t + delta)
        other = ops.max(logits - 1e9 * one_hot, axis=1)
        return ops.sum(other - ops.sum(logits * one_hot, axis=1)), logits

    for restart in range(restarts + 1):
        start = np.zeros_like(x)
        if restart:
            direction = rng.standard_normal(x.shape).astype(np.float32)
            direction /= np.linalg.norm(direction.reshape(n, -1), axis=1).reshape(eps.shape)
            start = direction * eps * rng.uniform(0, 1, size=eps.shape).astype(np.float32) ** (1 / dims)
        delta = ops.asarray(start)
        for _ in range(steps + 1):
            (_, logits), (grad,) = ops.value_and_grad(margin, [delta], has_aux=True)
            flipped |= ops.to_numpy(logits).argmax(1) != pred
            delta = delta + (2.5 / steps) * eps_t * ops.l2_normalize(grad)
            norm = ops.per_sample_norm(delta, keepdims=True)
            delta = delta * ops.minimum(eps_t / (norm + 1e-12), 1.0)
        final = ops.to_numpy(delta).reshape(n, -1)
        assert np.all(np.linalg.norm(final, axis=1) <= eps.reshape(-1) * (1 + 1e-5) + 1e-7), "PGD left its ball"
    return flipped
