"""
Virtual adversarial training (VAT) for supervised and semi-supervised learning, on images and, through the
embeddings of :mod:`art_ext.estimators.classification.text`, on text; with optional entropy minimisation and
embedding-space adversarial training (AT). Written once against :mod:`art_ext.backend`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from art.defences.trainer.trainer import Trainer
from art.estimators.classification.classifier import ClassifierMixin

from art_ext.backend import framework_of, get_backend
from art_ext.backend.virtual_adversarial import (
    kl_divergence_log_probs,
    unit_direction,
    virtual_adversarial_direction,
)
from art_ext.defences.trainer._defaults import DEFAULT_TEXT_EPS
from art_ext.defences.trainer._distributed import aux_forward, epoch_indices, rank_share, split_rng
from art_ext.defences.trainer._loop import (
    BestWeights,
    TrainingLoop,
    check_lr_schedule,
    check_restore_best,
    check_validation_data,
    check_value,
    fit_batch,
    generator_batches,
    validation_accuracy,
)
from art_ext.utils.checks import ArgumentTypeError, check_finite, check_labels
from art_ext.utils.outputs import OUTPUT_KINDS, PROBE_SIZE, detect_output_kind, log_probabilities

logger = logging.getLogger(__name__)

__all__ = ["VirtualAdversarialTrainer"]

#: Default ``eps`` for images as a share of the median l2 norm of the inputs: about 1.2 on MNIST (median norm about
#: 9.3) and 0.5 on the 8x8 digits (about 3.9). Semi-supervised with few labels, a quarter (2.3 on MNIST, the
#: paper's supervised 2.0) was measured worse on both (docs/vat.rst, "Defaults and why").
DEFAULT_RELATIVE_EPS = 0.125
#: Default ``xi`` as a share of the median input norm: 1.0 on digits. The papers' absolute 1e-6 works in float64.
DEFAULT_RELATIVE_XI = 0.25


class VirtualAdversarialTrainer(Trainer):
    """
    Trains a classifier on ``CE(labelled) + alpha * LDS(labelled and unlabelled)``, the local distributional
    smoothness ``LDS(x) = KL(p(.|x) || p(.|x + r_adv))`` with ``p(.|x)`` held constant and
    ``r_adv = eps * d``, ``d`` found by ``n_power_iterations`` power iterations at radius ``xi``. Optionally adds
    the entropy of ``p(.|x)`` (VAT+EntMin) and an adversarial-training term ``CE(x + at_eps * g / ||g||)`` with
    ``g`` the loss gradient (AT). For text classifiers every perturbation lives on the normalised word embeddings
    and is normalised per sequence (padding is never perturbed).

    Perturbed forward passes run in training mode but never update batch-normalisation statistics.

    | Paper link: https://arxiv.org/abs/1704.03976 (VAT), https://arxiv.org/abs/1605.07725 (text)
    """

    def __init__(
        self,
        classifier: Any,
        eps: float | None = None,
        xi: float | None = None,
        n_power_iterations: int = 1,
        alpha: float = 1.0,
        entropy_minimization: bool = False,
        adversarial_weight: float = 0.0,
        adversarial_eps: float | None = None,
        output: str = "auto",
        learning_rate: float | None = None,
        random_state: int | np.random.Generator | None = None,
        verbose: bool = True,
        lr_schedule: Any = None,
    ) -> None:
        """
        :param classifier: An ART ``PyTorchClassifier``/``TensorFlowV2Classifier``/``KerasClassifier`` (logits or
                           probabilities) or an art_ext text classifier; trained in place. Its fit-time
                           preprocessing defences apply to every batch and its predict-time ones inside the
                           perturbed forward passes (with BPDA gradients), as ART applies them.
        :param eps: l2 norm of the virtual adversarial perturbation per sample (per sequence for text), in input
                    units. ``None``: for images an eighth of the median l2 norm of the training inputs, resolved by
                    :meth:`fit` into ``eps_`` (about 0.5 on the 8x8 digits, 1.2 on MNIST);
                    for text an absolute 0.5 on the normalised embedding sequence (Miyato et al. (2017) use an
                    absolute 5.0 with a pretrained language model; see ``_defaults.py``).
        :param xi: Radius of the power iteration, in input units. ``None``: a quarter of the median input norm
                   (about 1.0 on digits), resolved into ``xi_``. The papers' ``1e-6`` sits at the edge of float32.
        :param n_power_iterations: Power iterations ``K`` (1 suffices in the paper).
        :param alpha: Weight of the LDS term; ``0`` disables VAT (e.g. for pure AT).
        :param entropy_minimization: Add the conditional entropy of the predictions (VAT+EntMin).
        :param adversarial_weight: Weight of the adversarial-training term on labelled data (0: off).
        :param adversarial_eps: l2 norm of the adversarial perturbation (default: `eps`).
        :param output: ``"logits"``, ``"probabilities"`` or ``"auto"`` (detected from predictions).
        :param learning_rate: Sets the classifier optimizer's learning rate when given.
        :param random_state: Seed or numpy ``Generator`` (batch order and power-iteration noise).
        :param verbose: Show a progress bar.
        :param lr_schedule: ``None`` (constant learning rate), ``"linear"`` (constant for the first half of the
                            epochs of each fit, then linearly towards zero: the shape of the paper's schedule, which
                            keeps long runs from drifting) or a callable ``epoch -> factor`` of the starting rate.
        """
        super().__init__(classifier)
        if not isinstance(classifier, ClassifierMixin):
            raise TypeError(f"`classifier` must be an ART classifier, got {type(classifier).__name__}.")
        try:
            framework_of(classifier)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`classifier` must be a PyTorch, TensorFlow v2 or Keras ART classifier: {err}") from err
        self.is_text = bool(getattr(classifier, "is_text_classifier", False))
        self.eps = eps
        self.xi = xi
        self.n_power_iterations = n_power_iterations
        self.alpha = alpha
        self.entropy_minimization = entropy_minimization
        self.adversarial_weight = adversarial_weight
        self.adversarial_eps = adversarial_eps
        self.output = output
        self.learning_rate = learning_rate
        self.verbose = verbose
        self.random_state = random_state
        self.lr_schedule = lr_schedule
        self._check_params()
        self._rng = np.random.default_rng(random_state)
        self._noise_rng = self._rng  # per rank when distributed (see fit)
        self._ops = get_backend(classifier)
        self.history: list[float] = []
        #: Accuracy on `validation_data` after each epoch of the last fit.
        self.validation_history: list[float] = []
        #: The epoch (1-based) whose weights ``fit(..., restore_best=True)`` kept; ``None`` otherwise.
        self.best_epoch: int | None = None
        #: Whether Ctrl-C stopped the last fit (the weights trained so far are kept).
        self.interrupted = False
        self.eps_: float | None = eps
        self.xi_: float | None = xi
        self.adversarial_eps_: float | None = adversarial_eps if adversarial_eps is not None else eps

    def _check_params(self) -> None:
        for name in ("eps", "xi", "adversarial_eps"):
            if getattr(self, name) is not None:
                check_value(getattr(self, name), name)
        check_value(self.n_power_iterations, "n_power_iterations", integer=True)
        check_value(self.alpha, "alpha", allow_zero=True)
        check_value(self.adversarial_weight, "adversarial_weight", allow_zero=True)
        if self.learning_rate is not None:
            check_value(self.learning_rate, "learning_rate")
        check_lr_schedule(self.lr_schedule)
        if not isinstance(self.entropy_minimization, bool):
            raise ArgumentTypeError(f"`entropy_minimization` must be a bool, got {self.entropy_minimization!r}.")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"`output` must be one of {OUTPUT_KINDS}, got {self.output!r}.")
        if self.random_state is not None and not isinstance(self.random_state, np.random.Generator):
            check_value(self.random_state, "random_state", integer=True, allow_zero=True)
        if not isinstance(self.verbose, bool):
            raise ArgumentTypeError("`verbose` must be a bool.")

    # ------------------------------------------------------------------ inputs (images or token ids)
    def _check_x(self, x: Any, name: str) -> np.ndarray:
        if self.is_text:
            return self._classifier.check_ids(x, name)
        arr = check_finite(x, name).astype(np.float32)
        shape = tuple(self._classifier.input_shape)
        if arr.shape[1:] != shape:
            raise ValueError(f"`{name}` must have shape (nb_samples,) + {shape}, got {arr.shape}.")
        return arr

    def _inputs(self, x: Any, device: Any) -> tuple[Any, Any]:
        """The tensor the perturbations live on (inputs, or normalised embeddings) and its mask (text only)."""
        ops = self._ops
        if self.is_text:
            return self._classifier.embed_tensor(ops.asarray(x, dtype="int64", device=device))
        return (x if ops.is_tensor(x) else ops.asarray(x, device=device)), None

    def median_norm(self, x: np.ndarray, max_samples: int = 1024) -> float:
        """Median l2 norm of inputs (of normalised embedding sequences for text), the scale of ``eps``/``xi``."""
        x = x[:max_samples]
        if self.is_text:
            z = self._classifier.embeddings(x)
        else:
            z = x
        return float(np.median(np.linalg.norm(z.reshape(len(z), -1), axis=1)))

    def _resolve_scales(self, x: np.ndarray) -> None:
        if self.eps is None or self.xi is None or (self.adversarial_weight > 0 and self.adversarial_eps is None):
            scale = self.median_norm(x)
            if scale <= 0:
                raise ValueError("Cannot derive default `eps`/`xi` from inputs of zero norm; pass them explicitly.")
        if self.eps is not None:
            self.eps_ = self.eps
        else:  # text: an absolute norm on the normalised embeddings (see _defaults.py)
            self.eps_ = DEFAULT_TEXT_EPS if self.is_text else DEFAULT_RELATIVE_EPS * scale
        self.xi_ = DEFAULT_RELATIVE_XI * scale if self.xi is None else self.xi
        self.adversarial_eps_ = self.eps_ if self.adversarial_eps is None else self.adversarial_eps
        logger.info("VAT scales: eps=%.4g, xi=%.4g, adversarial eps=%.4g", self.eps_, self.xi_, self.adversarial_eps_)

    def _log_probs(self, z: Any, mask: Any, training: bool, aux: bool = False) -> Any:
        if self.is_text:
            out = self._classifier.classify_tensor(z, mask, training=training)
        elif aux:  # auxiliary pass: the module inside a DDP wrapper, if any
            out = aux_forward(self._ops, self._classifier, z, training=training)
        else:
            out = self._ops.forward(self._classifier, z, training=training)
        return log_probabilities(self._ops, out, self._output_kind)

    # ------------------------------------------------------------------ the loss, written once
    def _loss(self, x: np.ndarray, y: Any, n_labeled: int, device: Any) -> Any:
        ops, model = self._ops, self._ops.model_of(self._classifier)
        z, mask = self._inputs(x, device)
        log_p = self._log_probs(z, mask, training=True)
        loss = -ops.mean(ops.gather_rows(log_p[:n_labeled], y))
        if self.alpha > 0:
            with ops.frozen_batchnorm_stats(model):

                def log_prob_fn(zz, aux=False):
                    return self._log_probs(zz, mask, training=True, aux=aux)

                d = virtual_adversarial_direction(
                    ops, lambda zz: log_prob_fn(zz, True), z, log_p, self.xi_, self.n_power_iterations,
                    self._noise_rng, mask, device,
                )  # fmt: skip
                lds = kl_divergence_log_probs(ops, ops.stop_gradient(log_p), log_prob_fn(z + self.eps_ * d))
            loss = loss + self.alpha * lds
        if self.entropy_minimization:
            loss = loss - ops.mean(ops.sum(ops.exp(log_p) * log_p, axis=-1))
        if self.adversarial_weight > 0:
            z_l = z[:n_labeled]
            mask_l = None if mask is None else mask[:n_labeled]
            with ops.frozen_batchnorm_stats(model):

                def nll(zz, aux=False):
                    return -ops.sum(ops.gather_rows(self._log_probs(zz, mask_l, training=True, aux=aux), y))

                _, (grad,) = ops.value_and_grad(lambda zz: nll(zz, aux=True), [ops.stop_gradient(z_l)])
                r_adv = self.adversarial_eps_ * unit_direction(ops, ops.stop_gradient(grad), mask_l)
                loss = loss + self.adversarial_weight * nll(z_l + r_adv) / n_labeled
        return loss

    # ------------------------------------------------------------------ public API
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_unlabeled: np.ndarray | None = None,
        nb_epochs: int = 20,
        batch_size: int = 128,
        labeled_batch_size: int | None = None,
        **kwargs,
    ) -> None:
        """
        Train the classifier in place.

        :param x: Labelled inputs ``(nb_samples,) + input_shape`` (token ids ``(nb_samples, max_len)`` for text).
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :param x_unlabeled: Unlabelled inputs. With them one epoch is one pass over `x_unlabeled` in batches of
                            `batch_size`, each joined by a batch of labelled data (cycled as needed); without them
                            one epoch is one pass over `x` and the LDS is taken on the labelled batches.
        :param nb_epochs: Number of epochs.
        :param batch_size: Batch size of the unlabelled data (of the labelled data without `x_unlabeled`).
        :param labeled_batch_size: Labelled batch size with `x_unlabeled` (default ``min(batch_size, len(x))``).
        :param validation_data: Optional ``(x_val, y_val)`` (images): accuracy after each epoch, recorded in
                                :attr:`validation_history` and shown in the progress bar.
        :param restore_best: With `validation_data`, ``True`` ends training (or an interrupted run) on the weights
                             of the epoch with the best validation accuracy (the earliest among ties), recorded in
                             :attr:`best_epoch`, as Keras' ``EarlyStopping(restore_best_weights=True)``. Default
                             ``False``: the weights of the last epoch.
        :param catch_interrupt: ``False`` lets Ctrl-C raise ``KeyboardInterrupt``; by default training stops with a
                                warning, keeps the weights so far and sets :attr:`interrupted`.
        """
        clf = self._classifier
        check_value(nb_epochs, "nb_epochs", integer=True)
        check_value(batch_size, "batch_size", integer=True)
        x = self._check_x(x, "x")
        y = check_labels(y, clf.nb_classes, len(x))
        if x_unlabeled is not None:
            x_unlabeled = self._check_x(x_unlabeled, "x_unlabeled")
        validation = None if self.is_text else check_validation_data(clf, kwargs.get("validation_data"))
        if self.is_text and kwargs.get("restore_best"):
            raise ValueError("`restore_best` selects on `validation_data`, which this trainer takes for images only.")
        restore_best = check_restore_best(kwargs.get("restore_best", False), validation)
        n_l = len(x)
        if labeled_batch_size is None:
            labeled_batch_size = min(batch_size, n_l)
        check_value(labeled_batch_size, "labeled_batch_size", integer=True)
        labeled_batch_size = min(labeled_batch_size, n_l)

        self._prepare(x if x_unlabeled is None else np.concatenate([x[:512], x_unlabeled[:512]]))
        if self.alpha == 0 and not self.entropy_minimization:
            x_unlabeled = None  # the unlabelled data would not enter the loss
            labeled_batch_size = min(batch_size, n_l)

        labeled_order: list[int] = []
        # Batch order common to the ranks (independent of their number), power-iteration noise per rank.
        data_rng, self._noise_rng = split_rng(self._rng)

        def next_labeled(k: int) -> np.ndarray:
            nonlocal labeled_order
            while len(labeled_order) < k:
                labeled_order += list(data_rng.permutation(n_l))
            idx, labeled_order = labeled_order[:k], labeled_order[k:]
            return rank_share(np.asarray(idx))

        n_main = len(x_unlabeled) if x_unlabeled is not None else n_l

        def batches(epoch: int):
            for idx in epoch_indices(n_main, batch_size, data_rng):  # this rank's shard when distributed
                if x_unlabeled is None:
                    yield self._batch(x[idx], y[idx])
                else:
                    idx_l = next_labeled(labeled_batch_size)
                    yield self._batch(x[idx_l], y[idx_l], x_unlabeled[idx])

        self._run(batches, nb_epochs, validation, kwargs.get("catch_interrupt"), restore_best)

    def fit_generator(self, generator: Any, nb_epochs: int = 20, **kwargs) -> None:
        """
        Train the classifier in place on the labelled ``(x, y)`` batches of an ART ``DataGenerator`` (the LDS is taken
        on those batches).

        :param generator: An ART ``DataGenerator``.
        :param nb_epochs: Number of epochs (``ceil(size / batch_size)`` batches each).
        :param validation_data: Optional ``(x_val, y_val)``, as in :meth:`fit`.
        :param restore_best: As in :meth:`fit`.
        """
        clf = self._classifier
        check_value(nb_epochs, "nb_epochs", integer=True)
        validation = check_validation_data(clf, kwargs.get("validation_data"))
        restore_best = check_restore_best(kwargs.get("restore_best", False), validation)
        first = next(iter(generator_batches(generator)))
        self._prepare(self._check_x(first[0], "generator batch"))

        def batches(epoch: int):
            for xb, yb in generator_batches(generator):
                xb = self._check_x(xb, "generator batch")
                yield self._batch(xb, check_labels(yb, clf.nb_classes, len(xb), name="generator labels"))

        self._run(batches, nb_epochs, validation, kwargs.get("catch_interrupt"), restore_best)

    def _prepare(self, x_sample: np.ndarray) -> None:
        clf = self._classifier
        self._output_kind = (
            self.output if self.output != "auto" else detect_output_kind(clf.predict(x_sample[:PROBE_SIZE]))
        )
        self._resolve_scales(x_sample)

    def _batch(self, x_l: np.ndarray, y_l: np.ndarray, x_u: np.ndarray | None = None) -> tuple:
        """``(inputs, labels)`` of one step: labelled inputs first, each part through the fit-time defences."""
        if not self.is_text:
            x_l, y_l = fit_batch(self._classifier, (x_l, y_l))
            if x_u is not None:
                (x_u,) = fit_batch(self._classifier, (x_u,))
        y_l = np.asarray(y_l)
        if y_l.ndim == 2:
            y_l = y_l.argmax(axis=1)
        return (x_l if x_u is None else np.concatenate([x_l, x_u])), y_l

    def _run(
        self, batches: Any, nb_epochs: int, validation: Any, catch_interrupt: Any, restore_best: bool = False
    ) -> None:
        ops, clf = self._ops, self._classifier
        device = ops.device_of(clf)
        loop = TrainingLoop(
            clf,
            nb_epochs,
            desc="VAT",
            verbose=self.verbose,
            learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule,
            catch_interrupt=catch_interrupt,
            input_dtypes=("int64" if self.is_text else "float32", "int64"),
        )
        self.validation_history = []
        best = BestWeights(clf, restore_best)

        def on_epoch_end(epoch: int, loss: float) -> dict | None:
            if validation is None:
                return None
            acc = validation_accuracy(clf, validation[0], validation[1])
            self.validation_history.append(acc)
            best.update(acc)
            return {"val_acc": f"{acc:.3f}"}

        def loss_fn(xb, yb):
            return self._loss(xb, yb, ops.shape(yb)[0], device)

        result = loop.run(loss_fn, batches, on_epoch_end)
        self.history.extend(result.history)
        self.interrupted = result.interrupted
        self.best_epoch = best.restore()

    def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
        """
        Predictions of the trained classifier.

        :param x: Inputs.
        :return: ``(nb_samples, nb_classes)`` outputs of the classifier.
        """
        return self._classifier.predict(x, **kwargs)

    def virtual_adversarial_loss(self, x: np.ndarray, batch_size: int = 256) -> float:
        """
        Mean LDS ``KL(p(.|x) || p(.|x + eps d))`` of the classifier in inference mode (what VAT minimises).

        :param x: Inputs (token ids for text).
        :return: The mean over `x`.
        """
        ops, clf = self._ops, self._classifier
        x = self._check_x(x, "x")
        self._output_kind = self.output if self.output != "auto" else detect_output_kind(clf.predict(x[:PROBE_SIZE]))
        if self.eps_ is None or self.xi_ is None:
            self._resolve_scales(x)
        device = ops.device_of(clf)
        total = 0.0
        for i in range(0, len(x), batch_size):
            z, mask = self._inputs(x[i : i + batch_size], device)
            z = ops.stop_gradient(z)

            def log_prob_fn(zz, mask=mask):
                return self._log_probs(zz, mask, training=False)

            log_p = log_prob_fn(z)
            d = virtual_adversarial_direction(
                ops, log_prob_fn, z, log_p, self.xi_, self.n_power_iterations, self._rng, mask, device
            )
            kl = kl_divergence_log_probs(ops, log_p, log_prob_fn(z + self.eps_ * d), reduce="sum")
            total += float(ops.to_numpy(kl))
        return total / len(x)
