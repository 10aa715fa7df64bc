"""
How art_ext's training loop runs on several processes (on one process: as before, the batch order drawn as on
several so that the result does not depend on their number).

- **PyTorch** (``torchrun --nproc_per_node N``, an initialised ``torch.distributed`` process group): the numpy data
  is sharded per rank with :class:`~art_ext.backend.distributed.NumpyDistributedSampler` (the same permutation on
  every rank, drawn from the trainer's generator and broadcast from rank 0), each rank stepping on
  ``batch_size // world_size`` samples so that the global batch is the one-process batch. Rank 0's weights are
  broadcast when training starts. With a model wrapped in
  ``DistributedDataParallel`` the step calls ``loss.backward()`` so that DDP all-reduces (averages) the gradients;
  a model that is not wrapped (e.g. a teacher created during ``fit``) has its gradients averaged over the ranks by
  the loop itself at every step.
- **TensorFlow** (inside a ``tf.distribute.Strategy`` scope): each step runs in ``strategy.run``, every replica's
  loss weighted by its share of the global batch, gradients summed over the replicas by the Keras optimizer; under
  ``MultiWorkerMirroredStrategy`` the workers shard the data as the PyTorch ranks do.
- Epoch losses are averaged over the ranks (the history is the same on every rank); progress bars show on rank 0.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import numpy as np

from art_ext.backend.distributed import (
    NumpyDistributedSampler,
    all_reduce,
    average_gradients,
    broadcast,
    get_context,
    rank_rng,
    unwrap_model,
)

logger = logging.getLogger(__name__)

__all__ = ["aux_forward", "epoch_indices", "is_ddp", "make_step", "mean_over_ranks", "shared_seed", "split_rng"]


def shared_seed(rng: np.random.Generator) -> int:
    """A seed drawn from `rng` on rank 0 and broadcast, so that every rank gets the same (one process: the draw)."""
    seed = np.asarray([rng.integers(0, 2**62)], dtype=np.int64)
    return int(broadcast(seed, src=0)[0]) if get_context().is_distributed else int(seed[0])


def split_rng(rng: np.random.Generator) -> tuple[np.random.Generator, np.random.Generator]:
    """
    ``(data_rng, noise_rng)`` drawn from `rng`: a generator identical on every rank (batch order) and one seeded per
    rank (e.g. VAT's random directions). The batch order does not depend on the number of processes.
    """
    seed = shared_seed(rng)
    return np.random.default_rng(seed), rank_rng(seed + 1)


def per_rank_batch_size(batch_size: int, world_size: int) -> int:
    """``batch_size // world_size`` (at least 1), so that the global batch is the one-process batch."""
    if world_size > 1 and batch_size % world_size and get_context().is_main:
        logger.warning(
            "batch_size=%d is not a multiple of the %d processes: each steps on %d samples.",
            batch_size,
            world_size,
            max(1, batch_size // world_size),
        )
    return max(1, batch_size // world_size)


def epoch_indices(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """
    The indices of this rank's batches for one epoch: this rank's shard of a permutation common to all ranks (its
    seed drawn from `rng` on rank 0), cut into batches of ``batch_size // world_size``; every rank runs the same
    number of steps. The union of the ranks' k-th batches is the k-th batch of the one-process run (up to the
    sampler's padding of the last one), so the result does not depend on the number of processes.
    """
    context = get_context()
    size = per_rank_batch_size(batch_size, context.world_size)
    order = NumpyDistributedSampler(n, context.world_size, context.rank, seed=shared_seed(rng)).indices()
    for start in range(0, len(order), size):
        yield order[start : start + size]


def rank_share(indices: np.ndarray) -> np.ndarray:
    """This rank's part of a global batch of indices (every ``world_size``-th, padded by wrapping so none is empty)."""
    context = get_context()
    if not context.is_distributed:
        return indices
    if len(indices) < context.world_size:
        indices = np.resize(indices, context.world_size)
    return indices[context.rank :: context.world_size]


def mean_over_ranks(value: float) -> float:
    """The mean of a float over the ranks (itself on one process)."""
    context = get_context()
    return float(all_reduce(np.array([value], np.float64), "mean", context)[0]) if context.is_distributed else value


def is_ddp(model: Any) -> bool:
    """Whether `model` is wrapped in ``DistributedDataParallel`` / ``DataParallel``."""
    return unwrap_model(model) is not model


def aux_forward(ops: Any, estimator: Any, x: Any, training: bool = False) -> Any:
    """
    Forward pass for an auxiliary computation (VAT's power iteration, input gradients): through the estimator's
    preprocessing and the module inside a DDP wrapper, so that it neither synchronises buffers nor prepares DDP's
    gradient reduction. Without a wrapper this is ``ops.forward``.
    """
    model = ops.model_of(estimator)
    inner = unwrap_model(model)
    if inner is model:
        return ops.forward(estimator, x, training=training)
    return ops.call_model(inner, ops.preprocess(estimator, x, fit=training), training=training)


def make_step(
    ops: Any, model: Any, optimizer: Any, loss_fn: Callable[..., Any], weights: list, compile: bool = False
) -> Callable[..., Any]:
    """
    The training step of :class:`~art_ext.defences.trainer._loop.TrainingLoop` for the current run: the backend's
    step on one process, else the data-parallel one described in the module documentation.
    """
    context = get_context()
    if ops.name == "pytorch" and context.framework == "pytorch" and context.is_distributed:
        return _torch_step(ops, model, optimizer, loss_fn, weights)
    if ops.name == "tensorflow" and context.framework == "tensorflow":
        return _tf_step(ops, context, optimizer, loss_fn, weights, compile)
    return ops.make_train_step(optimizer, loss_fn, weights, compile=compile)


def _torch_step(ops: Any, model: Any, optimizer: Any, loss_fn: Callable[..., Any], weights: list):
    import torch
    import torch.distributed as dist

    with torch.no_grad():  # the same starting weights everywhere (DDP only broadcast them when it was built)
        for w in weights:
            dist.broadcast(w.data, src=0)
    if is_ddp(model):

        def ddp_step(*batch):
            optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = loss_fn(*batch)
            loss.backward()  # DDP averages the gradients over the ranks
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        return ddp_step

    logger.info("Model not wrapped in DistributedDataParallel: the loop averages its gradients over the ranks.")

    def synced_step(*batch):
        value, grads = ops.value_and_grad(lambda *_: loss_fn(*batch), weights)
        ops.apply_gradients(optimizer, average_gradients(grads), weights)
        return value

    return synced_step


def _tf_step(ops: Any, context: Any, optimizer: Any, loss_fn: Callable[..., Any], weights: list, compile: bool):
    import tensorflow as tf

    strategy = context.strategy
    local = max(1, context.replicas // context.world_size)

    def replica_step(weight, *batch):
        def weighted(*_):
            return loss_fn(*batch) * weight

        value, grads = ops.value_and_grad(weighted, weights)
        ops.apply_gradients(optimizer, grads, weights)  # the optimizer sums the gradients over the replicas
        return value

    def step(*batch):
        n = tf.shape(batch[0])[0]
        if local == 1:
            args = (tf.constant(1.0 / context.world_size),) + tuple(batch)
        else:
            bounds = [(n * i) // local for i in range(local + 1)]

            def part(ctx):
                i = ctx.replica_id_in_sync_group % local
                share = tf.cast(bounds[i + 1] - bounds[i], tf.float32) / tf.cast(n, tf.float32)
                return (share / context.world_size,) + tuple(b[bounds[i] : bounds[i + 1]] for b in batch)

            args = strategy.experimental_distribute_values_from_function(part)
            values = strategy.run(lambda a: replica_step(*a), args=(args,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)
        values = strategy.run(replica_step, args=args)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    if compile:
        inner = getattr(optimizer, "optimizer", optimizer)
        if hasattr(inner, "build") and not getattr(inner, "built", True):
            with strategy.scope():
                inner.build(list(weights))
        return tf.function(step)
    return step
