"""Hostile request bodies against a real `fmnist serve` (loop and gthread workers): every one gets a 4xx whose
body is strict JSON in the route's error shape (the project's, or the Open Inference Protocol's on /v2), never a
5xx, never NaN or Infinity in a body. Each case here was a 500 or an invalid body once (issue 29's fuzz run)."""

import base64
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from tests.httpprobe import exchange

pytestmark = pytest.mark.integration  # starts real processes

V2 = "/v2/models/smallcnn/infer"
DEEP = "[" * 5000 + "]" * 5000  # deeper than Python's recursion limit


def _v2(tensor: dict | None = None, **extra) -> bytes:
    t = {"name": "input", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}
    t.update(tensor or {})
    return json.dumps({"inputs": [t], **extra}).encode()


def _png(size=(28, 28)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size).save(out, "PNG")
    return out.getvalue()


def _multipart(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, str]:
    """[(Content-Disposition value, content)] -> (body, content type)."""
    b = b"hostileboundary"
    body = b"".join(b"--" + b + b"\r\nContent-Disposition: " + d + b"\r\nContent-Type: image/png\r\n\r\n" + c + b"\r\n"
                    for d, c in parts) + b"--" + b + b"--\r\n"
    return body, "multipart/form-data; boundary=hostileboundary"


_BINARY_NAN = struct.pack("<784f", *([float("nan")] + [0.0] * 783))
_V2_BINARY_HEAD = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                          "parameters": {"binary_data_size": 784 * 4}}]}).encode()
_V2_BINARY_FLOAT_SIZE = json.dumps({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 28, 28],
                                                "parameters": {"binary_data_size": 784.5}}]}).encode()
_NAMELESS, _NAMELESS_TYPE = _multipart([(b'form-data; filename="a.png"', _png())])
_NAMELESS_TOO, _ = _multipart([(b"form-data", _png()), (b'form-data; name="image"; filename="a.png"', b"not a png")])

# (id, method, path, content type, body, extra headers, the status expected)
CASES = [
    *[(f"deep-top{p}", "POST", p, "application/json", DEEP.encode(), {}, 400)
      for p in ("/predict", "/explain", V2, "/feedback")],
    ("deep-pixels", "POST", "/predict", "application/json", b'{"pixels": ' + DEEP.encode() + b"}", {}, 400),
    ("deep-image", "POST", "/predict", "application/json", b'{"image": ' + DEEP.encode() + b"}", {}, 400),
    ("deep-v2-data", "POST", V2, "application/json", _v2().replace(b"[0, 0", DEEP.encode()[:2500] + b"0, 0", 1), {}, 400),
    ("deep-feedback-label", "POST", "/feedback", "application/json",
     b'{"request_id": "x", "label": ' + DEEP.encode() + b"}", {}, 400),
    ("v2-parameters-top", "POST", V2, "application/json", _v2(parameters=5), {}, 400),
    ("v2-parameters-input", "POST", V2, "application/json", _v2({"parameters": "binary"}), {}, 400),
    ("v2-parameters-output", "POST", V2, "application/json",
     _v2(outputs=[{"name": "probabilities", "parameters": [1]}]), {}, 400),
    ("v2-outputs-number", "POST", V2, "application/json", _v2(outputs=5), {}, 400),
    ("v2-outputs-names", "POST", V2, "application/json", _v2(outputs=["probabilities"]), {}, 400),
    ("v2-shape-bool", "POST", V2, "application/json", _v2({"shape": [True, 28, 28]}), {}, 400),
    ("v2-shape-huge", "POST", V2, "application/json", _v2({"shape": [2 ** 70, 28, 28]}), {}, 400),
    ("v2-binary-size-float", "POST", V2, "application/json", _V2_BINARY_FLOAT_SIZE + bytes(784),
     {"Inference-Header-Content-Length": str(len(_V2_BINARY_FLOAT_SIZE))}, 400),
    ("v2-fp32-overflow", "POST", V2, "application/json",
     _v2({"datatype": "FP32", "shape": [1, 1, 28, 28], "data": [1e39] + [0.0] * 783}), {}, 400),
    ("v2-fp32-binary-nan", "POST", V2, "application/octet-stream", _V2_BINARY_HEAD + _BINARY_NAN,
     {"Inference-Header-Content-Length": str(len(_V2_BINARY_HEAD))}, 400),
    ("v2-id-object", "POST", V2, "application/json", _v2(id={"a": 1}), {}, 400),
    ("feedback-index-2^64", "POST", "/feedback", "application/json",
     json.dumps({"request_id": "x", "label": 1, "index": 2 ** 64}).encode(), {}, 400),
    ("feedback-label-float-nan", "POST", "/feedback", "application/json",
     b'{"request_id": "x", "label": NaN}', {}, 400),
    ("multipart-nameless-part", "POST", "/predict", _NAMELESS_TYPE, _NAMELESS, {}, 400),
    ("multipart-nameless-and-bad", "POST", "/predict", _NAMELESS_TYPE, _NAMELESS_TOO, {}, 400),
    ("multipart-nameless-explain", "POST", "/explain", _NAMELESS_TYPE, _NAMELESS, {}, 400),
    ("pixels-huge-int", "POST", "/predict", "application/json",
     json.dumps({"pixels": [[2 ** 70] * 28] * 28}).encode(), {}, 400),
    ("images-not-strings", "POST", "/predict", "application/json", b'{"images": [1, {"a": 2}]}', {}, 400),
    ("image-b64-of-nothing", "POST", "/predict", "application/json",
     json.dumps({"image": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()}).encode(), {}, 400),
]


