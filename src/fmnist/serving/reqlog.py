"""Request ids (accepted from and returned in X-Request-ID) and one JSON log line per request."""

from __future__ import annotations

import json
import logging
import os
import re
import time

from flask import Flask, g, request

access_log = logging.getLogger("fmnist.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def ms_since(t0: float) -> float:
    """Milliseconds since perf_counter() was t0, as answers and the prediction log give them."""
    return round((time.perf_counter() - t0) * 1000, 3)


def request_id_from(header: str) -> str:
    """The client's X-Request-ID when it is a safe token, else 128 random bits (as uuid4)."""
    return header if _SAFE_ID.match(header) else os.urandom(16).hex()


def finish(metrics, method: str, route: str, status: int, elapsed: float, request_id: str, extra: "dict | None",
           log: bool) -> None:
    """Count the request in `metrics` (a monitoring.prometheus.Metrics), and write its JSON log line."""
    metrics.observe_request(method, route, status, elapsed, (extra or {}).get("key_id") or "")
    if log:
        record = {
            "ts": round(time.time(), 3),
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(elapsed * 1000, 3),
        }
        record.update(extra or {})
        access_log.info(json.dumps(record, separators=(",", ":")))


def init_request_logging(app: Flask, enabled: bool, metrics) -> None:
    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        metrics.http_in_progress.inc()
        g.in_progress = True
        g.request_id = request_id_from(request.headers.get("X-Request-ID", ""))

    @app.teardown_request
    def _done(_exc):
        if g.pop("in_progress", False):
            metrics.http_in_progress.dec()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        extra = g.get("log_extra")
        if g.get("key_id"):
            extra = {**(extra or {}), "key_id": g.key_id}  # which key, never the secret
        finish(metrics, request.method, rule, response.status_code, elapsed, g.get("request_id"), extra, enabled)
        return response
