"""
ART classifiers over integer token ids that expose their (normalised) word embeddings, so that adversarial and
virtual adversarial training can perturb the embeddings (Miyato, Dai & Goodfellow, ICLR 2017).

The wrapped model must provide two methods besides its call on token ids:

- ``embed(ids)``: ``(batch, max_len)`` int ids -> ``(batch, max_len, dim)`` normalised word embeddings;
- ``classify(embeddings, mask)`` (PyTorch) or ``classify(embeddings, mask, training=False)`` (Keras):
  embeddings and a ``(batch, max_len)`` float mask of real (non-padding) tokens -> ``(batch, nb_classes)`` logits.

Id 0 is padding. The reference models :func:`art_ext.models.build_text_model` (``text_lstm``, ``text_cnn``) follow it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from art.estimators.classification import PyTorchClassifier, TensorFlowV2Classifier

from art_ext.backend import get_backend
from art_ext.utils.checks import check_choice, check_finite, check_labels, check_positive, check_random_state

__all__ = ["PyTorchTextClassifier", "TensorFlowV2TextClassifier", "TextClassifierMixin"]


class TextClassifierMixin:
    """
    Framework-agnostic part of the text classifiers: checks on token ids and embedding-space helpers written once
    against :mod:`art_ext.backend`. Framework classes implement :meth:`embed_tensor` and :meth:`classify_tensor`.
    """

    #: Lets trainers and attacks recognise text classifiers without importing a framework.
    is_text_classifier = True

    def _init_text(self, model: Any, vocab_size: int | None, nb_classes: Any = 2) -> None:
        if isinstance(nb_classes, bool) or not isinstance(nb_classes, (int, np.integer)) or nb_classes < 2:
            raise ValueError(f"`nb_classes` must be an int >= 2, got {nb_classes!r}.")
        for method in ("embed", "classify"):
            if not callable(getattr(model, method, None)):
                raise TypeError(
                    f"`model` must have a `{method}` method (see art_ext.estimators.classification.text); "
                    f"{type(model).__name__} has none."
                )
        if vocab_size is not None:
            check_positive(vocab_size, "vocab_size", integer=True)
        self.vocab_size = vocab_size

    # ---------------------------------------------------------------- framework adapters
    def embed_tensor(self, ids: Any) -> tuple[Any, Any]:
        """Token-id tensor -> ``(normalised embeddings (batch, max_len, dim), mask (batch, max_len, 1))``."""
        raise NotImplementedError

    def classify_tensor(self, embeddings: Any, mask: Any, training: bool = False) -> Any:
        """Embeddings and mask tensors -> logits ``(batch, nb_classes)``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- checks
    def check_ids(self, x: Any, name: str = "x") -> np.ndarray:
        """
        Check token ids: integral, non-negative, below the vocabulary size, shape ``(nb_samples, max_len)``.

        :return: int64 ids.
        :raises ValueError: On non-integral ids, ids outside ``[0, vocab_size)``, a wrong sequence length, or a
                            non-numeric array.
        """
        try:
            arr = check_finite(x, name)
        except TypeError as error:
            raise ValueError(str(error)) from None
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(arr == np.round(arr)):
                raise ValueError(f"`{name}` must hold integer token ids, got non-integral values.")
        elif not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"`{name}` must hold integer token ids, got dtype {arr.dtype}.")
        shape = tuple(self.input_shape)
        if arr.shape[1:] != shape:
            raise ValueError(
                f"`{name}` must have shape (nb_samples, {shape[0]}) (token ids padded to max_len={shape[0]}), "
                f"got {arr.shape}."
            )
        if arr.min() < 0 or (self.vocab_size is not None and arr.max() >= self.vocab_size):
            bound = "vocab_size" if self.vocab_size is None else self.vocab_size
            raise ValueError(
                f"`{name}` holds token ids in [{arr.min():g}, {arr.max():g}], outside [0, {bound}) (id 0 is padding)."
            )
        return arr.astype(np.int64)

    def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs) -> np.ndarray:
        """
        Logits for token ids, after :meth:`check_ids` (ART's ``predict`` would index the embedding out of range
        or floor non-integral ids silently).

        :param x: Token ids ``(nb_samples, max_len)``, integral, in ``[0, vocab_size)``.
        :param batch_size: Batch size.
        :return: Logits ``(nb_samples, nb_classes)``.
        :raises ValueError: On ids that :meth:`check_ids` refuses.
        """
        return super().predict(self.check_ids(x), batch_size=batch_size, **kwargs)

    # ---------------------------------------------------------------- embedding-space helpers (written once)
    def embeddings(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """
        Normalised word embeddings of token ids.

        :param x: Token ids ``(nb_samples, max_len)``.
        :return: ``(nb_samples, max_len, dim)`` float32.
        """
        x = self.check_ids(x)
        ops = get_backend(self)
        out = []
        for i in range(0, len(x), batch_size):
            emb, _ = self.embed_tensor(ops.asarray(x[i : i + batch_size], dtype="int64", device=ops.device_of(self)))
            out.append(ops.to_numpy(emb))
        return np.concatenate(out).astype(np.float32)

    def predict_embeddings(self, embeddings: np.ndarray, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """
        Logits for (possibly perturbed) embeddings of the token ids `x` (which give the padding mask).

        :param embeddings: ``(nb_samples, max_len, dim)``.
        :param x: Token ids ``(nb_samples, max_len)``.
        :return: Logits ``(nb_samples, nb_classes)``.
        """
        x = self.check_ids(x)
        embeddings = check_finite(embeddings, "embeddings").astype(np.float32)
        if embeddings.shape[:2] != x.shape:
            raise ValueError(f"`embeddings` must have shape {x.shape} + (dim,), got {embeddings.shape}.")
        ops = get_backend(self)
        device = ops.device_of(self)
        out = []
        for i in range(0, len(x), batch_size):
            _, mask = self.embed_tensor(ops.asarray(x[i : i + batch_size], dtype="int64", device=device))
            emb = ops.asarray(embeddings[i : i + batch_size], device=device)
            out.append(ops.to_numpy(self.classify_tensor(emb, mask, training=False)))
        return np.concatenate(out).astype(np.float32)

    def loss_gradient_embeddings(self, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """
        Gradient of the cross-entropy with respect to the normalised embeddings (zero at padding positions).

        :param x: Token ids ``(nb_samples, max_len)``.
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :return: ``(nb_samples, max_len, dim)`` float32.
        """
        x = self.check_ids(x)
        y = check_labels(y, self.nb_classes, len(x))
        ops = get_backend(self)
        device = ops.device_of(self)
        out = []
        for i in range(0, len(x), batch_size):
            emb, mask = self.embed_tensor(ops.asarray(x[i : i + batch_size], dtype="int64", device=device))
            labels = ops.asarray(y[i : i + batch_size], dtype="int64", device=device)
            _, (grad,) = ops.value_and_grad(
                lambda e, m=mask, t=labels: ops.sum(ops.cross_entropy(self.classify_tensor(e, m, False), t, False)),
                [ops.stop_gradient(emb)],
            )
            out.append(ops.to_numpy(grad * mask))
        return np.concatenate(out).astype(np.float32)

    def adversarial_embeddings(
        self,
        x: np.ndarray,
        eps: float,
        y: np.ndarray | None = None,
        xi: float = 1.0,
        n_power_iterations: int = 1,
        random_state: int | np.random.Generator | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """
        Perturbed normalised embeddings ``v + eps d`` with ``d`` of unit l2 norm per sequence (padding untouched):
        the adversarial direction ``g / ||g||`` of the cross-entropy when labels `y` are given (AT), else the virtual
        adversarial direction (VAT).

        :param x: Token ids ``(nb_samples, max_len)``.
        :param eps: l2 norm of each sequence's perturbation.
        :param y: Labels for the adversarial direction, or ``None`` for the virtual adversarial one.
        :param xi: Power-iteration radius (VAT only).
        :param n_power_iterations: Power iterations (VAT only).
        :param random_state: Seed or generator of the power iteration's starting noise.
        :return: ``(nb_samples, max_len, dim)`` float32.
        """
        from art_ext.backend.virtual_adversarial import unit_direction, virtual_adversarial_direction
        from art_ext.utils.outputs import log_probabilities

        x = self.check_ids(x)
        check_positive(eps, "eps")
        check_random_state(random_state, generator=True)
        check_positive(xi, "xi")
        check_positive(n_power_iterations, "n_power_iterations", integer=True)
        labels = None if y is None else check_labels(y, self.nb_classes, len(x))
        ops = get_backend(self)
        device = ops.device_of(self)
        rng = np.random.default_rng(random_state)
        out = []
        for i in range(0, len(x), batch_size):
            emb, mask = self.embed_tensor(ops.asarray(x[i : i + batch_size], dtype="int64", device=device))
            emb = ops.stop_gradient(emb)

            def log_prob_fn(e, mask=mask):
                return log_probabilities(ops, self.classify_tensor(e, mask, training=False), "logits")

            if labels is None:
                d = virtual_adversarial_direction(
                    ops, log_prob_fn, emb, log_prob_fn(emb), xi, n_power_iterations, rng, mask, device
                )
            else:
                lab = ops.asarray(labels[i : i + batch_size], dtype="int64", device=device)
                _, (grad,) = ops.value_and_grad(
                    lambda e, t=lab: -ops.sum(ops.gather_rows(log_prob_fn(e), t)),
                    [emb],
                )
                d = unit_direction(ops, grad, mask)
            out.append(ops.to_numpy(emb + eps * d))
        return np.concatenate(out).astype(np.float32)

    def loss_gradient(self, x: np.ndarray, y: np.ndarray, **kwargs) -> np.ndarray:
        """Token ids are discrete: use :meth:`loss_gradient_embeddings` for gradients in embedding space."""
        raise TypeError(
            f"{type(self).__name__} takes integer token ids, which have no gradient; use "
            "`loss_gradient_embeddings(x, y)` for the gradient with respect to the word embeddings."
        )


class PyTorchTextClassifier(TextClassifierMixin, PyTorchClassifier):
    """
    ART ``PyTorchClassifier`` over int token ids ``(nb_samples, max_len)`` whose model exposes ``embed`` and
    ``classify`` (see :mod:`art_ext.estimators.classification.text`).

    | Paper link: https://arxiv.org/abs/1605.07725
    """

    def __init__(
        self,
        model: Any,
        loss: Any,
        max_len: int,
        nb_classes: int,
        optimizer: Any = None,
        vocab_size: int | None = None,
        device_type: str = "gpu",
    ) -> None:
        """
        :param model: ``torch.nn.Module`` taking ids and returning logits, with ``embed`` and ``classify`` methods.
        :param loss: Loss on logits and index labels (e.g. ``torch.nn.CrossEntropyLoss()``).
        :param max_len: Sequence length of the padded token ids.
        :param nb_classes: Number of classes.
        :param optimizer: Optimizer of the model's parameters (needed by ``fit`` and the trainers).
        :param vocab_size: Vocabulary size, to reject out-of-range ids (default: the model's ``vocab_size``).
        :param device_type: ``"gpu"`` (CUDA when present) or ``"cpu"``.
        """
        check_positive(max_len, "max_len", integer=True)
        check_choice(device_type, ("gpu", "cpu"), "device_type")
        self._init_text(model, vocab_size if vocab_size is not None else getattr(model, "vocab_size", None), nb_classes)
        super().__init__(
            model=model,
            loss=loss,
            input_shape=(max_len,),
            nb_classes=nb_classes,
            optimizer=optimizer,
            clip_values=None,
            preprocessing=None,
            device_type=device_type,
        )

    def embed_tensor(self, ids: Any) -> tuple[Any, Any]:
        ids = ids.long()
        mask = (ids != 0).float().unsqueeze(-1)
        return self.model.embed(ids), mask

    def classify_tensor(self, embeddings: Any, mask: Any, training: bool = False) -> Any:
        if self.model.training != training:
            self.model.train(training)
        return self.model.classify(embeddings, mask[..., 0])


class TensorFlowV2TextClassifier(TextClassifierMixin, TensorFlowV2Classifier):
    """
    ART ``TensorFlowV2Classifier`` over int token ids ``(nb_samples, max_len)`` whose Keras model exposes ``embed``
    and ``classify`` (see :mod:`art_ext.estimators.classification.text`).

    | Paper link: https://arxiv.org/abs/1605.07725
    """

    def __init__(
        self,
        model: Any,
        max_len: int,
        nb_classes: int,
        loss_object: Any = None,
        optimizer: Any = None,
        vocab_size: int | None = None,
    ) -> None:
        """
        :param model: Keras model taking ids and returning logits, with ``embed`` and ``classify`` methods.
        :param max_len: Sequence length of the padded token ids.
        :param nb_classes: Number of classes.
        :param loss_object: Keras loss on one-hot labels (default: categorical cross-entropy from logits).
        :param optimizer: Keras optimizer (needed by ``fit`` and the trainers).
        :param vocab_size: Vocabulary size, to reject out-of-range ids (default: the model's ``vocab_size``).
        """
        import tensorflow as tf

        check_positive(max_len, "max_len", integer=True)
        self._init_text(model, vocab_size if vocab_size is not None else getattr(model, "vocab_size", None), nb_classes)
        if loss_object is None:
            loss_object = tf.keras.losses.CategoricalCrossentropy(from_logits=True)
        super().__init__(
            model=model,
            nb_classes=nb_classes,
            input_shape=(max_len,),
            loss_object=loss_object,
            optimizer=optimizer,
            clip_values=None,
            preprocessing=None,
        )

    def embed_tensor(self, ids: Any) -> tuple[Any, Any]:
        import tensorflow as tf

        ids = tf.cast(ids, tf.int32)
        mask = tf.cast(tf.not_equal(ids, 0), tf.float32)[..., None]
        return self.model.embed(ids), mask

    def classify_tensor(self, embeddings: Any, mask: Any, training: bool = False) -> Any:
        return self.model.classify(embeddings, mask[..., 0], training=training)
