"""HTTP/1.1 for the loop worker, without sockets: bytes in, bounded requests out; responses out as bytes.

`RequestReader` wraps `httptools` (llhttp, the C parser of Node.js and uvicorn) and keeps every
buffer bounded, which the parser alone does not:
- the header section: httptools keeps an incomplete field name or value in memory until its CRLF,
  so the reader feeds the head in small slices and refuses (431) once the bytes since the parser
  last reported progress pass one field's limit, or the whole section passes `head_bytes`;
- a chunked body (its trailer section is parsed the same way, slice by slice);
- a body: kept in memory up to `spool` bytes, then in an anonymous temporary file;
- pipelining: at most `pipeline` complete requests wait per connection; the bytes after them stay
  unparsed (at most one read's worth) and the worker reads no more until they are answered.
RFC 9112/9110 MUSTs that llhttp leaves to the server are checked when the head completes
(`check_head`): one Host, and a valid one, in HTTP/1.1; the request-target's form; Transfer-Encoding
in HTTP/1.0; trailer fields never merged into the headers (they are dropped).
"""

from __future__ import annotations

import io
import re
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

import httptools

from fmnist.config import Settings
from fmnist.errors import Refused
from fmnist.serving.apierror import error_json

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SLICE = 4096  # bytes fed to the parser at once while it may be buffering a field
_NO_BODY = ("204", "304")
# RFC 3986 authority (host [":" port]) as Host or an absolute-form target may carry it
_REG_NAME = rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
_AUTHORITY = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|" + _REG_NAME + rb")(?::[0-9]*)?")


@dataclass(frozen=True)
class Limits:
    request_line: int = 4094  # bytes of the request-target (Gunicorn's limit_request_line)
    fields: int = 100  # header fields per request (and trailer fields)
    field_size: int = 8190  # bytes of one field
    head_bytes: int = 64 * 1024  # the whole header section, incomplete lines counted
    body: int = Settings.max_content_length  # decoded body bytes (the app's AppHooks.max_body)
    pipeline: int = 32  # complete requests waiting per connection before the reader pauses (checked per slice)
    spool: int = 64 * 1024  # body bytes kept in memory per request; beyond, a temporary file


class HttpError(Refused):
    """A request the server refuses before any app sees it; the connection closes after the answer."""

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"

    def response(self) -> bytes:
        return response_bytes(self.status_line, [("Content-Type", "application/json")],
                              error_json(self.code, self.message), keep_alive=False)


