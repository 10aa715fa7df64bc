"""RemoteClassifier against a loopback test server: payloads, retries, timeouts, concurrency, rate limit, accounting."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _victim_server import LinearVictim, VictimServer

from art_ext.estimators.classification import RemoteClassifier, RemoteQueryError

SHAPE = (1, 8, 8)


@pytest.fixture
def server():
    with VictimServer(LinearVictim(SHAPE)) as srv:
        yield srv


def _expected(server, x, batch_size):
    """The model's outputs batch by batch, as the server computes them (BLAS results depend on the batch)."""
    return np.concatenate([server.model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _x(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n,) + SHAPE).astype(np.float32)


@pytest.mark.parametrize("payload", ["json", "npy"])
def test_answers_match_the_model_and_are_counted(server, payload):
    clf = RemoteClassifier(server.url, SHAPE, 10, clip_values=(0.0, 1.0), batch_size=16, payload=payload)
    x = _x(40)
    out = clf.predict(x)
    assert out.dtype == np.float32 and out.shape == (40, 10)
    np.testing.assert_array_equal(out, _expected(server, x, 16))  # float32 round trip is exact for both payloads
    assert (clf.queries_sent, clf.queries_answered, clf.requests_sent, clf.retries) == (40, 40, 3, 0)
    assert clf.stats() == {"answered": 40} and server.answered == 40
    assert clf.predict(x[:0]).shape == (0, 10) and server.received == 3  # nothing sent for an empty batch


def test_from_url_reads_info_and_predict_batch_size_applies(server):
    clf = RemoteClassifier.from_url(server.url, concurrency=2)
    assert clf.input_shape == SHAPE and clf.nb_classes == 10
    np.testing.assert_array_equal(clf.clip_values, [0.0, 1.0])
    assert clf.concurrency == 2 and clf.batch_size is None
    clf.predict(_x(10), batch_size=4)  # no batch size of its own: predict's is used
    assert clf.requests_sent == 3


def test_retries_5xx_with_backoff(server):
    server.fail_next = 2
    clf = RemoteClassifier(server.url, SHAPE, 10, batch_size=8, max_retries=3, backoff=0.01)
    x = _x(8)
    np.testing.assert_array_equal(clf.predict(x), server.model(x))
    assert clf.retries == 2 and clf.requests_sent == 3
    assert clf.queries_sent == 24 and clf.queries_answered == 8 and server.answered == 8


def test_gives_up_after_max_retries_and_on_client_errors(server):
    server.fail_next = 5
    clf = RemoteClassifier(server.url, SHAPE, 10, max_retries=1, backoff=0.01)
    with pytest.raises(RemoteQueryError, match="failed 2 time") as info:
        clf.predict(_x(4))
    assert info.value.status == 503 and server.received == 2 and clf.queries_answered == 0
    server.fail_next, server.fail_status = 1, 403
    with pytest.raises(RemoteQueryError, match="HTTP 403") as info:
        clf.predict(_x(4))
    assert info.value.status == 403 and server.received == 3  # a 4xx is not retried


def test_dropped_response_is_retried_and_the_server_count_lies_between_answered_and_sent(server):
    server.drop_next = 1
    clf = RemoteClassifier(server.url, SHAPE, 10, batch_size=5, backoff=0.01)
    x = _x(10)
    np.testing.assert_array_equal(clf.predict(x), _expected(server, x, 5))
    assert clf.retries == 1 and clf.queries_answered == 10
    assert clf.queries_answered < server.answered == 15 <= clf.queries_sent == 15


def test_timeout_is_a_retryable_failure(server):
    server.delay = 0.6
    clf = RemoteClassifier(server.url, SHAPE, 10, timeout=0.15, max_retries=1, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(RemoteQueryError, match="(?i)timed? ?out"):
        clf.predict(_x(3))
    assert time.monotonic() - start < 1.5
    assert server.received == 2 and clf.queries_sent == 6 and clf.queries_answered == 0


def test_several_requests_in_flight_keep_their_order(server):
    server.delay = 0.15
    clf = RemoteClassifier(server.url, SHAPE, 10, batch_size=4, concurrency=4)
    x = _x(32)
    np.testing.assert_array_equal(clf.predict(x), _expected(server, x, 4))
    assert 2 <= server.max_in_flight <= 4
    assert clf.requests_sent == 8 and server.answered == 32


def test_rate_limit_spaces_request_starts(server):
    clf = RemoteClassifier(server.url, SHAPE, 10, batch_size=1, concurrency=3, rate_limit=20.0)
    clf.predict(_x(6))
    starts = sorted(server.start_times)
    assert starts[-1] - starts[0] >= 5 / 20.0 * 0.9


def test_failure_of_one_request_stops_the_others(server):
    server.fail_next, server.fail_status = 1, 400
    server.delay = 0.05
    clf = RemoteClassifier(server.url, SHAPE, 10, batch_size=1, concurrency=2)
    with pytest.raises(RemoteQueryError):
        clf.predict(_x(40))
    assert server.received < 10  # the queued requests were cancelled


def test_bad_inputs_and_parameters_fail_before_any_request(server):
    clf = RemoteClassifier(server.url, SHAPE, 10)
    with pytest.raises(ValueError, match="`x` must have shape"):
        clf.predict(np.zeros((2, 64), np.float32))
    x = _x(2)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`x` contains NaN"):
        clf.predict(x)
    assert server.received == 0
    for kwargs, match in [
        ({"url": server.url + "/predict"}, "base address"),
        ({"url": "ftp://host"}, "http"),
        ({"payload": "xml"}, "payload"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": -1.0}, "timeout"),
        ({"batch_size": 0}, "batch_size"),
        ({"rate_limit": 0.0}, "rate_limit"),
    ]:
        args = {"url": server.url, "input_shape": SHAPE, "nb_classes": 10, **kwargs}
        with pytest.raises(ValueError, match=match):
            RemoteClassifier(**args)


def test_set_params_round_trip(server):
    clf = RemoteClassifier(server.url, SHAPE, 10, batch_size=8, concurrency=2)
    params = clf.get_params()
    assert params["batch_size"] == 8 and params["url"] == server.url and params["input_shape"] == SHAPE
    clf.set_params(batch_size=4, concurrency=3)
    assert clf.get_params()["batch_size"] == 4 and clf.concurrency == 3
    with pytest.raises(ValueError, match="concurrency"):
        clf.set_params(concurrency=0)


@pytest.mark.kernels
def test_dfme_against_the_endpoint_matches_the_in_process_victim(framework, server, single_thread):
    """Same seeds, same budget: requests in flight change nothing, the student is the same to the last bit."""
    from art.estimators.classification import BlackBoxClassifier

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.backend import get_backend
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

    shape = ARCHITECTURES["digits_cnn"][0 if framework == "pytorch" else 1]
    server.model = LinearVictim(shape)

    def steal(victim):
        attack = DataFreeModelExtraction(
            victim,
            make_generator(build_generator("generator_8x8", framework, seed=2)),
            max_queries=16 * 4 * 3,
            batch_size=16,
            n_student_steps=2,
            random_state=0,
            verbose=False,
        )
        student = make_classifier(build_model("digits_cnn", framework, seed=1), input_shape=shape)
        attack.extract(thieved_classifier=student)
        return attack, get_backend(framework).get_weights(student)

    local, local_weights = steal(BlackBoxClassifier(server.model, shape, 10, clip_values=(0.0, 1.0)))
    remote = RemoteClassifier(server.url, shape, 10, clip_values=(0.0, 1.0), concurrency=2, payload="npy")
    attack, remote_weights = steal(remote)
    assert attack.queries_used == local.queries_used == remote.queries_answered == server.answered == 16 * 4 * 3
    assert remote.requests_sent == server.answered // 16  # one request per batch of 16, two in flight per step
    for a, b in zip(local_weights, remote_weights):
        np.testing.assert_array_equal(a, b)
