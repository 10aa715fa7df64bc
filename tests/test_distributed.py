"""
Distributed helpers: the numpy sharder against PyTorch's DistributedSampler, single-process identities, and two gloo
processes on CPU (collectives, rank-0 helpers, and a data-parallel run equal to the one-process run), two TensorFlow
workers under MultiWorkerMirroredStrategy (collectives).
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from _gloo import free_port, spawn_ranks

from art_ext.backend.distributed import (
    DistributedContext,
    NumpyDistributedSampler,
    RankZeroFilter,
    all_reduce,
    barrier,
    broadcast,
    get_context,
    init_torch_distributed,
    progress,
    rank_rng,
    rank_zero_only,
    unwrap_model,
)


@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 4), (7, 2), (2, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_shards_cover_the_data_evenly(n, replicas, drop_last):
    samplers = [NumpyDistributedSampler(n, replicas, r, seed=3, drop_last=drop_last) for r in range(replicas)]
    shards = [s.indices() for s in samplers]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(samplers[0])
    union = np.concatenate(shards)
    if drop_last:
        assert len(np.unique(union)) == len(union) == n - n % replicas  # disjoint, only the tail dropped
    else:
        assert set(union.tolist()) == set(range(n)) and len(union) - n < replicas  # all covered, padding only
    again = NumpyDistributedSampler(n, replicas, 0, seed=3, drop_last=drop_last)
    np.testing.assert_array_equal(again.indices(), shards[0])  # the same on every rank given the seed
    if n > 4:
        again.set_epoch(1)
        assert not np.array_equal(again.indices(), shards[0])  # a new permutation each epoch


@pytest.mark.only_with_framework("pytorch")
@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 4), (2, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_matches_torch_distributed_sampler(n, replicas, drop_last):
    from torch.utils.data.distributed import DistributedSampler

    for rank in range(replicas):
        ours = NumpyDistributedSampler(n, replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_single_process_helpers_are_identities(caplog):
    context = get_context()
    assert context == DistributedContext() and context.is_main and not context.is_distributed
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(all_reduce(x), x)
    assert all_reduce(x, "mean").dtype == np.float64 and all_reduce(x.astype(np.float32), "mean").dtype == np.float32
    np.testing.assert_array_equal(broadcast(x), x)
    barrier()
    assert rank_rng(5).integers(1000) == np.random.default_rng(5).integers(1000)
    assert rank_zero_only(lambda: 7)() == 7 and not progress(range(3), disable=True).n
    assert unwrap_model(x) is x
    with pytest.raises(ValueError, match="`op`"):
        all_reduce(x, "prod")
    with pytest.raises(ValueError, match="Invalid shard"):
        NumpyDistributedSampler(10, 2, 2)
    sampler = NumpyDistributedSampler(5)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    with pytest.raises(ValueError, match="5 samples"):
        sampler.shard(np.zeros(4))


@pytest.mark.only_with_framework("tensorflow")
def test_tensorflow_strategy_scope_is_detected():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        context = get_context()
        assert context.framework == "tensorflow" and context.strategy is strategy
        assert (context.rank, context.world_size, context.replicas) == (0, 1, 1)
        np.testing.assert_array_equal(all_reduce(np.ones(3), "sum"), np.ones(3))  # one worker: nothing to reduce
    assert get_context().framework is None


# ------------------------------------------------------------------------------------------- two gloo processes
STEPS, BATCH, DIM = 6, 8, 5


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, DIM)).astype(np.float32)
    return x, (x @ rng.normal(size=(DIM, 1))).astype(np.float32)


def _train(x, y, sampler, step_batch, ddp=False):
    """Plain SGD on a linear model over `sampler`'s shard, `step_batch` samples a step (per process)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(DIM, 1)
    if ddp:
        inner = model
        model = torch.nn.parallel.DistributedDataParallel(model)
        assert unwrap_model(model) is inner and unwrap_model(inner) is inner
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xs, ys = sampler.shard(x, y)
    for i in range(0, len(xs), step_batch):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(
            model(torch.from_numpy(xs[i : i + step_batch])), torch.from_numpy(ys[i : i + step_batch])
        )
        loss.backward()
        opt.step()
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def _worker(rank, world, port, out_dir):
    import torch

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    context = init_torch_distributed("gloo")
    log = logging.getLogger(f"art_ext.test_distributed.{rank}")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(RankZeroFilter())
    log.addHandler(handler)
    log.warning("hello from %d", rank)
    x = np.array([rank + 1.0, 10.0 * rank], dtype=np.float64)
    sampler = NumpyDistributedSampler(10)
    result = {
        "context": [context.framework, context.rank, context.world_size, context.local_rank, context.is_main],
        "sum": all_reduce(x, "sum").tolist(),
        "mean": all_reduce(x, "mean").tolist(),
        "max": all_reduce(x, "max").tolist(),
        "min": all_reduce(np.array([rank], np.int64), "min").tolist(),
        "broadcast": broadcast(np.full(3, rank, np.float32), src=1).tolist(),
        "rng": int(rank_rng(0).integers(1 << 30)),
        "rank_zero": rank_zero_only(lambda: "ran")(),
        "progress_hidden": progress(range(2)).disable,
        "logged": len(records),
        "shard": sampler.indices().tolist(),
    }
    barrier()
    x_all, y_all = _data()
    train_sampler = NumpyDistributedSampler(len(x_all), seed=1)
    result["weights"] = _train(x_all, y_all, train_sampler, BATCH // world, ddp=True).tolist()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.only_with_framework("pytorch")
def test_two_gloo_processes(tmp_path):
    world = 2
    spawn_ranks(_worker, world, str(tmp_path), timeout=180)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world))
    assert r0["context"] == ["pytorch", 0, 2, 0, True] and r1["context"] == ["pytorch", 1, 2, 1, False]
    for r in (r0, r1):
        assert r["sum"] == [3.0, 10.0] and r["mean"] == [1.5, 5.0] and r["max"] == [2.0, 10.0] and r["min"] == [0]
        assert r["broadcast"] == [1.0, 1.0, 1.0]
    assert r0["rng"] != r1["rng"]  # per-rank random draws
    assert (r0["rank_zero"], r1["rank_zero"]) == ("ran", None)
    assert (r0["progress_hidden"], r1["progress_hidden"]) == (False, True)
    assert (r0["logged"], r1["logged"]) == (1, 0)
    assert sorted(r0["shard"] + r1["shard"]) == list(range(10)) and len(r0["shard"]) == 5
    # Data-parallel SGD over the two shards (half the batch each, gradients averaged by DDP) is the one-process run.
    x, y = _data()
    single = _train(x, y, NumpyDistributedSampler(len(x), 1, 0, seed=1), BATCH)
    np.testing.assert_allclose(r0["weights"], single, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r0["weights"], r1["weights"])


