"""The one JSON error shape of the API, for Flask's handlers and for the loop worker alike:
{"error": {"code", "message"}, "request_id"}. No Flask here: the worker answers some errors itself
(a malformed request, a header over the limits) before any app sees them."""

from __future__ import annotations

import json

from fmnist.errors import Refused

APIError = Refused  # the one refusal type (fmnist.errors): the app's name for it


def error_payload(code: str, message: str, request_id: "str | None" = None) -> dict:
    return {"error": {"code": code, "message": message}, "request_id": request_id}


def error_json(code: str, message: str, request_id: "str | None" = None) -> bytes:
    return json.dumps(error_payload(code, message, request_id)).encode()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (RFC 8259 has no NaN or Infinity)")


def parse_json(raw: "bytes | str", what: str = "request body"):
    """A request's JSON -> Python values, or APIError 400 bad_json saying why: not UTF-8, not JSON, NaN or
    Infinity (not JSON), an integer of thousands of digits, or nested deeper than the parser's recursion
    limit (a RecursionError, which json.loads lets out). Every JSON body the server reads comes through here."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise APIError(400, "bad_json", f"{what} is nested too deeply to be a request of this API") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise APIError(400, "bad_json", f"{what} is not valid JSON ({e})") from None
