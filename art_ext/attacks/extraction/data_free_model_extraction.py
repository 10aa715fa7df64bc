"""
Data-Free Model Extraction (Truong et al., CVPR 2021): steal a black-box classifier with generated queries only.

| Paper link: https://arxiv.org/abs/2011.14779
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from art.attacks.attack import ExtractionAttack
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator

from art_ext.attacks.extraction.dfme_run import DFMERun
from art_ext.backend import framework_of
from art_ext.utils.checks import check_finite, check_labels, check_positive

if TYPE_CHECKING:
    from art.utils import CLASSIFIER_TYPE

logger = logging.getLogger(__name__)


class DataFreeModelExtraction(ExtractionAttack):
    """
    Data-Free Model Extraction (DFME). A generator ``G`` maps noise to inputs; a student ``S`` (the thieved classifier)
    learns to imitate the black-box victim ``V`` on them. Each round has ``n_generator_steps`` generator steps that
    maximise the student-victim disagreement and ``n_student_steps`` student steps that minimise it. The victim's
    gradient is estimated by forward differences along ``n_directions`` random unit directions per input (every
    finite-difference query counts against ``max_queries``); the student's side of the gradient is exact (autograd).
    Probability outputs are turned into logits as ``log p`` minus its per-sample mean (or min).

    The generator is chosen from the thieved classifier's input shape by default (``generator="auto"``, see
    :func:`~art_ext.estimators.generation.build_auto_generator`): a dense generator for flat feature vectors, a 1-D
    convolutional one for signals ``(C, L)`` / ``(L, C)``, a 2-D convolutional one for images of any size (non-square,
    sides not divisible by 4) in either layout, and a dense one wherever no convolution fits (a side below 4, rank 4
    and more). The layout is the victim's ``channels_first`` when it has the same input shape, else the thieved
    classifier's; samples are generated directly in it, never reshaped across a channel axis. The choice is logged,
    kept in :attr:`generator_plan` and written into the first record of :attr:`history` (key ``generator``).

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
        "ledger_dir",
    ]
    _estimator_requirements = (BaseEstimator, ClassifierMixin)

    def __init__(
        self,
        classifier: CLASSIFIER_TYPE,
        generator: Any = "auto",
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
        ledger_dir: str | None = None,
    ) -> None:
        """
        :param classifier: The victim: any ART classifier. Only ``classifier.predict`` is called.
        :param generator: ``"auto"`` (default: a generator for the thieved classifier's input shape and layout, built
                          at the first :meth:`extract` and kept for the later ones; see the class documentation), or
                          a generator estimator in the thieved classifier's framework
                          (:class:`art_ext.estimators.generation.PyTorchGenerator` or ART's ``TensorFlowV2Generator``)
                          making samples in the thieved classifier's layout. Its ``clip_values`` say which kind of
                          output it has: ``None`` (unbounded outputs, e.g. :func:`art_ext.models.build_generator`'s):
                          mapped into the input range with a scaled ``tanh``; ``(min, max)`` (bounded outputs, e.g. a
                          DCGAN ending in ``tanh``: ``(-1, 1)``, or in a sigmoid: ``(0, 1)``): used as they are,
                          mapped linearly from ``(min, max)`` onto the input range when the two differ, and clipped
                          into it; never squashed a second time.
        :param max_queries: Hard budget of victim queries (inputs sent to ``predict``), finite-difference ones included.
                            It holds for the attack object across :meth:`extract` calls: a second call continues with
                            what is left (and refuses when less than a round is left) until :meth:`reset_budget`.
                            Queries are counted when sent, also when ``predict`` then fails or Ctrl-C interrupts it.
        :param batch_size: Generated inputs per step.
        :param n_generator_steps: Generator steps per round (``n_G``); each costs ``batch_size * (n_directions + 1)``
                                  queries.
        :param n_student_steps: Student steps per round (``n_S``); each costs ``batch_size`` queries.
        :param n_directions: Random directions ``m`` of the forward-difference gradient estimate.
        :param fd_epsilon: Step of the forward differences (in the generator's output space).
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
        :param restore_best: With validation data, return the student with the best validation accuracy seen. In
                             hybrid mode without validation data, return the student agreeing best with the victim
                             on `x` (the student as given, after the warm start, at each evaluation and at the end;
                             no query: the answers are paid for), so hybrid mode never ends worse than its warm
                             start.
        :param checkpoint_dir: Folder for periodic checkpoints (student, generator, query count, history, random state).
        :param checkpoint_every: Rounds between checkpoints (requires `checkpoint_dir`).
        :param resume: Continue from the checkpoint in `checkpoint_dir` when there is one (optimizer moments restart).
        :param verbose: Show a progress bar counting queries.
        :param random_state: Seed or numpy ``Generator`` of every random draw (noise, directions).
        :param ledger_dir: Folder of a write-ahead query ledger
                           (:class:`~art_ext.estimators.classification.LedgerClassifier`): every batch is recorded as
                           sent (fsynced) before it reaches the victim and as answered with its answers. With
                           ``resume=True`` a rerun with the same seeds is served the answers already paid for, and
                           batches sent but never answered (a crash, kill -9) count as spent, so the victim never
                           answers more than `max_queries` in total. Keep `batch_size` when resuming.
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
        self.ledger_dir = ledger_dir
        self.random_state = random_state
        self._check_params()
        self._queries_used = 0
        self._run: DFMERun | None = None
        self._detected_output: str | None = None
        self._auto_generators: dict[tuple, tuple[Any, Any]] = {}
        self._generator_plan: Any = None

    # ------------------------------------------------------------------ public
    @property
    def queries_used(self) -> int:
        """Victim queries spent so far by this attack, over all :meth:`extract` calls (never above ``max_queries``)."""
        return self._queries_used

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per round of the last :meth:`extract` call (queries, losses, class shares, validation)."""
        return [] if self._run is None else self._run.history

    @property
    def generator_plan(self) -> Any:
        """
        The :class:`~art_ext.estimators.generation.GeneratorPlan` of the generator built by ``generator="auto"`` for
        the last :meth:`extract` call (``None`` for a generator given by the user or before the first call).
        """
        return self._generator_plan

    @property
    def detected_output(self) -> str | None:
        """What the victim outputs, ``"probabilities"`` or ``"logits"`` (``None`` before the first query)."""
        return self._detected_output

    @property
    def interrupted(self) -> bool:
        """Whether the last :meth:`extract` call was stopped by Ctrl-C (it then returned the student so far)."""
        return self._run is not None and self._run.interrupted

    @property
    def victim_query_seconds(self) -> float:
        """Seconds the last :meth:`extract` call spent inside the victim's ``predict``."""
        return 0.0 if self._run is None else self._run.oracle.seconds

    def reset_budget(self) -> None:
        """Forget the queries spent so far: the next :meth:`extract` call has the whole ``max_queries`` again."""
        self._queries_used = 0
        self._detected_output = None

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
        :param thieved_classifier: The student: a ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` in the
                                   generator's framework, trained in place. It may output logits or end in a softmax
                                   (its log-probabilities, logits up to a constant, are then trained).
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
        generator = self._generator_for(student, framework)
        if framework_of(generator) != framework:
            raise TypeError(
                f"`generator` ({type(generator).__name__}) and `thieved_classifier` "
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
            if tuple(x_val.shape[1:]) != tuple(student.input_shape):
                raise ValueError(
                    f"`x_val` must have shape (nb_samples, *{tuple(student.input_shape)}), got {x_val.shape}."
                )
            y_val = check_labels(y_val, student.nb_classes, n=len(x_val), name="y_val")
        if x is not None:
            x = check_finite(x, "x").astype(np.float32)
            if tuple(x.shape[1:]) != tuple(student.input_shape):
                raise ValueError(f"`x` must have shape (nb_samples, *{tuple(student.input_shape)}), got {x.shape}.")
            if self._queries_used + len(x) + self.queries_per_round > self.max_queries:
                raise ValueError(
                    f"`max_queries`={self.max_queries} cannot cover the {len(x)} queries on `x` plus one round "
                    f"({self.queries_per_round} queries)."
                )
        if self._queries_used + self.queries_per_round > self.max_queries and not self.resume:
            raise ValueError(
                f"The budget is spent: {self._queries_used} of `max_queries`={self.max_queries} queries were used by "
                "earlier `extract` calls and one round needs more. Call `reset_budget()` (or raise `max_queries`) to "
                "query the victim again."
            )
        note = None if self._generator_plan is None else self._generator_plan.describe()
        run = DFMERun(self, student, framework, self._queries_used, x, x_val, y_val, generator, note)
        self._run = run
        try:
            return run.run() if run.distributed is None else run.distributed.run()
        finally:
            self._queries_used = run.oracle.queries_used
            self._detected_output = run.oracle.detected_output

    def _generator_for(self, student: Any, framework: str) -> Any:
        """The generator of this call: the user's, or (``"auto"``) the one built for the student's samples."""
        if not isinstance(self.generator, str):
            self._generator_plan = None
            return self.generator
        from art_ext.estimators.generation import build_auto_generator

        shape = tuple(int(d) for d in student.input_shape)
        layout = getattr(student, "channels_first", None)
        try:
            victim_shape = tuple(int(d) for d in self.estimator.input_shape)
        except (AttributeError, NotImplementedError, TypeError):
            victim_shape = None
        victim_layout = getattr(self.estimator, "channels_first", None)
        if victim_shape == shape and victim_layout is not None:
            layout = bool(victim_layout)  # same samples: the victim says where its channels are
        key = (framework, shape, layout)
        if key not in self._auto_generators:
            rs = self.random_state
            seed = int(rs) if isinstance(rs, (int, np.integer)) else None
            device = "gpu" if str(getattr(student, "device", "cpu")).startswith("cuda") else "cpu"
            self._auto_generators[key] = build_auto_generator(shape, framework, layout, seed=seed, device_type=device)
        generator, self._generator_plan = self._auto_generators[key]
        logger.info("DFME: generator=%r chose a %s.", self.generator, self._generator_plan.describe())
        return generator

    def _check_params(self) -> None:
        from art.estimators.generation.generator import GeneratorMixin

        if isinstance(self.generator, str):
            if self.generator != "auto":
                raise ValueError(f'`generator` must be "auto" or a generator estimator, got {self.generator!r}.')
        elif not isinstance(self.generator, GeneratorMixin) or not hasattr(self.generator, "model"):
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
        if self.student_momentum >= 1.0:
            raise ValueError(f"`student_momentum` must lie in [0, 1), got {self.student_momentum!r}.")
        if isinstance(self.probability_floor, bool) or not isinstance(self.probability_floor, (int, float, np.number)):
            raise ValueError(f"`probability_floor` must be a number in (0, 1), got {self.probability_floor!r}.")
        if not 0.0 < self.probability_floor < 1.0:
            raise ValueError(f"`probability_floor` must lie in (0, 1), got {self.probability_floor!r}.")
        for name, choices in (
            ("loss", ("l1", "kl")),
            ("logit_correction", ("mean", "min", "none")),
            ("victim_output", ("auto", "probabilities", "logits")),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}.")
        for name in ("restore_best", "resume", "verbose"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        if self.checkpoint_dir is not None and (not isinstance(self.checkpoint_dir, (str, os.PathLike))):
            raise ValueError(f"`checkpoint_dir` must be a folder path, got {self.checkpoint_dir!r}.")
        if self.ledger_dir is not None and (not isinstance(self.ledger_dir, (str, os.PathLike))):
            raise ValueError(f"`ledger_dir` must be a folder path, got {self.ledger_dir!r}.")
        try:
            milestones = tuple(float(m) for m in (self.lr_milestones or ()))
        except (TypeError, ValueError):
            milestones = (-1.0,)
        if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(milestones):
            raise ValueError(f"`lr_milestones` must be increasing fractions in (0, 1), got {self.lr_milestones!r}.")
        if self.eval_every is not None:
            check_positive(self.eval_every, "eval_every", integer=True)
        if self.checkpoint_every is not None:
            check_positive(self.checkpoint_every, "checkpoint_every", integer=True)
            if not self.checkpoint_dir:
                raise ValueError("`checkpoint_every` needs `checkpoint_dir`.")
        if self.resume and not (self.checkpoint_dir or self.ledger_dir):
            raise ValueError("`resume=True` needs `checkpoint_dir` or `ledger_dir`.")
        if self.random_state is not None and not isinstance(self.random_state, (int, np.integer, np.random.Generator)):
            raise ValueError(f"`random_state` must be None, an int or a numpy Generator, got {self.random_state!r}.")
        if self.queries_per_round > self.max_queries:
            raise ValueError(
                f"`max_queries`={self.max_queries} is below the cost of one round ({self.queries_per_round} queries "
                "= batch_size * (n_generator_steps * (n_directions + 1) + n_student_steps))."
            )