def _strict_json(raw: bytes):
    def refuse(name):
        raise ValueError(f"{name} in a JSON body")
    return json.loads(raw, parse_constant=refuse)


def _request(port: int, method: str, path: str, ctype: "str | None", body: bytes, headers: dict) -> dict:
    head = [f"{method} {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", "Connection: close"]
    if ctype:
        head.append(f"Content-Type: {ctype}")
    head += [f"{k}: {v}" for k, v in headers.items()]
    got = exchange(port, ("\r\n".join(head) + "\r\n\r\n").encode() + body, timeout=10)
    assert len(got["responses"]) == 1, got
    return got["responses"][0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_body_gets_a_4xx_in_the_routes_error_shape(kind_server, case):
    _, method, path, ctype, body, headers, status = case
    r = _request(kind_server["port"], method, path, ctype, body, headers)
    assert r["status"] == status, (r["status"], r["body"][:300])
    assert r["headers"]["content-type"].startswith("application/json")
    answer = _strict_json(r["body"])
    if path.startswith("/v2"):
        assert isinstance(answer["error"], str) and answer["error"], answer  # the protocol's {"error": "..."}
    else:
        assert answer["error"]["code"] and answer["error"]["message"], answer


@pytest.mark.parametrize("method,path,allowed", [("GET", "/predict", "POST"), ("DELETE", "/health", "GET"),
                                                 ("PUT", V2, "POST"), ("POST", "/metrics", "GET")])
def test_405_names_the_allowed_methods(kind_server, method, path, allowed):
    """RFC 9110 §15.5.6: a 405 MUST carry Allow with the target's methods."""
    r = _request(kind_server["port"], method, path, None, b"", {})
    assert r["status"] == 405
    assert allowed in [m.strip() for m in r["headers"].get("allow", "").split(",")], r["headers"]
    _strict_json(r["body"])


def test_valid_fp32_and_uint8_v2_answers_are_strict_json(kind_server):
    """The other side of the number checks: an ordinary tensor still gets finite numbers, strict JSON."""
    x = (np.zeros(784, np.float32) - 0.286) / 0.353
    for body in (_v2(), _v2({"datatype": "FP32", "shape": [1, 1, 28, 28], "data": x.tolist()},
                             outputs=[{"name": n} for n in ("probabilities", "labels", "ood_score", "flags")])):
        r = _request(kind_server["port"], "POST", V2, "application/json", body, {})
        assert r["status"] == 200, r["body"][:300]
        out = _strict_json(r["body"])["outputs"]
        assert abs(sum(out[0]["data"]) - 1) < 1e-4
