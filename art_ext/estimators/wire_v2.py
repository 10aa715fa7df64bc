"""
The Open Inference Protocol v2 (KServe, Triton, MLServer, Seldon: ``POST /v2/models/{name}/infer``, JSON tensors and
the binary tensor data extension) and TF Serving's REST API (``POST /v1/models/{name}:predict``), for both sides:
:class:`~art_ext.estimators.classification.RemoteClassifier` and ``art-ext serve``. Every decoder refuses, with one
:class:`ValueError` line, what is not a real-valued tensor of the declared shape.

Open Inference Protocol, as used here: a request ``{"inputs": [{"name", "shape", "datatype", "data"}], "outputs":
[{"name", "parameters": {"binary_data": bool}}]}``, an answer ``{"model_name", "outputs": [{"name", "shape",
"datatype", "data"}]}``; ``data`` is the tensor flattened in row-major order (nested lists are accepted). With the
binary extension, the header ``Inference-Header-Content-Length`` gives the length of the JSON part, and each tensor
with ``"parameters": {"binary_data_size": B}`` has its B little-endian bytes after it, in order.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from art_ext.estimators.wire import load_json, real_array

__all__ = [
    "BINARY_EXTENSION",
    "HEADER_LENGTH",
    "V2_DATATYPES",
    "decode_tfs_request",
    "decode_tfs_response",
    "decode_v2_request",
    "decode_v2_response",
    "encode_tfs_request",
    "encode_tfs_response",
    "encode_v2_request",
    "encode_v2_response",
]

#: Name of the binary tensor data extension in a server's ``GET /v2`` ``extensions``.
BINARY_EXTENSION = "binary_tensor_data"
#: Header giving the length of the JSON part of a body with binary tensors.
HEADER_LENGTH = "inference-header-content-length"
#: Real-valued Open Inference Protocol datatypes and their little-endian numpy types.
V2_DATATYPES = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}


def _split_binary(body: bytes, headers: dict[str, str]) -> tuple[bytes, bytes]:
    raw = headers.get(HEADER_LENGTH)
    if raw is None:
        return body, b""
    if not raw.strip().isdigit() or int(raw) > len(body):
        raise ValueError(f"Inference-Header-Content-Length must be an integer in 0..{len(body)}, got {raw[:40]!r}")
    return body[: int(raw)], body[int(raw) :]


def _tensor(spec: Any, binary: memoryview, offset: int, what: str) -> tuple[np.ndarray, int]:
    """The float32 array of one v2 tensor and the offset after its binary data."""
    if not isinstance(spec, dict):
        raise ValueError(f"{what} must be an object with name, shape, datatype and data")
    shape, datatype = spec.get("shape"), spec.get("datatype")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 32:
        raise ValueError(f"{what}: `shape` must be a list of non-negative integers, got {str(shape)[:80]}")
    if datatype not in V2_DATATYPES:
        raise ValueError(f"{what}: datatype must be a real number type ({', '.join(V2_DATATYPES)}), got {datatype!r}")
    size = int(np.prod(shape, dtype=object))
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{what}: `parameters` must be an object")
    if "binary_data_size" in params:
        nbytes = params["binary_data_size"]
        dtype = np.dtype(V2_DATATYPES[datatype])
        if type(nbytes) is not int or nbytes != size * dtype.itemsize or offset + nbytes > len(binary):
            raise ValueError(f"{what}: binary_data_size {nbytes!r} does not fit shape {shape} of {datatype}")
        array = np.frombuffer(binary[offset : offset + nbytes], dtype=dtype)
        return real_array(array, what).reshape(shape), offset + nbytes
    if "data" not in spec:
        raise ValueError(f"{what} has neither `data` nor a binary_data_size parameter")
    array = real_array(spec["data"], what)
    if array.size != size:
        raise ValueError(f"{what}: {array.size} values do not fill shape {shape}")
    return array.reshape(shape), offset


def _wants_binary(request: dict) -> bool:
    params = request.get("parameters") or {}
    outputs = request.get("outputs") or []
    if not isinstance(params, dict) or not isinstance(outputs, list):
        raise ValueError("`parameters` must be an object and `outputs` a list")
    per_output = [(o.get("parameters") or {}).get("binary_data") for o in outputs if isinstance(o, dict)]
    return bool(params.get("binary_data_output")) or any(v is True for v in per_output)


def decode_v2_request(body: bytes, headers: dict[str, str], input_name: str, rank: int) -> tuple[np.ndarray, dict]:
    """
    Server side: the inputs of an inference request and what the answer should look like (``id``, ``binary``).

    :param headers: Request headers, lower-case names.
    :param rank: Rank of the served input, batch axis included (deeper JSON is refused before parsing).
    """
    head, binary = _split_binary(body, headers)
    request = load_json(head, 3 + rank, "inference request")
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or len(request["inputs"]) != 1:
        raise ValueError(f'inference request must be {{"inputs": [one tensor named "{input_name}"]}}')
    spec = request["inputs"][0]
    if isinstance(spec, dict) and spec.get("name") != input_name:
        raise ValueError(f'the model has one input, "{input_name}", got {str(spec.get("name"))[:40]!r}')
    x, end = _tensor(spec, memoryview(binary), 0, f'input "{input_name}"')
    if end != len(binary):
        raise ValueError(f"{len(binary) - end} bytes of binary data are not claimed by any input")
    request_id = request.get("id")
    return x, {"id": request_id if isinstance(request_id, str) else None, "binary": _wants_binary(request)}


def encode_v2_response(
    out: np.ndarray, model_name: str, output_name: str, binary: bool = False, request_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """Server side: the body and extra headers of an answer (binary when the request asked for it)."""
    out = np.ascontiguousarray(out, dtype="<f4")
    tensor: dict[str, Any] = {"name": output_name, "shape": list(out.shape), "datatype": "FP32"}
    answer: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": [tensor]}
    if request_id is not None:
        answer["id"] = request_id
    if not binary:
        tensor["data"] = out.ravel().tolist()
        return json.dumps(answer).encode("utf-8"), {}
    tensor["parameters"] = {"binary_data_size": out.nbytes}
    head = json.dumps(answer).encode("utf-8")
    return head + out.tobytes(), {"Inference-Header-Content-Length": str(len(head))}


def encode_v2_request(
    x: np.ndarray, input_name: str, datatype: str = "FP32", binary: bool = False, output_name: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """Client side: the body and extra headers of an inference request for the inputs `x`."""
    x = np.ascontiguousarray(x, dtype=V2_DATATYPES[datatype])
    tensor: dict[str, Any] = {"name": input_name, "shape": list(x.shape), "datatype": datatype}
    request: dict[str, Any] = {"inputs": [tensor]}
    if output_name is not None:
        request["outputs"] = [{"name": output_name, "parameters": {"binary_data": binary}}]
    if binary:
        request["parameters"] = {"binary_data_output": True}
        tensor["parameters"] = {"binary_data_size": x.nbytes}
        head = json.dumps(request).encode("utf-8")
        return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head))}
    tensor["data"] = x.ravel().tolist()
    return json.dumps(request).encode("utf-8"), {}


def decode_v2_response(body: bytes, headers: dict[str, str], output_name: str | None, shape: tuple) -> np.ndarray:
    """
    Client side: the float32 scores of an inference answer, checked against the expected `shape`.

    :param output_name: Output to read; ``None`` when the answer must hold exactly one.
    """
    head, binary = _split_binary(body, headers)
    answer = load_json(head, 3 + len(shape), "answer")
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list) or not outputs:
        raise ValueError('answer has no "outputs" list')
    names = [o.get("name") if isinstance(o, dict) else None for o in outputs]
    if output_name is None and len(outputs) != 1:
        raise ValueError(f"answer has {len(outputs)} outputs {names}: name the scores with `output_name`")
    if output_name is not None and output_name not in names:
        raise ValueError(f'answer has no output "{output_name}" (it has {names})')
    offset, view, found = 0, memoryview(binary), None
    for name, spec in zip(names, outputs):
        array, offset = _tensor(spec, view, offset, f'output "{name}"')
        if output_name is None or name == output_name:
            found = array
    if found.shape != tuple(shape):
        raise ValueError(f"answer has shape {list(found.shape)}, expected {list(shape)}")
    return found


def encode_tfs_request(x: np.ndarray) -> bytes:
    """Client side: TF Serving's row format ``{"instances": [...]}``."""
    return json.dumps({"instances": np.asarray(x, dtype=np.float32).tolist()}).encode("utf-8")


