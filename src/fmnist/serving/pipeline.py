"""The stages of one prediction, each named once and free of Flask: the Flask view (`predict`), the fast
path (`fastpath`, one request or a batch of them), `/explain` and `/v2` call these.

    decode      [(name, bytes)] -> images, headers read and checked, no pixel decoded yet
    preprocess  images -> uint8 (N, 28, 28): pixels decoded no larger than needed, then the conversion
    infer       pixels -> probabilities (N, 10), through the batcher when batching is on
    record      metrics and the prediction log: a step of its own, called by whoever answers
    encode      probabilities -> the JSON body of /predict and the fields of its access-log line

Reading the request (multipart, JSON, query) is the caller's: `contract` says what is accepted.
"""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np

from fmnist.preprocess import WORK_SIDE, ImageError, decoded_pixels, load_image, open_image, to_model_pixels
from fmnist.serving.apierror import APIError
from fmnist.serving.memory import BudgetExceeded, PixelBudget


def decode(blobs: list, settings) -> list:
    """[(name, bytes)] -> [(name, PIL image)] with their headers read and checked (format, size, pixel
    limit); nothing decoded yet. APIError when one is not an image or is over the limits."""
    if len(blobs) > settings.max_images:
        raise APIError(400, "too_many_images", f"{len(blobs)} images in one request; the limit is {settings.max_images}")
    try:
        return [(name, open_image(b, settings.max_image_pixels, name)) for name, b in blobs]
    except ImageError as e:
        raise APIError(e.status, e.code, str(e)) from None


def preprocess(images: list, mode: str, timings: "list | None" = None, budget: "PixelBudget | None" = None,
               keep: bool = False) -> np.ndarray:
    """Decoded images -> uint8 (N, 28, 28) in the dataset's polarity (the serving conversion), each decoded
    no larger than the conversion's working size. `timings` gets (header pixels, decode s, convert s,
    foreground extraction s or None, garment found) per image. APIError on a bad image.

    `budget` (the worker's memory.PixelBudget): a big picture is decoded only while holding its share of it
    (503 when it cannot have it in time). Each picture's pixels are freed once converted unless `keep`."""
    out = []
    try:
        for name, im in images:
            t0 = time.perf_counter()
            pixels = im.size[0] * im.size[1]
            info: dict = {}
            with budget.hold(decoded_pixels(im, WORK_SIDE)) if budget is not None else _NO_SHARE:
                load_image(im, name, WORK_SIDE)
                t1 = time.perf_counter()
                out.append(to_model_pixels(im, mode, info=info))
                if not keep:
                    im.close()  # its pixel array goes now, not when the request ends
            if timings is not None:
                timings.append((pixels, t1 - t0, time.perf_counter() - t1, info.get("extract_s"),
                                info.get("extracted", False)))
    except ImageError as e:
        raise APIError(e.status, e.code, str(e)) from None
    except BudgetExceeded as e:
        raise APIError(503, "server_busy", f"this worker is decoding as many large pictures as it may hold at once "
                                           f"({e}); retry shortly", {"Retry-After": "1"}) from None
    return np.stack(out)


_NO_SHARE = contextlib.nullcontext()


def decode_and_preprocess(blobs: list, settings, mode: str, timings: "list | None" = None,
                          budget: "PixelBudget | None" = None) -> np.ndarray:
    return preprocess(decode(blobs, settings), mode, timings, budget)


def infer(served, load) -> tuple[np.ndarray, np.ndarray]:
    """load() -> uint8 pixels (the decoding), then probabilities. While it decodes, the batcher knows one
    more request is on its way, so a busy worker's batch waits for it."""
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


def record(state, served, request_id: "str | list[tuple[str, int, str, float | None]]", pixels: np.ndarray,
           probs: np.ndarray, key_id: "str | None" = "", t0: "float | None" = None, assessed=None) -> None:
    """Metrics and the prediction log for these predictions, with the API key's id and the request's time in
    the server since t0 (perf_counter; WorkerState.record). `assessed`: the predictor's assess(probs), when
    the caller has it already (computed once per answer)."""
    latency_ms = round((time.perf_counter() - t0) * 1000, 3) if t0 is not None else None
    state.record(served, request_id, pixels, probs, key_id or "", latency_ms, assessed)


_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # NaN in a body is not JSON: a 500, never sent


def encode(served, request_id: str, probs: np.ndarray, many: bool, top_k: int, t0: float, assessed=None
           ) -> tuple[bytes, dict]:
    """Probabilities -> (the JSON body of /predict, the fields of its access-log line).

    Each answer carries its calibrated confidence, `ood_score` and `flag` (null, "unsure", "not_a_garment");
    a flagged answer keeps its label unless the server is set not to give one (flagged_label off: label
    and class_id null)."""
    predictor = served.predictor
    model = {"name": predictor.name, "version": predictor.version}
    preds = predictor.to_predictions(probs)
    ood, flags = assessed if assessed is not None else predictor.assess(probs)
    items = []
    for p, o, f in zip(preds, ood.tolist(), flags):
        labelled = f is None or served.flagged_label
        items.append({"label": p.label if labelled else None, "class_id": p.class_id if labelled else None,
                      "confidence": p.confidence, "top_k": p.top_k(top_k), "ood_score": round(o, 4), "flag": f})
    latency_ms = round((time.perf_counter() - t0) * 1000, 3)
    if many:
        body = {"predictions": items, "model": model, "request_id": request_id, "latency_ms": latency_ms}
    else:
        body = {**items[0], "model": model, "request_id": request_id, "latency_ms": latency_ms}
    log_extra = {"label": preds[0].label if len(preds) == 1 else [p.label for p in preds],
                 "confidence": round(preds[0].confidence, 4) if len(preds) == 1 else None,
                 "n_images": len(preds), "model_version": predictor.version,
                 "flag": flags[0] if len(preds) == 1 else [f for f in flags]}
    return _JSON.encode(body).encode(), log_extra
