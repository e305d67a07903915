"""Liveness, readiness and the model card: GET /health, /ready, /model."""

from __future__ import annotations

import time

from flask import Blueprint

from fmnist.serving.context import require_model, serving_state

bp = Blueprint("health", __name__)
_STARTED = time.time()


@bp.get("/health")
def health():
    """Liveness: the process is up and answering (says nothing about the model)."""
    return {"status": "ok", "uptime_seconds": round(time.time() - _STARTED, 3)}


@bp.get("/ready")
def ready():
    st = serving_state()
    served = st.current
    if served is None:
        return {"status": "not_ready", "reason": st.error or "model loading"}, 503, {"Retry-After": "1"}
    return {"status": "ready", "model": {"name": served.name, "version": served.version},
            "load_seconds": round(served.load_seconds, 3)}


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