class Body:
    """A request body: in memory up to `spool` bytes, then in an anonymous temporary file."""

    __slots__ = ("chunks", "size", "file", "spool")

    def __init__(self, spool: int):
        self.chunks: list = []
        self.size = 0
        self.file = None
        self.spool = spool

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.file is not None:
            self.file.write(data)
        elif self.size > self.spool:
            self.file = tempfile.TemporaryFile()
            self.file.writelines(self.chunks)
            self.file.write(data)
            self.chunks = []
        else:
            self.chunks.append(data)

    def stream(self):
        """The body as wsgi.input."""
        if self.file is not None:
            self.file.seek(0)
            return self.file
        return io.BytesIO(self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.chunks = []


class Request:
    __slots__ = ("method", "url", "headers", "body", "version", "keep_alive", "too_large", "expect_continue",
                 "head_done", "chunked", "trailers", "started", "ready_at", "timeout")

    def __init__(self, spool: int):
        self.method = ""
        self.url = b""
        self.headers: list = []
        self.body = Body(spool)
        self.version = "1.1"
        self.keep_alive = True
        self.too_large = False  # declared over the limit: answered from its head, the body never kept
        self.expect_continue = False
        self.head_done = False
        self.chunked = False
        self.trailers = 0
        self.started = time.monotonic()  # its first byte: a client's deadline counts from here
        self.ready_at = 0.0  # when it was complete: its wait for the worker counts from here
        self.timeout = 0.0  # seconds the client will wait (X-Request-Timeout-Ms); 0: not said


class RequestReader:
    """One connection's parser: `feed(data)`; complete requests in `ready`; `error` ends the connection."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.req: "Request | None" = None  # the request being received
        self.ready: deque = deque()  # complete requests, in arrival order
        self.error: "HttpError | None" = None
        self.closing = False  # parse nothing more (an upgrade, or a request over the body limit)
        self.continue_owed: "Request | None" = None  # a request waiting for "100 Continue"
        self._buf = b""  # bytes not fed to the parser yet (paused: enough requests are waiting)
        self._pos = 0
        self._head_bytes = 0
        self._since_progress = 0  # bytes fed since the parser last reported anything

    # --- state the worker looks at
    @property
    def paused(self) -> bool:
        """True while unparsed bytes wait: the worker must not read more from the socket."""
        return self._pos < len(self._buf)

    @property
    def receiving_head(self) -> bool:
        return self.req is not None and not self.req.head_done

    # --- input
    def feed(self, data: bytes) -> None:
        if self.error is not None or self.closing:
            return  # the connection ends once what came before is answered; the rest is discarded
        if self.paused:
            self._buf = self._buf[self._pos:] + data
        else:
            self._buf = data
        self._pos = 0
        self.resume()

    def resume(self) -> None:
        """Parse what is buffered, until done or `pipeline` requests wait."""
        buf, lim = self._buf, self.limits
        while self._pos < len(buf) and self.error is None and not self.closing and len(self.ready) < lim.pipeline:
            req = self.req
            sliced = req is None or not req.head_done or req.chunked
            end = min(len(buf), self._pos + _SLICE) if sliced else len(buf)
            chunk = memoryview(buf)[self._pos:end]
            self._pos = end
            if sliced:
                self._since_progress += len(chunk)
                if req is None or not req.head_done:
                    self._head_bytes += len(chunk)
            try:
                self.parser.feed_data(chunk)
            except httptools.HttpParserUpgrade:
                # Upgrade (websocket, h2c) or CONNECT: answered as plain HTTP (the app speaks no other
                # protocol) and what follows is not HTTP/1.1: close after the answer
                self.closing = True
            except httptools.HttpParserCallbackError as e:
                cause = e.__context__
                self.refuse(cause if isinstance(cause, HttpError) else
                            HttpError(400, "bad_request", f"malformed HTTP request ({e})"))
            except httptools.HttpParserError as e:
                self.refuse(HttpError(400, "bad_request", f"malformed HTTP request ({e})"))
            if self.error is None and self._since_progress > lim.field_size + lim.request_line:
                self.refuse(HttpError(431, "headers_too_large",
                                      f"a header field is over {lim.field_size} bytes"))
            if self.error is None and self._head_bytes > lim.head_bytes:
                self.refuse(HttpError(431, "headers_too_large",
                                      f"the request head is over {lim.head_bytes} bytes"))
        if self._pos >= len(buf) or self.error is not None or self.closing:
            self._buf, self._pos = b"", 0

    def refuse(self, error: HttpError) -> None:
        """The first error found answers the request; the connection closes after it."""
        if self.error is None:
            self.error = error

    def discard(self) -> None:
        """The connection is gone: free every body."""
        for req in (self.req, *self.ready):
            if req is not None:
                req.body.close()
        self.ready.clear()
        self.req = None
        self._buf, self._pos = b"", 0

    # --- httptools callbacks (an exception raised here stops the parser: HttpParserCallbackError)
    def on_message_begin(self):
        self.req = Request(self.limits.spool)
        self._since_progress = 0

    def on_url(self, url: bytes):
        req = self.req
        req.url += url
        self._since_progress = 0
        if len(req.url) > self.limits.request_line:
            raise HttpError(414, "uri_too_long",
                            f"the request-target is over {self.limits.request_line} bytes")

    def on_header(self, name: bytes, value: bytes):
        req, lim = self.req, self.limits
        self._since_progress = 0
        if req.head_done:  # a trailer field (chunked): never merged into the headers (RFC 9110 §6.5.1)
            req.trailers += 1
            if req.trailers > lim.fields:
                raise HttpError(431, "headers_too_large",
                                f"more than {lim.fields} trailer fields")
            return
        req.headers.append((name, value))
        if len(req.headers) > lim.fields or len(name) + len(value) > lim.field_size:
            raise HttpError(431, "headers_too_large",
                            f"at most {lim.fields} header fields of at most {lim.field_size} bytes each")

    def on_headers_complete(self):
        req, p = self.req, self.parser
        req.method = p.get_method().decode("latin-1")
        req.version = p.get_http_version()
        req.keep_alive = p.should_keep_alive()
        req.head_done = True
        self._since_progress = self._head_bytes = 0
        check_head(req, self.limits)  # raises HttpError
        if req.too_large:  # answered now (the app says 413 from Content-Length); the body is never kept
            req.ready_at = time.monotonic()
            self.ready.append(req)
            self.closing = True
        elif req.expect_continue:
            self.continue_owed = req

    def on_body(self, body: bytes):
        req = self.req
        self._since_progress = 0
        req.body.write(body)
        if req.body.size > self.limits.body:  # chunked: no Content-Length to refuse it by
            raise HttpError(413, "payload_too_large",
                            f"request body is over the {self.limits.body:,}-byte limit")

    def on_chunk_header(self):
        self._since_progress = 0

    def on_chunk_complete(self):
        self._since_progress = 0

    def on_message_complete(self):
        req = self.req
        self._since_progress = 0
        self.req = None
        if self.continue_owed is req:
            self.continue_owed = None  # the body came without waiting for it
        if not req.too_large:
            req.ready_at = time.monotonic()
            self.ready.append(req)


def check_head(req: Request, limits: Limits) -> None:
    """What RFC 9112/9110 require of a request head beyond llhttp's grammar; HttpError if refused."""
    hosts = []
    for name, value in req.headers:
        lname = name.lower()
        if lname == b"host":
            hosts.append(value)
        elif lname == b"content-length":
            try:
                req.too_large = int(value) > limits.body
            except ValueError:
                pass  # llhttp refuses a malformed Content-Length itself
        elif lname == b"transfer-encoding":
            req.chunked = True
        elif lname == b"expect":
            if value.strip().lower() != b"100-continue":
                raise HttpError(417, "expectation_failed",
                                f"Expect: {value.decode('latin-1')!r} is not supported (only 100-continue)")
            req.expect_continue = req.version == "1.1"
        elif lname in TIMEOUT_FIELDS:
            req.timeout = parse_timeout(name, value)
    if len(hosts) > 1:
        raise HttpError(400, "bad_request", "more than one Host header field (RFC 9112 §3.2)")
    if not hosts and req.version == "1.1":
        raise HttpError(400, "bad_request", "an HTTP/1.1 request needs a Host header field (RFC 9112 §3.2)")
    if hosts and not _AUTHORITY.fullmatch(hosts[0].strip()):
        raise HttpError(400, "bad_request", f"invalid Host {hosts[0].decode('latin-1')!r}")
    if req.chunked and req.version == "1.0":
        raise HttpError(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)")
    target_path(req.method, req.url)


TIMEOUT_FIELDS = (b"x-request-timeout-ms", b"x-envoy-expected-rq-timeout-ms")  # ours, and what Envoy/Istio send
MAX_TIMEOUT_MS = 3_600_000


def parse_timeout(name: bytes, value: bytes) -> float:
    """A request's own timeout field -> seconds; HttpError (400) unless a whole number of milliseconds
    1..3,600,000. With several such fields the last one counts."""
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_TIMEOUT_MS:
        raise HttpError(400, "bad_timeout",
                        f"{name.decode('latin-1')}: {text[:40].decode('latin-1')!r} is not a timeout: expected a whole "
                        f"number of milliseconds from 1 to {MAX_TIMEOUT_MS:,} (how long the client will wait)")
    return int(text) / 1000.0


def target_path(method: str, url: bytes) -> "tuple[bytes, bytes]":
    """The request-target (RFC 9112 §3.2) -> (path, query); HttpError for a form this method cannot use."""
    if url.startswith(b"/"):
        path, _, query = url.partition(b"?")
        return path, query.partition(b"#")[0]
    if url == b"*":
        if method != "OPTIONS":
            raise HttpError(400, "bad_request", "the asterisk-form target is only for OPTIONS")
        return b"*", b""
    try:  # absolute-form: http(s)://authority/path?query
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        parsed = None
    if (parsed is None or (parsed.schema or b"").lower() not in (b"http", b"https") or not parsed.host
            or not _AUTHORITY.fullmatch(url.split(b"/")[2] if url.count(b"/") >= 2 else b"")):
        raise HttpError(400, "bad_request",
                        f"invalid request-target {url[:100].decode('latin-1')!r}: expected /path or http://host/path")
    return parsed.path or b"/", parsed.query or b""


def environ(base: dict, req: Request, addr) -> dict:
    """The WSGI environ of a complete request (PEP 3333)."""
    path, query = target_path(req.method, req.url)
    env = dict(base)
    env["REQUEST_METHOD"] = req.method
    env["RAW_URI"] = req.url.decode("latin-1")
    env["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    env["QUERY_STRING"] = query.decode("latin-1")
    env["SERVER_PROTOCOL"] = "HTTP/" + req.version
    if isinstance(addr, tuple):
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(addr[0]), str(addr[1])
    else:
        env["REMOTE_ADDR"] = ""
    for name, value in req.headers:
        key = name.decode("latin-1").upper()
        if "_" in key:  # HTTP_X_A could come from 'X-A' or 'X_A': drop the ambiguous form (as Gunicorn)
            continue
        key = key.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = value.decode("latin-1").strip()
        env[key] = env[key] + "," + value if key in env else value
    if req.too_large:
        env["wsgi.input"] = io.BytesIO()
    else:
        env["wsgi.input"] = req.body.stream()
        if "CONTENT_LENGTH" not in env and req.body.size:  # chunked: the app sees the decoded length
            env["CONTENT_LENGTH"] = str(req.body.size)
    return env


def response_bytes(status: str, headers: list, body: bytes, keep_alive: bool, version: str = "1.1",
                   head: bool = False, date: str = "") -> bytes:
    """Status line, headers and body in one piece. The app's Connection and Transfer-Encoding fields
    are replaced (the whole body is here: it goes with a Content-Length); keep_alive=False adds
    Connection: close."""
    code = status[:3]
    lines = [f"HTTP/1.1 {status}\r\n"]
    has_length = False
    for name, value in headers:
        lname = name.lower()
        if lname in ("connection", "transfer-encoding"):
            continue
        if lname == "content-length":
            has_length = True
        lines.append(f"{name}: {value}\r\n")
    no_body = code in _NO_BODY or code[0] == "1"
    if not has_length and not no_body:
        lines.append(f"Content-Length: {len(body)}\r\n")
    if date:
        lines.append(f"Date: {date}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif version == "1.0":
        lines.append("Connection: keep-alive\r\n")
    lines.append("\r\n")
    data = "".join(lines).encode("latin-1")
    return data if head or no_body else data + body


_date = ["", 0]  # the Date value and the second it is for


def http_date() -> str:
    """The Date field value for now (IMF-fixdate), made once a second."""
    now = int(time.time())
    if now != _date[1]:
        _date[0], _date[1] = formatdate(now, usegmt=True), now
    return _date[0]


def wants_close(headers: list) -> bool:
    """The app asked to close the connection after this response."""
    return any(n.lower() == "connection" and v.lower() == "close" for n, v in headers)
