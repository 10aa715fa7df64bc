"""
DFME checkpoints: one ``.npz`` file (student, generator and best-student weights, plus a JSON record of the run) that
is written atomically and validated completely when read back.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "dfme_checkpoint.npz"
FORMAT_VERSION = 2
_META_KEYS = {
    "format": int,
    "queries_used": int,
    "rounds": int,
    "history": list,
    "rng": dict,
    "detected_output": (str, type(None)),
    "best_acc": (int, float),
    "class_counts": list,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: ``checkpoint <path> is corrupt/incompatible: <what>``."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"checkpoint {path} is corrupt/incompatible: {what}")


def checkpoint_path(folder: str) -> str:
    """The checkpoint file of a checkpoint folder."""
    return os.path.join(folder, CHECKPOINT_FILE)


def check_writable(folder: str) -> None:
    """Create `folder` if needed and make sure a file can be written there (before any query is spent)."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dfme_probe_"):
            pass
    except OSError as err:
        raise ValueError(f"`checkpoint_dir` {folder!r} is not a writable folder: {err.strerror or err}.") from err


def save(folder: str, student: list[np.ndarray], generator: list[np.ndarray], best: list | None, meta: dict) -> str:
    """Write a checkpoint atomically (a temporary file renamed over the old one); return its path."""
    arrays = {f"student_{i}": w for i, w in enumerate(student)}
    arrays.update({f"generator_{i}": w for i, w in enumerate(generator)})
    if best is not None:
        arrays.update({f"best_{i}": w for i, w in enumerate(best)})
    record = dict(meta, format=FORMAT_VERSION)
    arrays["meta"] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    path = checkpoint_path(folder)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def _stacked(data: Any, prefix: str) -> list[np.ndarray]:
    keys = [k for k in data.files if k.startswith(prefix)]
    indices = sorted(int(k[len(prefix) :]) for k in keys)
    if indices != list(range(len(indices))):
        raise KeyError(f"weights {prefix}* are not numbered 0..{len(indices) - 1}")
    return [np.asarray(data[f"{prefix}{i}"]) for i in indices]


def _check_shapes(path: str, what: str, got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    if len(got) != len(expected):
        raise CheckpointError(path, f"{len(got)} {what} tensors, the model has {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.shape != e.shape:
            raise CheckpointError(path, f"{what} tensor {i} has shape {g.shape}, the model's is {e.shape}")
        if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
            raise CheckpointError(path, f"{what} tensor {i} holds NaN or infinite values")


def load(
    folder: str,
    max_queries: int,
    student_like: list[np.ndarray],
    generator_like: list[np.ndarray],
    nb_classes: int,
) -> dict | None:
    """
    Read and validate a checkpoint; ``None`` when the folder has none.

    :param folder: The checkpoint folder.
    :param max_queries: The budget: the checkpoint's query count must lie in ``[0, max_queries]``.
    :param student_like: The student's current weights (their number and shapes must match).
    :param generator_like: The generator's current weights (likewise).
    :param nb_classes: Number of classes.
    :return: ``dict`` with ``student``, ``generator``, ``best`` (or ``None``) and the run record under ``meta``.
    :raises CheckpointError: For anything unreadable, missing, of the wrong kind, shape or range.
    """
    path = checkpoint_path(folder)
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise CheckpointError(path, "no 'meta' record")
            meta = json.loads(bytes(np.asarray(data["meta"], dtype=np.uint8)).decode("utf-8"))
            student = _stacked(data, "student_")
            generator = _stacked(data, "generator_")
            best = _stacked(data, "best_")
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, TypeError) as err:
        raise CheckpointError(path, f"{type(err).__name__}: {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(path, "the 'meta' record is not a JSON object")
    for key, kind in _META_KEYS.items():
        if key not in meta:
            raise CheckpointError(path, f"missing {key!r}")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise CheckpointError(path, f"{key!r} has type {type(meta[key]).__name__}")
    if meta["format"] != FORMAT_VERSION:
        raise CheckpointError(path, f"format version {meta['format']}, this version reads {FORMAT_VERSION}")
    if not 0 <= meta["queries_used"] <= max_queries:
        raise CheckpointError(path, f"query count {meta['queries_used']} outside [0, max_queries={max_queries}]")
    if meta["rounds"] < 0:
        raise CheckpointError(path, f"round count {meta['rounds']} is negative")
    if meta["detected_output"] not in (None, "probabilities", "logits"):
        raise CheckpointError(path, f"unknown victim output {meta['detected_output']!r}")
    if len(meta["class_counts"]) != nb_classes or any(not isinstance(c, int) or c < 0 for c in meta["class_counts"]):
        raise CheckpointError(path, f"'class_counts' is not {nb_classes} non-negative integers")
    if any(not isinstance(r, dict) or not 0 <= r.get("queries", -1) <= meta["queries_used"] for r in meta["history"]):
        raise CheckpointError(path, "a history record has no query count within the checkpoint's")
    state = meta["rng"]
    if not isinstance(state.get("bit_generator"), str) or "state" not in state:
        raise CheckpointError(path, "'rng' is not a numpy bit-generator state")
    _check_shapes(path, "student", student, student_like)
    _check_shapes(path, "generator", generator, generator_like)
    if best:
        _check_shapes(path, "best-student", best, student_like)
    return {"student": student, "generator": generator, "best": best or None, "meta": meta}


def run_meta(run: Any) -> dict:
    """What a checkpoint records of a run besides its weights."""
    return {
        "queries_used": run.oracle.queries_used,
        "rounds": run.rounds,
        "history": run.history,
        "rng": run.rng.bit_generator.state,
        "detected_output": run.oracle.detected_output,
        "best_acc": run.best_acc,
        "class_counts": [int(c) for c in run.oracle.class_counts],
    }


def save_run(run: Any) -> None:
    """Checkpoint a DFME run (its student, generator, best weights and :func:`run_meta`) into its `checkpoint_dir`."""
    ops = run.ops
    path = save(
        run.p.checkpoint_dir,
        ops.get_weights(run.student),
        ops.get_weights(run.gen_model),
        run.best_weights,
        run_meta(run),
    )
    logger.info("DFME checkpoint after %d queries written to %s", run.oracle.queries_used, path)


def restore_run(run: Any) -> bool:
    """Restore a DFME run from the checkpoint in its `checkpoint_dir`; ``False`` when there is none."""
    ops = run.ops
    state = load(
        run.p.checkpoint_dir,
        run.p.max_queries,
        ops.get_weights(run.student),
        ops.get_weights(run.gen_model),
        run.nb_classes,
    )
    if state is None:
        logger.info("DFME: no checkpoint in %s, starting afresh.", run.p.checkpoint_dir)
        return False
    meta = state["meta"]
    try:
        run.rng.bit_generator.state = meta["rng"]
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(checkpoint_path(run.p.checkpoint_dir), "rng") from err
    ops.set_weights(run.student, state["student"])
    ops.set_weights(run.gen_model, state["generator"])
    run.oracle.queries_used = int(meta["queries_used"])
    run.oracle.detected_output = meta["detected_output"]
    run.oracle.class_counts[:] = meta["class_counts"]
    run.rounds = int(meta["rounds"])
    run.history = list(meta["history"])
    run.best_acc = float(meta["best_acc"])
    run.best_weights = state["best"]
    logger.info("DFME resumed from %s at %d queries.", run.p.checkpoint_dir, run.oracle.queries_used)
    return True
