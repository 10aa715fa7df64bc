"""
A classifier behind an HTTP endpoint, as an ART ``BlackBoxClassifier``: batched, concurrent, rate-limited requests
with timeouts, retries and exact accounting of what the endpoint answered.

Protocols (:mod:`art_ext.estimators.classification.protocols`): ``art-ext serve``'s own (``POST /predict``, JSON or
``.npy``; ``GET /info``, ``GET /stats``), the Open Inference Protocol v2 of KServe, Triton, MLServer and Seldon
(``POST /v2/models/NAME/infer``, JSON tensors or binary tensor data) and TF Serving's REST API
(``POST /v1/models/NAME:predict``). Only the standard library is used for HTTP (``http.client``).
"""

from __future__ import annotations

import http.client
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

from art_ext.estimators.classification.protocols import (
    PAYLOADS,
    PROTOCOLS,
    RemoteQueryError,
    RequestCallbacks,
    detect_protocol,
    get_json,
    make_protocol,
    read_metadata,
)
from art_ext.estimators.classification.protocols import post as http_post
from art_ext.estimators.classification.protocols import retry_after as read_retry_after
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
        "protocol",
        "input_name",
        "output_name",
        "input_datatype",
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
        protocol: str = "auto",
        input_name: str | None = None,
        output_name: str | None = None,
        input_datatype: str = "FP32",
    ) -> None:
        """
        :param url: Address of the endpoint: ``http://host:port`` for ``art-ext serve``'s protocol (``/predict``,
                    ``/info`` and ``/stats`` are appended), ``http://host:port/v2/models/NAME`` for the Open Inference
                    Protocol (``/infer``), ``http://host:port/v1/models/NAME`` for TF Serving (``:predict``).
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
        :param payload: ``"json"`` or, for ``art-ext serve``'s protocol, ``"npy"`` (raw ``.npy`` bodies, smaller and
                        faster), for the Open Inference Protocol ``"binary"`` (the binary tensor data extension).
        :param headers: Extra HTTP headers sent with every request (e.g. ``{"Authorization": "Bearer ..."}``).
        :param protocol: ``"native"``, ``"v2"``, ``"tfserving"`` or ``"auto"`` (from the path of `url`: ``/v2/models/``
                         or ``/v1/models/``, else native).
        :param input_name: Name of the model's input (required by the Open Inference Protocol; :meth:`from_url`
                           reads it).
        :param output_name: Output holding the scores, when the model has several (``None``: the only one).
        :param input_datatype: Open Inference Protocol datatype the inputs are sent as: ``"FP32"``, ``"FP16"`` or
                               ``"FP64"``.
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
        self.protocol = detect_protocol(url) if protocol == "auto" and isinstance(url, str) else protocol
        self.input_name = input_name
        self.output_name = output_name
        self.input_datatype = input_datatype
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self.reset_counters()
        self._check_params()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_url(cls, url: str, timeout: float = 30.0, headers: dict[str, str] | None = None, **kwargs):
        """
        Build a classifier from the endpoint's metadata: ``GET /info`` for ``art-ext serve``'s protocol,
        ``GET /v2/models/NAME`` (input name, shape and datatype, output, and the server's ``GET /v2`` extensions:
        binary tensors when offered) for the Open Inference Protocol, ``GET /v1/models/NAME/metadata`` for TF Serving.

        :param url: Address of the endpoint (see the constructor).
        :param timeout: Seconds each metadata request may block.
        :param headers: Extra HTTP headers (also used for every later request).
        :param kwargs: Any other constructor argument (`batch_size`, `concurrency`, `clip_values`, ...); the
                       metadata does not override them.
        :return: A :class:`RemoteClassifier`.
        :raises RemoteQueryError: When the metadata cannot be read.
        :raises ValueError: When it does not say what is needed (the message names the argument to pass).
        """
        protocol = kwargs.pop("protocol", "auto")
        protocol = detect_protocol(url) if protocol == "auto" else protocol
        if protocol not in PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {PROTOCOLS} or 'auto', got {protocol!r}.")
        args = read_metadata(url, protocol, timeout, headers, **kwargs)
        return cls(url, timeout=timeout, headers=headers, protocol=protocol, **args)

    def stats(self) -> dict[str, Any]:
        """
        The endpoint's ``GET /stats`` (``{"answered": N}``: inputs it has answered so far); ``art-ext serve``'s
        protocol only (the Open Inference Protocol and TF Serving have no such count).

        :return: The decoded JSON object.
        """
        if self.protocol != "native":
            raise RemoteQueryError(f"GET /stats is part of art-ext serve's protocol only, not of {self.protocol!r}.")
        return get_json(self.url, "/stats", self.timeout, self.headers)

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
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {PROTOCOLS} or 'auto', got {self.protocol!r}.")
        path = parts.path.rstrip("/")
        suffix = next((e for e in ("/predict", "/infer", ":predict") if path.endswith(e)), None)
        if suffix is not None:
            raise ValueError(
                f"`url` must be the endpoint's base address (or model address), without {suffix}: {self.url!r}."
            )
        if detect_protocol(self.url) != self.protocol and self.protocol != "native":
            expected = "/v2/models/NAME" if self.protocol == "v2" else "/v1/models/NAME"
            raise ValueError(f"`url` must end with {expected} for protocol {self.protocol!r}, got {self.url!r}.")
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
        if self.payload not in PAYLOADS[self.protocol]:
            raise ValueError(
                f"`payload` must be one of {PAYLOADS[self.protocol]} for {self.protocol!r}: {self.payload!r}."
            )
        if self.protocol == "v2" and not (isinstance(self.input_name, str) and self.input_name):
            raise ValueError("`input_name` is required by the Open Inference Protocol: pass it, or use from_url.")
        if self.input_datatype not in ("FP16", "FP32", "FP64"):
            raise ValueError(f'`input_datatype` must be "FP16", "FP32" or "FP64", got {self.input_datatype!r}.')
        self._protocol = make_protocol(
            self.protocol, self.payload, self.input_name, self.output_name, self.input_datatype
        )
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
        body, request_headers = self._protocol.encode(xb)
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
                status, resp_headers, data = http_post(
                    self.url, self._protocol.path, body, {**request_headers, **self.headers}, self.timeout
                )
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
                message = " ".join(data[:300].decode("utf-8", "replace").split())  # one line
                if status not in RETRY_STATUSES:
                    raise RemoteQueryError(f"{self._where} refused the request: HTTP {status}: {message}", status)
                failure = f"HTTP {status}: {message}"
                retry_after = read_retry_after(resp_headers)
            if attempt >= self.max_retries:
                raise RemoteQueryError(
                    f"{self._where} failed {attempt + 1} time(s) for a batch of {n}; last failure: {failure}",
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

    @property
    def _where(self) -> str:
        return self.url.rstrip("/") + self._protocol.path

    def _decode(self, data: bytes, headers: dict[str, str], n: int) -> np.ndarray:
        with self._lock:
            self.queries_answered += n  # the endpoint answered, even if what it sent turns out malformed
        try:
            out = self._protocol.decode(data, headers, (n, self.nb_classes))
        except (ValueError, KeyError, TypeError) as err:
            raise RemoteQueryError(f"{self._where} answered a malformed body: {err}") from None
        out = np.asarray(out, dtype=np.float32)
        if not np.all(np.isfinite(out)):
            raise RemoteQueryError(f"{self._where} answered NaN or infinite scores.")
        return out
