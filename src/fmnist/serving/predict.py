"""POST /predict through Flask: reading the request (multipart, JSON base64 images, raw pixels), then the
pipeline's stages."""

from __future__ import annotations

import base64
import binascii

import numpy as np
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import HTTPException

from fmnist.serving import multipart, pipeline
from fmnist.serving.apierror import APIError, parse_json
from fmnist.serving.context import charge_images, require_model
from fmnist.serving.contract import PredictQuery, image_files

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


def read_inputs(settings) -> tuple[list, "np.ndarray | None", bool]:
    """-> (encoded images as (name, bytes), raw pixel array or None, response is a list?)."""
    ctype = request.mimetype
    if ctype == "multipart/form-data":
        parts = multipart.parse(request.get_data(), request.content_type or "")  # the body stays cached
        if parts is None:  # not the plain form the fast reader knows: Werkzeug's parser decides
            parts = [(k or "", f.filename, f) for k, f in request.files.items(multi=True)]  # RFC 7578 §4.2: a part
            parts += [(k or "", None, v) for k, v in request.form.items(multi=True)]  # has a name; None if not
        selected = image_files(parts)
        if selected is None:
            fields = sorted({field or "(a part without a name)" for field, _, _ in parts})
            raise APIError(400, "missing_image", "no file in form field 'image' (or 'images')"
                           + (f"; got fields {', '.join(fields)}" if fields else ""))
        blobs, many = selected
        return [(name, c if isinstance(c, bytes) else c.read()) for name, c in blobs], None, many
    if ctype == "application/json":
        body = parse_json(request.get_data(cache=False))
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
    served = st.rollout.pick(g.get("key_id"), request.headers.get("X-Client-ID", ""), g.request_id) or served
    settings = st.settings
    query = PredictQuery.parse(request.query_string.decode("latin-1"), settings.default_top_k)
    many = False
    timings: list = []

    def load():
        nonlocal many
        blobs, pixels, many = read_inputs(settings)
        charge_images(len(blobs) if pixels is None else len(pixels))
        return pixels if pixels is not None else pipeline.decode_and_preprocess(blobs, settings, query.preprocess,
                                                                               timings)

    try:
        pixels, probs = pipeline.infer(served, load)
    except (APIError, HTTPException):
        raise  # the request's fault (a bad image, a body over the limit): answered 4xx, not the model's
    except Exception:
        st.record_failure(served, g.request_id, g.get("key_id") or "")
        raise
    if timings:
        st.metrics.observe_pictures(request.environ.get("fmnist.pool", "thread"), timings)
    assessed = served.predictor.assess(probs)
    pipeline.record(st, served, g.request_id, pixels, probs, g.get("key_id"), g.get("t0"), assessed)
    body, g.log_extra = pipeline.encode(served, g.request_id, probs, many, query.top_k, g.t0, assessed)
    return Response(body, mimetype="application/json")
