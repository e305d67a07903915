"""Open Inference Protocol v2 (KServe / Triton HTTP), with the binary tensor data extension.

Input: one tensor [N,1,28,28] or [N,28,28], FP32 already normalised or UINT8 raw pixels.
Outputs: `probabilities` FP32 [N,10] and, when asked for, `labels` BYTES [N].
Errors follow the protocol: {"error": "<message>"}.
"""

from __future__ import annotations

import json
import struct

import numpy as np
from flask import Blueprint, Response, g, request

from fmnist import __version__
from fmnist.inference import answer, pipeline
from fmnist.labels import CLASSES
from fmnist.serving.apierror import APIError, parse_json
from fmnist.serving.context import charge_images, require_model, serving_state
from fmnist.serving.health import probe
from fmnist.serving.reqlog import ms_since

bp = Blueprint("v2", __name__, url_prefix="/v2")

HEADER = "Inference-Header-Content-Length"
OUTPUTS = answer.V2_OUTPUTS  # probabilities, labels, ood_score, flags ("" for none, "unsure" or "not_a_garment")
_DTYPES = {"FP32": np.float32, "UINT8": np.uint8}


def _model_or_404(name: str, version: "str | None" = None):
    """(state, the model in service), or 404 when it is not the one asked for."""
    st, served = require_model()
    p = served.predictor
    if name != p.name:
        raise APIError(404, "unknown_model", f"unknown model {name!r}; this server serves {p.name!r}")
    if version not in (None, "", p.version):
        raise APIError(404, "unknown_version", f"model {name!r} has no version {version!r} here; serving {p.version!r}")
    return st, served


@bp.get("")
def server_metadata():
    return {"name": "fmnist", "version": __version__, "extensions": ["binary_tensor_data"]}


@bp.get("/health/live")
@bp.get("/health/ready")
def health():
    return probe(serving_state(), request.path)


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: "str | None" = None):
    _, served = _model_or_404(name, version)
    p = served.predictor
    return {
        "name": p.name,
        "versions": [p.version],
        "platform": "onnxruntime_onnx" if p.backend == "onnx" else "pytorch_eager",  # torch: an nn.Module from safetensors
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "labels", "datatype": "BYTES", "shape": [-1]},
            {"name": "ood_score", "datatype": "FP32", "shape": [-1]},
            {"name": "flags", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"classes": list(CLASSES), "also_accepts": "UINT8 raw pixels, shape [N,28,28] or [N,1,28,28]"},
    }


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: "str | None" = None):
    _model_or_404(name, version)
    return {"name": name, "ready": True}


def _parse_body() -> tuple[dict, bytes]:
    return split_body(request.get_data(cache=False), request.headers.get(HEADER))


def split_body(raw: bytes, header_len: "str | None") -> tuple[dict, bytes]:
    """An inference request's body -> (its JSON object, the binary tensor data after it); `header_len`: the
    Inference-Header-Content-Length header (None: all JSON). APIError 400 for anything else."""
    if header_len is not None:
        try:
            n = int(header_len)
        except ValueError:
            raise APIError(400, "bad_header", f"{HEADER} must be an integer, got {header_len!r}"[:300]) from None
        if not 0 < n <= len(raw):
            raise APIError(400, "bad_header", f"{HEADER} {n} does not fit a body of {len(raw)} bytes"[:300])
        head, binary = raw[:n], raw[n:]
    else:
        head, binary = raw, b""
    body = parse_json(head, "inference request")
    if not isinstance(body, dict):
        raise APIError(400, "bad_json", "inference request must be a JSON object with 'inputs'")
    return body, binary


def read_request(body: dict, binary: bytes, max_images: int) -> "tuple[np.ndarray, str, list, str | None]":
    """A parsed inference request -> (the input as (N, 28, 28) of its datatype, the datatype, the outputs
    asked for as [(name, binary?)], its id or None); every field checked, APIError 400 otherwise."""
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise APIError(400, "bad_id", f"'id' must be a string, got {type(request_id).__name__}")
    pixels, dtype = _input_tensor(body, binary, max_images)
    return pixels, dtype, _requested_outputs(body), request_id


FP32_LIMIT = 1000.0  # |x| of a normalised FP32 input: pixels 0-255 normalise to about -0.8..2.0


def _object(value, where: str) -> dict:
    """A `parameters` object: absent/null -> {}; anything but a JSON object -> 400."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise APIError(400, "bad_parameters", f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _whole(value) -> bool:
    """An integer as JSON Schema has it (and the OpenAPI document says): 784 or 784.0, never true."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())


