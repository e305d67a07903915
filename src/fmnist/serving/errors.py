"""JSON errors for every failure: {"error": {"code", "message"}, "request_id"}; never an HTML page."""

from __future__ import annotations

import logging

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from fmnist.serving.apierror import APIError, error_payload

__all__ = ["APIError", "register_error_handlers"]
log = logging.getLogger("fmnist.serving")


def error_body(status: int, code: str, message: str) -> tuple[dict, int]:
    return error_payload(code, message, g.get("request_id")), status


def _http_message(e: HTTPException) -> tuple[str, str]:
    if e.code == 404:
        return "not_found", f"no route {request.method} {request.path}; see GET /openapi.json for the API"
    if e.code == 405:
        allowed = ", ".join(sorted(m for m in (e.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
        return "method_not_allowed", f"{request.method} is not allowed on {request.path}; use {allowed}"
    if e.code == 413:
        limit = request.max_content_length
        return "payload_too_large", (
            f"request body is over the {limit:,}-byte limit" if limit else "request body too large"
        ) + "; send fewer or smaller images"
    if e.code == 400:
        return "bad_request", e.description or "malformed request"
    return (e.name or "error").lower().replace(" ", "_"), e.description or e.name


def _drain_body() -> None:
    """Read what the client sent before answering an error: an unread body makes Gunicorn close the
    keep-alive connection, and a pooling client (tritonclient, nginx) then fails its next request."""
    limit = request.max_content_length
    length = request.content_length
    if length is None or (limit is not None and length > limit):
        return
    try:
        request.get_data(cache=False)
    except Exception:  # a broken or over-limit stream: nothing more to save
        pass


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(e: APIError):
        _drain_body()
        if request.path.startswith("/v2"):
            return {"error": e.message}, e.status, e.headers  # Open Inference Protocol error shape
        body, status = error_body(e.status, e.code, e.message)
        return body, status, e.headers

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        if e.code != 413:
            _drain_body()
        code, message = _http_message(e)
        # Werkzeug's own headers but its HTML Content-Type: a 405's Allow (RFC 9110 §15.5.6: MUST), a 416's range
        headers = [(k, v) for k, v in e.get_headers() if k.lower() != "content-type"]
        if request.path.startswith("/v2"):
            return {"error": message}, e.code, headers
        body, status = error_body(e.code or 500, code, message)
        return body, status, headers

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):  # a bug of ours: logged with its traceback, a JSON 500, the worker lives
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = f"internal error ({e.__class__.__name__}); see server log"
        if request.path.startswith("/v2"):
            return {"error": message}, 500  # the protocol's shape, as for its 4xx
        body, status = error_body(500, "internal_error", message)
        return body, status
