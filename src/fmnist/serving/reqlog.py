"""Request ids (accepted from and returned in X-Request-ID) and one JSON log line per request."""

from __future__ import annotations

import json
import logging
import re
import os
import time

from flask import Flask, g, request

from fmnist.monitoring import metrics

access_log = logging.getLogger("fmnist.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_request_logging(app: Flask, enabled: bool) -> None:
    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        metrics.HTTP_IN_PROGRESS.inc()
        g.in_progress = True
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid if _SAFE_ID.match(rid) else os.urandom(16).hex()  # 128 random bits, as uuid4

    @app.teardown_request
    def _done(_exc):
        if g.pop("in_progress", False):
            metrics.HTTP_IN_PROGRESS.dec()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        metrics.HTTP_REQUESTS.labels(request.method, rule, str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(request.method, rule).observe(elapsed)
        if enabled:
            record = {
                "ts": round(time.time(), 3),
                "request_id": g.get("request_id"),
                "method": request.method,
                "route": rule,
                "status": response.status_code,
                "latency_ms": round(elapsed * 1000, 3),
            }
            record.update(g.get("log_extra", {}))
            access_log.info(json.dumps(record, separators=(",", ":")))
        return response
