"""Liveness, readiness and the model card: GET /health, /ready, /model."""

from __future__ import annotations

import time

from flask import Blueprint

from fmnist.serving.context import require_model, serving_state

bp = Blueprint("health", __name__)
STARTED = time.time()  # this worker's start


PROBES = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})  # never shed, never in a pool


def liveness() -> tuple[dict, int, dict]:
    """Liveness: the process is up and answering (says nothing about the model)."""
    return {"status": "ok", "uptime_seconds": round(time.time() - STARTED, 3)}, 200, {}


def readiness(st) -> tuple[dict, int, dict]:
    served = st.current
    if served is None:
        return {"status": "not_ready", "reason": st.error or "model loading"}, 503, {"Retry-After": "1"}
    return {"status": "ready", "model": {"name": served.name, "version": served.version},
            "load_seconds": round(served.load_seconds, 3)}, 200, {}


def probe(st, path: str) -> tuple[dict, int, dict]:
    """The answer to GET `path`, one of PROBES: the same from Flask's views and from the loop worker, which
    answers them on its loop so that no queue of pictures or slow views can hold a probe up."""
    if path == "/health":
        return liveness()
    if path == "/ready":
        return readiness(st)
    if path == "/v2/health/live":
        return {"live": True}, 200, {}
    ready = st.ready
    return {"ready": ready}, 200 if ready else 503, {}


@bp.get("/health")
def health():
    return liveness()


@bp.get("/ready")
def ready():
    return readiness(serving_state())


@bp.get("/model")
def model():
    st, served = require_model()
    p = served.predictor
    m = p.artifact.manifest
    test = m.get("metrics", {}).get("test", {})
    return {
        "name": p.name,
        "version": p.version,
        "architecture": m["architecture"],
        "classes": m["classes"],
        "input": {
            "image": "any PNG/JPEG/GIF/BMP/WebP/TIFF; 28x28 taken as the dataset gives it, else converted (photo)",
            "tensor": m.get("input"),
            "preprocessing": m["preprocessing"],
        },
        "metrics": {
            "test_accuracy": test.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "per_class_f1": {c: v["f1"] for c, v in test.get("per_class", {}).items()},
        },
        "backend": p.backend,
        "batching": {"enabled": served.batcher is not None, "max_batch_size": st.settings.max_batch_size,
                     "max_wait_ms": st.settings.max_batch_wait_ms},
        "sha256": {f: v["sha256"] for f, v in m["files"].items()},
    }
