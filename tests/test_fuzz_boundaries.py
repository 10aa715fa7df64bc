"""
Property-based tests (Hypothesis) over every boundary that takes bytes from outside: the wire decoders (both
protocols, both sides), the server, RemoteClassifier's answer parsing, the query ledger's files, user .npz and
image-folder data, ``package.module:factory`` strings and state dicts. Each property: no traceback (only the one
documented error type, with a one-line message), no hang (a deadline), nothing counted that was not answered.
"""

from __future__ import annotations

import io
import json
import socket
from datetime import timedelta

import numpy as np
import pytest
from _victim_server import CannedServer, LinearVictim

hypothesis = pytest.importorskip("hypothesis", reason="the property suite needs hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from art_ext.estimators.wire import JSON_TYPE, NPY_TYPE, decode_array  # noqa: E402
from art_ext.estimators.wire_v2 import (  # noqa: E402
    decode_tfs_request,
    decode_tfs_response,
    decode_v2_request,
    decode_v2_response,
)

SHAPE = (1, 4, 4)
FAST = settings(
    max_examples=60,
    deadline=timedelta(seconds=10),
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# JSON values that look like requests and answers: numbers (NaN, inf, huge), strings, booleans, nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
keys = st.sampled_from(["inputs", "outputs", "shape", "data", "datatype", "name", "instances", "predictions", "x"])
datatypes = st.sampled_from(["FP32", "FP64", "FP16", "INT8", "UINT8", "BOOL", "BYTES", "fp32", None, 3])


@st.composite
def tensors(draw, name=None):
    """v2 tensors, often nearly right."""
    shape = draw(st.lists(st.integers(-1, 4), max_size=4) | st.just([2, 10]) | json_values)
    tensor = {"name": name or draw(st.text(max_size=6)), "shape": shape, "datatype": draw(datatypes)}
    if draw(st.booleans()):
        tensor["data"] = draw(json_values | st.lists(st.floats(allow_nan=True), max_size=24))
    else:
        tensor["parameters"] = {"binary_data_size": draw(st.integers(-4, 200) | json_values)}
    return tensor


@st.composite
def bodies(draw):
    """Raw bytes, JSON of any shape, or a v2 message with or without binary data."""
    kind = draw(st.sampled_from(["bytes", "json", "v2"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), {}
    if kind == "json":
        return json.dumps(draw(st.dictionaries(keys, json_values, max_size=4) | json_values)).encode(), {}
    head = json.dumps(
        {"inputs": draw(st.lists(tensors("in"), max_size=2)), "outputs": draw(st.lists(tensors("out"), max_size=2))}
    )
    tail = draw(st.binary(max_size=200))
    length = draw(st.sampled_from([str(len(head)), "-1", "abc", str(len(head) + len(tail) + 5), "0"]))
    return head.encode() + tail, {"inference-header-content-length": length}


def _one_line(error: BaseException) -> None:
    assert "\n" not in str(error) and str(error), repr(error)


@FAST
@given(bodies(), st.sampled_from([JSON_TYPE, NPY_TYPE]))
def test_wire_decoders_raise_one_value_error_or_give_a_real_array(body_headers, ctype):
    body, headers = body_headers
    decoders = [
        lambda: decode_array(body, ctype, "inputs", rank=4),
        lambda: decode_v2_request(body, headers, "in", rank=4),
        lambda: decode_v2_response(body, headers, None, (2, 10)),
        lambda: decode_v2_response(body, headers, "out", (2, 10)),
        lambda: decode_tfs_request(body, rank=4),
        lambda: decode_tfs_response(body, None, (2, 10)),
    ]
    for decode in decoders:
        try:
            out = decode()
        except ValueError as error:
            _one_line(error)
            continue
        array = out[0] if isinstance(out, tuple) else out
        assert isinstance(array, np.ndarray) and array.dtype == np.float32


@FAST
@given(st.sampled_from([np.complex64, np.bool_, "U3", "S2", "V4", "M8[s]", np.int64, np.float16]), st.integers(0, 3))
def test_npy_bodies_of_every_dtype(dtype, n):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((n, 2), dtype=dtype))
    try:
        out = decode_array(buffer.getvalue(), NPY_TYPE, "inputs")
    except ValueError as error:
        _one_line(error)
        assert np.dtype(dtype).kind not in "fiu"
    else:
        assert np.dtype(dtype).kind in "fiu" and out.dtype == np.float32 and out.shape == (n, 2)


# ---------------------------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def server():
    from art.estimators.classification import BlackBoxClassifier

    from art_ext.estimators.serving import serve_in_thread

    srv = serve_in_thread(BlackBoxClassifier(LinearVictim(SHAPE), SHAPE, 10, clip_values=(0.0, 1.0)), read_timeout=2.0)
    yield srv
    srv.shutdown()
    srv.server_close()


def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    import http.client

    with socket.create_connection(("127.0.0.1", port), timeout=8) as sock:
        sock.sendall(request)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.read()


@FAST
@given(
    bodies(),
    st.sampled_from(["/predict", "/v2/models/model/infer", "/v1/models/model:predict", "/v2/models/x/infer", "/"]),
    st.sampled_from([JSON_TYPE, NPY_TYPE, "text/plain", "application/octet-stream"]),
    st.sampled_from(["exact", "missing", "-1", "abc", "short"]),
)
def test_server_answers_every_request_with_a_status_and_counts_only_answers(server, body_headers, path, ctype, length):
    body, headers = body_headers
    declared = {"exact": str(len(body)), "missing": None, "-1": "-1", "abc": "abc", "short": str(len(body) + 3)}[length]
    if length == "short":
        server.read_timeout = 0.2
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {declared}\r\n" if declared is not None else ""
    before = server.stats()["answered"]
    try:
        status, answer = _exchange(server.port, head.encode() + b"\r\n" + body)
    finally:
        server.read_timeout = 2.0
    after = server.stats()["answered"]
    assert status == 200 or 400 <= status < 500, (status, answer[:200])
    if status != 200:
        assert after == before and "\n" not in json.loads(answer)["error"]
    else:
        assert after >= before  # answered rows are counted (other examples never run concurrently)


# ---------------------------------------------------------------------------------- RemoteClassifier's answers
@pytest.fixture(scope="module")
def canned():
    with CannedServer({}) as srv:
        yield srv


@FAST
@given(bodies(), st.sampled_from(["native", "v2", "tfserving"]), st.sampled_from([200, 400, 404, 503]))
def test_remote_classifier_refuses_malformed_answers_and_counts_each_answer_once(canned, body_headers, protocol, code):
    from art_ext.estimators.classification import RemoteClassifier, RemoteQueryError

    body, headers = body_headers
    path = {
        "native": ("", "/predict"),
        "v2": ("/v2/models/m", "/v2/models/m/infer"),
        "tfserving": ("/v1/models/m", "/v1/models/m:predict"),
    }
    base, post = path[protocol]
    extra = {"Inference-Header-Content-Length": headers["inference-header-content-length"]} if headers else {}
    canned.routes = {("POST", post): (code, extra, body)}
    canned.posts = 0
    clf = RemoteClassifier(canned.url + base, (1, 2, 2), 10, input_name="in", max_retries=0, timeout=5)
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 2, 2)).astype(np.float32)
    try:
        out = clf.predict(x)
    except RemoteQueryError as error:
        _one_line(error)
        assert clf.queries_answered == (2 if code == 200 else 0)
    else:
        assert code == 200 and out.shape == (2, 10) and np.all(np.isfinite(out)) and out.dtype == np.float32
        assert clf.queries_answered == 2
    assert canned.posts == 1 and clf.queries_sent == 2


# ------------------------------------------------------------------------------------------------ the ledger
@pytest.fixture(scope="module")
def ledger_files(tmp_path_factory):
    """A real ledger of 3 answered batches (its files' bytes) and the answers it recorded."""
    from art.estimators.classification import BlackBoxClassifier

    from art_ext.estimators.classification import LedgerClassifier
    from art_ext.estimators.classification.query_ledger import inputs_digest

    folder = tmp_path_factory.mktemp("ledger")
    model = LinearVictim(SHAPE)
    clf = LedgerClassifier(BlackBoxClassifier(model, SHAPE, 10), str(folder), max_queries=100)
    x = np.random.default_rng(1).uniform(0, 1, (12, *SHAPE)).astype(np.float32)
    answers = {inputs_digest(x[i : i + 4]): model(x[i : i + 4]) for i in range(0, 12, 4)}
    clf.predict(x, batch_size=4)
    clf.close()
    return {name: (folder / name).read_bytes() for name in ("ledger.jsonl", "answers.bin")}, answers


@FAST
@given(st.data())
def test_a_damaged_ledger_is_refused_or_resumed_with_only_verified_answers(ledger_files, tmp_path_factory, data):
    from art_ext.estimators.classification.query_ledger import QueryLedger

    files, answers = ledger_files
    folder = tmp_path_factory.mktemp("damaged")
    for name, raw in files.items():
        raw = bytearray(raw)
        for _ in range(data.draw(st.integers(0, 3), label=f"flips in {name}")):
            if raw:
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(raw)), label=f"length of {name}")
        (folder / name).write_bytes(bytes(raw[:cut]) + data.draw(st.binary(max_size=40), label=f"tail of {name}"))
    try:
        ledger = QueryLedger(str(folder), resume=True, header={"input_shape": list(SHAPE), "nb_classes": 10})
    except (ValueError, RuntimeError) as error:
        _one_line(error)
        return
    try:
        assert 0 <= ledger.answered <= 12 and ledger.spent >= 0
        for digest, expected in answers.items():
            replayed = ledger.replay(digest)
            assert replayed is None or np.array_equal(replayed, expected)  # checksummed: never a damaged answer
    finally:
        ledger.close()


