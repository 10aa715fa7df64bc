"""Embedding-space AT and VAT on a tiny synthetic sentiment corpus, both frameworks."""

from __future__ import annotations

import numpy as np
import pytest

from art_ext.data import make_synthetic_sentiment
from art_ext.defences.trainer import VirtualAdversarialTrainer
from art_ext.models import build_text_model, make_text_classifier


@pytest.fixture(scope="module")
def corpus():
    return make_synthetic_sentiment(n_train=240, n_test=160, max_len=12, seed=0)


def _classifier(framework, vocab, max_len, architecture="text_cnn"):
    extra = {"filters": 16} if architecture == "text_cnn" else {"hidden": 16}
    model = build_text_model(architecture, framework, len(vocab), vocab.counts, embedding_dim=16, seed=0, **extra)
    return make_text_classifier(model, max_len=max_len, learning_rate=0.01)


def _train(framework, corpus, architecture="text_cnn", nb_epochs=8, x_unlabeled=None, n_labeled=None, **kwargs):
    (x_train, y_train), _, vocab = corpus
    n = n_labeled or len(x_train)
    clf = _classifier(framework, vocab, x_train.shape[1], architecture)
    trainer = VirtualAdversarialTrainer(clf, random_state=0, verbose=False, **kwargs)
    trainer.fit(x_train[:n], y_train[:n], x_unlabeled=x_unlabeled, nb_epochs=nb_epochs, batch_size=32)
    return clf, trainer


def _robustness(clf, corpus, eps, xi):
    _, (x_test, y_test), _ = corpus
    accuracy = float(np.mean(clf.predict(x_test).argmax(1) == y_test))
    adv = clf.adversarial_embeddings(x_test, eps, y=y_test)
    accuracy_at = float(np.mean(clf.predict_embeddings(adv, x_test).argmax(1) == y_test))
    lds = VirtualAdversarialTrainer(clf, eps=eps, xi=xi, random_state=1, verbose=False).virtual_adversarial_loss(x_test)
    return accuracy, accuracy_at, lds


@pytest.mark.kernels
def test_text_at_and_vat_improve_the_robustness_they_target(framework, corpus, outcome):
    # An eps at the toy corpus's scale (16-d embeddings): the text default (0.5) is set for rt-polarity's models.
    base, trainer = _train(framework, corpus, alpha=0.0, eps=3.0)
    eps, xi = trainer.eps_, trainer.xi_
    at, _ = _train(framework, corpus, alpha=0.0, adversarial_weight=1.0, eps=3.0)
    vat, _ = _train(framework, corpus, alpha=1.0, eps=3.0)
    acc_b, acc_at_b, lds_b = _robustness(base, corpus, eps, xi)
    acc_a, acc_at_a, lds_a = _robustness(at, corpus, eps, xi)
    acc_v, acc_at_v, lds_v = _robustness(vat, corpus, eps, xi)
    # measured PyTorch 0.969, TensorFlow 0.969 over 8 kernel variants; smallest margin 0.119 (> 0.85 needed,
    # pytorch/avx2/1)
    outcome.check("clean accuracy, base", acc_b, ">", 0.85)
    # measured PyTorch 0.975, TensorFlow 0.975 over 8 kernel variants; smallest margin 0.125 (> 0.85 needed,
    # pytorch/avx2/1)
    outcome.check("clean accuracy, AT", acc_a, ">", 0.85)
    # measured PyTorch 0.975, TensorFlow 0.963 over 8 kernel variants; smallest margin 0.113 (> 0.85 needed,
    # tensorflow/onednn0/1)
    outcome.check("clean accuracy, VAT", acc_v, ">", 0.85)
    # AT: accuracy under the embedding-space adversarial perturbation r = eps g / ||g||.
    # measured PyTorch 0.775, TensorFlow 0.644 over 8 kernel variants; smallest margin 0.125 (0.775 >= 0.65 there,
    # pytorch/avx2/1)
    outcome.check("AT accuracy under perturbation, vs base + 0.15", acc_at_a, ">=", acc_at_b + 0.15)
    # VAT: the local distributional smoothness it minimises.
    # measured PyTorch 0.231, TensorFlow 0.188 over 8 kernel variants; smallest margin 0.269 (< 0.5 needed,
    # pytorch/avx2/1)
    outcome.check("LDS, VAT / base", lds_v / lds_b, "<", 0.5)


def test_text_semi_supervised_vat_and_lstm_run(framework, corpus):
    (x_train, _), _, _ = corpus
    clf, trainer = _train(
        framework, corpus, "text_lstm", nb_epochs=2, x_unlabeled=x_train[40:], n_labeled=40, entropy_minimization=True
    )
    assert len(trainer.history) == 2 and np.all(np.isfinite(trainer.history))
    assert trainer.eps_ == 0.5  # the text default: an absolute norm on the normalised embeddings
    emb = clf.embeddings(x_train[:5])
    assert emb.shape == (5, x_train.shape[1], 16)
    # Normalised embeddings: frequency-weighted mean 0 and variance 1 per dimension over the vocabulary.
    vocab = corpus[2]
    ids = np.arange(len(vocab))
    ids = np.concatenate([ids, np.zeros(-len(ids) % x_train.shape[1], dtype=ids.dtype)]).reshape(-1, x_train.shape[1])
    table = clf.embeddings(ids).reshape(-1, 16)[: len(vocab)]
    f = vocab.counts / vocab.counts.sum()
    mean = f @ table
    np.testing.assert_allclose(mean, 0.0, atol=1e-4)
    np.testing.assert_allclose(f @ (table - mean) ** 2, 1.0, atol=1e-3)
    grad = clf.loss_gradient_embeddings(x_train[:5], np.zeros(5, dtype=np.int64))
    assert np.all(grad[x_train[:5] == 0] == 0) and np.abs(grad).sum() > 0


def test_text_bad_inputs(framework, corpus):
    (x_train, y_train), _, vocab = corpus
    clf = _classifier(framework, vocab, x_train.shape[1])
    trainer = VirtualAdversarialTrainer(clf, verbose=False)
    with pytest.raises(ValueError, match="token ids"):
        trainer.fit(x_train[:8] + 0.5, y_train[:8], nb_epochs=1)
    with pytest.raises(ValueError, match="outside"):
        trainer.fit(x_train[:8] + len(vocab), y_train[:8], nb_epochs=1)
    with pytest.raises(ValueError, match="shape"):
        trainer.fit(x_train[:8, :5], y_train[:8], nb_epochs=1)
    with pytest.raises(ValueError, match="restore_best.*images only"):
        trainer.fit(x_train[:8], y_train[:8], nb_epochs=1, validation_data=(x_train, y_train), restore_best=True)
    with pytest.raises(TypeError, match="loss_gradient_embeddings"):
        clf.loss_gradient(x_train[:2], y_train[:2])
    with pytest.raises(TypeError, match="embed"):
        from art_ext.estimators.classification import PyTorchTextClassifier, TensorFlowV2TextClassifier

        if framework == "pytorch":
            import torch

            PyTorchTextClassifier(torch.nn.Linear(3, 2), torch.nn.CrossEntropyLoss(), max_len=3, nb_classes=2)
        else:
            import tensorflow as tf

            TensorFlowV2TextClassifier(tf.keras.Sequential([tf.keras.layers.Dense(2)]), max_len=3, nb_classes=2)
    from art_ext.attacks.evasion import VirtualAdversarialPerturbation

    with pytest.raises(TypeError, match="adversarial_embeddings"):
        VirtualAdversarialPerturbation(clf)