def _input_tensor(body: dict, binary: bytes, max_images: int) -> tuple[np.ndarray, str]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise APIError(400, "bad_inputs", "'inputs' must hold exactly one tensor (shape [N,1,28,28] or [N,28,28])")
    t = inputs[0]
    if not isinstance(t.get("name"), str):
        raise APIError(400, "bad_inputs", "the input tensor needs a 'name' (a string, e.g. \"input\")")
    dtype = t.get("datatype")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise APIError(400, "bad_datatype",
                       f"datatype {dtype!r} is not supported: use FP32 (normalised) or UINT8 (raw pixels 0-255)"[:300])
    shape = t.get("shape")
    if isinstance(shape, list) and all(_whole(d) for d in shape):
        shape = [int(d) for d in shape]
    if not (isinstance(shape, list) and len(shape) in (3, 4) and all(_whole(d) for d in shape)
            and (shape[1:] == [1, 28, 28] or shape[1:] == [28, 28])):
        raise APIError(400, "bad_shape", f"shape {shape!r} is not supported: use [N,1,28,28] or [N,28,28]"[:300])
    n = shape[0]
    if not 1 <= n <= max_images:
        raise APIError(400, "bad_shape", f"batch size {n}: expected 1-{max_images}"[:300])
    count = n * 784
    np_dtype = np.dtype(_DTYPES[dtype])
    size = _object(t.get("parameters"), "the input's parameters").get("binary_data_size")
    if size is not None:
        if not _whole(size) or int(size) != count * np_dtype.itemsize or len(binary) < size:
            raise APIError(400, "bad_binary", f"binary_data_size {size!r} does not match shape {shape} of {dtype} "
                                              f"({count * np_dtype.itemsize} bytes; {len(binary)} received)"[:300])
        arr = np.frombuffer(binary[:int(size)], dtype=np_dtype.newbyteorder("<"))
    else:
        try:
            arr = np.asarray(t.get("data"), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise APIError(400, "bad_data", "'data' must be a flat or nested list of numbers") from None
        if arr.size != count:
            raise APIError(400, "bad_data", f"'data' has {arr.size} values, shape {shape} needs {count}")
    if dtype == "UINT8":
        if arr.dtype != np.uint8 and (arr.min() < 0 or arr.max() > 255 or not np.all(arr == np.round(arr))):
            raise APIError(400, "bad_data", "UINT8 data must be whole numbers 0-255")
    else:  # as the model will see it: float32 (1e39 is finite as a JSON double, infinite as FP32)
        arr = arr.astype(np.float32)
        if not np.all(np.abs(arr) <= FP32_LIMIT):  # NaN fails this too
            bad = "NaN or infinite values" if not np.all(np.isfinite(arr)) else "values beyond ±1000"
            raise APIError(400, "bad_data", f"FP32 data holds {bad}: expected normalised pixels, "
                                            f"(pixel / 255 - mean) / std, about -0.8 to 2.0")
    return arr.astype(np_dtype).reshape(n, 28, 28), dtype


def _requested_outputs(body: dict) -> list[tuple[str, bool]]:
    params = _object(body.get("parameters"), "parameters")
    binary_all = params.get("binary_data_output", False)
    if not isinstance(binary_all, bool):
        raise APIError(400, "bad_parameters", "binary_data_output must be true or false")
    wanted = body.get("outputs")
    if wanted is None or wanted == []:
        return [("probabilities", binary_all)]
    if not isinstance(wanted, list):
        raise APIError(400, "bad_output", f"'outputs' must be a list of {{\"name\": ...}} objects, got "
                                          f"{type(wanted).__name__}")
    out = []
    for o in wanted:
        name = o.get("name") if isinstance(o, dict) else None
        if not isinstance(name, str) or name not in OUTPUTS:
            raise APIError(400, "bad_output", f"each output must be {{\"name\": one of {', '.join(OUTPUTS)}}}, "
                                              f"got {o!r}"[:300])
        binary = _object(o.get("parameters"), f"output {name}'s parameters").get("binary_data", binary_all)
        if not isinstance(binary, bool):
            raise APIError(400, "bad_parameters", f"output {name}'s binary_data must be true or false")
        out.append((name, binary))
    return out


def _tensor(name: str, value, as_binary: bool) -> "tuple[dict, bytes | None]":
    """One output tensor of the response: FP32 (an array) or BYTES (a list of strings), in JSON or as binary data."""
    if isinstance(value, np.ndarray):
        data = value.astype(np.float32)
        tensor = {"name": name, "datatype": "FP32", "shape": list(data.shape)}
        if not as_binary:
            return {**tensor, "data": [float(v) for v in data.reshape(-1)]}, None
        blob = data.astype("<f4").tobytes()
    else:
        tensor = {"name": name, "datatype": "BYTES", "shape": [len(value)]}
        if not as_binary:
            return {**tensor, "data": value}, None
        blob = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in value)
    return {**tensor, "parameters": {"binary_data_size": len(blob)}}, blob


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: "str | None" = None):
    st, served = _model_or_404(name, version)
    pixels, dtype, wanted, request_id = read_request(*_parse_body(), st.settings.max_images)  # all checked first
    charge_images(len(pixels))
    if dtype == "UINT8":
        x = served.predictor.normalize(pixels)
    else:
        x = np.ascontiguousarray(pixels, dtype=np.float32)[:, None]
    p = served.predictor
    result = pipeline.assess(served, served.run(x), pixels if dtype == "UINT8" else None)
    if result.pixels is not None:  # FP32 inputs are already normalised: no pixels to log
        st.record(served, g.request_id, result, g.get("key_id") or "", ms_since(g.t0))
    g.log_extra = {"n_images": len(result), "model_version": p.version}
    values = answer.v2_values(result, served.flagged_label)
    outputs, blobs = [], []
    for out_name, as_binary in wanted:
        tensor, blob = _tensor(out_name, values[out_name], as_binary)
        if blob is not None:
            blobs.append(blob)
        outputs.append(tensor)
    reply = {"model_name": p.name, "model_version": p.version, "id": g.request_id if request_id is None else request_id,
             "outputs": outputs}
    head = json.dumps(reply, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return Response(head, mimetype="application/json")
    resp = Response(head + b"".join(blobs), mimetype="application/octet-stream")
    resp.headers[HEADER] = str(len(head))
    return resp
