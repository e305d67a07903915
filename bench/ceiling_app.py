"""Ceilings for `serve_bench.py --ceiling`: what Gunicorn allows on this machine before our features.

Two bare WSGI callables (no Flask, no metrics, no logging, no batching, no error handling):

- `hello`: reads the body, answers a fixed JSON object; the cost of Gunicorn and the loopback.
- `lean`: the least a prediction needs: the fast multipart reader, the serving decode and
  preprocessing, ONNX Runtime (1 thread) on FMNIST_BASELINE_MODEL, the top-3 JSON answer.

Run as `gunicorn -k gthread -w 2 --threads 4 -b 127.0.0.1:PORT bench.ceiling_app:lean`.
Not a server to deploy: it exists so the benchmark can say how far `fmnist serve` is from them.
"""

import json
import os

from fmnist.artifact import read_artifact
from fmnist.images.preprocess import decode_image, to_model_pixels
from fmnist.inference import Predictor
from fmnist.serving import multipart

_predictor = Predictor(read_artifact(os.environ["FMNIST_BASELINE_MODEL"]), "onnx", 1) \
    if os.environ.get("FMNIST_BASELINE_MODEL") else None


def _answer(start_response, body: bytes):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _body(environ) -> bytes:
    return environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))


def hello(environ, start_response):
    _body(environ)
    return _answer(start_response, b'{"label":"Ankle boot"}')


def lean(environ, start_response):
    if environ["PATH_INFO"] != "/predict":  # the benchmark's readiness probe
        return _answer(start_response, b"{}")
    parts = multipart.parse(_body(environ), environ.get("CONTENT_TYPE", ""))
    pixels = to_model_pixels(decode_image(parts[0][2]))[None]
    p = _predictor.to_predictions(_predictor.predict_batch(_predictor.normalize(pixels)))[0]
    out = {"label": p.label, "class_id": p.class_id, "confidence": p.confidence, "top_k": p.top_k(3)}
    return _answer(start_response, json.dumps(out, separators=(",", ":")).encode())
