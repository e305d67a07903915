"""A fixed set of requests against a running server, its answers written as JSON: status, the headers a
client reads, and the body (`latency_ms` masked, the only figure that changes from run to run). Two
snapshots of two builds, diffed, show whether a change kept the API's answers byte for byte.

    python tools/answer_snapshot.py http://127.0.0.1:5000 before.json
    python tools/answer_snapshot.py http://127.0.0.1:5000 after.json && diff before.json after.json
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

HEADERS = ("Content-Type", "X-Request-ID", "Allow", "Retry-After", "WWW-Authenticate")


def _png(a) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(a, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _images() -> dict:
    rng = np.random.default_rng(7)
    shirt = np.zeros((28, 28), np.uint8)
    shirt[4:26, 8:20] = 200
    shirt[4:12, 2:26] = 180
    trousers = np.zeros((28, 28), np.uint8)
    trousers[2:27, 8:13] = 220
    trousers[2:27, 15:20] = 220
    trousers[2:6, 8:20] = 220
    noise = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    photo = Image.fromarray(255 - np.kron(shirt, np.ones((8, 8), np.uint8))).convert("RGB")
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=80)
    return {"shirt": _png(shirt), "trousers": _png(trousers), "noise": _png(noise), "blank": _png(np.zeros((28, 28))),
            "photo": buf.getvalue(), "pixels": shirt}


def _multipart(files: list, fields: "list | None" = None) -> tuple[bytes, str]:
    b = "snapshotboundary"
    out = b""
    for name, filename, content in files:
        out += (f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    for name, value in fields or []:
        out += f'--{b}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return out + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def requests() -> list:
    """(name, method, path, body, content type, extra headers)"""
    im = _images()
    b64 = {k: base64.b64encode(v).decode() for k, v in im.items() if isinstance(v, bytes)}
    px = im["pixels"].tolist()
    mp = _multipart
    out = []

    def add(name, method, path, body=None, ctype=None, headers=None):
        out.append((name, method, path, body, ctype, headers or {}))

    add("mp_single", "POST", "/predict", *mp([("image", "shirt.png", im["shirt"])]))
    add("mp_many", "POST", "/predict", *mp([("images", "a.png", im["shirt"]), ("images", "b.png", im["trousers"]),
                                            ("images", "c.png", im["noise"])]))
    add("mp_topk_photo", "POST", "/predict?top_k=5&preprocess=photo", *mp([("image", "t.png", im["trousers"])]))
    add("mp_jpeg_photo", "POST", "/predict", *mp([("image", "photo.jpg", im["photo"])]))
    add("mp_blank", "POST", "/predict", *mp([("image", "blank.png", im["blank"])]))
    add("mp_blank_many", "POST", "/predict", *mp([("images", "a.png", im["blank"]), ("images", "b.png", im["shirt"])]))
    add("mp_noise", "POST", "/predict", *mp([("image", "noise.png", im["noise"])]))
    add("mp_no_image", "POST", "/predict", *mp([], [("note", "hello")]))
    add("mp_bad_image", "POST", "/predict", *mp([("image", "x.png", b"not an image")]))
    add("mp_topk_0", "POST", "/predict?top_k=0", *mp([("image", "shirt.png", im["shirt"])]))
    add("mp_mode_bad", "POST", "/predict?preprocess=sepia", *mp([("image", "shirt.png", im["shirt"])]))
    add("json_image", "POST", "/predict", json.dumps({"image": b64["shirt"]}).encode(), "application/json")
    add("json_images", "POST", "/predict", json.dumps({"images": [b64["shirt"], b64["blank"]]}).encode(), "application/json")
    add("json_pixels", "POST", "/predict", json.dumps({"pixels": px}).encode(), "application/json")
    add("json_pixels_many", "POST", "/predict", json.dumps({"pixels": [px, px]}).encode(), "application/json")
    add("json_photo", "POST", "/predict", json.dumps({"image": b64["photo"]}).encode(), "application/json")
    add("json_bad", "POST", "/predict", b"{not json", "application/json")
    add("json_deep", "POST", "/predict", b"[" * 5000 + b"]" * 5000, "application/json")
    add("json_empty_obj", "POST", "/predict", b"{}", "application/json")
    add("json_bad_b64", "POST", "/predict", b'{"image": "%%%"}', "application/json")
    add("text_plain", "POST", "/predict", b"hello", "text/plain")
    add("empty", "POST", "/predict", b"", None)
    add("get_predict", "GET", "/predict")
    add("explain", "POST", "/explain", json.dumps({"image": b64["shirt"]}).encode(), "application/json")
    add("explain_mp", "POST", "/explain", *mp([("image", "t.png", im["trousers"])]))
    add("model", "GET", "/model")
    add("v2_meta", "GET", "/v2")
    add("v2_model", "GET", "/v2/models/smallcnn")
    add("v2_model_404", "GET", "/v2/models/nope")
    add("v2_ready", "GET", "/v2/models/smallcnn/ready")
    flat = np.asarray(im["pixels"], np.float32).reshape(-1)
    norm = ((flat / 255.0 - 0.2860) / 0.3530).round(4).tolist()
    add("v2_fp32", "POST", "/v2/models/smallcnn/infer", json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": norm}]}).encode(),
        "application/json")
    add("v2_uint8_all", "POST", "/v2/models/smallcnn/infer", json.dumps(
        {"id": "abc", "inputs": [{"name": "input", "datatype": "UINT8", "shape": [2, 28, 28], "data": [px, px]}],
         "outputs": [{"name": n} for n in ("probabilities", "labels", "ood_score", "flags")]}).encode(), "application/json")
    head = json.dumps({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 28, 28],
                                   "parameters": {"binary_data_size": 784}}],
                       "parameters": {"binary_data_output": True}}).encode()
    add("v2_binary", "POST", "/v2/models/smallcnn/infer", head + im["pixels"].tobytes(), "application/octet-stream",
        {"Inference-Header-Content-Length": str(len(head))})
    add("v2_dtype_empty", "POST", "/v2/models/smallcnn/infer", json.dumps(
        {"inputs": [{"name": "input", "datatype": "", "shape": [1, 28, 28], "data": [0] * 784}]}).encode(), "application/json")
    add("v2_bad_shape", "POST", "/v2/models/smallcnn/infer", json.dumps(
        {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 27, 28], "data": [0] * 756}]}).encode(),
        "application/json")
    add("v2_bad_output", "POST", "/v2/models/smallcnn/infer", json.dumps(
        {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}],
         "outputs": [{"name": "logits"}]}).encode(), "application/json")
    add("feedback", "POST", "/feedback", json.dumps({"request_id": "snap-mp_single", "label": "T-shirt/top"}).encode(),
        "application/json")
    add("feedback_404", "POST", "/feedback", json.dumps({"request_id": "nope", "label": 1}).encode(), "application/json")
    add("feedback_bad", "POST", "/feedback", json.dumps({"request_id": "x", "label": "Hat"}).encode(), "application/json")
    add("not_found", "GET", "/nope")
    add("health", "GET", "/health")
    return out


def _mask(body: bytes, ctype: str) -> "str | dict | list":
    if not ctype.startswith("application/json"):
        return {"bytes": len(body), "head": base64.b64encode(body[:64]).decode()}
    text = body.decode()
    text = re.sub(r'"(latency_ms|uptime_seconds)":[0-9.e-]+', r'"\1":"*"', text)
    return text


def snapshot(url: str) -> dict:
    out = {}
    for name, method, path, body, ctype, headers in requests():
        req = urllib.request.Request(url + path, data=body, method=method,
                                     headers={"X-Request-ID": f"snap-{name}", **headers,
                                              **({"Content-Type": ctype} if ctype else {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, hdrs, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, data = e.code, e.headers, e.read()
        kept = {h: hdrs[h] for h in HEADERS if hdrs.get(h) is not None}
        if "Allow" in kept:  # a set: its order is Werkzeug's, not ours
            kept["Allow"] = ", ".join(sorted(kept["Allow"].split(", ")))
        if path.startswith("/v2") and method == "POST" and hdrs.get(HEADER := "Inference-Header-Content-Length"):
            kept[HEADER] = hdrs[HEADER]
            n = int(hdrs[HEADER])
            out[name] = {"status": status, "headers": kept, "body": _mask(data[:n], "application/json"),
                         "binary": base64.b64encode(data[n:]).decode()}
            continue
        out[name] = {"status": status, "headers": kept, "body": _mask(data, hdrs.get("Content-Type", ""))}
    return out


if __name__ == "__main__":
    url, path = sys.argv[1], sys.argv[2]
    with open(path, "w") as f:
        json.dump(snapshot(url), f, indent=1, sort_keys=True)
    print(f"{len(requests())} answers -> {path}")
