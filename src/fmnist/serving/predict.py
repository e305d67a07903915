"""POST /predict through Flask: reading the request (multipart, JSON base64 images, raw pixels), then the
pipeline's stages (inference.pipeline) and the answer (inference.answer)."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import HTTPException

from fmnist.inference import answer, pipeline
from fmnist.serving import multipart
from fmnist.serving.apierror import APIError
from fmnist.serving.context import charge_images, require_model
from fmnist.serving.contract import PredictQuery, image_files, json_inputs
from fmnist.serving.http import exchange
from fmnist.serving.reqlog import ms_since

bp = Blueprint("predict", __name__)


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
        return json_inputs(request.get_data(cache=False), settings.max_images)
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
        if pixels is not None:
            return pixels
        return pipeline.preprocess(pipeline.decode(blobs, st.limits), query.preprocess, timings, st.pixels)

    try:
        pixels, probs = pipeline.infer(served, load)
    except (APIError, HTTPException):
        raise  # the request's fault (a bad image, a body over the limit): answered 4xx, not the model's
    except Exception:
        st.record_failure(served, g.request_id, g.get("key_id") or "")
        raise
    if timings:
        st.metrics.observe_pictures(exchange.of(request.environ).pool, timings)
    result = pipeline.assess(served, probs, pixels)
    st.record(served, g.request_id, result, g.get("key_id") or "", ms_since(g.t0))
    g.log_extra = answer.log_fields(result)
    return Response(answer.body(result, g.request_id, many, query.top_k, ms_since(g.t0), served.flagged_label),
                    mimetype="application/json")
