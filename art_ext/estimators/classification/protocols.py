"""
The protocols :class:`~art_ext.estimators.classification.RemoteClassifier` speaks, and the HTTP plumbing it shares
with them (standard library ``http.client``):

* ``"native"``: ``art-ext serve``'s own (:mod:`art_ext.estimators.wire`), URL ``http://host:port``;
* ``"v2"``: the Open Inference Protocol v2 of KServe, Triton, MLServer and Seldon
  (:mod:`art_ext.estimators.wire_v2`), URL ``http://host:port/v2/models/NAME[/versions/V]``, JSON tensors or the
  binary tensor data extension (``payload="binary"``);
* ``"tfserving"``: TF Serving's REST API, URL ``http://host:port/v1/models/NAME[/versions/V]``.

Each protocol has a reader of the endpoint's metadata (:func:`read_metadata`) giving the constructor arguments of a
:class:`~art_ext.estimators.classification.RemoteClassifier`.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from typing import Any

import numpy as np

from art_ext.estimators.wire import JSON_TYPE, NPY_TYPE, decode_array, encode_array, media_type
from art_ext.estimators.wire_v2 import (
    BINARY_EXTENSION,
    decode_tfs_response,
    decode_v2_response,
    encode_tfs_request,
    encode_v2_request,
)

__all__ = [
    "PAYLOADS",
    "PROTOCOLS",
    "Protocol",
    "RemoteQueryError",
    "RequestCallbacks",
    "detect_protocol",
    "get_json",
    "make_protocol",
    "read_metadata",
]

#: Payloads each protocol accepts.
PAYLOADS = {"native": ("json", "npy"), "v2": ("json", "binary"), "tfserving": ("json",)}
PROTOCOLS = tuple(PAYLOADS)
_V2_PATH = re.compile(r"^(.*)/v2/models/([^/]+)(/versions/[^/]+)?$")
_V1_PATH = re.compile(r"^(.*)/v1/models/([^/:]+)(/versions/[^/:]+)?$")


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


def detect_protocol(url: str) -> str:
    """``"v2"`` for ``.../v2/models/NAME``, ``"tfserving"`` for ``.../v1/models/NAME``, else ``"native"``."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    if _V2_PATH.match(path):
        return "v2"
    if _V1_PATH.match(path):
        return "tfserving"
    return "native"