_TF_WORKER = r"""
import json, os, sys
rank, ports = int(sys.argv[1]), sys.argv[2:]
cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})
import numpy as np
import tensorflow as tf
from art_ext.backend.distributed import all_reduce, barrier, broadcast, get_context

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    c = get_context()
    out = {
        "context": [c.framework, c.rank, c.world_size, c.replicas],
        "sum": all_reduce(np.array([rank + 1.0, 10.0 * rank]), "sum").tolist(),
        "mean": all_reduce(np.array([rank + 1.0]), "mean").tolist(),
        "max": all_reduce(np.array([rank]), "max").tolist(),
        "broadcast": broadcast(np.full(2, rank, np.float32), src=1).tolist(),
    }
    barrier()
print(json.dumps(out), flush=True)
"""


@pytest.mark.slow
@pytest.mark.only_with_framework("tensorflow")
def test_two_tensorflow_workers():
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    ports = [str(free_port()), str(free_port())]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TF_WORKER, str(rank), *ports],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err[-2000:]
            outputs.append(json.loads(out.splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, r in enumerate(outputs):
        assert r["context"] == ["tensorflow", rank, 2, 2]
        assert r["sum"] == [3.0, 10.0] and r["mean"] == [1.5] and r["max"] == [1] and r["broadcast"] == [1.0, 1.0]
