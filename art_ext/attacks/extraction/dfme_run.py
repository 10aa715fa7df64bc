"""One call of :meth:`DataFreeModelExtraction.extract`: the DFME loop, written once over ``art_ext.backend``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from art_ext.attacks.extraction import dfme_checkpoint, dfme_distributed
from art_ext.attacks.extraction.dfme_errors import StudentDivergedError
from art_ext.attacks.extraction.generator_inputs import InputMap
from art_ext.attacks.extraction.victim_oracle import VictimOracle
from art_ext.backend import get_backend

logger = logging.getLogger(__name__)

__all__ = ["DFMERun", "StudentDivergedError", "student_stuck"]


def student_stuck(history: list[dict[str, Any]], rounds: int = 20) -> bool:
    """
    Whether the student gave every generated input of the last `rounds` rounds one class while the victim's answers
    spread over several: a constant-output plateau (typical of a deep PyTorch net without normalisation at PyTorch's
    default initialisation), which the l1 loss may never leave.
    """
    tail = [r for r in history if "student_top_share" in r][-rounds:]
    return len(tail) == rounds and all(r["student_top_share"] >= 0.99 and r["top2_class_share"] <= 0.9 for r in tail)


class DFMERun:
    """
    The state of one extraction: student, generator, their optimizers, the victim oracle, history and best student.
    It reads the attack's parameters and never writes into the attack.

    :param attack: The :class:`DataFreeModelExtraction` whose parameters are used.
    :param student: The thieved classifier.
    :param framework: Its framework.
    :param queries_before: Queries the attack already spent (the budget holds across calls).
    :param x: Optional surrogate inputs (hybrid mode).
    :param x_val: Optional validation inputs.
    :param y_val: Their labels (indices).
    :param generator: The generator estimator (default: the attack's).
    :param generator_note: What generator was chosen and why (``generator="auto"``), written into the first record
                           of the history.
    """

    def __init__(
        self,
        attack,
        student,
        framework,
        queries_before,
        x=None,
        x_val=None,
        y_val=None,
        generator=None,
        generator_note=None,
    ) -> None:
        self.p = attack
        self.student = student
        self.ops = ops = get_backend(framework)
        self.generator = attack.generator if generator is None else generator
        self.generator_note = generator_note
        self.gen_model = ops.model_of(self.generator)
        self.x, self.x_val, self.y_val = x, x_val, y_val
        rs = attack.random_state
        self.rng = rs if isinstance(rs, np.random.Generator) else np.random.default_rng(rs)
        self.nb_classes = student.nb_classes
        self.rounds = 0
        self.history: list[dict[str, Any]] = []
        self.best_acc = -1.0
        self.best_weights = None
        self.last_good = None
        self.interrupted = False
        self.sample_shape = self._generated_shape()
        if self.sample_shape != tuple(student.input_shape):
            raise ValueError(
                f"The generator outputs samples of shape {self.sample_shape}, the thieved classifier expects "
                f"{tuple(student.input_shape)}."
            )
        if x_val is not None and tuple(x_val.shape[1:]) != self.sample_shape:
            raise ValueError(f"`x_val` must have shape (nb_samples, *{self.sample_shape}), got {x_val.shape}.")
        self.dim = int(np.prod(self.sample_shape))
        self.distributed = dfme_distributed.attach(self)  # None on one process; refuses what it cannot split
        victim, budget, self.ledger = attack.estimator, attack.max_queries, None
        if attack.ledger_dir is not None and dfme_distributed.is_main():  # rank 0 alone queries
            from art_ext.estimators.classification.ledger import LedgerClassifier

            victim = self.ledger = LedgerClassifier(
                victim, attack.ledger_dir, attack.max_queries, resume=attack.resume, batch_size=attack.batch_size
            )
            budget = attack.max_queries - self.ledger.queries_unanswered  # lost with a crash: spent all the same
        self.oracle = VictimOracle(
            victim,
            ops,
            self.sample_shape,
            getattr(self.generator, "channels_first", None),
            self.nb_classes,
            budget,
            queries_before,
            attack.batch_size,
            attack.victim_output,
            attack.detected_output if queries_before else None,
            attack.probability_floor,
            attack.logit_correction,
        )
        self.input_map = InputMap(ops, attack.estimator, self.generator, student, self.sample_shape)
        self.student_log = self._student_outputs_probabilities()
        self.opt_student = ops.make_optimizer(
            ops.trainable_weights(student),
            "sgd",
            learning_rate=attack.student_learning_rate,
            momentum=attack.student_momentum,
            weight_decay=attack.student_weight_decay,
        )
        self.opt_generator = ops.make_optimizer(
            ops.trainable_weights(self.gen_model), "adam", learning_rate=attack.generator_learning_rate
        )
        self.eval_every = attack.eval_every or max(1, attack.max_queries // attack.queries_per_round // 25)
        self.surrogate = None  # (x, victim logits) of hybrid mode, kept in play in every student step
        self.anchor_labels = None  # hybrid mode: the victim's classes for x (selects the student without x_val)

    # ------------------------------------------------------------------ set-up
    def _generated_shape(self) -> tuple[int, ...]:
        ops = self.ops
        z = ops.random_normal((2, self.generator.encoding_length), np.random.default_rng(0))
        with ops.frozen_batchnorm_stats(self.gen_model):
            out = ops.call_model(self.gen_model, z, training=True)
        return tuple(int(d) for d in ops.shape(out)[1:])

    def to_input(self, out):
        """Generator output to victim input (see :class:`~art_ext.attacks.extraction.generator_inputs.InputMap`)."""
        return self.input_map(out)

    def _student_outputs_probabilities(self) -> bool:
        ops = self.ops
        x = self.to_input(ops.random_normal((8,) + self.sample_shape, np.random.default_rng(1)))
        out = ops.to_numpy(ops.forward(self.student, x, training=False))
        probabilities = out.min() >= 0.0 and out.max() <= 1.0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
        if probabilities:
            logger.info("DFME: the thieved classifier outputs probabilities; training its log-probabilities.")
        return bool(probabilities)

    def student_logits(self, x, training: bool):
        """
        The student's logits. A student ending in a softmax gives log-probabilities (floored as the victim's
        probabilities are), which are logits only up to a per-row constant and can never reach a zero-mean target:
        they are centred (mean over classes 0), and
        :meth:`_target` centres the victim's logits for such students too, so the l1 loss compares like with like.
        """
        ops = self.ops
        out = ops.forward(self.student, x, training=training)
        if not self.student_log:
            return out
        log_p = ops.log(ops.maximum(out, self.oracle.probability_floor))  # the floor the victim's answers get
        return log_p - ops.mean(log_p, axis=1, keepdims=True)

    def _target(self, v_logits):
        """The victim's logits as the l1 loss compares them (centred for a softmax student, see above)."""
        return v_logits - self.ops.mean(v_logits, axis=1, keepdims=True) if self.student_log else v_logits

    # ------------------------------------------------------------------ losses
    def disagreement(self, s_logits, v_logits):
        ops = self.ops
        if self.p.loss == "l1":
            return ops.mean(ops.abs(s_logits - self._target(v_logits)))
        return ops.kl_divergence_logits(v_logits, s_logits)

    def per_sample_disagreement(self, s_logits, v_logits):
        ops = self.ops
        if self.p.loss == "l1":
            return ops.mean(ops.abs(s_logits - self._target(v_logits)), axis=1)
        return ops.kl_divergence_logits(v_logits, s_logits, reduce=False)

    def batch_class_entropy(self, s_logits):
        ops = self.ops
        p_mean = ops.mean(ops.softmax(s_logits, axis=1), axis=0)
        return -ops.sum(p_mean * ops.log(p_mean + 1e-12))

    def noise(self):
        return self.ops.random_normal((self.p.batch_size, self.generator.encoding_length), self.rng)

    # ------------------------------------------------------------------ steps
    def generator_step(self):
        """
        One generator update ascending student-victim disagreement plus class diversity. The disagreement's input
        gradient is estimated by forward differences of the whole per-sample disagreement (student and victim both
        evaluated at ``x + eps u``, as in the paper), whose variance shrinks as the student approaches the victim;
        the diversity term depends on the student only and is differentiated exactly.
        """
        ops, p = self.ops, self.p
        b, m = p.batch_size, p.n_directions
        out, pullback = ops.forward_with_pullback(self.gen_model, self.noise(), training=True)
        u = self.rng.standard_normal((b, m, self.dim)).astype(np.float32)
        u /= np.linalg.norm(u, axis=2, keepdims=True) + 1e-12
        u_t = ops.asarray(u.reshape((b, m) + self.sample_shape))
        x_pert = self.to_input(
            ops.reshape(ops.reshape(out, (b, 1) + self.sample_shape) + p.fd_epsilon * u_t, (b * m,) + self.sample_shape)
        )
        x0 = self.to_input(out)
        v_all = self.query(ops.concat([x0, x_pert], axis=0))
        s_all = ops.stop_gradient(self.student_logits(ops.concat([x0, x_pert], axis=0), training=False))
        per_sample = self.per_sample_disagreement(s_all, v_all)
        self.student_classes = np.argmax(ops.to_numpy(s_all[:b]), axis=1)  # for the plateau check of _loop
        d0, d_pert = per_sample[:b], ops.reshape(per_sample[b:], (b, m))
        slopes = (d_pert - ops.reshape(d0, (b, 1))) * (self.dim / (p.fd_epsilon * b))
        grad = ops.mean(ops.reshape(slopes, (b, m) + (1,) * len(self.sample_shape)) * u_t, axis=1)
        diversity = None
        if p.diversity_weight > 0:

            def objective(out_t):
                value = self.batch_class_entropy(self.student_logits(self.to_input(out_t), training=False))
                return value, value

            (_, diversity), (grad_diversity,) = ops.value_and_grad(objective, [out], has_aux=True)
            grad = grad + p.diversity_weight * grad_diversity
        # Ascend the objective: one update along the estimated output gradient, back-propagated through G.
        pullback(self.opt_generator, -ops.stop_gradient(grad))
        return ops.mean(d0), diversity

    def student_step(self, x=None, v=None):
        ops = self.ops
        if x is None:
            x = self.to_input(ops.stop_gradient(ops.call_model(self.gen_model, self.noise(), training=True)))
            v = self.query(x)
        if self.surrogate is None:
            loss = lambda: self.disagreement(self.student_logits(x, training=True), v)  # noqa: E731
        else:
            # Hybrid mode: the surrogate data stays in every step, so data-free rounds refine the warm start.
            idx = self.rng.integers(0, len(self.surrogate[0]), size=self.p.batch_size)
            xs, vs = ops.asarray(self.surrogate[0][idx]), ops.asarray(self.surrogate[1][idx])
            x, v = ops.concat([x, xs], axis=0), ops.concat([v, vs], axis=0)
            loss = lambda: self.disagreement(self.student_logits(x, training=True), v)  # noqa: E731
        if self.distributed is not None:  # data-parallel over the ranks (dfme_distributed)
            return self.distributed.train_student_on(x, v)
        return self._train_student(loss)

    def _train_student(self, loss_fn):
        ops = self.ops
        weights = ops.trainable_weights(self.student)
        value, grads = ops.value_and_grad(lambda *_: loss_fn(), weights)
        ops.apply_gradients(self.opt_student, grads, weights)
        return value

    def query(self, x):
        x_np = self.ops.to_numpy(x)
        if not np.all(np.isfinite(x_np)):
            raise StudentDivergedError(
                f"The generated inputs hold NaN or infinite values after {self.oracle.queries_used} queries: the "
                f"thieved classifier ({type(self.student).__name__}) or the generator diverged. Lower "
                "`student_learning_rate` / `student_momentum` or `generator_learning_rate`; nothing more was sent "
                "to the victim."
            )
        return self.ops.asarray(self.oracle.query_numpy(x_np))

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, record: dict) -> None:
        if not self.history and self.generator_note:
            record["generator"] = self.generator_note
        self.history.append(record)

    def _learning_rate_factor(self) -> float:
        used = self.oracle.queries_used / self.p.max_queries
        return self.p.lr_decay ** sum(used >= m for m in (self.p.lr_milestones or ()))

    def val_accuracy(self) -> float:
        pred = self.student.predict(self.x_val, batch_size=512)
        return float(np.mean(np.argmax(pred, axis=1) == self.y_val))

    def agreement(self) -> float:
        """Hybrid mode: the share of the warm-start inputs on which the student predicts the victim's class."""
        pred = self.student.predict(self.x, batch_size=512)
        return float(np.mean(np.argmax(pred, axis=1) == self.anchor_labels))

    def _score(self) -> tuple[str, float] | None:
        """
        What selects the student to return: validation accuracy when ``x_val`` is given; in hybrid mode without it,
        the agreement with the victim on the warm-start inputs (answers already paid for: no query); else nothing.
        """
        if self.x_val is not None:
            return "val_accuracy", self.val_accuracy()
        if self.anchor_labels is not None:
            return "agreement", self.agreement()
        return None

    def _evaluate(self, record: dict) -> None:
        score = self._score()
        if score is None:
            self.last_good = self.ops.get_weights(self.student)
            return
        key, value = score
        record[key] = value
        # validation: the first best is kept; agreement on the training inputs: the latest of equal ones (the most
        # refined by the data-free rounds)
        if value > self.best_acc or (key == "agreement" and value == self.best_acc):
            self.best_acc = value
            self.best_weights = self.ops.get_weights(self.student)

    def save_checkpoint(self) -> None:
        dfme_checkpoint.save_run(self)

    def load_checkpoint(self) -> bool:
        return dfme_checkpoint.restore_run(self)

    # ------------------------------------------------------------------ main loop
    def run(self):
        ops, p = self.ops, self.p
        if p.checkpoint_dir:
            dfme_checkpoint.check_writable(p.checkpoint_dir)
        resumed = p.resume and bool(p.checkpoint_dir) and self.load_checkpoint()
        self.last_good = ops.get_weights(self.student)
        pbar = tqdm(
            total=p.max_queries,
            initial=self.oracle.queries_used,
            unit="query",
            unit_scale=True,
            desc="DFME",
            disable=not p.verbose,
        )
        self.oracle.on_queries = pbar.update
        self.pbar = pbar
        failed = False
        try:
            with ops.training_mode(self.gen_model, True):
                if self.x is not None and not resumed:
                    self._warm_start()
                self._loop()
        except KeyboardInterrupt:
            self.interrupted = True
            logger.warning(
                "DFME interrupted after %d queries; returning the student trained so far.", self.oracle.queries_used
            )
        except BaseException:
            failed = True
            raise
        finally:
            pbar.close()
            self._finish(failed)
            if self.ledger is not None:
                self.ledger.close()
        return self.student

    def _finish(self, failed: bool) -> None:
        """Checkpoint what was reached (also on Ctrl-C or an error) and put back the best (finite) student."""
        ops = self.ops
        diverged = not all(np.all(np.isfinite(w)) for w in ops.get_weights(self.student) if w.dtype.kind == "f")
        if diverged:
            keep = self.best_weights if self.best_weights is not None else self.last_good
            if keep is not None:
                ops.set_weights(self.student, keep)
        if self.p.checkpoint_dir and (self.p.checkpoint_every or self.interrupted or failed) and not diverged:
            self.save_checkpoint()
        if self.p.restore_best and self.best_weights is not None and not diverged:
            score = self._score()
            if score is not None and self.best_acc > score[1]:
                ops.set_weights(self.student, self.best_weights)
                logger.info(
                    "DFME: returning the student of %s %.4f (the last one has %.4f).", score[0], self.best_acc, score[1]
                )

    def _warm_start(self) -> None:
        p = self.p
        bs = max(p.batch_size, 1)
        answers = np.concatenate([self.oracle.query_numpy(self.x[i : i + bs]) for i in range(0, len(self.x), bs)])
        self.anchor_labels = np.argmax(answers, axis=1)
        if self.x_val is None:  # the student as given is a candidate too: the warm start may only improve on it
            self._evaluate({})
        losses = []
        for _ in range(p.warm_start_epochs):
            order = self.rng.permutation(len(self.x))
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                losses.append(self._train_student_on(self.x[idx], answers[idx]))
        self._check_finite(losses, "warm start")
        record = {"round": 0, "queries": self.oracle.queries_used, "warm_start": True}
        if losses:
            tail = losses[-max(1, len(losses) // max(p.warm_start_epochs, 1)) :]
            record["loss_student"] = float(np.mean([float(self.ops.to_numpy(v)) for v in tail]))
        self._evaluate(record)
        self._record(record)
        self.surrogate = (self.x, answers)

    def _train_student_on(self, x, v):
        ops = self.ops
        if self.distributed is not None:
            return self.distributed.train_student_on(x, v)
        xt, vt = ops.asarray(x), ops.asarray(v)
        return self._train_student(lambda: self.disagreement(self.student_logits(xt, training=True), vt))

    def _check_finite(self, values, what: str) -> list[float]:
        numbers = [float(self.ops.to_numpy(v)) for v in values]
        if not np.all(np.isfinite(numbers)):
            raise StudentDivergedError(
                f"The thieved classifier ({type(self.student).__name__}) diverged during the {what} (non-finite "
                f"loss after {self.oracle.queries_used} queries): lower `student_learning_rate` or "
                "`student_momentum`. The best student seen so far is kept; nothing more was sent to the victim."
            )
        return numbers

    def _loop(self) -> None:
        ops, p, oracle = self.ops, self.p, self.oracle
        gen_cost = p.batch_size * (p.n_directions + 1)
        while True:
            factor = self._learning_rate_factor()
            ops.set_learning_rate(self.opt_student, p.student_learning_rate * factor)
            ops.set_learning_rate(self.opt_generator, p.generator_learning_rate * factor)
            oracle.class_counts[:] = 0
            g_losses, diversities, s_losses = [], [], []
            for _ in range(p.n_generator_steps):
                if not oracle.fits(gen_cost):
                    break
                disagreement, diversity = self.generator_step()
                g_losses.append(disagreement)
                if diversity is not None:
                    diversities.append(diversity)
            for _ in range(p.n_student_steps):
                if not oracle.fits(p.batch_size):
                    break
                s_losses.append(self.student_step())
            if not g_losses and not s_losses:
                break
            s_losses = self._check_finite(s_losses, "data-free rounds")
            g_losses = self._check_finite(g_losses, "data-free rounds")
            self.rounds += 1
            shares = oracle.class_counts / max(1, oracle.class_counts.sum())
            record = {
                "round": self.rounds,
                "queries": oracle.queries_used,
                "loss_generator": float(np.mean(g_losses)) if g_losses else None,
                "diversity": float(np.mean([float(ops.to_numpy(d)) for d in diversities])) if diversities else None,
                "loss_student": float(np.mean(s_losses)) if s_losses else None,
                "top2_class_share": float(np.sort(shares)[-2:].sum()),
                "learning_rate_factor": factor,
            }
            if g_losses:
                record["student_top_share"] = float(np.bincount(self.student_classes).max() / len(self.student_classes))
                record["student_stuck"] = student_stuck(self.history + [record])
                if record["student_stuck"] and not any(r.get("student_stuck") for r in self.history):
                    logger.warning(
                        "DFME: after %d queries the thieved classifier still gives every generated input one class "
                        "while the victim answers with several. Initialise its weights Glorot-uniform and its biases "
                        "to zero (torch.nn.init.xavier_uniform_, zeros_) or add batch normalisation.",
                        oracle.queries_used,
                    )
            last = not oracle.fits(p.batch_size)
            if self.rounds % self.eval_every == 0 or last:
                self._evaluate(record)
            self._record(record)
            postfix = {"loss_S": f"{record['loss_student'] or 0:.3f}", "top2": f"{record['top2_class_share']:.2f}"}
            if "val_accuracy" in record:
                postfix["val_acc"] = f"{record['val_accuracy']:.3f}"
            self.pbar.set_postfix(postfix, refresh=False)
            if p.checkpoint_every and self.rounds % p.checkpoint_every == 0:
                self.save_checkpoint()
            if last:
                break