# ----------------------------------------------------------------------------------------------- user data
@FAST
@given(st.binary(max_size=400), st.booleans())
def test_user_npz_and_image_files_of_any_bytes_give_one_audit_data_error(tmp_path_factory, raw, as_image):
    from art_ext.data.user_data import AuditDataError, load_audit_data

    folder = tmp_path_factory.mktemp("data")
    if as_image:
        (folder / "cat").mkdir()
        (folder / "cat" / "a.png").write_bytes(raw)
        spec = str(folder)
    else:
        spec = str(folder / "d.npz")
        (folder / "d.npz").write_bytes(raw)
    with pytest.raises(AuditDataError) as info:
        load_audit_data(spec)
    _one_line(info.value)


@FAST
@given(
    st.sampled_from([np.float32, np.int8, np.complex64, object, "U2", np.bool_]),
    st.sampled_from([np.int64, np.float32, object, "U2"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from([np.nan, np.inf, 0.5]),
)
def test_user_npz_arrays_are_checked(tmp_path_factory, x_dtype, y_dtype, nx, ny, value):
    from art_ext.data.user_data import AuditDataError, load_audit_data

    path = tmp_path_factory.mktemp("npz") / "d.npz"
    x = np.full((nx, 2), value if np.dtype(x_dtype).kind in "fc" else 1).astype(x_dtype)
    y = np.arange(ny).astype(y_dtype)
    np.savez(path, x=x, y=y)  # object arrays are pickled: they must be refused, never unpickled
    try:
        data = load_audit_data(str(path))
    except AuditDataError as error:
        _one_line(error)
    else:
        assert np.dtype(x_dtype).kind in "fiu" and np.dtype(y_dtype).kind in "fiu"  # never cast from complex
        assert data.x.dtype == np.float32 and np.all(np.isfinite(data.x)) and len(data.x) == len(data.y) > 0


# ---------------------------------------------------------------------------------- factories and state dicts
class _Payload:
    """Unpickling this object would create the file `marker`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@FAST
@given(
    st.sampled_from(
        [
            "fuzz_factory:make",
            "fuzz_factory:missing",
            "fuzz_factory:not_callable",
            "fuzz_factory:boom",
            "fuzz_factory:returns_int",
            "no_such_module_xyz:make",
            "fuzz_factory:",
            ":make",
        ]
    ),
    st.sampled_from(["none", "pickle", "bytes", "good"]),
    st.binary(max_size=64),
)
def test_factories_and_state_dicts_never_run_a_pickle(tmp_path_factory, monkeypatch, spec, weights_kind, raw):
    torch = pytest.importorskip("torch")
    from art_ext.estimators.loading import ModelLoadError, _load_factory

    folder = tmp_path_factory.mktemp("factory")
    (folder / "fuzz_factory.py").write_text(
        "import torch\nnot_callable = 3\n"
        "def make():\n    return torch.nn.Linear(4, 3)\n"
        "def boom():\n    raise RuntimeError('no\\nmodel')\n"
        "def returns_int():\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    marker = folder / "pickle_ran"
    weights = None
    if weights_kind != "none":
        weights = str(folder / "w.pt")
        if weights_kind == "pickle":
            torch.save({"weight": _Payload(str(marker))}, weights)
        elif weights_kind == "good":
            torch.save(torch.nn.Linear(4, 3).state_dict(), weights)
        else:
            (folder / "w.pt").write_bytes(raw)
    try:
        model, framework = _load_factory(spec, weights)
    except ModelLoadError as error:
        _one_line(error)
    else:
        assert spec == "fuzz_factory:make" and weights_kind in ("none", "good") and framework == "pytorch"
    assert not marker.exists()  # the pickled payload never ran
