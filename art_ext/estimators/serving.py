"""
A small reference HTTP server exposing an ART classifier, for tests, docs and extraction experiments
(``art-ext serve``). Standard library only (``http.server.ThreadingHTTPServer``). It speaks three protocols:

* its own (:mod:`art_ext.estimators.wire`): ``POST /predict`` with JSON ``{"inputs", "shape"}`` or an ``.npy`` body;
  ``GET /info`` (``{"input_shape", "nb_classes", "clip_values"}``) and ``GET /stats`` (``{"answered": N}``);
* the Open Inference Protocol v2 (:mod:`art_ext.estimators.wire_v2`), as KServe, Triton and MLServer speak it:
  ``GET /v2``, ``GET /v2/health/live|ready``, ``GET /v2/models/{name}`` (metadata), ``GET /v2/models/{name}/ready``
  and ``POST /v2/models/{name}/infer``, with JSON tensors or the binary tensor data extension;
* TF Serving's REST API: ``GET /v1/models/{name}[/metadata]`` and ``POST /v1/models/{name}:predict``.

Every malformed request gets a 4xx status and one line ``{"error": message}`` and is not counted: a missing, negative
or non-integer ``Content-Length`` (411/400), a body shorter than declared (408 after `read_timeout` seconds, the
thread is freed), a body over `max_body_bytes` or a batch over `max_batch` (413), JSON nested deeper than the input's
rank, non-real values (complex, strings, booleans), NaN or infinite values, a wrong shape, values outside the served
input range (400; with ``clip=True`` they are clipped to it instead), an unknown path or model (404).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from art_ext.estimators.wire import JSON_TYPE, NPY_TYPE, decode_array, encode_array, media_type
from art_ext.estimators.wire_v2 import (
    BINARY_EXTENSION,
    decode_tfs_request,
    decode_v2_request,
    encode_tfs_response,
    encode_v2_response,
)

logger = logging.getLogger(__name__)

__all__ = ["ClassifierServer", "serve_in_thread"]

_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")
_V1_MODEL = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([^/:]+))?(/metadata|:predict)?$")
_LENGTH = re.compile(r"[0-9]{1,18}")


class ClassifierServer(ThreadingHTTPServer):
    """
    A threading HTTP server answering the three protocols of the module documentation for one ART classifier.
    Predictions are serialised by a lock (frameworks are not all thread-safe); :attr:`answered` counts the inputs
    answered.

    :param classifier: Any ART classifier (``predict``, ``input_shape``, ``nb_classes`` and ``clip_values`` are used).
    :param host: Interface to bind (default loopback).
    :param port: Port (0 picks a free one; see :attr:`port`).
    :param max_batch: Largest number of inputs in one request (larger ones get 413).
    :param max_body_bytes: Largest request body.
    :param batch_size: Batch size of ``predict``.
    :param model_name: Name of the model in the v2 and TF Serving paths.
    :param clip: Clip inputs outside the classifier's ``clip_values`` instead of refusing them.
    :param read_timeout: Seconds a connection may stay silent (headers or body) before it is answered 408 and closed.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the listen backlog (socketserver's 5 resets connections under a few dozen clients)
    input_name = "input-0"
    output_name = "output-0"

    def __init__(
        self,
        classifier: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        max_batch: int = 4096,
        max_body_bytes: int = 256 * 1024 * 1024,
        batch_size: int = 256,
        model_name: str = "model",
        clip: bool = False,
        read_timeout: float = 10.0,
    ) -> None:
        if not (isinstance(max_batch, int) and max_batch > 0):
            raise ValueError(f"`max_batch` must be a positive integer, got {max_batch!r}.")
        if not (isinstance(model_name, str) and re.fullmatch(r"[A-Za-z0-9_.\-]+", model_name)):
            raise ValueError(f"`model_name` must be letters, digits, '_', '.' or '-', got {model_name!r}.")
        if not (isinstance(read_timeout, (int, float)) and read_timeout > 0):
            raise ValueError(f"`read_timeout` must be a positive number of seconds, got {read_timeout!r}.")
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.batch_size = batch_size
        self.model_name = model_name
        self.clip = bool(clip)
        self.read_timeout = float(read_timeout)
        self.input_shape = tuple(int(d) for d in classifier.input_shape)
        self.answered = 0
        self.requests = 0
        self._lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"

    def _range(self) -> list[float] | None:
        clip = self.classifier.clip_values
        return None if clip is None else [float(np.min(clip[0])), float(np.max(clip[1]))]

    def info(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "nb_classes": int(self.classifier.nb_classes),
            "clip_values": self._range(),
        }

    def v2_metadata(self) -> dict:
        """The model's Open Inference Protocol metadata (``parameters.clip_values`` is this server's addition)."""
        return {
            "name": self.model_name,
            "versions": ["1"],
            "platform": "art-ext",
            "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, *self.input_shape]}],
            "outputs": [{"name": self.output_name, "datatype": "FP32", "shape": [-1, int(self.classifier.nb_classes)]}],
            "parameters": {"clip_values": self._range()},
        }

    def tfs_metadata(self) -> dict:
        """TF Serving's ``GET /v1/models/{name}/metadata``."""

        def shape(dims):
            return {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}

        signature = {
            "inputs": {self.input_name: {"dtype": "DT_FLOAT", "tensor_shape": shape([-1, *self.input_shape])}},
            "outputs": {
                self.output_name: {"dtype": "DT_FLOAT", "tensor_shape": shape([-1, int(self.classifier.nb_classes)])}
            },
            "method_name": "tensorflow/serving/predict",
        }
        return {
            "model_spec": {"name": self.model_name, "signature_name": "", "version": "1"},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
        }

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for `x` (checked against the input shape and range); counts the inputs answered."""
        expected = self.input_shape
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"inputs must have shape [n, {', '.join(map(str, expected))}], got {list(x.shape)}")
        if len(x) > self.max_batch:
            raise OverflowError(f"at most {self.max_batch} inputs per request, got {len(x)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("inputs contain NaN or infinite values")
        clip = self.classifier.clip_values
        if clip is not None and len(x):
            lo, hi = (np.asarray(c, dtype=np.float32) for c in clip)
            if self.clip:
                x = np.clip(x, lo, hi)
            elif np.any(x < lo) or np.any(x > hi):
                raise ValueError(
                    f"inputs must lie in the served input range {self._range()}, got values from {float(x.min()):g} "
                    f"to {float(x.max()):g} (serve with --clip to clip them)"
                )
        from art_ext.utils.outputs import predict_in_batches

        with self._lock:
            out = predict_in_batches(self.classifier, x.astype(np.float32), self.batch_size) if len(x) else None
            if out is None:
                out = np.zeros((0, self.classifier.nb_classes), dtype=np.float32)
            self.answered += len(x)
            self.requests += 1
        return np.asarray(out, dtype=np.float32)

    def stats(self) -> dict:
        with self._lock:
            return {"answered": int(self.answered)}


class _Handler(BaseHTTPRequestHandler):
    server: ClassifierServer
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: the headers and the body leave in two writes, and on a kept-alive connection Nagle's algorithm held
    # the body until the client's delayed acknowledgement (about 40 ms per request for keep-alive clients such as
    # urllib3 or tritonclient; benchmarks/serving_load.py --only transport).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # headers and body: a silent client is dropped, never waited on
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logger.debug("%s - " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = JSON_TYPE, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"))

    def _error(self, status: int, message: str, close: bool = False) -> None:
        self.close_connection = self.close_connection or close
        self._json(status, {"error": (str(message).splitlines() or [""])[0][:500]})

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv, path = self.server, self.path.split("?", 1)[0]
        v2, v1 = _V2_MODEL.match(path), _V1_MODEL.match(path)
        if path == "/stats":
            self._json(200, srv.stats())
        elif path == "/info":
            self._json(200, srv.info())
        elif path == "/v2":
            self._json(200, {"name": "art-ext", "version": "1", "extensions": [BINARY_EXTENSION]})
        elif path in ("/v2/health/live", "/v2/health/ready"):
            self._send(200, b"")
        elif (v2 and v2.group(3) != "/infer") or (v1 and v1.group(3) != ":predict"):
            match = v2 or v1
            if match.group(1) != srv.model_name:
                self._error(404, f"unknown model {match.group(1)!r}; this server serves {srv.model_name!r}")
            elif match.group(3) == "/ready":
                self._send(200, b"")
            elif v2:
                self._json(200, srv.v2_metadata())
            elif match.group(3) == "/metadata":
                self._json(200, srv.tfs_metadata())
            else:
                status = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                self._json(200, {"model_version_status": [status]})
        else:
            self._error(404, f"unknown path {path}; use POST /predict, POST /v2/models/{srv.model_name}/infer or GET")

    def _read_body(self) -> bytes | None:
        """The request body, or ``None`` after answering a 4xx (and closing: the body's end is unknown)."""
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "chunked bodies are not accepted: send a Content-Length", close=True)
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self._error(411, "Content-Length is required", close=True)
            return None
        raw = values[0].strip()
        if len(set(values)) > 1 or not _LENGTH.fullmatch(raw):
            self._error(400, f"Content-Length must be one non-negative integer, got {', '.join(values)[:40]!r}", True)
            return None
        length = int(raw)
        if length > self.server.max_body_bytes:
            self._error(413, f"body of {length} bytes is over the limit of {self.server.max_body_bytes}", close=True)
            return None
        chunks, received = [], 0
        try:
            while received < length:
                chunk = self.rfile.read1(min(length - received, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        except TimeoutError:
            self._error(
                408,
                f"body shorter than its Content-Length: {received} of {length} bytes came in "
                f"{self.server.read_timeout:g} s",
                close=True,
            )
            return None
        if received < length:
            self.close_connection = True  # the client closed its side: nobody reads an answer
            return None
        return b"".join(chunks)

    def do_POST(self) -> None:  # noqa: N802
        srv, path = self.server, self.path.split("?", 1)[0]
        body = self._read_body()
        if body is None:
            return
        v2, v1 = _V2_MODEL.match(path), _V1_MODEL.match(path)
        if not (path == "/predict" or (v2 and v2.group(3) == "/infer") or (v1 and v1.group(3) == ":predict")):
            self._error(404, f"unknown path {path}; use POST /predict or POST /v2/models/{srv.model_name}/infer")
            return
        if (v2 or v1) and (v2 or v1).group(1) != srv.model_name:
            self._error(404, f"unknown model {(v2 or v1).group(1)!r}; this server serves {srv.model_name!r}")
            return
        content_type = media_type(self.headers.get("Content-Type"))
        headers = {k.lower(): v for k, v in self.headers.items()}
        rank = len(srv.input_shape) + 1
        try:
            if v2:
                x, request = decode_v2_request(body, headers, srv.input_name, rank)
                out = srv.predict(x)
                data, extra = encode_v2_response(out, srv.model_name, srv.output_name, request["binary"], request["id"])
                ctype = "application/octet-stream" if extra else JSON_TYPE
                self._send(200, data, ctype, extra)
                return
            if v1:
                out = srv.predict(decode_tfs_request(body, rank))
                self._send(200, encode_tfs_response(out))
                return
            if content_type not in (JSON_TYPE, NPY_TYPE):
                self._error(415, f"Content-Type must be {JSON_TYPE} or {NPY_TYPE}, got {content_type}")
                return
            out = srv.predict(decode_array(body, content_type, "inputs", rank))
        except OverflowError as error:
            self._error(413, str(error))
            return
        except (ValueError, TypeError) as error:
            self._error(400, str(error))
            return
        except Exception as error:  # noqa: BLE001 (the client gets a 500, the server keeps serving)
            logger.exception("predict failed")
            self._error(500, f"{type(error).__name__}: {error}")
            return
        self._send(200, encode_array(out, content_type, "outputs"), content_type)


def serve_in_thread(classifier: Any, host: str = "127.0.0.1", port: int = 0, **kwargs) -> ClassifierServer:
    """
    Start a :class:`ClassifierServer` in a daemon thread and return it; stop it with ``server.shutdown()`` then
    ``server.server_close()``.

    :param classifier: Any ART classifier.
    :param host: Interface (default loopback).
    :param port: Port (0: a free one, read it from ``server.port``).
    :param kwargs: Passed to :class:`ClassifierServer`.
    """
    server = ClassifierServer(classifier, host=host, port=port, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name=f"art-ext-serve-{server.port}", daemon=True)
    thread.start()
    server.thread = thread
    return server
