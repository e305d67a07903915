"""A small HTTP client for a running fmnist server (standard library only)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from fmnist.errors import ServerUnreachable  # noqa: F401 (raised here; the CLI catches it without importing urllib)


def _multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def predict_bytes(content: bytes, url: str, filename: str = "image", top_k: int = 3, preprocess: str = "auto",
                  timeout: float = 30.0, api_key: "str | None" = None) -> dict:
    """POST one image to {url}/predict; returns the JSON body (an {"error": ...} body on HTTP errors).
    api_key: sent as `Authorization: Bearer` (default: $FMNIST_API_KEY, when set)."""
    body, ctype = _multipart("image", filename, content)
    query = urllib.parse.urlencode({"top_k": top_k, "preprocess": preprocess})
    headers = {"Content-Type": ctype}
    key = api_key if api_key is not None else os.environ.get("FMNIST_API_KEY", "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(f"{url.rstrip('/')}/predict?{query}", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return json.loads(e.read())
        except ValueError:
            return {"error": {"code": f"http_{e.code}", "message": f"HTTP {e.code} from {url}"}}
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise ServerUnreachable(
            f"cannot reach the fmnist server at {url} ({reason}); start one with `fmnist serve` or pass --url"
        ) from None


def predict_files(paths, url: str, **kw):
    for p in paths:
        try:
            content = Path(p).read_bytes()
        except OSError as e:
            yield p, {"error": {"code": "unreadable_file", "message": f"cannot read {p}: {e.strerror}"}}
            continue
        yield p, predict_bytes(content, url, Path(p).name, **kw)
