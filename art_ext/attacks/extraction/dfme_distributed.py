"""
DFME's student trained data-parallel on several processes (``torchrun --nproc_per_node N``), the victim queried by
one of them.

Every rank calls :meth:`~art_ext.attacks.extraction.DataFreeModelExtraction.extract` with the same arguments
(checked before any query). Rank 0 runs the attack as on one process: it owns the generator, the random draws,
**all** the victim queries (the budget stays exact and global: the victim answers what one process would have been
allowed, never ``N`` times it), the progress bar, the logs, the checkpoints and the query ledger. The other ranks (the
followers) only take part in the student steps:

- for every student step rank 0 broadcasts a header (step or stop, batch size, the student's learning rate) and the
  global batch (generated or surrogate inputs with the victim's logits); every rank computes the student's loss on
  its contiguous shard of it, weighted by the shard's share of the batch, and the gradients are averaged over the
  ranks, by ``DistributedDataParallel``'s ``loss.backward()`` when the student's module is wrapped in it, else by one
  all-reduce of the flattened gradients. The step is the one-process step on the global batch, up to
  floating-point noise (the student loss is a mean over samples);
- before the first step rank 0's student weights are broadcast (it may have restored a checkpoint);
- when rank 0's run ends (budget spent, Ctrl-C, an error) it broadcasts *stop*, then its final student (the best one
  when ``restore_best``) and the run's record (queries used, history, detected output), so that the student and the
  attack's ``queries_used`` / ``history`` are the same on every rank. A failure on rank 0 is raised on every rank.

Outside the student steps rank 0 runs the student's module *inside* the ``DistributedDataParallel`` wrapper (the
generator step, validation), so nothing there waits for the other ranks: for the length of the run the ART
classifier holds the inner module, and the wrapper only during the student steps.

On one process (``torch.distributed`` not initialised, or one rank) nothing here is used. TensorFlow's
``tf.distribute`` is not supported yet: a TensorFlow student inside a strategy scope is refused before any query.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Iterator

import numpy as np

from art_ext.attacks.extraction.dfme_errors import StudentDivergedError
from art_ext.backend.distributed import (
    DistributedContext,
    all_reduce,
    average_gradients,
    broadcast,
    get_context,
    unwrap_model,
)

logger = logging.getLogger(__name__)

__all__ = ["DistributedStudent", "attach", "is_main"]

_STOP, _STEP = 0.0, 1.0
_STATUS = ("ok", "diverged", "failed")


def is_main() -> bool:
    """Whether this process is rank 0 (or the only one): the process that queries the victim and writes files."""
    return get_context().is_main


def attach(run: Any) -> DistributedStudent | None:
    """
    The data-parallel driver of a DFME run when this process is one of several, else ``None`` (one process: the run
    is unaffected). Called when the run is built, before anything is queried.

    :param run: The :class:`~art_ext.attacks.extraction.dfme_run.DFMERun`.
    :raises ValueError: For a run DFME cannot split: a TensorFlow student inside a ``tf.distribute`` strategy scope,
                        ``torch.distributed`` with a TensorFlow student, a PyTorch student whose
                        ``DistributedDataParallel`` wrapper is not the model of its ART classifier.
    """
    context = get_context()
    if context.framework == "tensorflow" and run.ops.name == "tensorflow":
        raise ValueError(
            "DFME does not run inside a tf.distribute strategy scope yet: create the TensorFlow student and "
            "generator and call `extract` outside the scope, on one process."
        )
    if not context.is_distributed:
        return None
    if context.framework != "pytorch" or run.ops.name != "pytorch":
        raise ValueError(
            f"DFME's student trains data-parallel under torch.distributed only; this is a {context.framework} run of "
            f"{context.world_size} processes with a {run.ops.name} student. Call `extract` on one process (every "
            "process would query the victim)."
        )
    return DistributedStudent(run, context)


class DistributedStudent:
    """
    Runs one DFME extraction on every rank of a ``torch.distributed`` run: rank 0 drives it (see the module
    documentation), the other ranks follow its student steps.

    :param run: The :class:`~art_ext.attacks.extraction.dfme_run.DFMERun` of this rank.
    :param context: This process's place in the run.
    """

    def __init__(self, run: Any, context: DistributedContext) -> None:
        self.run_state, self.context, self.ops = run, context, run.ops
        model = self.ops.model_of(run.student)
        self.inner = unwrap_model(model)
        self.ddp = model if self.inner is not model else None
        self.holder = getattr(run.student, "_model", None)  # ART's wrapper module around the user's model
        if self.ddp is not None and getattr(self.holder, "_model", None) is not self.ddp:
            raise ValueError(
                "`thieved_classifier` holds a DistributedDataParallel model that is not its own module: wrap the "
                "student's module in DistributedDataParallel and give the wrapper to PyTorchClassifier."
            )
        self.sample_shape = tuple(run.sample_shape)
        self.width = int(np.prod(self.sample_shape)) + run.nb_classes
        self.synced = False
        self.steps = 0

    # ------------------------------------------------------------------ entry point
    def run(self) -> Any:
        """Run the extraction on this rank; return the (identical on every rank) student."""
        self._check_same_arguments()
        with self._module(self.inner):
            if self.context.is_main:
                return self._drive()
            return self._follow()

    def _drive(self) -> Any:
        status, message = "ok", ""
        try:
            return self.run_state.run()
        except StudentDivergedError as err:
            status, message = "diverged", str(err)
            raise
        except BaseException as err:
            status, message = "failed", f"{type(err).__name__}: {err}"
            raise
        finally:
            try:
                broadcast(np.array([_STOP, 0.0, 0.0, float(_STATUS.index(status))]), context=self.context)
                self._share_final_state(status, message)
            except Exception as err:  # e.g. Ctrl-C under torchrun stopped the other ranks too
                if status == "ok" and not self.run_state.interrupted:
                    raise
                logger.warning("DFME: the other ranks could not be given rank 0's final student (%s).", err)

    def _follow(self) -> Any:
        while True:
            header = broadcast(np.zeros(4, np.float64), context=self.context)
            if header[0] == _STOP:
                break
            n = int(header[1])
            batch = broadcast(np.zeros((n, self.width), np.float32), context=self.context)
            x = batch[:, : self.width - self.run_state.nb_classes].reshape((n,) + self.sample_shape)
            self._step(x, batch[:, self.width - self.run_state.nb_classes :], float(header[2]))
        state = self._share_final_state()
        if state["status"] != "ok":
            error = StudentDivergedError if state["status"] == "diverged" else RuntimeError
            raise error(f"DFME stopped on rank 0: {state['message']}")
        return self.run_state.student

    # ------------------------------------------------------------------ student steps
    def train_student_on(self, x: Any, v: Any) -> Any:
        """
        Rank 0: one data-parallel student step on the global batch ``(x, v)`` (inputs, victim logits), shared with
        the other ranks first; the global loss (mean over the batch) is returned as a backend scalar.
        """
        ops = self.ops
        x_np = np.asarray(ops.to_numpy(x), dtype=np.float32)
        v_np = np.asarray(ops.to_numpy(v), dtype=np.float32)
        n = len(x_np)
        learning_rate = float(self.run_state.opt_student.param_groups[0]["lr"])
        broadcast(np.array([_STEP, float(n), learning_rate, 0.0]), context=self.context)
        broadcast(np.concatenate([x_np.reshape(n, -1), v_np], axis=1), context=self.context)
        return self._step(x_np, v_np, learning_rate)

    def _step(self, x: np.ndarray, v: np.ndarray, learning_rate: float) -> Any:
        import torch

        ops, run, context = self.ops, self.run_state, self.context
        if not self.synced:  # rank 0's student (it may have restored a checkpoint) on every rank
            self._broadcast_weights()
            self.synced = True
        ops.set_learning_rate(run.opt_student, learning_rate)
        n, world = len(x), context.world_size
        lo, hi = (n * context.rank) // world, (n * (context.rank + 1)) // world
        # The share of the batch weights the shard's mean loss, times the ranks (the gradients are averaged).
        scale = (hi - lo) * world / n
        if hi == lo:  # fewer samples than ranks: a zero-weighted sample keeps this rank in the all-reduce
            lo, hi, scale = 0, 1, 0.0
        xs, vs = ops.asarray(x[lo:hi]), ops.asarray(v[lo:hi])

        def loss_fn():
            return run.disagreement(run.student_logits(xs, training=True), vs) * scale

        optimizer = run.opt_student
        if self.ddp is not None:
            with self._module(self.ddp):
                optimizer.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    loss = loss_fn()
                loss.backward()  # DDP averages the gradients over the ranks
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            value = loss.detach()
        else:
            weights = ops.trainable_weights(run.student)
            value, grads = ops.value_and_grad(lambda *_: loss_fn(), weights)
            ops.apply_gradients(optimizer, average_gradients(grads), weights)
        self.steps += 1
        total = all_reduce(np.array([float(ops.to_numpy(value))], np.float64), "sum", context)[0] / world
        return ops.asarray(np.float32(total))

    # ------------------------------------------------------------------ shared state
    def _check_same_arguments(self) -> None:
        """Refuse, on every rank and before any query, ranks given different batches, budgets or students."""
        p, ops = self.run_state.p, self.ops
        sizes = [int(np.prod(w.shape)) for w in ops.get_weights(self.run_state.student)]
        mine = np.array([self.width, p.batch_size, p.max_queries, len(sizes), sum(sizes)], np.int64)
        if np.array_equal(all_reduce(mine, "max", self.context), all_reduce(mine, "min", self.context)):
            return
        raise ValueError(
            "The ranks were given different DFME arguments (sample shape, classes, `batch_size`, `max_queries` or "
            "student): call `extract` with the same attack and student on every rank."
        )

    @contextlib.contextmanager
    def _module(self, module: Any) -> Iterator[None]:
        """The ART classifier holds `module` (the DDP wrapper or the module inside it) for the block."""
        if self.ddp is None:
            yield
            return
        previous = self.holder._model
        self.holder._model = module
        try:
            yield
        finally:
            self.holder._model = previous

    def _broadcast_weights(self) -> None:
        ops, student = self.ops, self.run_state.student
        weights = [broadcast(w, context=self.context) for w in ops.get_weights(student)]
        if not self.context.is_main:
            ops.set_weights(student, weights)

    def _share_final_state(self, status: str = "ok", message: str = "") -> dict:
        """Rank 0's final student and run record on every rank; returns the record (with the status)."""
        run = self.run_state
        self._broadcast_weights()
        record = {
            "status": status,
            "message": message,
            "queries_used": run.oracle.queries_used,
            "detected_output": run.oracle.detected_output,
            "history": run.history,
            "rounds": run.rounds,
            "best_acc": run.best_acc,
            "interrupted": run.interrupted,
        }
        data = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8) if self.context.is_main else None
        size = broadcast(np.array([0 if data is None else len(data)], np.int64), context=self.context)[0]
        data = broadcast(data if data is not None else np.zeros(int(size), np.uint8), context=self.context)
        record = json.loads(bytes(data).decode("utf-8"))
        if not self.context.is_main:
            run.oracle.queries_used = int(record["queries_used"])
            run.oracle.detected_output = record["detected_output"]
            run.history, run.rounds = list(record["history"]), int(record["rounds"])
            run.best_acc, run.interrupted = float(record["best_acc"]), bool(record["interrupted"])
        return record
