"""
DFME's student data-parallel on two gloo processes (``torch.multiprocessing`` spawn): rank 0 alone queries the
victim, within the one-process budget, and the student ends identical on both ranks, as accurate as the one-process
student trained on the same global batches.

``python tests/test_dfme_distributed.py 30000`` prints the per-round time of 1 and 2 processes (not a test).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import numpy as np
import pytest

BUDGET = 30_000
BATCH = 128


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _CountingVictim:
    """The victim behind a ``predict`` callback counting the inputs it answers on this process."""

    def __init__(self, victim):
        from art.estimators.classification import BlackBoxClassifier

        self.rows, self.victim = 0, victim
        self.classifier = BlackBoxClassifier(
            self._predict, input_shape=victim.input_shape, nb_classes=victim.nb_classes, clip_values=(0.0, 1.0)
        )
        self.classifier._channels_first = True

    def _predict(self, x):
        self.rows += len(x)
        return self.victim.predict(x)


def _victim(path: str):
    """The digits CNN victim saved by the test (probability outputs), counted."""
    import torch

    from art_ext.models import ARCHITECTURES, build_model, make_classifier, to_probability_classifier

    model = build_model("digits_cnn", "pytorch", seed=0)
    model.load_state_dict(torch.load(path))
    return _CountingVictim(to_probability_classifier(make_classifier(model, ARCHITECTURES["digits_cnn"][0])))


def _extract(victim_path: str, ddp: bool, budget: int, out: str | None = None) -> dict:
    """One DFME extraction on this process (one rank of a run, or the whole run); what the test compares."""
    import torch

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.backend import get_backend
    from art_ext.data import load_digits
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(channels_first=True)
    counter = _victim(victim_path)
    module = build_model("digits_cnn", "pytorch", seed=1)
    if ddp:
        module = torch.nn.parallel.DistributedDataParallel(module)
    student = make_classifier(module, input_shape=ARCHITECTURES["digits_cnn"][0])
    generator = make_generator(build_generator("generator_8x8", "pytorch", seed=2))
    attack = DataFreeModelExtraction(
        counter.classifier, generator, max_queries=budget, batch_size=BATCH, random_state=0, verbose=False
    )
    start = time.perf_counter()
    attack.extract(thieved_classifier=student, x_val=x_train[:300], y_val=y_train[:300])
    elapsed = time.perf_counter() - start
    weights = get_backend("pytorch").get_weights(student)
    if out is not None:
        np.savez(out, *weights)
    return {
        "answered": counter.rows,
        "queries_used": attack.queries_used,
        "history": attack.history,
        "accuracy": float(np.mean(student.predict(x_test).argmax(1) == y_test)),
        "round_seconds": elapsed / max(1, len(attack.history)),
    }


def _worker(rank: int, world: int, port: int, out_dir: str, victim_path: str, budget: int) -> None:
    import torch

    from art_ext.backend.distributed import init_torch_distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    init_torch_distributed("gloo")
    result = _extract(victim_path, ddp=world > 1, budget=budget, out=os.path.join(out_dir, f"rank{rank}.npz"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    if world > 1:
        torch.distributed.destroy_process_group()


def _run(world: int, out_dir: str, victim_path: str, budget: int, timeout: float = 300) -> list[dict]:
    """Spawn `world` gloo processes, each running the extraction; each rank's results (weights under "weights")."""
    import torch.multiprocessing as mp

    ctx = mp.spawn(_worker, args=(world, _free_port(), out_dir, victim_path, budget), nprocs=world, join=False)
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
            result = json.load(f)
        with np.load(os.path.join(out_dir, f"rank{rank}.npz")) as data:
            result["weights"] = [data[f"arr_{i}"] for i in range(len(data.files))]
        results.append(result)
    return results


def _save_victim(classifier, folder) -> str:
    import torch

    path = os.path.join(str(folder), "victim.pt")
    torch.save(classifier.model.state_dict(), path)
    return path


@pytest.mark.slow
@pytest.mark.only_with_framework("pytorch")
def test_two_gloo_processes_match_one(tmp_path, digits_cnn_classifier):
    import torch

    victim_path = _save_victim(digits_cnn_classifier, tmp_path)
    r0, r1 = _run(2, str(tmp_path), victim_path, BUDGET)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _extract(victim_path, ddp=False, budget=BUDGET)
    finally:
        torch.set_num_threads(threads)
    # Rank 0 alone asks the victim, exactly what the one-process run asked, within the budget.
    assert r1["answered"] == 0
    assert r0["answered"] == single["answered"] == single["queries_used"] <= BUDGET
    assert r0["queries_used"] == r1["queries_used"] == r0["answered"] > BUDGET - 7 * BATCH
    # The same student and the same record on both ranks.
    assert len(r0["weights"]) == len(r1["weights"])
    for a, b in zip(r0["weights"], r1["weights"]):
        np.testing.assert_array_equal(a, b)
    assert r0["history"] == r1["history"]
    assert [h["queries"] for h in r0["history"]] == [h["queries"] for h in single["history"]]
    # The same global batches: the one-process student, up to floating-point noise.
    assert single["accuracy"] >= 0.5, single["accuracy"]
    assert abs(r0["accuracy"] - single["accuracy"]) <= 0.03, (r0["accuracy"], single["accuracy"])


if __name__ == "__main__":  # per-round time of 1 and 2 processes: python tests/test_dfme_distributed.py 30000
    import tempfile

    from art_ext.data import load_digits
    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    budget = int(sys.argv[1]) if len(sys.argv) > 1 else BUDGET
    (x, y), _, _, _ = load_digits(channels_first=True)
    with tempfile.TemporaryDirectory() as folder:
        victim = make_classifier(build_model("digits_cnn", "pytorch", seed=0), ARCHITECTURES["digits_cnn"][0])
        victim.fit(x, y, nb_epochs=30, batch_size=64)
        path = _save_victim(victim, folder)
        times = {}
        for world in (1, 2):
            res = _run(world, folder, path, budget, timeout=900)
            times[world] = max(r["round_seconds"] for r in res)
            print(f"{world} process(es): {times[world]:.3f} s/round, accuracy {res[0]['accuracy']:.4f}", flush=True)
        print(f"2-process / 1-process per-round time = {times[2] / times[1]:.2f}")