def decode_tfs_response(body: bytes, output_name: str | None, shape: tuple) -> np.ndarray:
    """Client side: the scores of TF Serving's ``{"predictions": [...]}`` (rows, or rows of named outputs)."""
    answer = load_json(body, 2 + len(shape), "answer")
    if not isinstance(answer, dict) or "predictions" not in answer:
        raise ValueError('answer has no "predictions"')
    rows = answer["predictions"]
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        keys = sorted(rows[0])
        if output_name is None and len(keys) != 1:
            raise ValueError(f"answer rows have {len(keys)} outputs {keys}: name the scores with `output_name`")
        key = output_name or keys[0]
        if any(key not in r for r in rows):
            raise ValueError(f'answer rows lack the output "{key}"')
        rows = [r[key] for r in rows]
    array = real_array(rows, "predictions")
    if array.shape != tuple(shape):
        raise ValueError(f"answer has shape {list(array.shape)}, expected {list(shape)}")
    return array


def decode_tfs_request(body: bytes, rank: int) -> np.ndarray:
    """Server side: the inputs of ``{"instances": [...]}`` or ``{"inputs": [...]}``."""
    request = load_json(body, 2 + rank, "predict request")
    if not isinstance(request, dict) or not ({"instances", "inputs"} & set(request)):
        raise ValueError('predict request must be {"instances": [...]} or {"inputs": [...]}')
    values = request.get("instances", request.get("inputs"))
    if isinstance(values, dict) and len(values) == 1:  # columnar format with one named input
        values = next(iter(values.values()))
    if isinstance(values, list) and values and all(isinstance(v, dict) and len(v) == 1 for v in values):
        values = [next(iter(v.values())) for v in values]  # rows of one named input
    return real_array(values, "instances")


def encode_tfs_response(out: np.ndarray) -> bytes:
    """Server side: ``{"predictions": [...]}``."""
    return json.dumps({"predictions": np.asarray(out, dtype=np.float32).tolist()}).encode("utf-8")
