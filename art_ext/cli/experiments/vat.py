"""Virtual adversarial training experiments shared by ``art-ext vat`` and the demo's VAT section."""

from __future__ import annotations

import numpy as np

from art_ext.models import build_model, input_shape_of, make_classifier

__all__ = ["compare_on_digits", "labelled_subset", "text_comparison"]


def labelled_subset(y: np.ndarray, n_labels: int, seed: int = 0, nb_classes: int = 10) -> np.ndarray:
    """
    Indices of a class-balanced labelled subset of exactly `n_labels` examples (the first ``n_labels % nb_classes``
    classes get one more).

    :raises ValueError: When `n_labels` is below `nb_classes` or above the number of examples.
    """
    if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels < nb_classes:
        raise ValueError(f"`n_labels` must be an int >= {nb_classes} (one per class), got {n_labels!r}.")
    if n_labels > len(y):
        raise ValueError(f"`n_labels` ({n_labels}) exceeds the {len(y)} labelled examples available.")
    rng = np.random.default_rng(seed)
    per_class = [n_labels // nb_classes + (c < n_labels % nb_classes) for c in range(nb_classes)]
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in range(nb_classes)]
    if any(len(pool) < k for pool, k in zip(pools, per_class)):
        raise ValueError(f"`n_labels` ({n_labels}) asks for more examples of a class than there are.")
    return np.concatenate([pool[:k] for pool, k in zip(pools, per_class)])


def compare_on_digits(
    framework: str,
    digits: tuple,
    n_labels: int,
    nb_epochs: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    entropy_minimization: bool = False,
    eps: float | None = None,
    xi: float | None = None,
) -> dict:
    """
    Train the digits MLP on `n_labels` labels alone and with VAT on the rest as unlabelled data.

    :return: ``{"supervised": accuracy, "vat": accuracy, "eps": ..., "xi": ...}`` on the test split.
    """
    from art_ext.defences.trainer import VirtualAdversarialTrainer

    (x_train, y_train), (x_test, y_test), _, _ = digits
    idx = labelled_subset(y_train, n_labels, seed)
    shape = input_shape_of("digits_mlp", framework)
    result = {}
    for name, alpha in (("supervised", 0.0), ("vat", 1.0)):
        clf = make_classifier(build_model("digits_mlp", framework, seed=seed), input_shape=shape, learning_rate=0.01)
        trainer = VirtualAdversarialTrainer(
            clf,
            eps=eps,
            xi=xi,
            alpha=alpha,
            entropy_minimization=entropy_minimization and alpha > 0,
            random_state=seed,
            verbose=False,
        )
        trainer.fit(
            x_train[idx],
            y_train[idx],
            x_unlabeled=x_train,
            nb_epochs=nb_epochs,
            batch_size=batch_size,
            labeled_batch_size=32,
        )
        result[name] = float(np.mean(clf.predict(x_test).argmax(1) == y_test))
        result["eps"], result["xi"] = trainer.eps_, trainer.xi_
    return result


def text_comparison(
    framework: str, nb_epochs: int = 8, seed: int = 0, eps: float | None = None, xi: float | None = None
) -> list[list]:
    """Baseline, AT and VAT on the synthetic corpus: clean accuracy, accuracy under AT perturbation, LDS."""
    from art_ext.data import make_synthetic_sentiment
    from art_ext.defences.trainer import VirtualAdversarialTrainer
    from art_ext.models import build_text_model, make_text_classifier

    (x_train, y_train), (x_test, y_test), vocab = make_synthetic_sentiment(seed=seed)
    settings = {"baseline": {"alpha": 0.0}, "AT": {"alpha": 0.0, "adversarial_weight": 1.0}, "VAT": {"alpha": 1.0}}
    rows, scale = [], None
    for name, kwargs in settings.items():
        model = build_text_model(
            "text_cnn", framework, len(vocab), vocab.counts, embedding_dim=16, seed=seed, filters=16
        )
        clf = make_text_classifier(model, max_len=x_train.shape[1], learning_rate=0.01)
        trainer = VirtualAdversarialTrainer(clf, eps=eps, xi=xi, random_state=seed, verbose=False, **kwargs)
        trainer.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=32)
        scale = scale or (trainer.eps_, trainer.xi_)
        adv = clf.adversarial_embeddings(x_test, scale[0], y=y_test)
        probe = VirtualAdversarialTrainer(clf, eps=scale[0], xi=scale[1], random_state=seed + 1, verbose=False)
        rows.append(
            [
                name,
                float(np.mean(clf.predict(x_test).argmax(1) == y_test)),
                float(np.mean(clf.predict_embeddings(adv, x_test).argmax(1) == y_test)),
                probe.virtual_adversarial_loss(x_test),
            ]
        )
    return rows
