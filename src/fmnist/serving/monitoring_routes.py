"""GET /metrics (Prometheus), GET /monitoring (drift, live accuracy, traffic), POST /feedback, GET /dashboard."""

from __future__ import annotations

import time
from importlib import resources

from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from fmnist.config import cpu_count
from fmnist.labels import class_id
from fmnist.monitoring import store_common
from fmnist.monitoring.drift import STATUS_ORDER, Thresholds, accuracy_report, drift_report
from fmnist.monitoring.prometheus import ReferenceCollector
from fmnist.monitoring.store_common import StoreUnavailable
from fmnist.monitoring.system import SystemCollector, process_stats, server_processes
from fmnist.serving import health
from fmnist.serving.apierror import APIError, parse_json
from fmnist.serving.context import require_model, serving_state
from fmnist.serving.contract import bounded_number

bp = Blueprint("monitoring", __name__)


@bp.get("/metrics")
def prometheus_metrics():
    st = serving_state()

    def extra():
        served = st.current
        return [SystemCollector()] + ([ReferenceCollector(served.predictor.artifact.manifest)] if served else [])

    return Response(st.metrics.exposition_bounded(extra, st.settings.metrics_reuse), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/monitoring")
def monitoring():
    st, served = require_model()
    s = st.settings
    th = Thresholds.from_settings(s)
    p = served.predictor
    manifest = p.artifact.manifest
    st.store.flush(timeout=1.0)  # this worker's queued rows; other workers' lag by at most their flush interval
    test_acc = manifest.get("metrics", {}).get("test", {}).get("accuracy")
    error = None
    try:  # the shared window: every replica's predictions
        window = st.store.recent(s.drift_window, p.version)
        labelled = st.store.recent_feedback(s.feedback_window)
    except StoreUnavailable as e:  # reported as an empty window, with the reason (store health below)
        error = str(e)
        window, labelled = store_common.window([]), store_common.labelled([])
    drift = drift_report(window, manifest.get("reference") or {}, th)
    accuracy = accuracy_report(labelled, test_acc, th)
    drift["replicas"] = window["replicas"]  # how many servers the shared window came from
    if error:
        drift["error"] = accuracy["error"] = error
    processes = []
    for pid, role in server_processes():
        stats = process_stats(pid)
        if stats:
            processes.append({"pid": pid, "role": role, "cpu_seconds": stats[0], "rss_bytes": stats[1]})
    status = max((drift["status"], accuracy["status"]), key=STATUS_ORDER.index)
    return {
        "status": status,
        "model": {"name": p.name, "version": p.version, "arch": p.artifact.arch, "test_accuracy": test_acc,
                  "backend": p.backend, "loaded_at": served.loaded_at},
        "drift": drift,
        "accuracy": accuracy,
        "traffic": {**st.metrics.snapshot(), "uptime_seconds": round(time.time() - health.STARTED, 3)},
        "store": {**st.store.health(), "replica": st.replica},
        "system": {"processes": processes, "cpu_count": cpu_count()},
        "generated_at": time.time(),
    }


def _integer(value):
    """A JSON number with no fraction is an integer (as JSON Schema, and so the OpenAPI document, has it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@bp.post("/feedback")
def feedback():
    st, _ = require_model()
    body = parse_json(request.get_data(cache=False)) if request.is_json else None
    if not isinstance(body, dict):
        raise APIError(400, "bad_json", 'expected a JSON object {"request_id": "...", "label": "Shirt" | 6}')
    rid = body.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise APIError(400, "missing_request_id", "request_id (the id a /predict response returned) is required")
    if "label" not in body:
        raise APIError(400, "missing_label", 'label is required: a class name such as "Shirt" or an id 0-9')
    label, idx = _integer(body["label"]), _integer(body.get("index", 0))
    try:
        true_id = class_id(label)
    except ValueError as e:
        raise APIError(400, "bad_label", str(e)) from None
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < st.settings.max_images:
        raise APIError(400, "bad_parameter", f"index must be an integer 0-{st.settings.max_images - 1} (the image's "
                                             f"position in its request), got {idx!r}"[:300])
    try:
        row = _find(st, rid, idx)
        if row is not None:
            st.store.set_feedback(rid, idx, true_id)
    except StoreUnavailable as e:
        raise APIError(503, "store_unavailable", f"the prediction log is unreachable, so the label was not "
                       f"recorded; retry later ({e})", {"Retry-After": "5"}) from None
    if row is None:
        raise APIError(404, "unknown_request_id",
                       f"no prediction with request_id {rid!r} (index {idx}); it may be older than the retention")
    correct = row["class_id"] == true_id
    st.metrics.feedback.labels(model_version=row["model_version"], outcome="correct" if correct else "incorrect").inc()
    g.log_extra = {"feedback_for": rid, "correct": correct}
    from fmnist.labels import CLASSES

    return {"request_id": rid, "index": idx, "predicted": CLASSES[row["class_id"]], "label": CLASSES[true_id],
            "correct": correct, "model_version": row["model_version"]}


def _find(st, rid: str, idx: int, wait: float = 1.0):
    """The prediction row; a just-made prediction may still be in some worker's write queue."""
    st.store.flush(timeout=wait)
    deadline = time.monotonic() + wait
    while True:
        row = st.store.get(rid, idx)
        if row is not None or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


@bp.get("/monitoring/low-confidence")
def low_confidence():
    """The latest inputs the model was unsure of, as the 28x28 images it saw (needs store_images)."""
    st, _ = require_model()
    s = st.settings
    limit = bounded_number("limit", request.args.get("limit"), 12, 1, 48)
    below = bounded_number("below", request.args.get("below"), s.low_confidence, 0.0, 1.0, float)
    out = {"store_images": s.store_images, "below": below, "window": s.drift_window, "items": []}
    if not s.store_images:
        out["note"] = "input images are not kept: start the server with store_images on (FMNIST_STORE_IMAGES=1)"
        return out
    st.store.flush(timeout=1.0)
    try:
        rows = st.store.low_confidence(below, s.drift_window, limit)
    except StoreUnavailable as e:
        raise APIError(503, "store_unavailable", f"the prediction log is unreachable ({e})", {"Retry-After": "5"}) from None
    from fmnist.labels import CLASSES

    for r in rows:
        image = r.pop("image")
        r["predicted"] = CLASSES[r.pop("class_id")]
        r["image_png"] = _png_base64(image) if len(image) == 28 * 28 else None
        out["items"].append(r)
    return out


@bp.get("/monitoring/rollout")
def rollout_status():
    """The model's rollout (fmnist rollout): the plan, each version's evidence, the gates and the verdict, as
    `fmnist rollout status` shows them; {"rollout": null} when none was ever started."""
    import time as _time

    from fmnist.rollout import gates as rollout_gates

    st, served = require_model()
    plan = st.rollout.plan if st.rollout.plan is not None and st.rollout.plan.name == served.name else None
    if plan is None:
        from fmnist.rollout import plan as rollout_plan

        plan = rollout_plan.read_plan(served.name, st.settings.models or None)
    if plan is None:
        return {"rollout": None}
    if not plan.running and plan.decision:
        report = plan.decision["evidence"]
    else:
        try:
            report = rollout_gates.evaluate(plan, st.store.since(plan.name, plan.started), _time.time())
        except StoreUnavailable as e:
            raise APIError(503, "store_unavailable", f"the prediction log is unreachable ({e})",
                           {"Retry-After": "5"}) from None
    fields = ("name", "production", "candidate", "mode", "share", "started", "state", "decision")
    return {"rollout": {k: getattr(plan, k) for k in fields}, "report": report}


def _png_base64(pixels: bytes) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("L", (28, 28), pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


@bp.get("/dashboard")
def dashboard():
    html = resources.files("fmnist.serving").joinpath("dashboard.html").read_text()
    return Response(html, mimetype="text/html")
