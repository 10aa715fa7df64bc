"""
Framework-neutral helpers for training on several processes: rank and world-size detection (``torch.distributed``
launched by ``torchrun``, ``tf.distribute`` strategies), a numpy-array sharder with the semantics of PyTorch's
``DistributedSampler``, collectives on numpy arrays (all-reduce, broadcast, barrier), per-rank random generators, and
rank-0-only logging, progress bars and side effects (checkpoints).

Nothing here starts processes for the user: launch with ``torchrun --nproc_per_node N`` (or inside a
``tf.distribute.Strategy`` scope) as usual. On a single process every helper is the identity, so algorithms call
them unconditionally. Framework modules are imported only when a distributed run is detected or asked for.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

__all__ = [
    "DistributedContext",
    "NumpyDistributedSampler",
    "RankZeroFilter",
    "all_reduce",
    "average_gradients",
    "barrier",
    "broadcast",
    "get_context",
    "init_torch_distributed",
    "progress",
    "rank_rng",
    "rank_zero_only",
    "unwrap_model",
]

_OPS = ("sum", "mean", "max", "min")


@dataclass(frozen=True)
class DistributedContext:
    """
    Where this process stands in a distributed run.

    ``framework`` is ``"pytorch"`` (an initialised ``torch.distributed`` process group), ``"tensorflow"`` (a
    ``tf.distribute`` strategy) or ``None`` (one process). ``rank`` / ``world_size`` count processes (workers), which
    own data shards and run the numpy collectives; ``replicas`` counts model replicas (``num_replicas_in_sync`` under
    ``tf.distribute``, where one process may drive several devices; equal to ``world_size`` under PyTorch).
    """

    framework: str | None = None
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    replicas: int = 1
    strategy: Any = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that logs, shows progress and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def get_context(strategy: Any = None) -> DistributedContext:
    """
    Detect the distributed run this process belongs to.

    :param strategy: A ``tf.distribute.Strategy`` to describe; by default the one whose scope is active, if any.
    :return: A :class:`DistributedContext` (rank 0 of 1 when nothing distributed is running).
    """
    if strategy is not None:
        return _tf_context(strategy)
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
            local = int(os.environ.get("LOCAL_RANK", rank))
            return DistributedContext("pytorch", rank, world, local, world)
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return _tf_context(tf.distribute.get_strategy())
    return DistributedContext()


def _tf_context(strategy: Any) -> DistributedContext:
    rank, world = 0, 1
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if spec:
        chiefs, workers = len(spec.get("chief", [])), len(spec.get("worker", []))
        world = max(1, chiefs + workers)
        rank = int(resolver.task_id or 0) + (chiefs if resolver.task_type == "worker" else 0)
    return DistributedContext("tensorflow", rank, world, rank, int(strategy.num_replicas_in_sync), strategy)


def init_torch_distributed(backend: str | None = None) -> DistributedContext:
    """
    Initialise ``torch.distributed`` from the environment ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``...), unless already initialised; on CUDA, select the device ``LOCAL_RANK``.

    :param backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is visible, else gloo.
    :return: The resulting :class:`DistributedContext` (one process when ``WORLD_SIZE`` is unset or 1).
    """
    import torch
    import torch.distributed as dist

    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return get_context()


def unwrap_model(model: Any) -> Any:
    """
    The module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper, else `model` itself. Run auxiliary
    forward passes whose backward must not trigger DDP's gradient all-reduce (VAT's power iteration, LMT's spectral
    norms, certification) on it; run the training loss through the wrapper.
    """
    if "torch" in sys.modules:
        import torch

        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            return model.module
    return model


# ---------------------------------------------------------------------------------------------------------- sharding
class NumpyDistributedSampler:
    """
    The indices of one process's shard of ``n`` samples, as PyTorch's ``DistributedSampler`` draws them: every epoch
    (set with :meth:`set_epoch`) a permutation seeded by ``seed + epoch`` (the same on every rank), padded by wrapping
    around to a multiple of ``num_replicas`` (or cut to one with ``drop_last``), then every ``num_replicas``-th index
    from ``rank``. Every shard has :meth:`__len__` indices, so all ranks run the same number of steps.

    :param n: Number of samples.
    :param num_replicas: Number of processes; default from :func:`get_context`.
    :param rank: This process's rank; default from :func:`get_context`.
    :param shuffle: Permute the samples every epoch.
    :param seed: Seed of the permutation, identical on every rank.
    :param drop_last: Drop the tail instead of padding.
    """

    def __init__(
        self,
        n: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        context = get_context() if num_replicas is None or rank is None else None
        self.n = int(n)
        self.num_replicas = num_replicas if num_replicas is not None else context.world_size
        self.rank = rank if rank is not None else context.rank
        if self.n < 0 or self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"Invalid shard: n={n}, num_replicas={self.num_replicas}, rank={self.rank}.")
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which reseeds the permutation (call it before every epoch, on every rank)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.num_replicas
        return -(-self.n // self.num_replicas)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, int64."""
        order = np.random.default_rng(self.seed + self.epoch).permutation(self.n) if self.shuffle else np.arange(self.n)
        total = len(self) * self.num_replicas
        if total > self.n:
            order = np.resize(order, total)  # wraps around, as DistributedSampler pads
        return order[:total][self.rank :: self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def shard(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Index each array (same first dimension ``n``) with :meth:`indices`."""
        idx = self.indices()
        for a in arrays:
            if len(a) != self.n:
                raise ValueError(f"Every array must hold {self.n} samples, got one with {len(a)}.")
        return tuple(a[idx] for a in arrays)


# ------------------------------------------------------------------------------------------------------- collectives
def all_reduce(array: Any, op: str = "sum", context: DistributedContext | None = None) -> np.ndarray:
    """
    Reduce a numpy array over the processes; every process gets the result.

    :param array: Same shape and dtype on every process.
    :param op: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.
    :param context: Default :func:`get_context`.
    :return: The reduced array (a new array; floating dtype for ``"mean"``).
    """
    if op not in _OPS:
        raise ValueError(f"`op` must be one of {_OPS}, got {op!r}.")
    array = np.asarray(array)
    context = context or get_context()
    if not context.is_distributed:
        return array.astype(np.result_type(array, np.float32)) if op == "mean" else array.copy()
    if context.framework == "pytorch":
        return _torch_all_reduce(array, op, context)
    return _tf_all_reduce(array, op, context)


def broadcast(array: Any, src: int = 0, context: DistributedContext | None = None) -> np.ndarray:
    """
    Every process gets rank `src`'s array (e.g. LMT's power-iteration vectors, so that every rank keeps the same ones).

    :param array: Same shape and dtype on every process (the values of other ranks are ignored).
    :param src: Rank whose values are sent.
    :param context: Default :func:`get_context`.
    :return: Rank `src`'s array.
    """
    array = np.asarray(array)
    context = context or get_context()
    if not context.is_distributed:
        return array.copy()
    if not 0 <= src < context.world_size:
        raise ValueError(f"`src` must be a rank in [0, {context.world_size - 1}], got {src}.")
    if context.framework == "pytorch":
        import torch.distributed as dist

        tensor = _to_torch(array)
        dist.broadcast(tensor, src=src)
        return tensor.cpu().numpy()
    mine = array if context.rank == src else np.zeros_like(array)
    return _tf_all_reduce(mine, "sum", context)


def barrier(context: DistributedContext | None = None) -> None:
    """Wait until every process gets here."""
    context = context or get_context()
    if not context.is_distributed:
        return
    if context.framework == "pytorch":
        import torch.distributed as dist

        dist.barrier()
    else:
        _tf_all_reduce(np.zeros(1, np.float32), "sum", context)


def average_gradients(grads: list) -> list:
    """
    PyTorch gradients averaged over the ranks of the default process group in one flat all-reduce (what
    DistributedDataParallel does for a wrapped model; for models handed over unwrapped).

    :param grads: The gradients of this rank (tensors).
    :return: The averaged gradients, shaped as `grads`.
    """
    import torch
    import torch.distributed as dist

    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    out, offset = [], 0
    for g in grads:
        out.append(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return out


def _to_torch(array: np.ndarray):
    import torch
    import torch.distributed as dist

    tensor = torch.from_numpy(np.ascontiguousarray(array).copy())
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    return tensor


def _torch_all_reduce(array: np.ndarray, op: str, context: DistributedContext) -> np.ndarray:
    import torch.distributed as dist

    if op == "mean":
        array = array.astype(np.result_type(array, np.float32))
    tensor = _to_torch(array)
    reduce_op = {
        "sum": dist.ReduceOp.SUM,
        "mean": dist.ReduceOp.SUM,
        "max": dist.ReduceOp.MAX,
        "min": dist.ReduceOp.MIN,
    }
    dist.all_reduce(tensor, op=reduce_op[op])
    out = tensor.cpu().numpy()
    return out / context.world_size if op == "mean" else out


def _tf_all_reduce(array: np.ndarray, op: str, context: DistributedContext) -> np.ndarray:
    """Across the workers of a multi-worker strategy: gather one copy per replica, keep one per worker, reduce."""
    import tensorflow as tf

    strategy = context.strategy
    value = tf.constant(array)

    def gather():
        return tf.distribute.get_replica_context().all_gather(value[None], axis=0)

    gathered = strategy.experimental_local_results(strategy.run(gather))[0].numpy()
    per_worker = gathered[:: max(1, context.replicas // context.world_size)][: context.world_size]
    reduce = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[op]
    return np.asarray(reduce(per_worker, axis=0), dtype=np.result_type(array, np.float32) if op == "mean" else None)


# ---------------------------------------------------------------------------------------------------- rank-0 helpers
def rank_rng(seed: int | None, context: DistributedContext | None = None) -> np.random.Generator:
    """
    A numpy generator seeded by ``(seed, rank)``: independent draws per rank (e.g. VAT's random directions), the
    same for a given rank from run to run. ``seed=None`` draws fresh entropy.
    """
    context = context or get_context()
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), context.rank]) if context.is_distributed else np.random.default_rng(seed)


def rank_zero_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run `fn` on rank 0 only (other ranks get ``None``), e.g. writing a checkpoint or a report."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if get_context().is_main else None

    return wrapper


class RankZeroFilter(logging.Filter):
    """
    A logging filter that lets records through on rank 0 only: ``logging.getLogger("art_ext").addFilter(
    RankZeroFilter())`` (filters on a logger apply to the records it creates; add it to a handler to cover children).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return get_context().is_main


def progress(iterable: Iterable | None = None, disable: bool = False, **kwargs) -> Any:
    """
    A ``tqdm`` progress bar shown on rank 0 only (hidden elsewhere, and when `disable`).

    :param iterable: What to iterate over, as for ``tqdm``.
    :param disable: Hide the bar on every rank (e.g. ``not verbose``).
    :param kwargs: Any other ``tqdm`` argument (``total``, ``desc``, ``unit``...).
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=disable or not get_context().is_main, **kwargs)
