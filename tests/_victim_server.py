"""
A tiny HTTP victim for the remote-classifier and ledger tests: the wire protocol of ``art-ext serve`` over a numpy
softmax-regression model, on 127.0.0.1 (port 0), with injectable failures (5xx, delays, dropped responses) and a log
of what it received and answered. Handler threads are daemons and every delay is short, so tests stay bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class LinearVictim:
    """Softmax regression with fixed random weights: ``softmax(x.reshape(n, -1) @ w + b)``."""

    def __init__(self, input_shape=(1, 8, 8), nb_classes=10, seed=0):
        rng = np.random.default_rng(seed)
        self.input_shape = tuple(input_shape)
        self.nb_classes = nb_classes
        dim = int(np.prod(input_shape))
        self.w = rng.normal(0, 1 / np.sqrt(dim), (dim, nb_classes)).astype(np.float32) * 8
        self.b = rng.normal(0, 0.1, nb_classes).astype(np.float32)

    def __call__(self, x):
        z = x.reshape(len(x), -1) @ self.w + self.b
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def digest(x) -> str:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return hashlib.sha256(repr(x.shape).encode() + x.tobytes()).hexdigest()


class _LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on a free loopback port, served from a daemon thread inside ``with``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


class VictimServer(_LoopbackServer):
    """
    ``fail_next``: the next that many ``/predict`` requests get HTTP ``fail_status``; ``drop_next``: the next that many
    are computed and counted as answered, then the connection is closed without a response; ``delay``: seconds every
    ``/predict`` waits before answering (counted once computed, even if the client left); ``on_request``: called with
    the number of requests received so far, from the handler thread.
    """

    def __init__(self, model, clip_values=(0.0, 1.0)):
        super().__init__(_Handler)
        self.model = model
        self.clip_values = clip_values
        self.lock = threading.Lock()
        self.answered = 0  # inputs answered (computed), as GET /stats reports it
        self.received = 0  # /predict requests received
        self.in_flight = 0
        self.max_in_flight = 0
        self.start_times: list[float] = []
        self.answered_digests: list[str] = []
        self.fail_next = 0
        self.fail_status = 503
        self.drop_next = 0
        self.delay = 0.0
        self.on_request = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status, body: bytes, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        srv = self.server
        if self.path == "/stats":
            with srv.lock:
                body = {"answered": srv.answered}
        elif self.path == "/info":
            clip = None if srv.clip_values is None else list(srv.clip_values)
            body = {"input_shape": list(srv.model.input_shape), "nb_classes": srv.model.nb_classes, "clip_values": clip}
        else:
            self._send(404, b'{"error": "not found"}')
            return
        self._send(200, json.dumps(body).encode())

    def do_POST(self):
        srv = self.server
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/predict":
            self._send(404, b'{"error": "not found"}')
            return
        with srv.lock:
            srv.received += 1
            received = srv.received
            srv.start_times.append(time.monotonic())
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            fail = srv.fail_next > 0
            srv.fail_next -= int(fail)
            drop = not fail and srv.drop_next > 0
            srv.drop_next -= int(drop)
        counted_out = False
        try:
            if srv.on_request is not None:
                srv.on_request(received)
            if fail:
                self._send(srv.fail_status, b'{"error": "injected failure"}')
                return
            npy = self.headers.get("Content-Type") == "application/x-npy"
            if npy:
                x = np.load(io.BytesIO(data), allow_pickle=False)
            else:
                obj = json.loads(data)
                x = np.asarray(obj["inputs"], dtype=np.float32).reshape(obj["shape"])
            if tuple(x.shape[1:]) != srv.model.input_shape:
                self._send(400, json.dumps({"error": f"bad shape {list(x.shape)}"}).encode())
                return
            if srv.delay:
                time.sleep(srv.delay)
            out = srv.model(x)
            with srv.lock:
                srv.answered += len(x)
                srv.answered_digests.append(digest(x))
                # out of flight once answered: the client may send its next request as soon as the answer lands,
                # before this thread would reach `finally`
                srv.in_flight -= 1
                counted_out = True
            if drop:
                self.close_connection = True  # computed and counted, but the answer never leaves
                return
            if npy:
                buffer = io.BytesIO()
                np.save(buffer, out)
                self._send(200, buffer.getvalue(), "application/x-npy")
            else:
                self._send(200, json.dumps({"outputs": out.tolist(), "shape": list(out.shape)}).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) or was killed
        finally:
            if not counted_out:
                with srv.lock:
                    srv.in_flight -= 1


class CannedServer(_LoopbackServer):
    """
    Answers every request with what ``routes[(method, path)]`` holds: ``(status, headers, body)`` (404 otherwise);
    ``posts`` counts the POST requests received. For answers no real server should give.
    """

    def __init__(self, routes):
        super().__init__(_CannedHandler)
        self.routes = dict(routes)
        self.posts = 0


class _CannedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, method):
        if method == "POST":
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.server.posts += 1
        status, headers, body = self.server.routes.get((method, self.path), (404, {}, b'{"error": "not found"}'))
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")
