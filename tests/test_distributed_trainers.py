"""
The trainers of the shared loop (VAT, defensive distillation) data-parallel: two gloo processes on CPU, the model
wrapped in DistributedDataParallel before ART's PyTorchClassifier, reach the accuracy of the one-process run (within
1 point), with the same weights and loss history on every rank; under a tf.distribute strategy scope the TensorFlow
trainers train as without it.

``python tests/test_distributed_trainers.py vat 2`` prints the per-epoch time of 1 and 2 processes (not a test).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import numpy as np
import pytest

EPOCHS = {"vat": 8, "distillation": 6}
BATCH = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _classifier(seed: int, ddp: bool, learning_rate: float = 1e-3):
    import torch

    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    model = build_model("digits_mlp", "pytorch", seed=seed)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model)
    return make_classifier(
        model, input_shape=ARCHITECTURES["digits_mlp"][0], learning_rate=learning_rate, device_type="cpu"
    )


def _train(trainer_name: str, ddp: bool, epochs: int) -> dict:
    """Train one digits MLP with `trainer_name` on this process (one rank of a run, or the whole run)."""
    from art_ext.data import load_digits
    from art_ext.defences.trainer import DefensiveDistillationTrainer, VirtualAdversarialTrainer

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(channels_first=True)
    clf = _classifier(0, ddp, 1e-3 if trainer_name == "vat" else 1e-2)
    start = time.perf_counter()
    if trainer_name == "vat":
        trainer = VirtualAdversarialTrainer(clf, random_state=0, verbose=False)
        trainer.fit(x_train, y_train, nb_epochs=epochs, batch_size=BATCH)
        history = trainer.history
    else:
        trainer = DefensiveDistillationTrainer(
            clf, temperature=10.0, random_state=0, verbose=False, teacher_factory=lambda: _classifier(1, ddp, 1e-2)
        )
        trainer.fit(x_train, y_train, nb_epochs=epochs, batch_size=BATCH)
        history = trainer.history["teacher"] + trainer.history["student"]
    elapsed = time.perf_counter() - start
    return {
        "accuracy": float(np.mean(clf.predict(x_test).argmax(1) == y_test)),
        "history": [float(h) for h in history],
        "weights": float(sum(float(p.detach().double().abs().sum()) for p in clf.model.parameters())),
        "epoch_seconds": elapsed / (epochs * (2 if trainer_name == "distillation" else 1)),
    }


def _worker(rank: int, world: int, port: int, out_dir: str, trainer_name: str, epochs: int) -> None:
    import torch

    from art_ext.backend.distributed import init_torch_distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    init_torch_distributed("gloo")
    result = _train(trainer_name, ddp=world > 1, epochs=epochs)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    if world > 1:
        torch.distributed.destroy_process_group()


def _run(world: int, out_dir: str, trainer_name: str, epochs: int, timeout: float = 240) -> list[dict]:
    import torch.multiprocessing as mp

    ctx = mp.spawn(_worker, args=(world, _free_port(), out_dir, trainer_name, epochs), nprocs=world, join=False)
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, f"the {world} gloo processes did not finish in time"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    results = []
    for rank in range(world):
        with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
            results.append(json.load(f))
    return results


@pytest.mark.slow
@pytest.mark.only_with_framework("pytorch")
@pytest.mark.parametrize("trainer_name", ["vat", "distillation"])
def test_two_gloo_processes_match_one(trainer_name, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _train(trainer_name, ddp=False, epochs=EPOCHS[trainer_name])
    finally:
        torch.set_num_threads(threads)
    r0, r1 = _run(2, str(tmp_path), trainer_name, EPOCHS[trainer_name])
    # Identical model and loss history on every rank (DDP-averaged gradients, epoch losses averaged over ranks).
    assert r0["weights"] == r1["weights"] and r0["history"] == r1["history"] and r0["accuracy"] == r1["accuracy"]
    assert len(r0["history"]) == len(single["history"])
    assert single["accuracy"] >= 0.9, single
    assert abs(r0["accuracy"] - single["accuracy"]) <= 0.01 + 1e-9, (r0["accuracy"], single["accuracy"])


@pytest.mark.only_with_framework("tensorflow")
@pytest.mark.parametrize("trainer_name", ["vat", "distillation"])
def test_tensorflow_strategy_scope_trains_as_without(trainer_name):
    import tensorflow as tf

    from art_ext.backend.distributed import get_context
    from art_ext.data import load_digits
    from art_ext.defences.trainer import DefensiveDistillationTrainer, VirtualAdversarialTrainer
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(channels_first=False)

    def classifier(seed):
        return make_classifier(build_model("digits_mlp", "tensorflow", seed=seed), ARCHITECTURES["digits_mlp"][1])

    def train(strategy):
        scope = strategy.scope() if strategy is not None else _null()
        with scope:
            clf = classifier(0)
            if trainer_name == "vat":
                VirtualAdversarialTrainer(clf, random_state=0, verbose=False).fit(x_train, y_train, nb_epochs=4)
            else:
                trainer = DefensiveDistillationTrainer(
                    clf, temperature=10.0, random_state=0, verbose=False, teacher_factory=lambda: classifier(1)
                )
                trainer.fit(x_train, y_train, nb_epochs=6, batch_size=BATCH)
            if strategy is not None:
                assert get_context().strategy is strategy
            return float(np.mean(clf.predict(x_test).argmax(1) == y_test))

    plain = train(None)
    mirrored = train(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert plain >= 0.85 and abs(mirrored - plain) <= 0.02, (plain, mirrored)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":  # per-epoch time of 1 and 2 processes: python tests/test_distributed_trainers.py vat 2
    import tempfile

    name, epochs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    times = {}
    for world in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            res = _run(world, out, name, epochs, timeout=600)
        times[world] = max(r["epoch_seconds"] for r in res)
        print(f"{name}: {world} process(es): {times[world]:.2f} s/epoch, accuracy {res[0]['accuracy']:.4f}", flush=True)
    print(f"{name}: 2-process / 1-process per-epoch time = {times[2] / times[1]:.2f}")
