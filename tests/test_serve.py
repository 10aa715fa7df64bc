"""The reference HTTP server (``art-ext serve``): wire protocol, query counting, bad requests, the command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from art_ext.estimators.serving import NPY_TYPE, serve_in_thread
from art_ext.models import ARCHITECTURES, build_model, make_classifier

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def classifier(framework):
    shape = ARCHITECTURES["digits_mlp"][0 if framework == "pytorch" else 1]
    return make_classifier(build_model("digits_mlp", framework, seed=0), shape)


@pytest.fixture()
def server(classifier):
    srv = serve_in_thread(classifier, max_batch=64)
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(url, body=None, content_type="application/json"):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def _post_json(server, x):
    body = json.dumps({"inputs": x.tolist(), "shape": list(x.shape)}).encode()
    return _request(server.url + "/predict", body)


def test_json_and_npy_predictions_match_the_classifier(server, classifier, digits):
    _, (x_test, _), _, _ = digits
    x = x_test[:10]
    expected = classifier.predict(x)
    status, ctype, body = _post_json(server, x)
    assert status == 200 and ctype == "application/json"
    answer = json.loads(body)
    assert answer["shape"] == [10, 10]
    np.testing.assert_allclose(np.asarray(answer["outputs"], dtype=np.float32), expected, rtol=1e-5, atol=1e-5)

    buffer = io.BytesIO()
    np.save(buffer, x_test[10:17])
    status, ctype, body = _request(server.url + "/predict", buffer.getvalue(), NPY_TYPE)
    assert status == 200 and ctype == NPY_TYPE
    out = np.load(io.BytesIO(body), allow_pickle=False)
    assert out.dtype == np.float32 and out.shape == (7, 10)
    np.testing.assert_allclose(out, classifier.predict(x_test[10:17]), rtol=1e-5, atol=1e-5)

    status, _, body = _request(server.url + "/stats")
    assert status == 200 and json.loads(body) == {"answered": 17}
    status, _, body = _request(server.url + "/info")
    info = json.loads(body)
    assert info == {"input_shape": list(classifier.input_shape), "nb_classes": 10, "clip_values": [0.0, 1.0]}


def test_bad_requests_are_refused_and_not_counted(server, classifier, digits):
    _, (x_test, _), _, _ = digits
    status, _, body = _post_json(server, x_test[:3].reshape(3, -1))
    assert status == 400 and "shape" in json.loads(body)["error"]
    status, _, body = _request(server.url + "/predict", b'{"inputs": [1, 2], "shape": [5]}')
    assert status == 400 and "does not match" in json.loads(body)["error"]
    status, _, _ = _request(server.url + "/predict", b"not json")
    assert status == 400
    status, _, _ = _request(server.url + "/predict", b"abc", "text/plain")
    assert status == 415
    status, _, body = _post_json(server, np.repeat(x_test[:1], 65, axis=0))
    assert status == 413 and "64" in json.loads(body)["error"]
    x_nan = x_test[:2].copy()
    x_nan[0].flat[0] = np.nan
    status, _, _ = _post_json(server, x_nan)
    assert status == 400
    assert _request(server.url + "/nope")[0] == 404
    assert _request(server.url + "/nope", b"{}")[0] == 404
    assert json.loads(_request(server.url + "/stats")[2]) == {"answered": 0}


def test_concurrent_requests_are_all_counted(server, digits):
    _, (x_test, _), _, _ = digits
    errors = []

    def client(k):
        for j in range(5):
            status, _, body = _post_json(server, x_test[k * 5 + j : k * 5 + j + 3])
            if status != 200 or json.loads(body)["shape"] != [3, 10]:
                errors.append((status, body))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert json.loads(_request(server.url + "/stats")[2]) == {"answered": 4 * 5 * 3}


def test_serve_command_on_a_saved_model(framework, classifier, digits, tmp_path):
    _, (x_test, _), _, _ = digits
    if framework == "pytorch":
        import torch

        path = tmp_path / "mlp.pt"
        torch.jit.save(torch.jit.script(classifier.model.eval()), str(path))
    else:
        path = tmp_path / "mlp.keras"
        classifier.model.save(str(path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "art_ext.cli", "serve", str(path), "--port", "0", "--data", "digits"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    try:
        url, deadline = None, time.time() + 120
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "listening on " in line:
                url = line.split("listening on ")[1].split()[0]
        assert url is not None and url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() else url
        status, _, body = _post_json(type("S", (), {"url": url})(), x_test[:4])
        assert status == 200
        np.testing.assert_allclose(json.loads(body)["outputs"], classifier.predict(x_test[:4]), rtol=1e-4, atol=1e-5)
        assert json.loads(_request(url + "/stats")[2]) == {"answered": 4}
    finally:
        proc.terminate()
        proc.wait(30)


def test_serve_command_rejects_a_bad_model(tmp_path, capsys):
    from art_ext.cli.main import main

    assert main(["serve", str(tmp_path / "missing.pt"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("art-ext serve: error: MODEL") and "Traceback" not in err


def test_dfme_against_the_served_model_matches_the_in_process_victim(framework, digits_cnn_classifier_probabilities):
    """
    DFME against the reference server on loopback, 4 requests in flight, reaches the same student as against the
    victim in process (same seeds, same budget), and the server answered exactly the budget.
    """
    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.backend import get_backend
    from art_ext.estimators.classification import RemoteClassifier
    from art_ext.models import build_generator, input_shape_of, make_generator

    victim = digits_cnn_classifier_probabilities
    shape = input_shape_of("digits_cnn", framework)
    budget = 32 * 4 * 4

    def steal(target):
        attack = DataFreeModelExtraction(
            target,
            make_generator(build_generator("generator_8x8", framework, seed=2)),
            max_queries=budget,
            batch_size=32,
            n_student_steps=2,
            random_state=0,
            verbose=False,
        )
        student = make_classifier(build_model("digits_cnn", framework, seed=1), input_shape=shape)
        attack.extract(thieved_classifier=student)
        return attack, get_backend(framework).get_weights(student)

    local, local_weights = steal(victim)
    srv = serve_in_thread(victim, max_batch=64)
    try:
        remote = RemoteClassifier(srv.url, shape, 10, clip_values=(0.0, 1.0), concurrency=4, batch_size=8)
        attack, remote_weights = steal(remote)
        answered = srv.answered
    finally:
        srv.shutdown()
        srv.server_close()
    assert attack.queries_used == local.queries_used == remote.queries_answered == answered <= budget
    for a, b in zip(local_weights, remote_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
