"""
The wire protocol between :class:`~art_ext.estimators.classification.RemoteClassifier` and the reference server
(:mod:`art_ext.estimators.serving`, ``art-ext serve``), written once for both sides, and the checks every decoder of
bytes from outside shares (:func:`load_json`, :func:`real_array`).

- ``POST /predict`` with ``Content-Type: application/json`` and ``{"inputs": nested list, "shape": [n, ...]}``
  answers ``{"outputs": nested list, "shape": [n, nb_classes]}``; with ``application/x-npy`` and a ``.npy`` body it
  answers a ``.npy`` body.
- ``GET /stats`` answers ``{"answered": N}``; ``GET /info`` answers ``{"input_shape", "nb_classes", "clip_values"}``.

The Open Inference Protocol v2 and TF Serving's REST API are in :mod:`art_ext.estimators.wire_v2`.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np

__all__ = [
    "JSON_TYPE",
    "NPY_TYPE",
    "decode_array",
    "encode_array",
    "json_depth",
    "load_json",
    "media_type",
    "real_array",
]

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"

# A JSON string (escapes included): its brackets do not nest.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def media_type(content_type: str | None, default: str = JSON_TYPE) -> str:
    """The media type of a ``Content-Type`` header, without parameters, lower case (`default` when absent)."""
    return (content_type or default).split(";")[0].strip().lower()


def json_depth(body: bytes) -> int:
    """
    The deepest nesting of arrays and objects in a JSON text, counted without parsing it (strings are skipped), in
    linear time and without recursion.
    """
    stripped = _STRING.sub(b'""', body)
    if not stripped:
        return 0
    steps = _OPEN[np.frombuffer(stripped, dtype=np.uint8)]
    return int(max(0, np.cumsum(steps, dtype=np.int64).max(initial=0)))


def load_json(body: bytes, max_depth: int, what: str = "body") -> Any:
    """
    Parse a JSON body whose nesting must not exceed `max_depth` (checked before parsing: no ``RecursionError``).

    :raises ValueError: One line saying what is wrong (not UTF-8, not JSON, nested too deep).
    """
    depth = json_depth(body)
    if depth > max_depth:
        raise ValueError(f"{what} is nested {depth} deep, more than the {max_depth} its input shape allows")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} is not UTF-8 JSON: {err}") from None
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{what} is not valid JSON: {str(err).splitlines()[0][:200]}") from None


def real_array(values: Any, what: str) -> np.ndarray:
    """
    `values` (nested lists of numbers, or an array) as float32, refusing anything that is not a real number: strings,
    booleans, complex values, objects, ragged lists, integers too large for a float.

    :raises ValueError: Naming `what`.
    """
    if isinstance(values, np.ndarray):
        array = values
    else:
        try:
            array = np.asarray(values)
        except (ValueError, TypeError, OverflowError, RecursionError) as err:
            raise ValueError(f"{what} must be a rectangular array of numbers: {str(err)[:200]}") from None
    if array.dtype.kind not in "fiu":
        kind = {"c": "complex", "b": "boolean", "U": "string", "S": "bytes", "O": "ragged or non-numeric"}
        raise ValueError(f"{what} must hold real numbers, got {kind.get(array.dtype.kind, str(array.dtype))} values")
    with np.errstate(over="ignore"):
        return array.astype(np.float32, copy=False)


def encode_array(array: np.ndarray, content_type: str, key: str) -> bytes:
    """
    An array as a request or answer body: a ``.npy`` file, or JSON ``{key: nested list, "shape": [...]}``.

    :param array: The array (float32 inputs or scores).
    :param content_type: :data:`NPY_TYPE` or :data:`JSON_TYPE`.
    :param key: ``"inputs"`` for a request, ``"outputs"`` for an answer.
    """
    if content_type == NPY_TYPE:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    return json.dumps({key: array.tolist(), "shape": list(array.shape)}).encode("utf-8")


def decode_array(body: bytes, content_type: str, key: str, rank: int | None = None) -> np.ndarray:
    """
    The float32 array of a body written by :func:`encode_array` (pickles are never loaded; complex, string and object
    arrays are refused).

    :param rank: Rank of the array expected (batch axis included): a JSON body nested deeper is refused before it
                 is parsed. ``None``: at most 64.
    :raises ValueError: On a malformed body, a missing `key`, non-real values or a declared shape that does not fit.
    """
    if content_type == NPY_TYPE:
        try:
            loaded = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError, TypeError) as err:
            raise ValueError(
                f"body is not a .npy array: {str(err).splitlines()[0][:200] if str(err) else err!r}"
            ) from None
        if not isinstance(loaded, np.ndarray):
            raise ValueError("body is not a .npy array")
        return real_array(loaded, key)
    payload = load_json(body, 1 + (64 if rank is None else rank))
    if not isinstance(payload, dict) or key not in payload:
        raise ValueError(f'JSON body must be {{"{key}": [...], "shape": [n, ...]}}')
    array = real_array(payload[key], key)
    if "shape" in payload:
        shape = payload["shape"]
        if not isinstance(shape, list) or not all(type(d) is int and 0 <= d for d in shape):
            raise ValueError(f"`shape` must be a list of non-negative integers, got {str(shape)[:100]}")
        if int(np.prod(shape, dtype=object)) != array.size:
            raise ValueError(f"declared shape {shape} does not match {array.size} values")
        array = array.reshape(shape)
    return array
