"""Who refuses what, in what order, with what status: every place a request can be turned away, in the
order a request meets them. docs/architecture.md holds this table as `markdown()` renders it, and
tests/unit/test_layers.py checks both that it does and that each module named still answers each code.

The bounds behind them are settings (fmnist.config), each named here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    step: int  # the order a request meets it
    module: str  # where (under src/fmnist/)
    when: str
    status: int
    code: str  # the error body's code ("" where no body is sent)
    setting: str  # the bound, where it is one
    retry_after: bool = False


REFUSALS = (
    Refusal(1, "serving/http/worker.py", "the worker holds worker_connections connections: it stops accepting "
            "(the kernel queues up to backlog more)", 0, "", "backlog"),
    Refusal(2, "serving/http/http11.py", "a malformed request line, header or Host; Transfer-Encoding in HTTP/1.0",
            400, "bad_request", ""),
    Refusal(2, "serving/http/http11.py", "a request line over Gunicorn's limit_request_line", 414, "uri_too_long", ""),
    Refusal(2, "serving/http/http11.py", "header fields over their number, size or section limit", 431,
            "headers_too_large", ""),
    Refusal(2, "serving/http/http11.py", "a body over the limit (Content-Length, or as it arrives chunked)", 413,
            "payload_too_large", "max_content_length"),
    Refusal(2, "serving/http/http11.py", "a bad X-Request-Timeout-Ms (not 1-86,400,000 ms)", 400, "bad_timeout", ""),
    Refusal(2, "serving/http/closing.py", "the header section or a stalled body too slow to arrive", 408,
            "request_timeout", ""),
    Refusal(3, "serving/http/admission.py", "its client's deadline (X-Request-Timeout-Ms) passed, or would before "
            "this turn's work is done", 504, "deadline_exceeded", ""),
    Refusal(3, "serving/http/admission.py", "no deadline of its client's, and the default one would pass before this "
            "turn's work is done, behind a backlog (probes never)", 503, "server_busy", "default_deadline_ms", True),
    Refusal(3, "serving/http/worker.py", "its client left before it started: dropped, never answered (counted as "
            "499)", 499, "", ""),
    Refusal(4, "serving/auth.py", "with API keys: no key, a malformed, unknown or revoked one (before the body "
            "is read)", 401, "unauthorized", "api_keys"),
    Refusal(4, "serving/auth.py", "a key without the route's scope", 403, "forbidden", "api_keys"),
    Refusal(4, "serving/auth.py", "a key over its requests a second", 429, "rate_limited", "api_keys", True),
    Refusal(5, "serving/http/worker.py", "pool_queue requests wait for the app's threads already", 503,
            "server_busy", "pool_queue", True),
    Refusal(5, "serving/http/worker.py", "heavy_queue big pictures wait for the heavy threads already", 503,
            "server_busy", "heavy_queue", True),
    Refusal(6, "serving/http/admission.py", "in a pool thread, before the app: its deadline passed while it waited "
            "(too_late)", 504, "deadline_exceeded", ""),
    Refusal(7, "serving/context.py", "the model is not loaded yet (or failed to load)", 503, "not_ready", "", True),
    Refusal(8, "serving/contract.py", "the request itself: no picture, bad JSON, bad parameter, too many images",
            400, "missing_image", "max_images"),
    Refusal(8, "serving/predict.py", "a Content-Type other than multipart/form-data or application/json", 415,
            "unsupported_media_type", ""),
    Refusal(8, "images/preprocess.py", "a picture that is not one, or over max_image_pixels (from its header)", 400,
            "bad_image", "max_image_pixels"),
    Refusal(9, "serving/auth.py", "a key over its images a second", 429, "rate_limited", "api_keys", True),
    Refusal(10, "inference/memory.py", "a big picture cannot get its share of decode_pixels within decode_wait_s",
            503, "server_busy", "decode_pixels", True),
    Refusal(10, "serving/explain.py", "explain_concurrency explanations are being computed already", 503, "busy",
            "explain_concurrency", True),
)


def markdown() -> str:
    rows = ["| step | where | when | status | code | bound |", "|---:|---|---|---:|---|---|"]
    for r in REFUSALS:
        status = "-" if not r.status else f"{r.status}{' + Retry-After' if r.retry_after else ''}"
        rows.append(f"| {r.step} | `{r.module}` | {r.when} | {status} | {r.code or '-'} | {r.setting or '-'} |")
    return "\n".join(rows) + "\n"
