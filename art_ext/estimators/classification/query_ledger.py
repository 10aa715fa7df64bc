"""
The on-disk write-ahead query ledger behind :class:`~art_ext.estimators.classification.LedgerClassifier` (see
:mod:`art_ext.estimators.classification.ledger` for what it guarantees).

Layout of ``ledger_dir``: ``ledger.jsonl`` (one JSON event a line, appended), ``answers.bin`` (answers, raw float32,
appended; events point into it with an offset and a checksum) and ``lock`` (held while a process uses the ledger).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import defaultdict, deque
from typing import Any

import numpy as np

__all__ = ["QueryBudgetExceededError", "QueryLedger", "inputs_digest"]

logger = logging.getLogger(__name__)

_EVENTS, _ANSWERS, _LOCK = "ledger.jsonl", "answers.bin", "lock"
#: Statuses after which the endpoint may still have computed an answer (a gateway lost it): never refunded.
_NOT_REFUNDED = frozenset({502, 504})


class QueryBudgetExceededError(RuntimeError):
    """Raised before a batch would take the ledger's spent queries above ``max_queries``; nothing was sent."""


def inputs_digest(x: np.ndarray) -> str:
    """SHA-256 of a float32 batch (shape and bytes), the key of the ledger's replay."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return hashlib.sha256(repr(tuple(x.shape)).encode() + x.tobytes()).hexdigest()


class QueryLedger:
    """
    The on-disk log (see the module documentation). Thread-safe; one process at a time per folder.

    :param ledger_dir: Folder of the ledger (created if needed).
    :param resume: Continue the ledger found in `ledger_dir`; without it, a folder that already holds one is refused.
    :param header: JSON-serialisable description of the victim written at creation (``input_shape``, ``nb_classes``)
                   and compared on resume.
    """

    def __init__(self, ledger_dir: str, resume: bool = False, header: dict[str, Any] | None = None) -> None:
        if not isinstance(ledger_dir, (str, os.PathLike)):
            raise TypeError(f"`ledger_dir` must be a path, got {ledger_dir!r}.")
        self.ledger_dir = os.fspath(ledger_dir)
        self.header = dict(header or {})
        self._lock = threading.Lock()
        self.spent = 0  # inputs of every attempt that left, minus refused ones
        self.answered = 0  # inputs whose answers are in the ledger
        self.replayed = 0  # inputs served from the ledger in this session
        self._replay: dict[str, deque] = defaultdict(deque)
        self._next_batch = 0
        os.makedirs(self.ledger_dir, exist_ok=True)
        self._lock_file = _acquire_lock(os.path.join(self.ledger_dir, _LOCK))
        events_path = os.path.join(self.ledger_dir, _EVENTS)
        exists = os.path.isfile(events_path) and os.path.getsize(events_path) > 0
        if exists and not resume:
            self.close()
            raise ValueError(
                f"`ledger_dir` {self.ledger_dir!r} already holds a query ledger: pass resume=True to continue it, "
                "or give an empty folder."
            )
        try:
            if exists:
                self._load(events_path)
            self._events = open(events_path, "ab")  # noqa: SIM115 (kept open for appends)
            self._answers = open(os.path.join(self.ledger_dir, _ANSWERS), "ab")  # noqa: SIM115
            if os.path.getsize(events_path) == 0:
                self._append({"event": "open", "version": 1, **self.header})
                _fsync_dir(self.ledger_dir)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ loading
    def _load(self, events_path: str) -> None:
        with open(events_path, "rb") as f:
            raw = f.read()
        events, offset, bad_at = [], 0, None
        for line in raw.splitlines(keepends=True):
            ev = _parse(line)
            if ev is None and bad_at is None:
                bad_at = offset
            elif ev is not None and bad_at is not None and ev.get("event") == "sent":
                # every *sent* event is fsynced, so damage can only follow the last one: this is not a crash's trace
                raise ValueError(f"Query ledger {events_path!r} is corrupt at byte {bad_at}.")
            elif ev is not None and bad_at is None:
                events.append(ev)
            offset += len(line)
        if bad_at is not None:  # a tail torn by a crash: its writes never completed, what they announced is dropped
            logger.warning("Query ledger: dropping a torn tail of %d bytes.", len(raw) - bad_at)
            with open(events_path, "r+b") as f:
                f.truncate(bad_at)
                os.fsync(f.fileno())
        answers_path = os.path.join(self.ledger_dir, _ANSWERS)
        answers = open(answers_path, "rb") if os.path.isfile(answers_path) else None  # noqa: SIM115
        sent: dict[tuple[int, int], int] = {}
        try:
            for ev in events:
                kind = ev.get("event")
                if kind == "open":
                    self._check_header(ev)
                elif kind == "sent":
                    sent[(ev["batch"], ev["attempt"])] = ev["n"]
                    self.spent += ev["n"]
                    self._next_batch = max(self._next_batch, ev["batch"] + 1)
                elif kind == "refused":
                    self.spent -= sent.pop((ev["batch"], ev["attempt"]), 0)
                elif kind == "answered":
                    if answers is None or not self._verify(answers, ev):
                        logger.warning("Query ledger: answers of batch %d unreadable; counted as spent.", ev["batch"])
                        continue
                    self.answered += ev["shape"][0]
                    self._replay[ev["inputs"]].append(ev)
        finally:
            if answers is not None:
                answers.close()
        logger.info(
            "Query ledger %s resumed: %d queries spent, %d answered and replayable.",
            self.ledger_dir,
            self.spent,
            self.answered,
        )

    def _check_header(self, ev: dict[str, Any]) -> None:
        for key, value in self.header.items():
            if key in ev and ev[key] != value:
                raise ValueError(
                    f"The query ledger in {self.ledger_dir!r} was written for {key}={ev[key]!r}, not {value!r}: "
                    "resume it with the same victim or give another folder."
                )

    @staticmethod
    def _verify(answers, ev: dict[str, Any]) -> bool:
        answers.seek(ev["offset"])
        data = answers.read(ev["nbytes"])
        return len(data) == ev["nbytes"] and hashlib.sha256(data).hexdigest() == ev["sha256"]

    # ------------------------------------------------------------------ writing
    def _append(self, event: dict[str, Any], sync: bool = True) -> None:
        self._events.write(json.dumps(event, separators=(",", ":")).encode("utf-8") + b"\n")
        self._events.flush()
        if sync:
            os.fsync(self._events.fileno())

    def new_batches(self, count: int) -> list[int]:
        """Reserve `count` fresh batch numbers."""
        with self._lock:
            first, self._next_batch = self._next_batch, self._next_batch + count
        return list(range(first, first + count))

    def record_sent(self, batch: int, digest: str, n: int, attempt: int, max_queries: int) -> None:
        """
        Write that an attempt of `n` inputs is about to leave (fsynced), or raise if it would exceed `max_queries`.

        :raises QueryBudgetExceededError: When ``spent + n > max_queries``; nothing is written.
        """
        with self._lock:
            if self.spent + n > max_queries:
                raise QueryBudgetExceededError(
                    f"Sending {n} more queries would exceed `max_queries`={max_queries}: {self.spent} are already "
                    f"spent according to the query ledger in {self.ledger_dir!r}."
                )
            self._append({"event": "sent", "batch": batch, "attempt": attempt, "n": n, "inputs": digest})
            self.spent += n

    def record_refused(self, batch: int, n: int, attempt: int, status: int) -> None:
        """Write that the endpoint refused an attempt with HTTP `status`; refunded unless a gateway status."""
        if status in _NOT_REFUNDED:
            return
        with self._lock:
            # not fsynced: a refund lost in a power loss only makes the count more conservative
            self._append({"event": "refused", "batch": batch, "attempt": attempt, "status": status}, sync=False)
            self.spent -= n

    def record_answered(self, batch: int, digest: str, outputs: np.ndarray) -> None:
        """
        Append the answers, then the event pointing at them. Both are flushed to the operating system (a killed
        process loses nothing) but not fsynced: after a power loss, answers not yet on disk fail their checksum and
        count as spent, which is safe; only *sent* events must reach the disk before a batch leaves.
        """
        data = np.ascontiguousarray(outputs, dtype="<f4").tobytes()
        with self._lock:
            self._answers.seek(0, os.SEEK_END)
            offset = self._answers.tell()
            self._answers.write(data)
            self._answers.flush()
            self._append(
                {
                    "event": "answered",
                    "batch": batch,
                    "inputs": digest,
                    "shape": list(outputs.shape),
                    "offset": offset,
                    "nbytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
                sync=False,
            )
            self.answered += len(outputs)

    # ------------------------------------------------------------------ replay
    def replayable(self, digest: str) -> int:
        """How many answered batches with these inputs are left to replay."""
        with self._lock:
            return len(self._replay.get(digest, ()))

    def replay(self, digest: str) -> np.ndarray | None:
        """Take (once) the recorded answers of a batch with these inputs, or ``None``."""
        with self._lock:
            queue = self._replay.get(digest)
            if not queue:
                return None
            ev = queue.popleft()
            with open(os.path.join(self.ledger_dir, _ANSWERS), "rb") as f:
                f.seek(ev["offset"])
                data = f.read(ev["nbytes"])
            self.replayed += ev["shape"][0]
        return np.frombuffer(data, dtype="<f4").reshape(ev["shape"]).astype(np.float32)

    def close(self) -> None:
        """Write everything to disk, close the files and release the folder."""
        for name in ("_answers", "_events", "_lock_file"):
            f = getattr(self, name, None)
            if f is not None:
                if name != "_lock_file":
                    f.flush()
                    os.fsync(f.fileno())
                f.close()
                setattr(self, name, None)


#: The fields of each event and their types: a line that parses but lacks one is damaged, like a torn one.
_FIELDS = {
    "open": {},
    "sent": {"batch": int, "attempt": int, "n": int, "inputs": str},
    "refused": {"batch": int, "attempt": int, "status": int},
    "answered": {"batch": int, "inputs": str, "shape": list, "offset": int, "nbytes": int, "sha256": str},
}


def _parse(line: bytes) -> dict[str, Any] | None:
    """A complete, well-formed event line, or ``None`` for a torn or damaged one."""
    if not line.endswith(b"\n"):
        return None
    try:
        ev = json.loads(line)
    except (ValueError, RecursionError):
        return None
    fields = _FIELDS.get(ev.get("event")) if isinstance(ev, dict) else None
    if fields is None:
        return None
    for key, kind in fields.items():
        value = ev.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            return None
    if ev["event"] == "answered":  # answers are (rows, classes) float32: nbytes must fit the shape
        shape = ev["shape"]
        if (
            len(shape) != 2
            or not all(type(d) is int and d >= 0 for d in shape)
            or ev["nbytes"] != 4 * shape[0] * shape[1]
        ):
            return None
    return ev


def _acquire_lock(path: str):
    f = open(path, "a+b")  # noqa: SIM115
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows: no advisory lock)
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        f.close()
        raise RuntimeError(f"The query ledger in {os.path.dirname(path)!r} is in use by another process.") from err
    return f


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
