"""
The wire protocol between :class:`~art_ext.estimators.classification.RemoteClassifier` and the reference server
(:mod:`art_ext.estimators.serving`, ``art-ext serve``), written once for both sides.

- ``POST /predict`` with ``Content-Type: application/json`` and ``{"inputs": nested list, "shape": [n, ...]}``
  answers ``{"outputs": nested list, "shape": [n, nb_classes]}``; with ``application/x-npy`` and a ``.npy`` body it
  answers a ``.npy`` body.
- ``GET /stats`` answers ``{"answered": N}``; ``GET /info`` answers ``{"input_shape", "nb_classes", "clip_values"}``.
"""

from __future__ import annotations

import io
import json

import numpy as np

__all__ = ["JSON_TYPE", "NPY_TYPE", "decode_array", "encode_array", "media_type"]

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"


def media_type(content_type: str | None, default: str = JSON_TYPE) -> str:
    """The media type of a ``Content-Type`` header, without parameters, lower case (`default` when absent)."""
    return (content_type or default).split(";")[0].strip().lower()


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


def decode_array(body: bytes, content_type: str, key: str) -> np.ndarray:
    """
    The float32 array of a body written by :func:`encode_array` (pickles are never loaded).

    :raises ValueError: On a malformed body, a missing `key` or a declared shape that does not fit the values.
    """
    if content_type == NPY_TYPE:
        return np.asarray(np.load(io.BytesIO(body), allow_pickle=False), dtype=np.float32)
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"body is not UTF-8 JSON: {err}") from None
    if not isinstance(payload, dict) or key not in payload:
        raise ValueError(f'JSON body must be {{"{key}": [...], "shape": [n, ...]}}')
    array = np.asarray(payload[key], dtype=np.float32)
    if "shape" in payload:
        shape = [int(d) for d in payload["shape"]]
        if int(np.prod(shape)) != array.size:
            raise ValueError(f"declared shape {shape} does not match {array.size} values")
        array = array.reshape(shape)
    return array
