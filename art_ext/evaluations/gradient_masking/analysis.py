"""
A gradient-masking analysis for any ART classifier: gradient statistics, an attack battery at equal budgets and the
warning signs of Athalye, Carlini and Wagner (2018) and Carlini et al. (2019), each a verdict with its evidence.

| Paper link: https://arxiv.org/abs/1802.00420
| Paper link: https://arxiv.org/abs/1902.06705
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from art_ext.attacks.evasion.logit_margin import LogitMarginAttack, norm_value
from art_ext.backend import get_backend
from art_ext.defences.trainer.defensive_distillation import train_at_temperature
from art_ext.evaluations.gradient_masking.battery import ATTACKS, cw_at_budgets, noise_attack, perturbation_norms
from art_ext.evaluations.gradient_masking.report import GradientMaskingReport
from art_ext.evaluations.gradient_masking.signs import warning_signs
from art_ext.evaluations.gradient_masking.statistics import gradient_statistics
from art_ext.utils.checks import (
    check_choice,
    check_classifier,
    check_clip_values,
    check_finite,
    check_flag,
    check_labels,
    check_positive,
    check_random_state,
    check_sample_shape,
)
from art_ext.utils.outputs import OUTPUT_KINDS, output_kind_of, predict_in_batches

logger = logging.getLogger(__name__)

__all__ = ["GradientMaskingAnalysis"]


class GradientMaskingAnalysis:
    """
    Tells whether a classifier's apparent robustness is only masked gradients.

    It measures the gradient statistics an attacker sees (``||grad_x CE||``, the share of exactly-zero gradients, the
    share of saturated float32 softmax rows, softmax- against logit-Jacobian norms), runs an attack battery at equal
    budgets (ART's FGSM and PGD on the cross-entropy, FGSM and PGD on the logit margin, ART's C&W L2 counted at each
    eps, a transfer attack from an undistilled surrogate, ART's SquareAttack and random noise) and checks the warning
    signs of Athalye et al. and Carlini et al.: one-step beats iterative; black-box or transfer beats white-box;
    success does not reach 100% at the largest eps; success does not grow with eps; logit-space attacks succeed where
    softmax-gradient attacks fail; and vanishing gradients.

    | Paper link: https://arxiv.org/abs/1802.00420
    | Paper link: https://arxiv.org/abs/1902.06705
    """

    def __init__(
        self,
        classifier: Any,
        eps: Sequence[float] | float | None = None,
        norm: Any = np.inf,
        surrogate: Any = None,
        attacks: Sequence[str] | None = None,
        max_samples: int = 100,
        pgd_steps: int = 10,
        cw_max_iter: int = 10,
        cw_binary_search_steps: int = 5,
        square_max_iter: int = 100,
        noise_samples: int = 5,
        surrogate_epochs: int = 20,
        tolerance: float = 0.1,
        zero_gradient_threshold: float = 0.25,
        output: str = "auto",
        batch_size: int = 128,
        random_state: int | None = None,
        verbose: bool = True,
        catch_interrupt: bool = True,
    ) -> None:
        """
        :param classifier: ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier`` (logits or probabilities).
        :param eps: Budgets, increasing (default: ``(0.05, 0.1, 0.2, 0.3)`` for l-inf and ``(0.5, 1, 2, 3)`` for l2,
                    on inputs in [0, 1]). The largest should be large enough for a real attack to reach ~100%.
        :param norm: ``np.inf`` or ``2``.
        :param surrogate: An undistilled ART classifier for the transfer attack; ``None`` trains a fresh copy of the
                          classifier's architecture normally (cached in :attr:`surrogate` for later calls).
        :param attacks: Keys of :data:`ATTACKS` to run (default: all).
        :param max_samples: Inputs analysed (a seeded random subset of those given).
        :param pgd_steps: Iterations of the PGD attacks (and of the transfer attack).
        :param cw_max_iter: Iterations of C&W per binary-search step.
        :param cw_binary_search_steps: Binary-search steps of C&W.
        :param square_max_iter: Queries-iterations of SquareAttack.
        :param noise_samples: Random-noise draws per input (success if any misleads).
        :param surrogate_epochs: Epochs of the surrogate when it is trained here.
        :param tolerance: Margin in success rate above which one attack "beats" another (0.1 = 10 points).
        :param zero_gradient_threshold: Share of exactly-zero gradients, or of saturated softmax rows, that counts as
                                        vanishing gradients.
        :param output: ``"auto"``, ``"logits"`` or ``"probabilities"``.
        :param batch_size: Batch size.
        :param random_state: Seed of the subset, the noise, the surrogate and the attacks' randomness.
        :param verbose: Progress bars.
        :param catch_interrupt: On Ctrl-C during the attack battery, warn and report the attacks done so far (with
                                ``interrupted`` set on the report); ``False`` lets ``KeyboardInterrupt`` propagate.
        """
        check_classifier(classifier, "classifier")
        get_backend(classifier)
        self.classifier = classifier
        self.norm = norm_value(norm)
        if eps is None:
            eps = (0.05, 0.1, 0.2, 0.3) if self.norm == np.inf else (0.5, 1.0, 2.0, 3.0)
        if isinstance(eps, numbers.Real) and not isinstance(eps, bool):
            eps = (eps,)
        if isinstance(eps, (str, bytes, bool)):
            raise ValueError(f"`eps` must be a number or a sequence of numbers, got {eps!r}.")
        try:
            self.eps = [float(e) for e in eps]
        except (TypeError, ValueError):
            raise ValueError(f"`eps` must be a number or a sequence of numbers, got {eps!r}.") from None
        self.surrogate = surrogate
        if isinstance(attacks, str):
            attacks = [attacks]
        self.attacks = list(ATTACKS) if attacks is None else list(attacks)
        self.max_samples = max_samples
        self.pgd_steps = pgd_steps
        self.cw_max_iter = cw_max_iter
        self.cw_binary_search_steps = cw_binary_search_steps
        self.square_max_iter = square_max_iter
        self.noise_samples = noise_samples
        self.surrogate_epochs = surrogate_epochs
        self.tolerance = tolerance
        self.zero_gradient_threshold = zero_gradient_threshold
        self.output = output
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.catch_interrupt = catch_interrupt
        self.interrupted = False
        self._check_params()

    def _check_params(self) -> None:
        if not self.eps:
            raise ValueError("`eps` must hold at least one budget.")
        for e in self.eps:
            if not math.isfinite(e) or e <= 0:
                raise ValueError(f"`eps` must hold positive finite budgets, got {self.eps}.")
        if sorted(self.eps) != self.eps:
            raise ValueError(f"`eps` must be increasing, got {self.eps}.")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise ValueError(f"`attacks` must be a non-empty subset of {list(ATTACKS)}, got {self.attacks}.")
        if self.surrogate is not None:
            check_classifier(self.surrogate, "surrogate")
        for name in (
            "max_samples",
            "pgd_steps",
            "cw_max_iter",
            "cw_binary_search_steps",
            "square_max_iter",
            "noise_samples",
            "surrogate_epochs",
            "batch_size",
        ):
            check_positive(getattr(self, name), name, integer=True)
        for name in ("tolerance", "zero_gradient_threshold"):
            value = getattr(self, name)
            check_positive(value, name)
            if value >= 1:
                raise ValueError(f"`{name}` must be in (0, 1), got {value!r}.")
        check_choice(self.output, OUTPUT_KINDS, "output")
        check_random_state(self.random_state)
        check_flag(self.verbose, "verbose")
        check_flag(self.catch_interrupt, "catch_interrupt")

    # ------------------------------------------------------------------ inputs
    def select_samples(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """
        Check `x` and `y` and draw the seeded subset of at most :attr:`max_samples` inputs that the analysis uses.

        :param x: Inputs ``(nb_samples, ...)`` shaped as the classifier expects, inside its clip values.
        :param y: Labels, indices or one-hot.
        :return: ``(x, y)``: float32 inputs and int64 index labels.
        """
        x = check_finite(x, "x")
        check_sample_shape(x, self.classifier.input_shape)
        check_clip_values(x, self.classifier.clip_values)
        x = x.astype(np.float32)
        labels = check_labels(y, self.classifier.nb_classes, n=len(x))
        if len(x) > self.max_samples:
            rng = np.random.default_rng(self.random_state)
            idx = np.sort(rng.choice(len(x), self.max_samples, replace=False))
            x, labels = x[idx], labels[idx]
        return x, labels

    _prepare = select_samples

    # ------------------------------------------------------------------ gradient statistics
    def gradient_statistics(self, x: np.ndarray, y: np.ndarray, output: str) -> dict:
        """
        The gradient statistics an attacker sees: see
        :func:`art_ext.evaluations.gradient_masking.statistics.gradient_statistics`.
        """
        return gradient_statistics(self.classifier, x, y, output, self.batch_size)

    # ------------------------------------------------------------------ surrogate
    def fit_surrogate(self, x: np.ndarray, y: np.ndarray) -> Any:
        """
        Train (once) an undistilled surrogate: a fresh copy of the classifier's architecture, trained at T = 1 on
        `x`, `y` with its own optimizer. Cached in :attr:`surrogate`.
        """
        if self.surrogate is None:
            from art_ext.estimators.classification.utils import clone_classifier

            labels = check_labels(y, self.classifier.nb_classes, n=len(x))
            surrogate = clone_classifier(self.classifier, reinitialise=True, seed=self.random_state)
            output = output_kind_of(surrogate, np.asarray(x, dtype=np.float32), self.output)
            train_at_temperature(
                surrogate,
                np.asarray(x, dtype=np.float32),
                np.eye(self.classifier.nb_classes, dtype=np.float32)[labels],
                1.0,
                self.surrogate_epochs,
                64,
                output=output,
                rng=np.random.default_rng(self.random_state),
                verbose=self.verbose,
                desc="surrogate",
            )
            self.surrogate = surrogate
        return self.surrogate

    # ------------------------------------------------------------------ attacks
    def run_attack(
        self, key: str, x: np.ndarray, y: np.ndarray, output: str, eps: Sequence[float] | None = None
    ) -> list[np.ndarray]:
        """
        Adversarial examples of one attack of the battery, one array per eps.

        :param key: A key of :data:`ATTACKS` (``"transfer"`` needs :attr:`surrogate`: see :meth:`fit_surrogate`).
        :param x: Inputs (already checked, e.g. by :meth:`select_samples`).
        :param y: Index labels.
        :param output: ``"logits"`` or ``"probabilities"``: what the classifier outputs.
        :param eps: Budgets (default: :attr:`eps`); ``[np.inf]`` counts C&W without a bound.
        :return: One float32 array of adversarial examples per budget.
        """
        if key not in ATTACKS:
            raise ValueError(f"`key` must be one of {list(ATTACKS)}, got {key!r}.")
        if key == "transfer" and self.surrogate is None:
            raise ValueError("The transfer attack needs a surrogate: pass `surrogate=` or call fit_surrogate first.")
        eps_list = self.eps if eps is None else list(eps)
        from art.attacks.evasion import CarliniL2Method, FastGradientMethod, ProjectedGradientDescent, SquareAttack

        clf, norm, bs = self.classifier, self.norm, self.batch_size
        onehot = np.eye(clf.nb_classes, dtype=np.float32)[y]
        steps = self.pgd_steps
        if key == "cw_l2":
            attack = CarliniL2Method(
                clf,
                max_iter=self.cw_max_iter,
                binary_search_steps=self.cw_binary_search_steps,
                learning_rate=0.1,
                initial_const=1.0,
                batch_size=bs,
                verbose=False,
            )
            x_adv = attack.generate(x, onehot)
            # A minimal-perturbation attack: counted at eps when its perturbation fits in eps.
            advs, self.cw_unbounded_ = cw_at_budgets(clf, x, x_adv, y, eps_list, norm, bs)
            return advs
        results = []
        rng = np.random.default_rng(self.random_state)
        for e in eps_list:
            if key == "fgsm_ce":
                x_adv = FastGradientMethod(clf, norm=norm, eps=e, batch_size=bs).generate(x, onehot)
            elif key == "pgd_ce":
                x_adv = ProjectedGradientDescent(
                    clf, norm=norm, eps=e, eps_step=2.5 * e / steps, max_iter=steps, batch_size=bs, verbose=False
                ).generate(x, onehot)
            elif key in ("fgsm_margin", "pgd_margin"):
                x_adv = LogitMarginAttack(
                    clf, norm=norm, eps=e, max_iter=1 if key == "fgsm_margin" else steps, output=output, batch_size=bs
                ).generate(x, y)
            elif key == "transfer":
                x_adv = ProjectedGradientDescent(
                    self.surrogate,
                    norm=norm,
                    eps=e,
                    eps_step=2.5 * e / steps,
                    max_iter=steps,
                    batch_size=bs,
                    verbose=False,
                ).generate(x, onehot)
            elif key == "square":
                np.random.seed(int(rng.integers(2**31)))  # ART's SquareAttack draws from numpy's global generator
                x_adv = SquareAttack(
                    clf, norm=norm, eps=e, max_iter=self.square_max_iter, nb_restarts=1, batch_size=bs, verbose=False
                ).generate(x, onehot)
            else:  # noise
                x_adv = noise_attack(clf, x, y, e, norm, self.noise_samples, rng, bs)
            results.append(np.asarray(x_adv, dtype=np.float32))
        return results

    _run_attack = run_attack

    def attack_success(
        self, x: np.ndarray, y: np.ndarray, output: str | None = None
    ) -> tuple[dict[str, list[float]], dict[str, list[float]], np.ndarray]:
        """
        Run the battery on the inputs the classifier gets right.

        :return: ``(success, max_perturbation, correct)``: success rate and largest perturbation norm per attack and
                 eps, and the mask of correctly classified inputs.
        """
        output = output or output_kind_of(self.classifier, x, self.output)
        correct = predict_in_batches(self.classifier, x, self.batch_size).argmax(1) == y
        xc, yc = x[correct], y[correct]
        success: dict[str, list[float]] = {}
        max_pert: dict[str, list[float]] = {}
        self.seconds_: dict[str, float] = {}
        self.cw_unbounded_: dict[str, float] = {}
        self.fooled_: dict[str, list[np.ndarray]] = {}
        self.interrupted = False
        if not len(xc):
            raise ValueError("The classifier misclassifies every input given; nothing to attack.")
        for key in tqdm(self.attacks, desc="attack battery", disable=not self.verbose):
            start = time.perf_counter()
            try:
                advs = self.run_attack(key, xc, yc, output)
            except KeyboardInterrupt:
                if not self.catch_interrupt:
                    raise
                self.interrupted = True
                message = f"Attack battery interrupted at {key}; reporting the attacks done so far."
                logger.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                break
            fooled = [predict_in_batches(self.classifier, a, self.batch_size).argmax(1) != yc for a in advs]
            self.fooled_[key] = fooled
            success[key] = [float(np.mean(f)) for f in fooled]
            max_pert[key] = [float(perturbation_norms(a - xc, self.norm).max()) for a in advs]
            self.seconds_[key] = time.perf_counter() - start
        return success, max_pert, correct

    # ------------------------------------------------------------------ main entry
    def analyse(
        self, x: np.ndarray, y: np.ndarray, x_train: np.ndarray | None = None, y_train: np.ndarray | None = None
    ) -> GradientMaskingReport:
        """
        Run the analysis.

        :param x: Inputs ``(nb_samples, ...)`` (a subset of `max_samples` is used).
        :param y: Labels, indices ``(nb_samples,)`` or one-hot ``(nb_samples, nb_classes)``.
        :param x_train: Training inputs for the surrogate when none was given (default: `x` itself).
        :param y_train: Their labels.
        :return: The :class:`GradientMaskingReport`.
        """
        x, y = self.select_samples(x, y)
        output = output_kind_of(self.classifier, x, self.output)
        if "transfer" in self.attacks and self.surrogate is None:
            if x_train is None:
                x_train, y_train = x, y
            elif y_train is None:
                raise ValueError("`y_train` is needed with `x_train`.")
            x_train = check_finite(x_train, "x_train")
            check_sample_shape(x_train, self.classifier.input_shape, "x_train")
            check_clip_values(x_train, self.classifier.clip_values, "x_train")
            self.fit_surrogate(x_train, y_train)
        stats = self.gradient_statistics(x, y, output)
        success, max_pert, correct = self.attack_success(x, y, output)
        signs = self.warning_signs(self.fooled_, stats)
        reasons = [f"{s['title']}: {s['evidence']}" for s in signs if s["triggered"]]
        return GradientMaskingReport(
            eps=list(self.eps),
            norm=self.norm,
            output=output,
            nb_samples=len(x),
            nb_correct=int(correct.sum()),
            clean_accuracy=float(np.mean(correct)),
            success=success,
            max_perturbation=max_pert,
            signs=signs,
            masking_suspected=bool(reasons),
            reasons=reasons,
            seconds=dict(self.seconds_),
            cw_unbounded=dict(getattr(self, "cw_unbounded_", {})),
            interrupted=self.interrupted,
            **stats,
        )

    def analyze(self, *args, **kwargs) -> GradientMaskingReport:
        """Deprecated spelling of :meth:`analyse` (emits a ``DeprecationWarning``)."""
        warnings.warn("`analyze` is deprecated; call `analyse`.", DeprecationWarning, stacklevel=2)
        return self.analyse(*args, **kwargs)

    # ------------------------------------------------------------------ verdicts
    def warning_signs(self, fooled: dict[str, list[np.ndarray]], stats: dict) -> list[dict]:
        """
        The warning signs at this analysis's :attr:`eps`, :attr:`tolerance` and :attr:`zero_gradient_threshold`: see
        :func:`art_ext.evaluations.gradient_masking.signs.warning_signs`.

        :param fooled: Attack key -> one boolean array per eps (which inputs the attack fooled).
        :param stats: Output of :meth:`gradient_statistics`.
        """
        return warning_signs(fooled, stats, self.eps, self.tolerance, self.zero_gradient_threshold)
