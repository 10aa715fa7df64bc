"""
Query ledger: write-ahead accounting, replay on resume, budgets across crashes (a client killed with SIGKILL in the
middle of a request and resumed), and DFME wrapped from outside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _victim_server import LinearVictim, VictimServer

from art_ext.estimators.classification import (
    LedgerClassifier,
    QueryBudgetExceededError,
    RemoteClassifier,
)

SHAPE = (1, 8, 8)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def server():
    with VictimServer(LinearVictim(SHAPE)) as srv:
        yield srv


def _x(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n,) + SHAPE).astype(np.float32)


def _remote(server, **kwargs):
    return RemoteClassifier(server.url, SHAPE, 10, clip_values=(0.0, 1.0), batch_size=8, backoff=0.01, **kwargs)


def test_answers_are_recorded_and_replayed_once_on_resume(server, tmp_path):
    x1, x2, x3 = _x(16, 1), _x(12, 2), _x(8, 3)
    clf = LedgerClassifier(_remote(server, concurrency=2), tmp_path, max_queries=100)
    first = [clf.predict(x1), clf.predict(x2)]
    assert clf.queries_used == 28 == server.answered and clf.queries_replayed == 0
    clf.close()

    with pytest.raises(ValueError, match="resume=True"):
        LedgerClassifier(_remote(server), tmp_path, max_queries=100)
    clf = LedgerClassifier(_remote(server, concurrency=2), tmp_path, max_queries=100, resume=True)
    received = server.received
    np.testing.assert_array_equal(clf.predict(x1), first[0])
    np.testing.assert_array_equal(clf.predict(x2), first[1])
    assert server.received == received and clf.queries_replayed == 28  # served from the ledger, not asked again
    clf.predict(x1)  # a replayed batch is served once; asking again pays again
    clf.predict(x3)
    assert server.answered == clf.queries_used == 28 + 16 + 8
    clf.close()


def test_budget_refuses_before_sending_and_counts_every_attempt(server, tmp_path):
    clf = LedgerClassifier(_remote(server), tmp_path, max_queries=20)
    clf.predict(_x(8))
    with pytest.raises(QueryBudgetExceededError, match="only 12 remain"):
        clf.predict(_x(16, 1))
    assert server.received == 1
    server.drop_next = 1  # the server computes the answer but it is lost: spent, and the retry would exceed
    with pytest.raises(QueryBudgetExceededError, match="exceed `max_queries`=20"):
        clf.predict(_x(8, 2))
    assert server.answered == 16 == clf.queries_used and clf.queries_unanswered == 8
    clf.close()


def test_refusals_are_refunded_but_not_gateway_errors(server, tmp_path):
    clf = LedgerClassifier(_remote(server), tmp_path, max_queries=100)
    server.fail_next = 2
    clf.predict(_x(8))
    assert clf.queries_used == 8 == server.answered
    server.fail_next, server.fail_status = 1, 504
    clf.predict(_x(8, 1))
    assert clf.queries_used == 24 and server.answered == 16  # a gateway timeout may hide a computed answer
    clf.close()


def test_in_process_victim_interrupted_mid_batch_counts_as_spent(tmp_path):
    from art.estimators.classification import BlackBoxClassifier

    model, calls = LinearVictim(SHAPE), []

    def predict(x):
        calls.append(len(x))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return model(x)

    victim = BlackBoxClassifier(predict, SHAPE, 10, clip_values=(0.0, 1.0))
    clf = LedgerClassifier(victim, tmp_path, max_queries=64, batch_size=8)
    x = _x(32)
    with pytest.raises(KeyboardInterrupt):
        clf.predict(x)
    assert clf.queries_used == 24 and clf.queries_unanswered == 8
    clf.close()
    clf = LedgerClassifier(victim, tmp_path, max_queries=64, resume=True)
    out = clf.predict(x, batch_size=8)
    expected = np.concatenate([model(x[i : i + 8]) for i in range(0, 32, 8)])
    np.testing.assert_array_equal(out, expected)
    assert clf.queries_replayed == 16 and clf.queries_used == 40 and sum(calls) == 40
    clf.close()


def test_torn_line_wrong_victim_and_busy_folder(tmp_path):
    from art.estimators.classification import BlackBoxClassifier

    model = LinearVictim(SHAPE)
    victim = BlackBoxClassifier(model, SHAPE, 10, clip_values=(0.0, 1.0))
    clf = LedgerClassifier(victim, tmp_path, max_queries=64, batch_size=8)
    with pytest.raises(RuntimeError, match="in use"):
        LedgerClassifier(victim, tmp_path, max_queries=64, resume=True)
    clf.predict(_x(8))
    clf.close()
    with open(tmp_path / "ledger.jsonl", "ab") as f:
        f.write(b'\x00\x00\n{"event":"sent","batch":7,"att')  # a crash in the middle of writing: never sent
    clf = LedgerClassifier(victim, tmp_path, max_queries=64, resume=True)
    assert clf.queries_used == 8
    clf.predict(_x(8, 1))
    clf.close()
    clf = LedgerClassifier(victim, tmp_path, max_queries=64, resume=True)
    assert clf.queries_used == 16 and clf.queries_replayed == 0
    clf.close()
    lines = (tmp_path / "ledger.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "ledger.jsonl").write_bytes(b"".join(lines[:1] + [b"garbage\n"] + lines[1:]))
    with pytest.raises(ValueError, match="corrupt"):  # damage before a sent event is no crash: refuse to guess
        LedgerClassifier(victim, tmp_path, max_queries=64, resume=True)
    (tmp_path / "ledger.jsonl").write_bytes(b"".join(lines))
    other = BlackBoxClassifier(model, SHAPE, 3, clip_values=(0.0, 1.0))
    with pytest.raises(ValueError, match="nb_classes"):
        LedgerClassifier(other, tmp_path, max_queries=64, resume=True)
    with pytest.raises(ValueError, match="max_queries"):
        LedgerClassifier(victim, tmp_path / "new", max_queries=0)
    with pytest.raises(TypeError, match="ART classifier"):
        LedgerClassifier(model, tmp_path / "new", max_queries=10)


# A seeded query loop whose next inputs depend on the answers (as an attack's do): run in a subprocess, killed with
# SIGKILL in the middle of a request, then resumed from its ledger.
_CLIENT = r"""
import json, sys, importlib.machinery
class Hide(importlib.machinery.PathFinder):  # start fast: the loop needs neither framework
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'tensorflow', 'keras'):
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
sys.meta_path = [Hide if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
import numpy as np
from art_ext.estimators.classification import LedgerClassifier, RemoteClassifier
url, ledger_dir, max_queries, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
remote = RemoteClassifier(url, (1, 8, 8), 10, batch_size=8, concurrency=2, backoff=0.01)
clf = LedgerClassifier(remote, ledger_dir, max_queries=max_queries, resume=resume)
print("ready", flush=True)
""" + (
    "rng, scale, total = np.random.default_rng(0), 1.0, np.zeros(10)\n"
    "for step in range(STEPS):\n"
    "    x = (rng.uniform(0, 1, (16, 1, 8, 8)) * scale).astype(np.float32)\n"
    "    out = ANSWER(x)\n"
    "    scale = 0.5 + 0.5 * float(out.max(axis=1).mean())\n"
    "    total += out.sum(axis=0)\n"
)
_LOOP = _CLIENT[_CLIENT.index("rng, scale") :]
_CLIENT = _CLIENT.replace("ANSWER(x)", "clf.predict(x)") + (
    "print(json.dumps({'total': total.tolist(), 'used': clf.queries_used, 'replayed': clf.queries_replayed, "
    "'unanswered': clf.queries_unanswered}), flush=True)\n"
)


def _expected_total(steps):
    model, scope = LinearVictim(SHAPE), {"np": np, "STEPS": steps}
    scope["ANSWER"] = lambda x: np.concatenate([model(x[:8]), model(x[8:])])
    exec(_LOOP, scope)
    return scope["total"]


def _client(server, ledger_dir, max_queries, resume, steps):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = _CLIENT.replace("STEPS", str(steps))
    args = [sys.executable, "-c", code, server.url, str(ledger_dir), str(max_queries), "1" if resume else "0"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_request_then_resume_never_pays_twice(server, tmp_path):
    steps, max_queries, kill_at = 15, 15 * 16 + 16, 12  # 30 requests of 8 inputs, 2 in flight
    server.delay = 0.05
    proc = _client(server, tmp_path, max_queries, False, steps)
    server.on_request = lambda received: os.kill(proc.pid, signal.SIGKILL) if received == kill_at else None
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while server.in_flight and time.monotonic() < deadline:  # the killed request still completes on the server
        time.sleep(0.02)
    server.on_request = None
    answered_before = list(server.answered_digests)
    assert server.answered >= (kill_at - 1) * 8  # the request in flight at the kill was answered but never received

    proc = _client(server, tmp_path, max_queries, True, steps)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    answered_after = server.answered_digests[len(answered_before) :]
    paid_twice = set(answered_before) & set(answered_after)

    assert server.answered <= max_queries
    assert report["used"] >= server.answered
    assert report["unanswered"] >= 8 and len(paid_twice) * 8 <= report["unanswered"]  # only what was never received
    assert report["replayed"] + len(answered_after) * 8 == steps * 16  # everything else came from the ledger
    assert report["replayed"] >= (kill_at - 2) * 8
    np.testing.assert_allclose(report["total"], _expected_total(steps), rtol=0, atol=0)  # same run as uninterrupted


def _interrupted_victim(shape, at_call):
    """A black-box victim that records the size of every call and raises Ctrl-C inside call number `at_call`
    (``interrupt_at[0]``; set it to None to stop interrupting)."""
    from art.estimators.classification import BlackBoxClassifier

    model, calls, interrupt_at = LinearVictim(shape), [], [at_call]

    def predict(x):
        calls.append(len(x))
        if len(calls) == interrupt_at[0]:
            raise KeyboardInterrupt  # Ctrl-C while a batch is with the victim
        return model(x)

    return BlackBoxClassifier(predict, shape, 10, clip_values=(0.0, 1.0)), calls, interrupt_at


def test_dfme_wrapped_from_outside_resumes_without_paying_twice(framework, tmp_path, single_thread):
    """DFME's public API is enough: wrap the victim in a LedgerClassifier and hand it to DFME as its classifier."""

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

    shape = ARCHITECTURES["digits_cnn"][0 if framework == "pytorch" else 1]
    victim, calls, interrupt_at = _interrupted_victim(shape, at_call=5)

    def attack(ledger, max_queries):
        dfme = DataFreeModelExtraction(
            ledger,
            make_generator(build_generator("generator_8x8", framework, seed=2)),
            max_queries=max_queries,
            batch_size=16,
            n_student_steps=2,
            random_state=0,
            verbose=False,
        )
        student = make_classifier(build_model("digits_cnn", framework, seed=1), input_shape=shape)
        dfme.extract(thieved_classifier=student)
        return dfme

    max_queries = 16 * 4 * 4  # four rounds of (2 generator queries + 2 student queries) x 16
    ledger = LedgerClassifier(victim, tmp_path, max_queries=max_queries)
    first = attack(ledger, max_queries)
    assert first.interrupted and ledger.queries_unanswered == 16
    answered_first = sum(calls) - 16
    ledger.close()

    interrupt_at[0] = None
    calls.clear()
    ledger = LedgerClassifier(victim, tmp_path, max_queries=max_queries, resume=True)
    # The batch lost at the interruption is spent: the attack gets what is left, the ledger the same budget.
    second = attack(ledger, max_queries - ledger.queries_unanswered)
    assert not second.interrupted
    assert ledger.queries_replayed == answered_first  # every answer already paid for was served from the ledger
    assert ledger.queries_used == answered_first + 16 + sum(calls) == max_queries
    assert second.queries_used == max_queries - 16
    ledger.close()


def test_dfme_ledger_dir_resumes_without_paying_twice(framework, tmp_path, single_thread):
    """DFME's own `ledger_dir`: a run stopped by Ctrl-C inside the victim, rerun with resume=True and the same seeds,
    is served every answer already paid for; the victim never answers more than max_queries in total."""

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import build_generator, build_model, input_shape_of, make_classifier, make_generator

    shape = input_shape_of("digits_cnn", framework)
    victim, calls, interrupt_at = _interrupted_victim(shape, at_call=5)
    max_queries = 16 * 4 * 4

    def attack(resume):
        dfme = DataFreeModelExtraction(
            victim,
            make_generator(build_generator("generator_8x8", framework, seed=2)),
            max_queries=max_queries,
            batch_size=16,
            n_student_steps=2,
            random_state=0,
            verbose=False,
            resume=resume,
            ledger_dir=str(tmp_path / "ledger"),
        )
        student = make_classifier(build_model("digits_cnn", framework, seed=1), input_shape=shape)
        dfme.extract(thieved_classifier=student)
        return dfme

    first = attack(resume=False)
    assert first.interrupted
    answered_first = sum(calls) - 16  # the interrupted batch was sent, never answered
    interrupt_at[0] = None
    calls.clear()
    second = attack(resume=True)
    assert not second.interrupted
    # the lost batch counts as spent: the victim answers at most max_queries - 16 - answered_first more
    assert answered_first + sum(calls) <= max_queries - 16
    assert second.queries_used <= max_queries - 16
    with pytest.raises(ValueError, match="ledger_dir"):
        DataFreeModelExtraction(victim, make_generator(build_generator("generator_8x8", framework)), ledger_dir=3)


def test_an_event_line_with_a_damaged_field_is_damage_not_a_traceback(tmp_path):
    """A line that is valid JSON but lacks a field (or has one of the wrong type) is treated like a torn line."""
    from art.estimators.classification import BlackBoxClassifier

    victim = BlackBoxClassifier(LinearVictim(SHAPE), SHAPE, 10, clip_values=(0.0, 1.0))
    clf = LedgerClassifier(victim, tmp_path, max_queries=64, batch_size=8)
    clf.predict(_x(16))
    clf.close()
    lines = (tmp_path / "ledger.jsonl").read_bytes().splitlines(keepends=True)
    for damaged in (b'"batch"', b'"n"', b'"shape"'):
        for i, line in enumerate(lines):
            if damaged in line and (b'"sent"' in line or b'"answered"' in line):
                broken = lines[:i] + [line.replace(damaged, b'"bxtch"' if damaged == b'"batch"' else b'"x"')]
                (tmp_path / "ledger.jsonl").write_bytes(b"".join(broken + lines[i + 1 :]))
                break
        try:
            resumed = LedgerClassifier(victim, tmp_path, max_queries=64, resume=True)
        except ValueError as error:  # damage followed by a sent event: refused
            assert "corrupt" in str(error)
        else:
            assert 0 <= resumed.ledger.answered <= 16 and resumed.queries_used <= 16
            resumed.close()
        (tmp_path / "ledger.jsonl").write_bytes(b"".join(lines))
