"""
A classifier behind an HTTP endpoint, as an ART ``BlackBoxClassifier``: batched, concurrent, rate-limited requests
with timeouts, retries and exact accounting of what the endpoint answered.

Wire protocol (served by ``art-ext serve``):

- ``POST /predict`` with ``Content-Type: application/json`` and body ``{"inputs": [...], "shape": [n, ...]}``
  (nested lists of float32 values), answered by ``{"outputs": [...], "shape": [n, nb_classes]}``; or with
  ``Content-Type: application/x-npy`` and a ``.npy`` body, answered by a ``.npy`` body of shape ``(n, nb_classes)``.
- ``GET /info``: ``{"input_shape": [...], "nb_classes": K, "clip_values": [lo, hi] or null}``.
- ``GET /stats``: ``{"answered": N}``, the number of inputs the endpoint has answered so far.

Only the standard library is used for HTTP (``http.client``).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np
from art.estimators.classification.blackbox import BlackBoxClassifier
from art.estimators.classification.classifier import Classifier

from art_ext.estimators.wire import JSON_TYPE, NPY_TYPE, decode_array, encode_array, media_type
from art_ext.utils.checks import check_finite, check_positive

if TYPE_CHECKING:
    from art.defences.postprocessor import Postprocessor
    from art.defences.preprocessor import Preprocessor
    from art.utils import CLIP_VALUES_TYPE, PREPROCESSING_TYPE

__all__ = ["RemoteClassifier", "RemoteQueryError", "RequestCallbacks"]

logger = logging.getLogger(__name__)

#: HTTP statuses worth retrying: the endpoint is overloaded, rate limiting or briefly failing.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Failures of the transport (no HTTP status came back): retried.
_TRANSPORT_ERRORS = (socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException, OSError)


class RemoteQueryError(RuntimeError):
    """A request the endpoint refused, answered with something malformed, or that failed after every retry."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The last HTTP status received, ``None`` when the last attempt got no HTTP answer at all.
        self.status = status


class RequestCallbacks:
    """
    Hooks :meth:`RemoteClassifier.predict` calls around every HTTP attempt (from its worker threads, so they must be
    thread-safe). ``index`` is the number of the request within the call (rows ``index * batch_size`` onwards).
    The query ledger (:class:`~art_ext.estimators.classification.LedgerClassifier`) uses them to write ahead.
    """

    def before_send(self, index: int, n: int, attempt: int) -> None:
        """Called before attempt `attempt` (0 first) of request `index` of `n` inputs leaves; may raise to veto it."""

    def after_refusal(self, index: int, n: int, attempt: int, status: int) -> None:
        """Called when the endpoint answered the attempt with HTTP error `status` (no outputs)."""

    def after_answer(self, index: int, outputs: np.ndarray) -> None:
        """Called with the (post-processed) outputs ``(n, nb_classes)`` of request `index`."""


