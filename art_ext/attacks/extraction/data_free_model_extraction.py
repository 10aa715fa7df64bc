"""
Data-Free Model Extraction (Truong et al., CVPR 2021): steal a black-box classifier with generated queries only.

| Paper link: https://arxiv.org/abs/2011.14779
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from art.attacks.attack import ExtractionAttack
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator
from tqdm.auto import tqdm

from art_ext.backend import framework_of, get_backend
from art_ext.utils.checks import check_finite, check_labels, check_positive

if TYPE_CHECKING:
    from art.utils import CLASSIFIER_TYPE

logger = logging.getLogger(__name__)

_CHECKPOINT_FILE = "dfme_checkpoint.npz"


class DataFreeModelExtraction(ExtractionAttack):
    """
    Data-Free Model Extraction (DFME). A generator ``G`` maps noise to inputs; a student ``S`` (the thieved classifier)
    learns to imitate the black-box victim ``V`` on them. Each round has ``n_generator_steps`` generator steps that
    maximise the student-victim disagreement and ``n_student_steps`` student steps that minimise it. The victim's
    gradient is estimated by forward differences along ``n_directions`` random unit directions per input (every
    finite-difference query counts against ``max_queries``); the student's side of the gradient is exact (autograd).
    Probability outputs are turned into logits as ``log p`` minus its per-sample mean (or min).

    Beyond the paper, ``diversity_weight`` adds to the generator's objective the entropy of the batch-mean student
    prediction, which keeps the generated queries spread over the classes (the plain algorithm lets them collapse onto
    a few classes); ``diversity_weight=0`` gives the paper's algorithm.

    | Paper link: https://arxiv.org/abs/2011.14779
    """

    attack_params = ExtractionAttack.attack_params + [
        "generator",
        "max_queries",
        "batch_size",
        "n_generator_steps",
        "n_student_steps",
        "n_directions",
        "fd_epsilon",
        "loss",
        "logit_correction",
        "victim_output",
        "probability_floor",
        "diversity_weight",
        "student_learning_rate",
        "student_momentum",
        "student_weight_decay",
        "generator_learning_rate",
        "lr_milestones",
        "lr_decay",
        "warm_start_epochs",
        "eval_every",
        "restore_best",
        "checkpoint_dir",
        "checkpoint_every",
        "resume",
        "verbose",
        "random_state",
    ]
    _estimator_requirements = (BaseEstimator, ClassifierMixin)

    def __init__(
        self,
        classifier: CLASSIFIER_TYPE,
        generator: Any,
        max_queries: int = 2_000_000,
        batch_size: int = 256,
        n_generator_steps: int = 1,
        n_student_steps: int = 5,
        n_directions: int = 1,
        fd_epsilon: float = 1e-3,
        loss: str = "l1",
        logit_correction: str = "mean",
        victim_output: str = "auto",
        probability_floor: float = 1e-6,
        diversity_weight: float = 5.0,
        student_learning_rate: float = 0.1,
        student_momentum: float = 0.9,
        student_weight_decay: float = 5e-4,
        generator_learning_rate: float = 1e-3,
        lr_milestones: tuple[float, ...] = (),
        lr_decay: float = 0.3,
        warm_start_epochs: int = 10,
        eval_every: int | None = None,
        restore_best: bool = True,
        checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        verbose: bool = True,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        """
        :param classifier: The victim: any ART classifier. Only ``classifier.predict`` is called.
        :param generator: A generator estimator in the thieved classifier's framework
                          (:class:`art_ext.estimators.generation.PyTorchGenerator` or ART's ``TensorFlowV2Generator``)
                          whose model outputs unbounded images in the thieved classifier's layout; they are mapped
                          into the victim's ``clip_values`` with a scaled ``tanh``.
        :param max_queries: Hard budget of victim queries (inputs sent to ``predict``), finite-difference ones included.
        :param batch_size: Generated inputs per step.
        :param n_generator_steps: Generator steps per round (``n_G``); each costs ``batch_size * (n_directions + 1)``
                                  queries.
        :param n_student_steps: Student steps per round (``n_S``); each costs ``batch_size`` queries.
        :param n_directions: Random directions ``m`` of the forward-difference gradient estimate.
        :param fd_epsilon: Step of the forward differences (in the generator's pre-``tanh`` space).
        :param loss: ``"l1"`` (l1 between logits, the paper's choice) or ``"kl"``.
        :param logit_correction: How probability outputs become logits: ``"mean"`` (``log p - mean log p``), ``"min"``
                                 or ``"none"``.
        :param victim_output: ``"auto"`` (detected from the first answers), ``"probabilities"`` or ``"logits"``.
        :param probability_floor: Probabilities are clipped to at least this before the log (postprocessing defences
                                  such as rounding return zeros).
        :param diversity_weight: Weight of the class-diversity term (entropy of the batch-mean student prediction) in
                                 the generator objective; 0 is the paper's algorithm.
        :param student_learning_rate: Learning rate of the student's SGD.
        :param student_momentum: Momentum of the student's SGD.
        :param student_weight_decay: Weight decay of the student's SGD.
        :param generator_learning_rate: Learning rate of the generator's Adam.
        :param lr_milestones: Fractions of ``max_queries`` at which both learning rates are multiplied by `lr_decay`
                              (the paper: ``(0.1, 0.3, 0.5)``; off by default, it stalls short budgets).
        :param lr_decay: Learning-rate decay factor at each milestone.
        :param warm_start_epochs: Hybrid mode (``x`` given to :meth:`extract`): epochs on the victim's answers for ``x``
                                  before the data-free rounds.
        :param eval_every: Rounds between validation evaluations when ``x_val`` is given (default: about 25 over the
                           budget).
        :param restore_best: With validation data, return the student with the best validation accuracy seen.
        :param checkpoint_dir: Folder for periodic checkpoints (student, generator, query count, history, random state).
        :param checkpoint_every: Rounds between checkpoints (requires `checkpoint_dir`).
        :param resume: Continue from the checkpoint in `checkpoint_dir` when there is one (optimizer moments restart).
        :param verbose: Show a progress bar counting queries.
        :param random_state: Seed or numpy ``Generator`` of every random draw (noise, directions).
        """
        super().__init__(estimator=classifier)
        self.generator = generator
        self.max_queries = max_queries
        self.batch_size = batch_size
        self.n_generator_steps = n_generator_steps
        self.n_student_steps = n_student_steps
        self.n_directions = n_directions
        self.fd_epsilon = fd_epsilon
        self.loss = loss
        self.logit_correction = logit_correction
        self.victim_output = victim_output
        self.probability_floor = probability_floor
        self.diversity_weight = diversity_weight
        self.student_learning_rate = student_learning_rate
        self.student_momentum = student_momentum
        self.student_weight_decay = student_weight_decay
        self.generator_learning_rate = generator_learning_rate
        self.lr_milestones = lr_milestones
        self.lr_decay = lr_decay
        self.warm_start_epochs = warm_start_epochs
        self.eval_every = eval_every
        self.restore_best = restore_best
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.verbose = verbose
        self.random_state = random_state
        self._check_params()
        self._queries_used = 0
        self.history: list[dict[str, Any]] = []
        self.detected_output: str | None = None
        self.interrupted = False
        self.victim_query_seconds = 0.0

    # ------------------------------------------------------------------ public
    @property
    def queries_used(self) -> int:
        """Victim queries spent so far (never above ``max_queries``)."""
        return self._queries_used

    @property
    def queries_per_round(self) -> int:
        """Victim queries one full round costs."""
        return self.batch_size * (self.n_generator_steps * (self.n_directions + 1) + self.n_student_steps)

    def extract(self, x: np.ndarray | None = None, y: np.ndarray | None = None, **kwargs) -> CLASSIFIER_TYPE:
        """
        Train the thieved classifier to imitate the victim.

        :param x: Optional surrogate inputs ``(nb_samples, *input_shape)`` in the thieved classifier's layout (hybrid
                  mode): the victim is queried on them (counted) and the student is warm-started on its answers.
        :param y: Ignored (the victim's answers are the labels).
        :param thieved_classifier: The student: a ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` outputting
                                   logits, in the generator's framework; trained in place.
        :param x_val: Optional validation inputs ``(nb_samples, *input_shape)`` for tracking student accuracy.
        :param y_val: Labels of `x_val`, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :return: The thieved classifier.
        """
        student = kwargs.get("thieved_classifier")
        if student is None:
            raise ValueError("`thieved_classifier` is required: the classifier to train as the stolen copy.")
        if not isinstance(student, ClassifierMixin):
            raise TypeError(f"`thieved_classifier` must be an ART classifier, got {type(student).__name__}.")
        framework = framework_of(student)
        if framework_of(self.generator) != framework:
            raise TypeError(
                f"`generator` ({type(self.generator).__name__}) and `thieved_classifier` "
                f"({type(student).__name__}) must use the same framework."
            )
        if student.nb_classes != self.estimator.nb_classes:
            raise ValueError(
                f"`thieved_classifier` has {student.nb_classes} classes, the victim {self.estimator.nb_classes}."
            )
        x_val, y_val = kwargs.get("x_val"), kwargs.get("y_val")
        if (x_val is None) != (y_val is None):
            raise ValueError("Give both `x_val` and `y_val`, or neither.")
        if x_val is not None:
            x_val = check_finite(x_val, "x_val").astype(np.float32)
            y_val = check_labels(y_val, student.nb_classes, n=len(x_val), name="y_val")
        if x is not None:
            x = check_finite(x, "x").astype(np.float32)
            if tuple(x.shape[1:]) != tuple(student.input_shape):
                raise ValueError(f"`x` must have shape (nb_samples, *{tuple(student.input_shape)}), got {x.shape}.")
            if len(x) + self.queries_per_round > self.max_queries:
                raise ValueError(
                    f"`max_queries`={self.max_queries} cannot cover the {len(x)} queries on `x` plus one round "
                    f"({self.queries_per_round} queries)."
                )
        return _Run(self, student, framework, x, x_val, y_val).run()

    def _check_params(self) -> None:
        from art.estimators.generation.generator import GeneratorMixin

        if not isinstance(self.generator, GeneratorMixin) or not hasattr(self.generator, "model"):
            raise TypeError(
                "`generator` must be an ART generator estimator with a model (PyTorchGenerator or "
                f"TensorFlowV2Generator), got {type(self.generator).__name__}."
            )
        for name in ("max_queries", "batch_size", "n_student_steps", "n_directions"):
            check_positive(getattr(self, name), name, integer=True)
        check_positive(self.n_generator_steps, "n_generator_steps", integer=True, allow_zero=True)
        check_positive(self.warm_start_epochs, "warm_start_epochs", integer=True, allow_zero=True)
        for name in ("fd_epsilon", "student_learning_rate", "generator_learning_rate", "lr_decay"):
            check_positive(getattr(self, name), name)
        for name in ("student_momentum", "student_weight_decay", "diversity_weight"):
            check_positive(getattr(self, name), name, allow_zero=True)
        if not 0.0 < self.probability_floor < 1.0:
            raise ValueError(f"`probability_floor` must lie in (0, 1), got {self.probability_floor!r}.")
        if self.loss not in ("l1", "kl"):
            raise ValueError(f"`loss` must be 'l1' or 'kl', got {self.loss!r}.")
        if self.logit_correction not in ("mean", "min", "none"):
            raise ValueError(f"`logit_correction` must be 'mean', 'min' or 'none', got {self.logit_correction!r}.")
        if self.victim_output not in ("auto", "probabilities", "logits"):
            raise ValueError(
                f"`victim_output` must be 'auto', 'probabilities' or 'logits', got {self.victim_output!r}."
            )
        milestones = tuple(self.lr_milestones or ())
        if any(not 0.0 < float(m) < 1.0 for m in milestones) or list(milestones) != sorted(milestones):
            raise ValueError(f"`lr_milestones` must be increasing fractions in (0, 1), got {self.lr_milestones!r}.")
        if self.eval_every is not None:
            check_positive(self.eval_every, "eval_every", integer=True)
        if self.checkpoint_every is not None:
            check_positive(self.checkpoint_every, "checkpoint_every", integer=True)
            if not self.checkpoint_dir:
                raise ValueError("`checkpoint_every` needs `checkpoint_dir`.")
        if self.resume and not self.checkpoint_dir:
            raise ValueError("`resume=True` needs `checkpoint_dir`.")
        if not isinstance(self.verbose, bool):
            raise ValueError("`verbose` must be a bool.")
        if self.random_state is not None and not isinstance(self.random_state, (int, np.integer, np.random.Generator)):
            raise TypeError(f"`random_state` must be None, an int or a numpy Generator, got {self.random_state!r}.")
        if self.queries_per_round > self.max_queries:
            raise ValueError(
                f"`max_queries`={self.max_queries} is below the cost of one round ({self.queries_per_round} queries "
                "= batch_size * (n_generator_steps * (n_directions + 1) + n_student_steps))."
            )


class _Run:
    """One call of :meth:`DataFreeModelExtraction.extract`: the state of the loop, written once against ``ops``."""

    def __init__(self, attack, student, framework, x, x_val, y_val) -> None:
        self.a = attack
        self.student = student
        self.ops = get_backend(framework)
        self.x, self.x_val, self.y_val = x, x_val, y_val
        self.victim = attack.estimator
        self.generator = attack.generator
        self.gen_model = self.ops.model_of(self.generator)
        rs = attack.random_state
        self.rng = rs if isinstance(rs, np.random.Generator) else np.random.default_rng(rs)
        self.nb_classes = student.nb_classes
        self.rounds = 0
        self.best_acc = -1.0
        self.best_weights = None
        self.class_counts = np.zeros(self.nb_classes, dtype=np.int64)

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        ops, a = self.ops, self.a
        self.sample_shape = self._generated_shape()
        if self.sample_shape != tuple(self.student.input_shape):
            raise ValueError(
                f"The generator outputs samples of shape {self.sample_shape}, the thieved classifier expects "
                f"{tuple(self.student.input_shape)}."
            )
        self.dim = int(np.prod(self.sample_shape))
        low, high = self._clip_values()
        self.low = float(low) if np.ndim(low) == 0 else ops.asarray(low)
        self.span = float(high - low) if np.ndim(low) == 0 else ops.asarray(high - low)
        self.victim_shape = self._victim_shape()
        self.opt_student = ops.make_optimizer(
            ops.trainable_weights(self.student),
            "sgd",
            learning_rate=a.student_learning_rate,
            momentum=a.student_momentum,
            weight_decay=a.student_weight_decay,
        )
        self.opt_generator = ops.make_optimizer(
            ops.trainable_weights(self.gen_model), "adam", learning_rate=a.generator_learning_rate
        )
        self.eval_every = a.eval_every or max(1, a.max_queries // a.queries_per_round // 25)
        self._check_student_outputs_logits()

    def _generated_shape(self) -> tuple[int, ...]:
        ops = self.ops
        z = ops.random_normal((2, self.generator.encoding_length), np.random.default_rng(0))
        with ops.frozen_batchnorm_stats(self.gen_model):
            out = ops.call_model(self.gen_model, z, training=True)
        return tuple(ops.shape(out)[1:])

    def _clip_values(self) -> tuple[np.ndarray, np.ndarray]:
        for owner in (self.victim, self.generator, self.student):
            clip = getattr(owner, "clip_values", None)
            if clip is not None:
                low = np.asarray(clip[0], dtype=np.float32)
                high = np.asarray(clip[1], dtype=np.float32)
                if np.ndim(low) > 0:
                    try:
                        low = np.broadcast_to(low, self.sample_shape).copy()
                        high = np.broadcast_to(high, self.sample_shape).copy()
                    except ValueError as err:
                        raise ValueError(
                            f"`clip_values` of {type(owner).__name__} do not broadcast to the generated shape "
                            f"{self.sample_shape}."
                        ) from err
                if np.any(high <= low):
                    raise ValueError(f"`clip_values` of {type(owner).__name__} must satisfy min < max.")
                return low, high
        raise ValueError(
            "DFME needs the input range: set `clip_values` on the victim, the generator or the thieved classifier."
        )

    def _victim_shape(self) -> tuple[int, ...] | None:
        try:
            shape = tuple(self.victim.input_shape)
        except (AttributeError, NotImplementedError, TypeError):
            return None
        if self._transposes() and len(self.sample_shape) == 3:
            expected = (self.sample_shape[1], self.sample_shape[2], self.sample_shape[0])
            if not self.generator.channels_first:
                expected = (self.sample_shape[2], self.sample_shape[0], self.sample_shape[1])
        else:
            expected = self.sample_shape
        if shape != expected and int(np.prod(shape)) != self.dim:
            raise ValueError(
                f"The victim expects inputs of shape {shape}; generated samples have shape {self.sample_shape}."
            )
        return shape

    def _transposes(self) -> bool:
        g_cf = getattr(self.generator, "channels_first", None)
        v_cf = getattr(self.victim, "channels_first", None)
        return len(self.sample_shape) == 3 and g_cf is not None and v_cf is not None and bool(g_cf) != bool(v_cf)

    def _check_student_outputs_logits(self) -> None:
        ops = self.ops
        x = self._squash(ops.random_normal((8,) + self.sample_shape, np.random.default_rng(1)))
        out = ops.to_numpy(ops.forward(self.student, x, training=False))
        if out.min() >= 0.0 and out.max() <= 1.0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError(
                "`thieved_classifier` appears to output probabilities; DFME trains on logits: remove its softmax."
            )

    # ------------------------------------------------------------------ pieces
    def _squash(self, pre):
        return self.low + self.span * (self.ops.tanh(pre) + 1.0) * 0.5

    def _noise(self):
        return self.ops.random_normal((self.a.batch_size, self.generator.encoding_length), self.rng)

    def _generate(self, z):
        """Pre-``tanh`` generator output (batch-normalisation in training mode, as in the paper), no gradient."""
        return self.ops.stop_gradient(self.ops.call_model(self.gen_model, z, training=True))

    def _fits(self, n: int) -> bool:
        return self.a._queries_used + n <= self.a.max_queries

    def _query(self, x_tensor) -> Any:
        """Ask the victim about generated inputs; return its outputs as (recovered) logits on the backend."""
        x_np = np.asarray(self.ops.to_numpy(x_tensor), dtype=np.float32)
        return self.ops.asarray(self._query_numpy(x_np))

    def _query_numpy(self, x_np: np.ndarray) -> np.ndarray:
        a = self.a
        n = len(x_np)
        if not self._fits(n):  # guarded by the callers; kept as a last line of defence
            raise RuntimeError("query budget exceeded")
        if self._transposes():
            x_np = np.moveaxis(x_np, 1, 3) if self.generator.channels_first else np.moveaxis(x_np, 3, 1)
        if self.victim_shape is not None and tuple(x_np.shape[1:]) != self.victim_shape:
            x_np = x_np.reshape((n,) + self.victim_shape)
        start = time.perf_counter()
        out = np.asarray(self.victim.predict(np.ascontiguousarray(x_np), batch_size=max(a.batch_size, 1)))
        a.victim_query_seconds += time.perf_counter() - start
        a._queries_used += n
        self.pbar.update(n)
        return self._to_logits(out, n)

    def _to_logits(self, out: np.ndarray, n: int) -> np.ndarray:
        a = self.a
        if out.ndim != 2 or out.shape != (n, self.nb_classes):
            raise ValueError(
                f"The victim returned shape {out.shape}; DFME needs scores of shape (nb_samples, {self.nb_classes}) "
                "(a victim exposing only labels cannot be extracted data-free)."
            )
        out = out.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise ValueError("The victim returned NaN or infinite scores.")
        if a.detected_output is None:
            # One-hot (or any 0/1) answers carry no gradient information (ART's ClassLabels postprocessor).
            if np.all((out == 0.0) | (out == 1.0)):
                raise ValueError(
                    "The victim returns labels only (0/1 outputs); DFME needs probabilities or logits to estimate "
                    "gradients."
                )
            if a.victim_output != "auto":
                a.detected_output = a.victim_output
            else:
                # Postprocessing defences (noise, rounding, confidence cut-offs) break the sum-to-one test, so
                # probabilities are recognised by their range only.
                in_range = out.min() >= -1e-6 and out.max() <= 1.0 + 1e-6
                a.detected_output = "probabilities" if in_range else "logits"
            logger.info("DFME: the victim outputs %s.", a.detected_output)
        self.class_counts += np.bincount(out.argmax(axis=1), minlength=self.nb_classes)
        if a.detected_output == "logits":
            return out
        logp = np.log(np.clip(out, a.probability_floor, 1.0))
        if a.logit_correction == "mean":
            logp = logp - logp.mean(axis=1, keepdims=True)
        elif a.logit_correction == "min":
            logp = logp - logp.min(axis=1, keepdims=True)
        return logp.astype(np.float32)

    def _disagreement(self, s_logits, v_logits, reduce: bool = True):
        ops = self.ops
        if self.a.loss == "l1":
            per_sample = ops.mean(ops.abs(s_logits - v_logits), axis=1)
        else:
            per_sample = ops.kl_divergence_logits(v_logits, s_logits, reduce=False)
        return ops.mean(per_sample) if reduce else per_sample

    def _batch_class_entropy(self, s_logits):
        ops = self.ops
        p_mean = ops.mean(ops.softmax(s_logits, axis=1), axis=0)
        return -ops.sum(p_mean * ops.log(p_mean + 1e-12))

    # ------------------------------------------------------------------ steps
    def _generator_step(self) -> tuple[float, float]:
        ops, a = self.ops, self.a
        b, m = a.batch_size, a.n_directions
        z = self._noise()
        pre = self._generate(z)
        u = self.rng.standard_normal((b, m, self.dim)).astype(np.float32)
        u /= np.linalg.norm(u, axis=2, keepdims=True) + 1e-12
        u_t = ops.asarray(u.reshape((b, m) + self.sample_shape))
        pre_pert = ops.reshape(
            ops.reshape(pre, (b, 1) + self.sample_shape) + a.fd_epsilon * u_t, (b * m,) + self.sample_shape
        )
        v_all = self._query(ops.concat([self._squash(pre), self._squash(pre_pert)], axis=0))
        v0 = v_all[:b]
        v_pert = ops.reshape(v_all[b:], (b, m, self.nb_classes))

        def objective(pre_t, v_t):
            s = ops.forward(self.student, self._squash(pre_t), training=False)
            disagreement = self._disagreement(s, v_t)
            diversity = self._batch_class_entropy(s)
            return disagreement + a.diversity_weight * diversity, (disagreement, diversity)

        (_, (disagreement, diversity)), (grad_student, w) = ops.value_and_grad(objective, [pre, v0], has_aux=True)
        # Zeroth-order part: the objective depends on the victim's logits v through w = d objective / d v, so its
        # gradient through the victim is J_v^T w, estimated by forward differences of <w, v> along unit directions u
        # (E[dim * (u . g) u] = g for u uniform on the sphere).
        f0 = ops.sum(w * v0, axis=1)
        f_pert = ops.sum(ops.reshape(w, (b, 1, self.nb_classes)) * v_pert, axis=2)
        slopes = (f_pert - ops.reshape(f0, (b, 1))) * (self.dim / a.fd_epsilon)
        grad_victim = ops.mean(ops.reshape(slopes, (b, m) + (1,) * len(self.sample_shape)) * u_t, axis=1)
        grad_pre = ops.stop_gradient(grad_student + grad_victim)

        # Ascend the objective: a vector-Jacobian product of the estimated input gradient through G.
        with ops.frozen_batchnorm_stats(self.gen_model):
            ops.train_step(
                self.gen_model,
                self.opt_generator,
                lambda: -ops.sum(ops.call_model(self.gen_model, z, training=True) * grad_pre),
            )
        return float(ops.to_numpy(disagreement)), float(ops.to_numpy(diversity))

    def _student_step(self, x=None, v=None) -> float:
        ops = self.ops
        if x is None:
            x = self._squash(self._generate(self._noise()))
            v = self._query(x)
        return ops.train_step(
            self.student,
            self.opt_student,
            lambda: self._disagreement(ops.forward(self.student, x, training=True), v),
        )

    # ------------------------------------------------------------------ bookkeeping
    def _learning_rate_factor(self) -> float:
        used = self.a._queries_used / self.a.max_queries
        return self.a.lr_decay ** sum(used >= m for m in (self.a.lr_milestones or ()))

    def _val_accuracy(self) -> float:
        pred = self.student.predict(self.x_val, batch_size=512)
        return float(np.mean(np.argmax(pred, axis=1) == self.y_val))

    def _evaluate(self, record: dict) -> None:
        if self.x_val is None:
            return
        acc = self._val_accuracy()
        record["val_accuracy"] = acc
        if acc > self.best_acc:
            self.best_acc = acc
            self.best_weights = self.ops.get_weights(self.student)

    def _checkpoint_path(self) -> str:
        return os.path.join(self.a.checkpoint_dir, _CHECKPOINT_FILE)

    def _save_checkpoint(self) -> None:
        ops, a = self.ops, self.a
        os.makedirs(a.checkpoint_dir, exist_ok=True)
        arrays = {f"student_{i}": w for i, w in enumerate(ops.get_weights(self.student))}
        arrays.update({f"generator_{i}": w for i, w in enumerate(ops.get_weights(self.gen_model))})
        if self.best_weights is not None:
            arrays.update({f"best_{i}": w for i, w in enumerate(self.best_weights)})
        meta = {
            "queries_used": a._queries_used,
            "rounds": self.rounds,
            "history": a.history,
            "rng": self.rng.bit_generator.state,
            "detected_output": a.detected_output,
            "best_acc": self.best_acc,
            "class_counts": self.class_counts.tolist(),
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        tmp = self._checkpoint_path() + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self._checkpoint_path())
        logger.info("DFME checkpoint after %d queries written to %s", a._queries_used, self._checkpoint_path())

    def _load_checkpoint(self) -> bool:
        ops, a = self.ops, self.a
        path = self._checkpoint_path()
        if not os.path.isfile(path):
            logger.info("DFME: no checkpoint in %s, starting afresh.", a.checkpoint_dir)
            return False
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))

            def stacked(prefix):
                keys = sorted((k for k in data.files if k.startswith(prefix)), key=lambda k: int(k.split("_")[1]))
                return [data[k] for k in keys]

            ops.set_weights(self.student, stacked("student_"))
            ops.set_weights(self.gen_model, stacked("generator_"))
            best = stacked("best_")
        if meta["queries_used"] > a.max_queries:
            raise ValueError(
                f"The checkpoint already used {meta['queries_used']} queries, above `max_queries`={a.max_queries}."
            )
        a._queries_used = int(meta["queries_used"])
        self.rounds = int(meta["rounds"])
        a.history = list(meta["history"])
        self.rng.bit_generator.state = meta["rng"]
        a.detected_output = meta["detected_output"]
        self.best_acc = float(meta["best_acc"])
        self.best_weights = best or None
        self.class_counts = np.asarray(meta["class_counts"], dtype=np.int64)
        logger.info("DFME resumed from %s at %d queries.", path, a._queries_used)
        return True

    # ------------------------------------------------------------------ main loop
    def run(self):
        ops, a = self.ops, self.a
        a._queries_used = 0
        a.history = []
        a.detected_output = None
        a.interrupted = False
        a.victim_query_seconds = 0.0
        self._setup()
        resumed = a.resume and self._load_checkpoint()
        self.pbar = tqdm(
            total=a.max_queries,
            initial=a._queries_used,
            unit="query",
            unit_scale=True,
            desc="DFME",
            disable=not a.verbose,
        )
        try:
            with ops.training_mode(self.gen_model, True):
                if self.x is not None and not resumed:
                    self._warm_start()
                self._loop()
        except KeyboardInterrupt:
            a.interrupted = True
            logger.warning("DFME interrupted after %d queries; returning the student trained so far.", a._queries_used)
        finally:
            self.pbar.close()
        if self.x_val is not None and a.restore_best and self.best_weights is not None:
            final_acc = self._val_accuracy()
            if self.best_acc > final_acc:
                ops.set_weights(self.student, self.best_weights)
        return self.student

    def _warm_start(self) -> None:
        a = self.a
        bs = max(a.batch_size, 1)
        answers = np.concatenate([self._query_numpy(self.x[i : i + bs]) for i in range(0, len(self.x), bs)])
        losses = []
        for _ in range(a.warm_start_epochs):
            order = self.rng.permutation(len(self.x))
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                losses.append(self._student_step(self.ops.asarray(self.x[idx]), self.ops.asarray(answers[idx])))
        record = {"round": 0, "queries": a._queries_used, "warm_start": True}
        if losses:
            record["loss_student"] = float(np.mean(losses[-max(1, len(losses) // max(a.warm_start_epochs, 1)) :]))
        self._evaluate(record)
        a.history.append(record)

    def _loop(self) -> None:
        ops, a = self.ops, self.a
        gen_cost = a.batch_size * (a.n_directions + 1)
        while True:
            factor = self._learning_rate_factor()
            ops.set_learning_rate(self.opt_student, a.student_learning_rate * factor)
            ops.set_learning_rate(self.opt_generator, a.generator_learning_rate * factor)
            self.class_counts[:] = 0
            g_losses, diversities, s_losses = [], [], []
            for _ in range(a.n_generator_steps):
                if not self._fits(gen_cost):
                    break
                disagreement, diversity = self._generator_step()
                g_losses.append(disagreement)
                diversities.append(diversity)
            for _ in range(a.n_student_steps):
                if not self._fits(a.batch_size):
                    break
                s_losses.append(self._student_step())
            if not g_losses and not s_losses:
                break
            self.rounds += 1
            shares = self.class_counts / max(1, self.class_counts.sum())
            record = {
                "round": self.rounds,
                "queries": a._queries_used,
                "loss_generator": float(np.mean(g_losses)) if g_losses else None,
                "diversity": float(np.mean(diversities)) if diversities else None,
                "loss_student": float(np.mean(s_losses)) if s_losses else None,
                "top2_class_share": float(np.sort(shares)[-2:].sum()),
                "learning_rate_factor": factor,
            }
            last = not self._fits(a.batch_size)
            if self.rounds % self.eval_every == 0 or last:
                self._evaluate(record)
            a.history.append(record)
            postfix = {"loss_S": f"{record['loss_student'] or 0:.3f}", "top2": f"{record['top2_class_share']:.2f}"}
            if "val_accuracy" in record:
                postfix["val_acc"] = f"{record['val_accuracy']:.3f}"
            self.pbar.set_postfix(postfix, refresh=False)
            if a.checkpoint_every and self.rounds % a.checkpoint_every == 0:
                self._save_checkpoint()
            if last:
                break
        if a.checkpoint_every:
            self._save_checkpoint()
