"""POST /explain: why the model said what it said, for one image.

Same inputs and query parameters as /predict (one image). The answer: the prediction and top-k, the
28x28 image the model actually saw after preprocessing, and an occlusion saliency map computed with
the served model (ONNX Runtime; no torch): a PATCH x PATCH grey-out slides over the input in steps of
STRIDE, and each pixel's saliency is the mean drop of the predicted class's probability over the
patches covering it. Cost, bounded: 1 + (1 + 12 x 12) = 146 images per request in 4 model calls (the
prediction, then the original and its 144 occluded copies in calls of max_batch_size, 64 by default: 3),
in the worker's thread pool (never on the event loop or the fast path),
at most `explain_concurrency` (2) at once per worker: one more gets 503 with Retry-After at once.
Metrics: fmnist_explanations_total{outcome="done"|"busy"}, fmnist_explain_duration_seconds.
JSON with base64 PNGs, or with `Accept: image/png` one PNG: the picture as sent | what the model saw |
the saliency over it.
"""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
from flask import Blueprint, Response, g, request
from PIL import Image

from fmnist.config import Settings
from fmnist.inference import answer, pipeline
from fmnist.serving.apierror import APIError
from fmnist.serving.context import charge_images, require_model
from fmnist.serving.contract import PredictQuery
from fmnist.serving.predict import read_inputs
from fmnist.serving.reqlog import ms_since

bp = Blueprint("explain", __name__)
PATCH, STRIDE, PANEL = 6, 2, 224  # occluder size and step (pixels of the 28x28 input); panel size of the PNG


def occlusion(run, x: np.ndarray, class_id: int, fill: float,
              max_batch: int = Settings.max_batch_size) -> "tuple[np.ndarray, int]":
    """x: one normalised (1,1,28,28) input -> (saliency (28,28) in 0..1, model calls made)."""
    steps = range(0, 28 - PATCH + 1, STRIDE)
    batch = [x[0]]
    for i in steps:
        for j in steps:
            occluded = x[0].copy()
            occluded[:, i:i + PATCH, j:j + PATCH] = fill
            batch.append(occluded)
    batch = np.stack(batch).astype(np.float32)
    probs = np.concatenate([run(batch[k:k + max_batch]) for k in range(0, len(batch), max_batch)])
    drop = probs[0, class_id] - probs[1:, class_id]
    total, count = np.zeros((28, 28)), np.zeros((28, 28))
    n = 0
    for i in steps:
        for j in steps:
            total[i:i + PATCH, j:j + PATCH] += drop[n]
            count[i:i + PATCH, j:j + PATCH] += 1
            n += 1
    sal = np.clip(total / np.maximum(count, 1), 0, None)
    return (sal / sal.max() if sal.max() > 0 else sal), -(-len(batch) // max_batch)


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _fitted(original):
    """The picture as sent, fitted into PANEL x PANEL (RGB)."""
    if max(original.size) > 4 * PANEL and original.mode in ("L", "LA", "RGB", "RGBA"):
        original = original.reduce(max(original.size) // (2 * PANEL))  # a big picture reduced before its RGB copy
    orig = original.convert("RGB")
    orig.thumbnail((PANEL, PANEL))
    return orig


def _panels(orig, seen: np.ndarray, sal: np.ndarray):
    """(the picture as sent, fitted (_fitted); what the model saw; the saliency over it), each PANEL x PANEL."""
    canvas = Image.new("RGB", (PANEL, PANEL), (255, 255, 255))
    canvas.paste(orig, ((PANEL - orig.width) // 2, (PANEL - orig.height) // 2))
    seen_im = Image.fromarray(seen, "L").resize((PANEL, PANEL), Image.Resampling.NEAREST).convert("RGB")
    base = np.asarray(seen_im, dtype=np.float32) * 0.6
    heat = np.asarray(Image.fromarray((sal * 255).astype(np.uint8), "L").resize((PANEL, PANEL),
                                                                              Image.Resampling.BILINEAR))
    over = base.copy()
    over[..., 0] = np.clip(base[..., 0] + heat, 0, 255)  # red where the prediction depends on the pixels
    return canvas, seen_im, Image.fromarray(over.astype(np.uint8), "RGB")


@bp.post("/explain")
def explain():
    st, served = require_model()
    settings = st.settings
    query = PredictQuery.parse(request.query_string.decode("latin-1"), settings.default_top_k)
    blobs, pixels, _ = read_inputs(settings)
    count = len(blobs) if pixels is None else len(pixels)
    if count != 1:
        raise APIError(400, "one_image_only", f"/explain takes one image, got {count}: send one per request")
    if pixels is None:
        images = pipeline.decode(blobs, st.limits)
        seen = pipeline.preprocess(images, query.preprocess, budget=st.pixels, keep=True)[0]  # what /predict sees
        original = _fitted(images[0][1])  # decoded by preprocess, no larger than the conversion needed
        images[0][1].close()  # a big picture's pixels go now
    else:
        seen = pixels[0]
        original = _fitted(Image.fromarray(seen, "L"))
    charge_images(1)
    if not st.explain_slots.acquire(blocking=False):
        st.metrics.explanations.labels(outcome="busy").inc()
        raise APIError(503, "busy", f"{settings.explain_concurrency} explanations are being computed by this "
                       "worker already; retry in a moment", {"Retry-After": "1"})
    t0 = time.perf_counter()
    try:
        x = served.predictor.normalize(seen[None])
        probs = served.run_now(x)
        class_id = int(probs[0].argmax())
        fill = float(served.predictor.normalize(np.zeros((1, 28, 28), np.uint8)).flat[0])  # a black (background) patch
        sal, calls = occlusion(served.run_now, x, class_id, fill, settings.max_batch_size)
    finally:
        st.explain_slots.release()
    st.metrics.explain_duration.observe(time.perf_counter() - t0)
    st.metrics.explanations.labels(outcome="done").inc()
    result = pipeline.assess(served, probs, seen[None])
    st.record(served, g.request_id, result, g.get("key_id") or "", ms_since(g.t0))
    g.log_extra = answer.log_fields(result)
    body = answer.body(result, g.request_id, False, query.top_k, ms_since(g.t0), served.flagged_label)
    panels = _panels(original, seen, sal)
    if request.accept_mimetypes.best_match(["application/json", "image/png"]) == "image/png":
        strip = Image.new("RGB", (3 * PANEL, PANEL), (255, 255, 255))
        for k, im in enumerate(panels):
            strip.paste(im, (k * PANEL, 0))
        return Response(_png(strip), mimetype="image/png")
    out = json.loads(body)
    b64 = [base64.b64encode(_png(im)).decode() for im in panels]
    out["explanation"] = {
        "method": f"occlusion: {PATCH}x{PATCH} black patch, stride {STRIDE}, drop of the predicted class's probability",
        "model_calls": 1 + calls,
        "seen_pixels": seen.tolist(),
        "saliency": np.round(sal, 4).tolist(),
        "original_png": b64[0], "seen_png": b64[1], "overlay_png": b64[2],
    }
    return out

