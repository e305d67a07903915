"""Request ids (accepted from and returned in X-Request-ID) and one JSON log line per request."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from flask import Flask, g, request

access_log = logging.getLogger("fmnist.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_request_logging(app: Flask, enabled: bool) -> None:
    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid if _SAFE_ID.match(rid) else uuid.uuid4().hex

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if enabled:
            rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            record = {
                "ts": round(time.time(), 3),
                "request_id": g.get("request_id"),
                "method": request.method,
                "route": rule,
                "status": response.status_code,
                "latency_ms": round((time.perf_counter() - g.get("t0", time.perf_counter())) * 1000, 3),
            }
            record.update(g.get("log_extra", {}))
            access_log.info(json.dumps(record, separators=(",", ":")))
        return response