class Protocol:
    """How one request is written and its answer read. :meth:`decode` raises ``ValueError`` on a malformed answer."""

    path = "/predict"

    def encode(self, x: np.ndarray) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def decode(self, data: bytes, headers: dict[str, str], shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError


class _Native(Protocol):
    def __init__(self, payload: str) -> None:
        self.ctype = NPY_TYPE if payload == "npy" else JSON_TYPE

    def encode(self, x):
        return encode_array(x, self.ctype, "inputs"), {"Content-Type": self.ctype, "Accept": self.ctype}

    def decode(self, data, headers, shape):
        kind = NPY_TYPE if media_type(headers.get("content-type")) == NPY_TYPE else JSON_TYPE
        out = decode_array(data, kind, "outputs", rank=len(shape))
        if out.shape != tuple(shape):
            raise ValueError(f"answer has shape {list(out.shape)}, expected {list(shape)}")
        return out


class _V2(Protocol):
    path = "/infer"

    def __init__(self, payload: str, input_name: str, output_name: str | None, datatype: str) -> None:
        self.binary, self.input_name, self.output_name, self.datatype = (
            payload == "binary",
            input_name,
            output_name,
            datatype,
        )

    def encode(self, x):
        body, extra = encode_v2_request(x, self.input_name, self.datatype, self.binary, self.output_name)
        ctype = "application/octet-stream" if self.binary else JSON_TYPE
        return body, {"Content-Type": ctype, "Accept": JSON_TYPE, **extra}

    def decode(self, data, headers, shape):
        return decode_v2_response(data, headers, self.output_name, shape)


class _TFServing(Protocol):
    path = ":predict"

    def __init__(self, output_name: str | None) -> None:
        self.output_name = output_name

    def encode(self, x):
        return encode_tfs_request(x), {"Content-Type": JSON_TYPE, "Accept": JSON_TYPE}

    def decode(self, data, headers, shape):
        return decode_tfs_response(data, self.output_name, shape)


def make_protocol(
    protocol: str, payload: str, input_name: str | None, output_name: str | None, input_datatype: str
) -> Protocol:
    """The :class:`Protocol` of checked constructor arguments."""
    if protocol == "v2":
        return _V2(payload, input_name, output_name, input_datatype)
    if protocol == "tfserving":
        return _TFServing(output_name)
    return _Native(payload)


def connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection to `url`'s host and `url`'s path without a trailing slash."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"`url` must be an http:// or https:// address, got {url!r}.")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return cls(parts.hostname, parts.port, timeout=timeout), parts.path.rstrip("/")


def post(url: str, path: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, dict, bytes]:
    """One POST on a fresh connection: status, lower-case headers, body."""
    conn, base = connection(url, timeout)
    try:
        conn.request("POST", base + path, body=body, headers={"Content-Length": str(len(body)), **headers})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_json(url: str, path: str, timeout: float, headers: dict[str, str] | None = None) -> Any:
    """``GET url + path`` decoded from JSON; :class:`RemoteQueryError` on an HTTP error or malformed JSON."""
    conn, base = connection(url, timeout)
    try:
        conn.request("GET", base + path, headers={"Accept": JSON_TYPE, **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RemoteQueryError(f"GET {url}{path} answered HTTP {resp.status}.", resp.status)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:
        raise RemoteQueryError(f"GET {url}{path} answered malformed JSON: {str(err)[:200]}") from None


def _one(items: Any, name: str | None, kind: str, url: str) -> dict:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items) or not items:
        raise ValueError(f"the metadata of {url} lists no {kind}s")
    names = [i.get("name") for i in items]
    if name is None and len(items) > 1:
        raise ValueError(f"{url} has {len(items)} {kind}s {names}: pass {kind}_name=")
    if name is not None and name not in names:
        raise ValueError(f"{url} has no {kind} {name!r} (it has {names})")
    return items[names.index(name) if name is not None else 0]


def _batched_shape(shape: Any, kind: str, url: str) -> tuple[int, ...]:
    dims = [int(d) for d in shape] if isinstance(shape, list) and all(isinstance(d, (int, str)) for d in shape) else []
    if len(dims) < 2 or dims[0] != -1 or any(d < 1 for d in dims[1:]):
        raise ValueError(
            f"the {kind} shape of {url} is {shape}, not [-1, d1, ...] with a batch axis and fixed sizes: pass "
            f"{'input_shape' if kind == 'input' else 'nb_classes'}= to the constructor instead of using from_url"
        )
    return tuple(dims[1:])


def read_metadata(url: str, protocol: str, timeout: float, headers: dict[str, str] | None, **given) -> dict:
    """
    Constructor arguments read from the endpoint: ``input_shape``, ``nb_classes``, ``clip_values`` and, for v2,
    ``input_name``, ``output_name``, ``input_datatype`` and ``payload`` (binary when the server offers it).
    Arguments in `given` (e.g. ``output_name``) are kept and used to choose among several inputs or outputs.

    :raises ValueError: When the metadata does not say what is needed (the message names the argument to pass).
    """
    try:
        return _read_metadata(url, protocol, timeout, headers, given)
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"the metadata of {url} is malformed ({type(err).__name__}: {err}).") from None


def _read_metadata(url: str, protocol: str, timeout: float, headers, given: dict) -> dict:
    if protocol == "native":
        info = get_json(url, "/info", timeout, headers)
        out = {"input_shape": tuple(int(d) for d in info["input_shape"]), "nb_classes": int(info["nb_classes"])}
        clip = info.get("clip_values")
        out["clip_values"] = None if clip is None else (float(clip[0]), float(clip[1]))
        return {**out, **given}
    if protocol == "tfserving":
        meta = get_json(url, "/metadata", timeout, headers)
        signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        inputs = [{"name": k, **v} for k, v in signature["inputs"].items()]
        outputs = [{"name": k, **v} for k, v in signature["outputs"].items()]
        spec_in = _one(inputs, given.get("input_name"), "input", url)
        spec_out = _one(outputs, given.get("output_name"), "output", url)
        if spec_in.get("dtype") not in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF"):
            raise ValueError(f"{url} takes {spec_in.get('dtype')} inputs: only floating-point inputs are sent")
        dims = [d["size"] for d in spec_in["tensor_shape"]["dim"]]
        classes = _batched_shape([d["size"] for d in spec_out["tensor_shape"]["dim"]], "output", url)
        out = {"input_shape": _batched_shape(dims, "input", url), "nb_classes": classes[-1], "clip_values": None}
        if len(outputs) > 1:
            out["output_name"] = spec_out["name"]
        return {**out, **given}
    meta = get_json(url, "", timeout, headers)
    spec_in = _one(meta.get("inputs"), given.get("input_name"), "input", url)
    spec_out = _one(meta.get("outputs"), given.get("output_name"), "output", url)
    if spec_in.get("datatype") not in ("FP16", "FP32", "FP64"):
        raise ValueError(
            f"{url} takes {spec_in.get('datatype')} inputs: only floating-point inputs are sent "
            f"(integer datatypes would round the attack's inputs)"
        )
    classes = _batched_shape(spec_out.get("shape"), "output", url)
    if len(classes) != 1:
        raise ValueError(f"the output {spec_out.get('name')!r} of {url} has shape {spec_out.get('shape')}, not [-1, K]")
    out = {
        "input_shape": _batched_shape(spec_in.get("shape"), "input", url),
        "nb_classes": classes[0],
        "input_name": spec_in["name"],
        "output_name": spec_out["name"] if len(meta["outputs"]) > 1 else None,
        "input_datatype": spec_in["datatype"],
        "clip_values": None,
    }
    clip = (meta.get("parameters") or {}).get("clip_values")  # art-ext serve's addition
    if isinstance(clip, list) and len(clip) == 2:
        out["clip_values"] = (float(clip[0]), float(clip[1]))
    if "payload" not in given:  # the server's extensions, at GET {prefix}/v2
        parts = urllib.parse.urlsplit(url)
        root = f"{parts.scheme}://{parts.netloc}{_V2_PATH.match(parts.path.rstrip('/')).group(1)}"
        try:
            extensions = get_json(root, "/v2", timeout, headers).get("extensions")
        except (ValueError, OSError, http.client.HTTPException, RuntimeError, AttributeError):
            extensions = None
        out["payload"] = "binary" if isinstance(extensions, list) and BINARY_EXTENSION in extensions else "json"
    return {**out, **given}


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds of a ``Retry-After`` header (lower-case names), ``None`` when absent or not a number."""
    try:
        return max(0.0, float(headers.get("retry-after", "")))
    except ValueError:
        return None