class RemoteClassifier(BlackBoxClassifier):
    """
    An ART ``BlackBoxClassifier`` whose predictions come from an HTTP endpoint (see the module documentation for the
    wire protocol). Inputs are sent in requests of `batch_size`, up to `concurrency` at a time, no faster than
    `rate_limit` requests per second; requests that time out, lose their connection or get a 408/429/5xx status are
    retried up to `max_retries` times with exponential backoff (``backoff * 2 ** attempt`` seconds, at most
    `max_backoff`, or the server's ``Retry-After`` when it is shorter than that).

    Accounting: ``queries_sent`` counts inputs in every attempt that left (retries included), ``queries_answered``
    the inputs whose answers came back; the endpoint's own count (:meth:`stats`) lies between the two.
    """

    estimator_params = Classifier.estimator_params + [
        "input_shape",
        "url",
        "batch_size",
        "concurrency",
        "timeout",
        "max_retries",
        "backoff",
        "max_backoff",
        "rate_limit",
        "payload",
        "headers",
    ]

    def __init__(
        self,
        url: str,
        input_shape: tuple[int, ...],
        nb_classes: int,
        clip_values: CLIP_VALUES_TYPE | None = None,
        preprocessing_defences: Preprocessor | list[Preprocessor] | None = None,
        postprocessing_defences: Postprocessor | list[Postprocessor] | None = None,
        preprocessing: PREPROCESSING_TYPE = (0.0, 1.0),
        batch_size: int | None = None,
        concurrency: int = 1,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        rate_limit: float | None = None,
        payload: str = "json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """
        :param url: Base address of the endpoint, e.g. ``http://127.0.0.1:8000`` (``/predict``, ``/info`` and
                    ``/stats`` are appended).
        :param input_shape: Shape of one input sample, as the endpoint expects it.
        :param nb_classes: Number of classes the endpoint scores.
        :param clip_values: Tuple ``(min, max)`` of the input range, or ``None``.
        :param preprocessing_defences: Preprocessing defence(s) applied before inputs are sent.
        :param postprocessing_defences: Postprocessing defence(s) applied to the answers.
        :param preprocessing: Tuple ``(subtrahend, divisor)`` applied before inputs are sent.
        :param batch_size: Inputs per request; ``None`` uses the `batch_size` given to :meth:`predict`.
        :param concurrency: Requests in flight at the same time.
        :param timeout: Seconds a connection, a send or a read may block before the attempt fails.
        :param max_retries: Retries of a failed request (0: none) before :class:`RemoteQueryError` is raised.
        :param backoff: Seconds before the first retry; doubled at each further one.
        :param max_backoff: Longest wait between two attempts, in seconds.
        :param rate_limit: Most requests started per second (retries included), ``None`` for no limit.
        :param payload: ``"json"`` or ``"npy"`` (raw ``.npy`` bodies, smaller and faster).
        :param headers: Extra HTTP headers sent with every request (e.g. ``{"Authorization": "Bearer ..."}``).
        """
        super().__init__(
            predict_fn=self._predict_batch,
            input_shape=tuple(input_shape),
            nb_classes=nb_classes,
            clip_values=clip_values,
            preprocessing_defences=preprocessing_defences,
            postprocessing_defences=postprocessing_defences,
            preprocessing=preprocessing,
        )
        self.url = url
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.rate_limit = rate_limit
        self.payload = payload
        self.headers = dict(headers or {})
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self.reset_counters()
        self._check_params()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_url(cls, url: str, timeout: float = 30.0, headers: dict[str, str] | None = None, **kwargs):
        """
        Build a classifier from the endpoint's ``GET /info`` (input shape, number of classes, clip values).

        :param url: Base address of the endpoint.
        :param timeout: Seconds the ``/info`` request may block.
        :param headers: Extra HTTP headers (also used for every later request).
        :param kwargs: Any other constructor argument (`batch_size`, `concurrency`, ...).
        :return: A :class:`RemoteClassifier`.
        """
        info = _get_json(url, "/info", timeout, headers)
        try:
            input_shape = tuple(int(d) for d in info["input_shape"])
            nb_classes = int(info["nb_classes"])
        except (KeyError, TypeError, ValueError) as err:
            raise RemoteQueryError(f"{url}/info must give `input_shape` and `nb_classes`, got {info!r}.") from err
        clip = info.get("clip_values")
        kwargs.setdefault("clip_values", None if clip is None else (float(clip[0]), float(clip[1])))
        return cls(url, input_shape, nb_classes, timeout=timeout, headers=headers, **kwargs)

    def stats(self) -> dict[str, Any]:
        """
        The endpoint's ``GET /stats`` (``{"answered": N}``: inputs it has answered so far).

        :return: The decoded JSON object.
        """
        return _get_json(self.url, "/stats", self.timeout, self.headers)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.estimator_params if k not in ("headers",))
        return f"{type(self).__name__}({params})"

    def reset_counters(self) -> None:
        """Set ``queries_sent``, ``queries_answered``, ``requests_sent`` and ``retries`` to zero."""
        with self._lock:
            #: Inputs in every attempt that left, retries included.
            self.queries_sent = 0
            #: Inputs whose answers came back from the endpoint.
            self.queries_answered = 0
            #: HTTP requests sent, retries included.
            self.requests_sent = 0
            #: Attempts that failed and were retried.
            self.retries = 0

    def _check_params(self) -> None:
        super()._check_params()
        parts = urllib.parse.urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"`url` must be an http:// or https:// address, got {self.url!r}.")
        if parts.path.rstrip("/").endswith("/predict"):
            raise ValueError(f"`url` must be the endpoint's base address, without /predict: got {self.url!r}.")
        if parts.query or parts.fragment:
            raise ValueError(f"`url` must not carry a query string or fragment, got {self.url!r}.")
        if not self._input_shape or any(not isinstance(d, (int, np.integer)) or d < 1 for d in self._input_shape):
            raise ValueError(f"`input_shape` must be a tuple of positive integers, got {self._input_shape!r}.")
        check_positive(self.nb_classes, "nb_classes", integer=True)
        if self.batch_size is not None:
            check_positive(self.batch_size, "batch_size", integer=True)
        check_positive(self.concurrency, "concurrency", integer=True)
        check_positive(self.timeout, "timeout")
        check_positive(self.max_retries, "max_retries", integer=True, allow_zero=True)
        check_positive(self.backoff, "backoff", allow_zero=True)
        check_positive(self.max_backoff, "max_backoff", allow_zero=True)
        if self.rate_limit is not None:
            check_positive(self.rate_limit, "rate_limit")
        if self.payload not in ("json", "npy"):
            raise ValueError(f'`payload` must be "json" or "npy", got {self.payload!r}.')
        if not isinstance(self.headers, dict):
            raise TypeError(f"`headers` must be a dict of strings, got {type(self.headers).__name__}.")

    # ------------------------------------------------------------------ prediction
    def predict(
        self, x: np.ndarray, batch_size: int = 128, callbacks: RequestCallbacks | None = None, **kwargs
    ) -> np.ndarray:
        """
        Ask the endpoint for predictions.

        :param x: Inputs ``(nb_samples, *input_shape)``.
        :param batch_size: Inputs per request when the constructor's `batch_size` is ``None``.
        :param callbacks: Optional :class:`RequestCallbacks` called around every attempt.
        :return: Scores of shape ``(nb_samples, nb_classes)``, float32, as the endpoint returned them (then
                 post-processed by the postprocessing defences, if any).
        :raises RemoteQueryError: When a request is refused (non-retryable status), answered with a malformed body, or
                                  still fails after `max_retries` retries. Requests already answered stay counted.
        """
        x = self._check_inputs(x)
        size = self.batch_size or batch_size
        check_positive(size, "batch_size", integer=True)
        if len(x) == 0:
            return np.zeros((0, self.nb_classes), dtype=np.float32)
        x_pre, _ = self._apply_preprocessing(x, y=None, fit=False)
        x_pre = np.ascontiguousarray(x_pre, dtype=np.float32)
        batches = [x_pre[i : i + size] for i in range(0, len(x_pre), size)]
        return np.concatenate(self._run_all(batches, callbacks), axis=0)

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        """``predict_fn`` for ART's code paths: one (already pre-processed) batch, raw outputs."""
        return self._request(0, np.ascontiguousarray(x, dtype=np.float32), None, threading.Event(), post=False)

    def _check_inputs(self, x: Any) -> np.ndarray:
        if x is None or not hasattr(x, "shape"):
            raise TypeError(f"`x` must be a numpy array of shape (nb_samples, *{self.input_shape}).")
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"`x` must have shape (nb_samples, *{tuple(self.input_shape)}), got {tuple(x.shape)}.")
        if len(x) == 0:
            return np.asarray(x, dtype=np.float32)
        return check_finite(x, "x").astype(np.float32, copy=False)

    def _run_all(self, batches: list[np.ndarray], callbacks: RequestCallbacks | None) -> list[np.ndarray]:
        abort = threading.Event()
        if self.concurrency == 1 or len(batches) == 1:
            return [self._request(i, b, callbacks, abort) for i, b in enumerate(batches)]
        executor = ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches)), thread_name_prefix="remote")
        try:
            futures = [executor.submit(self._request, i, b, callbacks, abort) for i, b in enumerate(batches)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                abort.set()
                raise failed[0].exception()
            return [f.result() for f in futures]
        except BaseException:
            abort.set()  # stop retries and unsent requests; requests in flight finish (their answers are recorded)
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _request(
        self, index: int, xb: np.ndarray, callbacks: RequestCallbacks | None, abort: threading.Event, post: bool = True
    ) -> np.ndarray:
        """Send one batch, retrying; return its outputs."""
        n = len(xb)
        body, ctype = _encode(xb, self.payload)
        attempt = 0
        while True:
            if abort.is_set():
                raise RemoteQueryError(f"Request {index} cancelled: another request of the same call failed.")
            self._wait_for_rate_slot()
            if callbacks is not None:
                callbacks.before_send(index, n, attempt)
            with self._lock:
                self.queries_sent += n
                self.requests_sent += 1
            status, retry_after = None, None
            try:
                status, resp_headers, data = self._post(body, ctype)
            except _TRANSPORT_ERRORS as err:
                failure = f"{type(err).__name__}: {err}"
            else:
                if status == 200:
                    out = self._decode(data, resp_headers, n)
                    if post:
                        out = self._apply_postprocessing(preds=out, fit=False)
                    if callbacks is not None:
                        callbacks.after_answer(index, out)
                    return out
                if callbacks is not None:
                    callbacks.after_refusal(index, n, attempt, status)
                message = data[:300].decode("utf-8", "replace")
                if status not in RETRY_STATUSES:
                    raise RemoteQueryError(f"{self.url}/predict refused the request: HTTP {status}: {message}", status)
                failure = f"HTTP {status}: {message}"
                retry_after = _retry_after(resp_headers)
            if attempt >= self.max_retries:
                raise RemoteQueryError(
                    f"{self.url}/predict failed {attempt + 1} time(s) for a batch of {n}; last failure: {failure}",
                    status,
                )
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            if retry_after is not None:
                delay = min(self.max_backoff, max(delay, retry_after))
            logger.warning("Request %d failed (%s); retry %d in %.2f s.", index, failure, attempt + 1, delay)
            with self._lock:
                self.retries += 1
            if abort.wait(delay):
                raise RemoteQueryError(f"Request {index} cancelled: another request of the same call failed.")
            attempt += 1

    def _wait_for_rate_slot(self) -> None:
        if not self.rate_limit:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.rate_limit
        if slot > now:
            time.sleep(slot - now)

    def _post(self, body: bytes, ctype: str) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(self.url)
        conn = _connection(parts, self.timeout)
        try:
            headers = {"Content-Type": ctype, "Accept": ctype, "Content-Length": str(len(body)), **self.headers}
            conn.request("POST", parts.path.rstrip("/") + "/predict", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def _decode(self, data: bytes, headers: dict[str, str], n: int) -> np.ndarray:
        with self._lock:
            self.queries_answered += n  # the endpoint answered, even if what it sent turns out malformed
        expected = (n, self.nb_classes)
        try:
            kind = NPY_TYPE if media_type(headers.get("content-type")) == NPY_TYPE else JSON_TYPE
            out = decode_array(data, kind, "outputs")
        except (ValueError, KeyError, TypeError) as err:
            raise RemoteQueryError(f"{self.url}/predict answered a malformed body: {err}") from err
        out = np.asarray(out, dtype=np.float32)
        if out.shape != expected:
            raise RemoteQueryError(f"{self.url}/predict answered shape {out.shape}, expected {expected}.")
        if not np.all(np.isfinite(out)):
            raise RemoteQueryError(f"{self.url}/predict answered NaN or infinite scores.")
        return out


def _connection(parts: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def _encode(x: np.ndarray, payload: str) -> tuple[bytes, str]:
    ctype = NPY_TYPE if payload == "npy" else JSON_TYPE
    return encode_array(x, ctype, "inputs"), ctype


def _retry_after(headers: dict[str, str]) -> float | None:
    try:
        return max(0.0, float(headers.get("retry-after", "")))
    except ValueError:
        return None


def _get_json(url: str, path: str, timeout: float, headers: dict[str, str] | None = None) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"`url` must be an http:// or https:// address, got {url!r}.")
    conn = _connection(parts, timeout)
    try:
        conn.request("GET", parts.path.rstrip("/") + path, headers={"Accept": JSON_TYPE, **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RemoteQueryError(f"GET {url}{path} answered HTTP {resp.status}.", resp.status)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as err:
        raise RemoteQueryError(f"GET {url}{path} answered malformed JSON: {err}") from err
