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


@pytest.mark.kernels
def test_dfme_against_the_served_model_matches_the_in_process_victim(
    framework, digits_cnn_classifier_probabilities, outcome
):
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

    # The served victim answers each request of 8 inputs as a batch of 8, while in process DFME asks for 32 at once;
    # PyTorch's AVX2/AVX-512 kernels and TensorFlow's oneDNN compute a row differently in batches of different sizes
    # (measured up to 0.0039 apart in the students' weights after DFME amplifies the last-bit differences). The
    # reference therefore asks the same victim in the same batches of 8, so both runs see identical answers and
    # the test compares what the remote plumbing (concurrency, batching, the budget) does, on every processor.
    # Measured on TensorFlow, largest weight difference served vs in process: 0.0064 / 0.0037 (oneDNN off / on) against
    # a victim asked for 32 at once (its answers 1e-6 / 2e-7 apart), 0.0 against the victim asked in batches of 8.
    from art.estimators.classification import BlackBoxClassifier

    from art_ext.utils.outputs import predict_in_batches

    in_batches_of_8 = BlackBoxClassifier(lambda x: predict_in_batches(victim, x, 8), shape, 10, clip_values=(0.0, 1.0))
    local, local_weights = steal(in_batches_of_8)
    srv = serve_in_thread(victim, max_batch=64)
    try:
        remote = RemoteClassifier(srv.url, shape, 10, clip_values=(0.0, 1.0), concurrency=4, batch_size=8)
        attack, remote_weights = steal(remote)
        answered = srv.answered
    finally:
        srv.shutdown()
        srv.server_close()
    assert attack.queries_used == local.queries_used == remote.queries_answered == answered <= budget
    # allclose(rtol=1e-4, atol=1e-5) as one number: the largest |a - b| / (1e-5 + 1e-4 |b|), at most 1.
    worst = max(float(np.max(np.abs(a - b) / (1e-5 + 1e-4 * np.abs(b)))) for a, b in zip(local_weights, remote_weights))
    # measured PyTorch 0, TensorFlow 0 over 8 kernel variants; smallest margin 1 (<= 1 needed, pytorch/avx2/1)
    outcome.check("largest student weight difference served vs in process, in allclose tolerances", worst, "<=", 1.0)
    for a, b in zip(local_weights, remote_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _raw(server, data: bytes, timeout: float = 10.0):
    """Send raw bytes on a fresh connection; the status and the one-line error (or body) of the answer."""
    import http.client
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read()
        closed = resp.will_close
    payload = json.loads(body) if body[:1] == b"{" else body
    return resp.status, payload, closed


def _post_raw(body: bytes, length: str | None = "auto", path: str = "/predict", ctype: str = "application/json"):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
    if length == "auto":
        length = str(len(body))
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


@pytest.mark.parametrize(
    "length, status, match",
    [
        (None, 411, "Content-Length is required"),
        ("-1", 400, "non-negative integer"),
        ("abc", 400, "integer"),
        ("1e3", 400, "integer"),
        ("99999999999", 413, "over the limit"),
    ],
)
def test_bad_content_length_gets_a_4xx_line_and_closes(server, length, status, match):
    code, payload, closed = _raw(server, _post_raw(b'{"inputs": []}', length))
    assert code == status and match in payload["error"] and closed
    assert "\n" not in payload["error"]
    assert json.loads(_request(server.url + "/stats")[2]) == {"answered": 0}


def test_short_body_times_out_with_408_and_frees_the_thread(classifier):
    srv = serve_in_thread(classifier, read_timeout=0.4)
    try:
        start = time.monotonic()
        code, payload, closed = _raw(srv, _post_raw(b'{"inputs": [', length="100"))
        assert code == 408 and "12 of 100 bytes" in payload["error"] and closed
        assert time.monotonic() - start < 5
        # a client that sends nothing at all is dropped too (no answer owed: it sent no request)
        import socket

        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            assert sock.recv(10) == b""
    finally:
        srv.shutdown()
        srv.server_close()


def test_malformed_bodies_get_one_line_400s_and_nothing_is_counted(server, classifier):
    rank = len(classifier.input_shape) + 1
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    one_deeper = json.dumps({"inputs": np.zeros((1, 1, *classifier.input_shape)).tolist()}).encode()
    strings = json.dumps({"inputs": [["0.5"] * int(np.prod(classifier.input_shape))]}).encode()
    sneaky = b'{"inputs": "]]]]]]]]", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # brackets inside strings
    x_c = np.zeros((2, *classifier.input_shape), dtype=np.complex64)
    buffer = io.BytesIO()
    np.save(buffer, x_c)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases = [
        (deep, JSON_TYPE_, "nested 100001 deep"),
        (one_deeper, JSON_TYPE_, f"nested {rank + 2} deep"),
        (sneaky, JSON_TYPE_, "nested 5001 deep"),
        (strings, JSON_TYPE_, "string"),
        (b'{"inputs": [[true, false]]}', JSON_TYPE_, "boolean"),
        (b'{"inputs": [[1e999]]}', JSON_TYPE_, "shape"),
        (buffer.getvalue(), NPY_TYPE, "complex"),
        (pickled.getvalue(), NPY_TYPE, "not a .npy array"),
        (b"\x93NUMPY garbage", NPY_TYPE, "not a .npy array"),
        (b"\xff\xfe", JSON_TYPE_, "UTF-8"),
    ]
    for body, ctype, match in cases:
        code, payload, closed = _raw(server, _post_raw(body, ctype=ctype))
        assert code == 400 and match in payload["error"], (match, code, payload)
        assert "\n" not in payload["error"] and not closed
    assert json.loads(_request(server.url + "/stats")[2]) == {"answered": 0}


JSON_TYPE_ = "application/json"


def test_inputs_outside_the_served_range_are_refused_unless_clip(server, classifier, digits):
    _, (x_test, _), _, _ = digits
    x = x_test[:3].copy()
    x[0].flat[0] = 1e30
    x[1].flat[1] = -0.5
    status, _, body = _post_json(server, x)
    assert status == 400 and "input range [0.0, 1.0]" in json.loads(body)["error"] and "--clip" in body.decode()
    srv = serve_in_thread(classifier, clip=True)
    try:
        status, _, body = _post_json(srv, x)
        assert status == 200
        expected = classifier.predict(np.clip(x, 0.0, 1.0))
        np.testing.assert_allclose(json.loads(body)["outputs"], expected, rtol=1e-5, atol=1e-6)
        assert srv.answered == 3
    finally:
        srv.shutdown()
        srv.server_close()
    assert json.loads(_request(server.url + "/stats")[2]) == {"answered": 0}


def test_dfme_command_steals_an_endpoint_and_resumes_from_its_ledger(
    framework, digits_cnn_classifier_probabilities, tmp_path, capsys
):
    """`art-ext dfme --victim URL --ledger DIR`: the server answers the budget once; a second run pays nothing."""
    from art_ext.cli.main import main

    srv = serve_in_thread(digits_cnn_classifier_probabilities, model_name="digits")
    out = tmp_path / "out"
    args = ["dfme", "--framework", framework, "--victim", srv.url + "/v2/models/digits", "--budget", "384"]
    args += ["--batch-size", "32", "--ledger", str(tmp_path / "ledger"), "--out", str(out), "--quiet"]
    try:
        assert main(args) == 0
        first = srv.answered
        table = capsys.readouterr().out
        assert 0 < first <= 384 and f"| {first} " in table  # the queries column is what the server answered
        student = out / ("student.pt" if framework == "pytorch" else "student.keras")
        assert student.is_file()
        assert main(args) == 0  # started again: every batch is replayed from the ledger
        assert srv.answered == first
    finally:
        srv.shutdown()
        srv.server_close()
    assert main(["dfme", "--ledger", str(tmp_path / "l2")]) == 2
    assert "--victim URL" in capsys.readouterr().err
    assert main(["dfme", "--victim", "http://127.0.0.1:1/v2/models/x", "--header", "no colon"]) == 2


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_speaks_to_the_served_model(server, classifier, digits, binary):
    """Triton's own HTTP client (the reference of the binary tensor extension) against art-ext serve's v2 endpoint."""
    triton = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    _, (x_test, _), _, _ = digits
    x = np.ascontiguousarray(x_test[:5], dtype=np.float32)
    client = triton.InferenceServerClient(server.url.split("//")[1])
    try:
        assert client.is_server_ready() and client.is_model_ready("model")
        meta = client.get_model_metadata("model")
        assert meta["inputs"][0]["shape"] == [-1, *classifier.input_shape]
        inp = triton.InferInput("input-0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("model", [inp], outputs=[triton.InferRequestedOutput("output-0", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("output-0"), classifier.predict(x), rtol=1e-5, atol=1e-6)
        assert server.answered == 5
    finally:
        client.close()
