"""
A tiny reference HTTP server exposing an ART classifier, for tests, docs and extraction experiments on loopback
(``art-ext serve``). Standard library only (``http.server.ThreadingHTTPServer``).

Wire protocol:

* ``POST /predict`` with ``Content-Type: application/json`` and body ``{"inputs": nested list, "shape": [n, ...]}``
  answers ``{"outputs": nested list, "shape": [n, nb_classes]}``; with ``Content-Type: application/x-npy`` and a
  ``.npy`` body it answers a ``.npy`` body (float32).
* ``GET /stats`` answers ``{"answered": N}``: the inputs answered so far.
* ``GET /info`` answers ``{"input_shape": [...], "nb_classes": K, "clip_values": [lo, hi] or null}``.

Errors are JSON ``{"error": message}`` with status 400 (bad request), 404, 413 (too large) or 500.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from art_ext.estimators.wire import JSON_TYPE, NPY_TYPE, decode_array, encode_array, media_type

logger = logging.getLogger(__name__)

__all__ = ["ClassifierServer", "serve_in_thread"]


class ClassifierServer(ThreadingHTTPServer):
    """
    A threading HTTP server answering ``/predict``, ``/stats`` and ``/info`` for one ART classifier. Predictions are
    serialised by a lock (frameworks are not all thread-safe); :attr:`answered` counts the inputs answered.

    :param classifier: Any ART classifier (``predict`` is all that is called).
    :param host: Interface to bind (default loopback).
    :param port: Port (0 picks a free one; see :attr:`port`).
    :param max_batch: Largest number of inputs in one request (larger ones get 413).
    :param max_body_bytes: Largest request body.
    :param batch_size: Batch size of ``predict``.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        classifier: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        max_batch: int = 4096,
        max_body_bytes: int = 256 * 1024 * 1024,
        batch_size: int = 256,
    ) -> None:
        if not (isinstance(max_batch, int) and max_batch > 0):
            raise ValueError(f"`max_batch` must be a positive integer, got {max_batch!r}.")
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.batch_size = batch_size
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

    def info(self) -> dict:
        clip = self.classifier.clip_values
        return {
            "input_shape": [int(d) for d in self.classifier.input_shape],
            "nb_classes": int(self.classifier.nb_classes),
            "clip_values": None if clip is None else [float(np.min(clip[0])), float(np.max(clip[1]))],
        }

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for `x` (checked against the input shape); counts the inputs answered."""
        expected = tuple(int(d) for d in self.classifier.input_shape)
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"inputs must have shape [n, {', '.join(map(str, expected))}], got {list(x.shape)}")
        if len(x) > self.max_batch:
            raise OverflowError(f"at most {self.max_batch} inputs per request, got {len(x)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("inputs contain NaN or infinite values")
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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logger.debug("%s - " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = JSON_TYPE) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"))

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/stats":
            self._json(200, self.server.stats())
        elif path == "/info":
            self._json(200, self.server.info())
        else:
            self._json(404, {"error": f"unknown path {path}; use POST /predict, GET /stats or GET /info"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.max_body_bytes:
            self._json(413, {"error": f"body of {length} bytes is over the limit of {self.server.max_body_bytes}"})
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        if path != "/predict":
            self._json(404, {"error": f"unknown path {path}; use POST /predict"})
            return
        content_type = media_type(self.headers.get("Content-Type"))
        try:
            if content_type not in (JSON_TYPE, NPY_TYPE):
                self._json(415, {"error": f"Content-Type must be {JSON_TYPE} or {NPY_TYPE}, got {content_type}"})
                return
            x = decode_array(body, content_type, "inputs")
            out = self.server.predict(np.asarray(x, dtype=np.float32))
        except OverflowError as error:
            self._json(413, {"error": str(error)})
            return
        except (ValueError, TypeError) as error:
            self._json(400, {"error": str(error)})
            return
        except Exception as error:  # noqa: BLE001 (the client gets a 500, the server keeps serving)
            logger.exception("predict failed")
            self._json(500, {"error": f"{type(error).__name__}: {error}"})
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
