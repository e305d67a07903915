"""POST /predict: images (multipart or JSON base64) or raw pixels in, labels and probabilities out."""

from __future__ import annotations

import base64
import binascii
import json
import time

import numpy as np
from flask import Blueprint, Response, g, request

from fmnist.preprocess import WORK_SIDE, ImageError, load_image, open_image, to_model_pixels
from fmnist.serving import multipart
from fmnist.serving.contract import PredictQuery, image_files
from fmnist.serving.errors import APIError, require_model

bp = Blueprint("predict", __name__)


def _b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise APIError(400, "bad_image", f"{where} must be a base64 string, got {type(value).__name__}")
    if value.startswith("data:"):  # data URL: data:image/png;base64,....
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "bad_image", f"{where} is not valid base64") from None


def _pixels(value, max_images: int) -> tuple[np.ndarray, bool]:
    """JSON pixels: one 28x28 list of ints 0-255, or a list of them -> (uint8 (N,28,28), many?)."""
    expected = "28 rows of 28 integers 0-255, or a list of such images"
    try:
        arr = np.asarray(value)
    except ValueError:
        raise APIError(400, "bad_pixels", f"pixels is ragged: expected {expected}") from None
    if arr.dtype == object or arr.dtype.kind not in "iuf" or arr.size == 0:
        raise APIError(400, "bad_pixels", f"pixels must be numbers: expected {expected}")
    many = arr.ndim == 3
    if arr.ndim not in (2, 3) or arr.shape[-2:] != (28, 28):
        raise APIError(400, "bad_pixels", f"pixels has shape {list(arr.shape)}: expected {expected}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise APIError(400, "bad_pixels", f"pixels must be whole numbers: expected {expected}")
    if arr.min() < 0 or arr.max() > 255:
        raise APIError(400, "bad_pixels", f"pixel values range {arr.min()}..{arr.max()}: expected 0-255")
    arr = arr.astype(np.uint8).reshape(-1, 28, 28)
    if len(arr) > max_images:
        raise APIError(400, "too_many_images", f"{len(arr)} images in one request; the limit is {max_images}")
    return arr, many


def open_all(blobs: list, settings) -> list:
    """[(name, bytes)] -> [(name, PIL image)], headers read and checked (nothing decoded); APIError when one
    is not an image or is over the limits."""
    if len(blobs) > settings.max_images:
        raise APIError(400, "too_many_images", f"{len(blobs)} images in one request; the limit is {settings.max_images}")
    try:
        return [(name, open_image(b, settings.max_image_pixels, name)) for name, b in blobs]
    except ImageError as e:
        raise APIError(e.status, e.code, str(e)) from None


def convert_all(images: list, mode: str, timings: "list | None" = None) -> np.ndarray:
    """Opened images -> uint8 (N, 28, 28) with the serving preprocessing (decoded no larger than the
    conversion needs); APIError on a bad image. `timings` gets (header pixels, decode s, convert s) each."""
    out = []
    try:
        for name, im in images:
            t0 = time.perf_counter()
            pixels = im.size[0] * im.size[1]
            load_image(im, name, WORK_SIDE)
            t1 = time.perf_counter()
            out.append(to_model_pixels(im, mode))
            if timings is not None:
                timings.append((pixels, t1 - t0, time.perf_counter() - t1))
    except ImageError as e:
        raise APIError(e.status, e.code, str(e)) from None
    return np.stack(out)


def decode_all(blobs: list, settings, mode: str, timings: "list | None" = None) -> np.ndarray:
    """[(name, bytes)] -> uint8 (N, 28, 28) with the serving preprocessing; APIError on a bad image."""
    return convert_all(open_all(blobs, settings), mode, timings)


def infer(served, load) -> tuple[np.ndarray, np.ndarray]:
    """load() -> uint8 pixels (the decoding), then probabilities. While it decodes, the batcher
    knows one more request is on its way, so a busy worker's batch waits for it."""
    batcher = served.batcher
    if batcher is None:
        pixels = load()
        return pixels, served.run(served.predictor.normalize(pixels))
    batcher.enter()
    try:
        pixels = load()
        x = served.predictor.normalize(pixels)
    finally:
        batcher.leave()
    return pixels, served.run(x)


_JSON = json.JSONEncoder(separators=(",", ":"))


def answer(st, served, request_id: str, pixels: np.ndarray, probs: np.ndarray, many: bool, top_k: int,
           t0: float, recorded: bool = False) -> tuple[bytes, dict]:
    """Record the predictions (metrics, prediction log; unless the caller `recorded` them with
    others already) -> (JSON body, fields for the access log)."""
    if not recorded:
        st.record(served, request_id, pixels, probs)
    predictor = served.predictor
    model = {"name": predictor.name, "version": predictor.version}
    preds = predictor.to_predictions(probs)
    items = [{"label": p.label, "class_id": p.class_id, "confidence": p.confidence, "top_k": p.top_k(top_k)}
             for p in preds]
    latency_ms = round((time.perf_counter() - t0) * 1000, 3)
    if many:
        body = {"predictions": items, "model": model, "request_id": request_id, "latency_ms": latency_ms}
    else:
        body = {**items[0], "model": model, "request_id": request_id, "latency_ms": latency_ms}
    log_extra = {"label": preds[0].label if len(preds) == 1 else [p.label for p in preds],
                 "confidence": round(preds[0].confidence, 4) if len(preds) == 1 else None,
                 "n_images": len(preds), "model_version": predictor.version}
    return _JSON.encode(body).encode(), log_extra


def read_inputs(settings) -> tuple[list, "np.ndarray | None", bool]:
    """-> (encoded images as (name, bytes), raw pixel array or None, response is a list?)."""
    ctype = request.mimetype
    if ctype == "multipart/form-data":
        parts = multipart.parse(request.get_data(), request.content_type or "")  # the body stays cached
        if parts is None:  # not the plain form the fast reader knows: Werkzeug's parser decides
            parts = [(k, f.filename, f) for k, f in request.files.items(multi=True)]
            parts += [(k, None, v) for k, v in request.form.items(multi=True)]
        selected = image_files(parts)
        if selected is None:
            fields = sorted({field for field, _, _ in parts})
            raise APIError(400, "missing_image", "no file in form field 'image' (or 'images')"
                           + (f"; got fields {', '.join(fields)}" if fields else ""))
        blobs, many = selected
        return [(name, c if isinstance(c, bytes) else c.read()) for name, c in blobs], None, many
    if ctype == "application/json":
        try:
            body = json.loads(request.get_data(cache=False))
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, "bad_json", f"request body is not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise APIError(400, "bad_json", 'expected a JSON object with "image", "images" or "pixels"')
        if "image" in body:
            return [("image", _b64(body["image"], "image"))], None, False
        if "images" in body:
            imgs = body["images"]
            if not isinstance(imgs, list) or not imgs:
                raise APIError(400, "bad_image", '"images" must be a non-empty list of base64 strings')
            return [(f"images[{i}]", _b64(v, f"images[{i}]")) for i, v in enumerate(imgs)], None, True
        if "pixels" in body:
            arr, many = _pixels(body["pixels"], settings.max_images)
            return [], arr, many
        raise APIError(400, "missing_image", 'JSON body needs "image" (base64), "images" (list) or "pixels"')
    if not ctype and not request.content_length:
        raise APIError(400, "missing_image", "empty request: send multipart/form-data with field 'image' or JSON")
    raise APIError(415, "unsupported_media_type",
                   f"Content-Type {ctype!r} is not supported: use multipart/form-data (field 'image') "
                   "or application/json")


@bp.post("/predict")
def predict():
    """The whole contract; the common multipart request is usually served by fastpath.py before Flask."""
    st, served = require_model()
    settings = st.settings
    query = PredictQuery.parse(request.query_string.decode("latin-1"), settings.default_top_k)
    many = False

    timings: list = []

    def load():
        nonlocal many
        blobs, pixels, many = read_inputs(settings)
        return pixels if pixels is not None else decode_all(blobs, settings, query.preprocess, timings)

    pixels, probs = infer(served, load)
    if timings:
        st.metrics.observe_pictures(request.environ.get("fmnist.pool", "thread"), timings)
    body, g.log_extra = answer(st, served, g.request_id, pixels, probs, many, query.top_k, g.t0)
    return Response(body, mimetype="application/json")
