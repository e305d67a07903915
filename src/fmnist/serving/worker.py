"""A Gunicorn worker that runs one event loop per process: `worker_class = "fmnist.serving.worker.LoopWorker"`.

Why: with a ~100 µs model, Gunicorn's gthread worker spends more of a request in its own machinery
than in the model: the main thread polls, hands each request to a pool thread through a queue,
the pool thread parses it with Gunicorn's pure-Python parser, and hands the connection back.
This worker does all of that in one thread with the C parser `httptools` (llhttp, the parser of
Node.js and uvicorn): it polls, reads every request that has arrived, answers them, and polls
again. No hand-offs, no locks, no thread switches.

Batching: the requests that arrived together in one poll are handed to the app together when it
has a `wsgi_batch(environs, start_responses)` method (fmnist's fast path has one), so under load
the model runs once for all of them, and an idle server answers a lone request at once: the batch
is whatever the network delivered, never a wait. Any other WSGI app is called once per request.

HTTP: HTTP/1.0 and 1.1, keep-alive, pipelining (answered in order), chunked request bodies,
`Expect: 100-continue`, HEAD. Limits: Gunicorn's limit_request_line / limit_request_fields /
limit_request_field_size, worker_connections and keepalive; a body larger than the app's
MAX_CONTENT_LENGTH is never buffered: a declared one reaches the app with no body (Flask answers
413), a chunked one is refused here with the same JSON error. A response goes to the kernel in
one send (status line, headers and body together; only what the socket buffer cannot take waits),
so a worker killed between headers and body cannot happen.
Gunicorn's master does the rest: forking, signals, timeouts (this loop beats every second),
max_requests, graceful stop (stop accepting, finish what has arrived, close).
"""

from __future__ import annotations

import errno
import io
import json
import os
import selectors
import socket
import sys
import time
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

import httptools
from gunicorn.workers import base

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_LISTENER, _WAKEUP = "listener", "wakeup"  # selector data of the listening sockets and the signal pipe
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEADER_BYTES_MAX = 1024 * 1024  # URL + header fields of one request, when Gunicorn's limits are off (0)
_PARTIAL_TIMEOUT = 30.0  # seconds a half-received request may stall before its connection is closed
_LINGER_TIMEOUT = 2.0  # seconds a half-closed connection is read (and discarded) before it is closed


def _error_response(status: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


class _Request:
    __slots__ = ("method", "url", "headers", "body", "version", "keep_alive", "too_large")

    def __init__(self):
        self.method = ""
        self.url = b""
        self.headers: list = []
        self.body: list = []
        self.too_large = False


class _Conn:
    """One client connection and its parser; the parser calls the on_* methods as bytes arrive."""

    __slots__ = ("worker", "sock", "addr", "parser", "req", "ready", "out", "last", "closing", "finished",
                 "lingering", "received", "error", "body_size", "events")

    def __init__(self, worker: "LoopWorker", sock, addr):
        self.worker = worker
        self.sock = sock
        self.addr = addr
        self.parser = httptools.HttpRequestParser(self)
        self.req: "_Request | None" = None
        self.ready: list = []  # complete requests not answered yet, in arrival order
        self.out = b""  # response bytes the socket has not taken yet
        self.last = time.monotonic()
        self.closing = False  # answer the requests parsed so far, then close (read no more)
        self.finished = False  # a last response (Connection: close) is queued: close once `out` is sent
        self.lingering = False  # sent all, half-closed: discarding what the client still sends until it closes
        self.received = 0  # bytes of the current request's URL and header fields
        self.error: "bytes | None" = None  # a response that ends the connection (bad request)
        self.body_size = 0
        self.events = _READ

    # --- httptools callbacks
    def on_message_begin(self):
        self.req = _Request()
        self.body_size = 0
        self.received = 0

    def on_url(self, url: bytes):
        req = self.req
        req.url += url
        self.received += len(url)
        if len(req.url) > self.worker.limit_line:
            self.refuse("414 URI Too Long", "uri_too_long", f"the request line is over {self.worker.limit_line} bytes")

    def on_header(self, name: bytes, value: bytes):
        req = self.req
        req.headers.append((name, value))
        self.received += len(name) + len(value)
        w = self.worker
        if len(req.headers) > w.limit_fields or len(name) + len(value) > w.limit_field_size:
            self.refuse("431 Request Header Fields Too Large", "headers_too_large",
                        f"at most {w.limit_fields} header fields of at most {w.limit_field_size} bytes each")

    def on_headers_complete(self):
        req, p, w = self.req, self.parser, self.worker
        req.method = p.get_method().decode("latin-1")
        req.version = p.get_http_version()
        req.keep_alive = p.should_keep_alive()
        expect = False
        for name, value in req.headers:
            lname = name.lower()
            if lname == b"content-length":
                try:
                    req.too_large = int(value) > w.max_body
                except ValueError:
                    pass  # llhttp already refuses a malformed Content-Length
            elif lname == b"expect" and value.lower() == b"100-continue":
                expect = True
        if req.too_large:  # answered now (Flask: 413 from Content-Length); the body is never kept
            self.ready.append(req)
            self.closing = True
        elif expect and req.version == "1.1":
            self.out += _CONTINUE  # the client waits for this before it sends the body

    def on_body(self, body: bytes):
        req = self.req
        self.body_size += len(body)
        if req.too_large:
            return  # never buffered: the app answers 413 from Content-Length
        if self.body_size > self.worker.max_body:  # chunked, no Content-Length to refuse it by
            self.refuse("413 Request Entity Too Large", "payload_too_large",
                        f"request body is over the {self.worker.max_body:,}-byte limit")
            return
        req.body.append(body)

    def on_message_complete(self):
        if self.error is None and not self.req.too_large:  # else answered already, or with the error
            self.ready.append(self.req)
        self.req = None

    # --- I/O
    def feed(self, data: bytes) -> None:
        if self.error is not None or self.closing:
            return  # the connection ends after what it has sent so far is answered
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade (websocket, h2c) or CONNECT: answered as plain HTTP (the app knows no other
            # protocol), and what follows is not HTTP/1.1: the connection closes after the answer
            self.closing = True
        except httptools.HttpParserError as e:
            self.refuse("400 Bad Request", "bad_request", f"malformed HTTP request ({e})")
        if self.received > _HEADER_BYTES_MAX:
            self.refuse("431 Request Header Fields Too Large", "headers_too_large",
                        f"request headers are over {_HEADER_BYTES_MAX} bytes")

    def refuse(self, status: str, code: str, message: str) -> None:
        """This request gets this error (the first one found) and the connection closes."""
        if self.error is None:
            self.error = _error_response(status, code, message)


class LoopWorker(base.Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.cfg.is_ssl:  # refused before serving rather than answering TLS clients in plain HTTP
            raise SystemExit("the loop worker speaks plain HTTP: terminate TLS in front of it (nginx), "
                             "or use --worker gthread with Gunicorn's certfile/keyfile")

    def init_process(self):
        self.selector = selectors.DefaultSelector()
        self.conns: dict = {}
        self.limit_line = self.cfg.limit_request_line or sys.maxsize
        self.limit_fields = self.cfg.limit_request_fields or sys.maxsize
        self.limit_field_size = self.cfg.limit_request_field_size or sys.maxsize
        self.max_conns = self.cfg.worker_connections
        self._date, self._date_at = b"", 0
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        app = self.wsgi
        config = getattr(app, "config", None) or {}
        self.max_body = config.get("MAX_CONTENT_LENGTH") or 10 * 1024 * 1024
        self.batch_app = getattr(getattr(app, "wsgi_app", None), "wsgi_batch", None)
        host, port = self._server_name()
        self.base_environ = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": self.cfg.workers > 1, "wsgi.run_once": False,
            "SCRIPT_NAME": "", "SERVER_NAME": host, "SERVER_PORT": port, "SERVER_SOFTWARE": "fmnist",
        }

    def _server_name(self) -> "tuple[str, str]":
        try:
            name = self.sockets[0].sock.getsockname()
            if isinstance(name, tuple):
                return str(name[0]), str(name[1])
        except (IndexError, OSError):
            pass
        return "localhost", "80"

    # --- the loop
    def run(self):
        sel = self.selector
        for listener in self.sockets:
            listener.setblocking(False)
            sel.register(listener, _READ, _LISTENER)
        sel.register(self.PIPE[0], _READ, _WAKEUP)  # signals wake the loop (set_wakeup_fd)
        accepting = True
        beat = 0.0
        while self.alive:
            now = time.monotonic()
            if now - beat >= 1.0:
                self.notify()
                beat = now
                self._sweep(now)
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
            if accepting and len(self.conns) >= self.max_conns:
                self._listen(False)
                accepting = False
            elif not accepting and len(self.conns) < self.max_conns:
                self._listen(True)
                accepting = True
            self._step(sel.select(1.0))
        self._shutdown()

    def _listen(self, on: bool) -> None:
        for listener in self.sockets:
            if on:
                self.selector.register(listener, _READ, _LISTENER)
            else:
                self.selector.unregister(listener)

    def _step(self, events) -> None:
        batch = []
        for key, mask in events:
            conn = key.data
            if conn is _LISTENER:
                self._accept(key.fileobj)
            elif conn is _WAKEUP:
                try:
                    os.read(self.PIPE[0], 512)
                except OSError:
                    pass
            else:
                if mask & _WRITE:
                    self._flush(conn)
                if mask & _READ:
                    self._read(conn)
                    if conn.out:  # "100 Continue"
                        self._flush(conn)
                if not conn.out:
                    self._next(conn, batch)
        if batch:
            self._answer(batch)

    def _accept(self, listener) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, sock, addr)
            self.conns[sock.fileno()] = conn
            self.selector.register(sock, _READ, conn)

    def _read(self, conn: _Conn) -> None:
        if conn.sock is None:  # closed by the write just before (a hang-up reports both events)
            return
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client closed (or reset) the connection
            conn.ready.clear()
            self._close(conn)
            return
        if conn.lingering:
            return
        conn.last = time.monotonic()
        conn.feed(data)

    def _answer(self, conns: list) -> None:
        """Answer the complete requests of these connections (batched where the app can)."""
        jobs = []
        for conn in conns:
            if conn.sock is None:
                continue
            for req in conn.ready:
                jobs.append((conn, req, self._environ(conn, req)))
            conn.ready = []
        results = self._call(jobs)
        for (conn, req, _), (status, headers, body) in zip(jobs, results):
            if conn.sock is not None:
                self._respond(conn, req, status, headers, body)
        for conn in conns:
            self._flush(conn)
        self.nr += len(jobs)
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False

    def _call(self, jobs: list) -> list:
        """-> [(status, headers, body bytes)] for [(conn, request, environ)], in order."""
        results = [None] * len(jobs)
        responders = [_Responder() for _ in jobs]
        if self.batch_app is not None and len(jobs) > 1:
            try:
                bodies = self.batch_app([env for _, _, env in jobs], responders)
            except Exception:
                self.log.exception("Error handling a batch of %d requests; answering one by one", len(jobs))
                bodies = [None] * len(jobs)
                responders = [_Responder() for _ in jobs]
            for i, body in enumerate(bodies):
                if body is not None:
                    results[i] = responders[i].result(body)
        for i, (conn, req, env) in enumerate(jobs):
            if results[i] is None:
                results[i] = self._call_one(env, responders[i])
        return results

    def _call_one(self, environ: dict, responder: "_Responder") -> tuple:
        try:
            return responder.result(self.wsgi(environ, responder))
        except Exception:
            self.log.exception("Error handling request %s", environ.get("RAW_URI"))
            body = json.dumps({"error": {"code": "internal_error", "message": "internal server error"}}).encode()
            return "500 Internal Server Error", [("Content-Type", "application/json")], body

    def _environ(self, conn: _Conn, req: _Request) -> dict:
        url = req.url
        raw_uri = url.decode("latin-1")
        if not url.startswith(b"/"):  # absolute form (http://host/path) or '*'
            try:
                parsed = httptools.parse_url(url)
                path, query = parsed.path or b"/", parsed.query or b""
            except httptools.HttpParserInvalidURLError:
                path, query = url, b""
        else:
            path, _, query = url.partition(b"?")
            query = query.partition(b"#")[0]
            path = path.partition(b"#")[0]
        env = dict(self.base_environ)
        env["REQUEST_METHOD"] = req.method
        env["RAW_URI"] = raw_uri
        env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if b"%" in path else path.decode("latin-1")
        env["QUERY_STRING"] = query.decode("latin-1")
        env["SERVER_PROTOCOL"] = "HTTP/" + req.version
        if isinstance(conn.addr, tuple):
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(conn.addr[0]), str(conn.addr[1])
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
            body = b"".join(req.body) if len(req.body) != 1 else req.body[0]
            env["wsgi.input"] = io.BytesIO(body)
            if "CONTENT_LENGTH" not in env and body:  # chunked: the app sees the decoded length
                env["CONTENT_LENGTH"] = str(len(body))
        return env

    def _respond(self, conn: _Conn, req: _Request, status: str, headers: list, body: bytes) -> None:
        if conn.finished:
            return  # pipelined behind a response that closes the connection: never answered
        keep = req.keep_alive and not conn.closing and self.alive
        code = status[:3]
        lines = [f"HTTP/1.1 {status}\r\n"]
        has_length = False
        for name, value in headers:
            lname = name.lower()
            if lname == "connection":
                if value.lower() == "close":
                    keep = False
                continue
            if lname == "content-length":
                has_length = True
            elif lname == "transfer-encoding":
                continue  # the whole body is here: it goes out with a Content-Length
            lines.append(f"{name}: {value}\r\n")
        no_body = code in ("204", "304") or code[0] == "1"
        if not has_length and not no_body:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append(f"Date: {self._http_date()}\r\n")
        if not keep:
            lines.append("Connection: close\r\n")
            conn.finished = True
        elif req.version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1")
        if req.method != "HEAD" and not no_body:
            data += body
        conn.out += data  # sent by _flush once the connection's batch is answered

    def _http_date(self) -> str:
        now = int(time.time())
        if now != self._date_at:
            self._date, self._date_at = formatdate(now, usegmt=True), now
        return self._date

    def _flush(self, conn: _Conn) -> None:
        """Send what the socket takes now; the rest waits for EVENT_WRITE. Then see what is next."""
        if conn.sock is None:
            return
        if not conn.out:
            self._next(conn)
            return
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the client went away
            self._close(conn)
            return
        if sent == len(conn.out):
            conn.out = b""
        else:  # a bytearray drops its head without copying the rest
            conn.out = bytearray(conn.out) if isinstance(conn.out, bytes) else conn.out
            del conn.out[:sent]
        conn.last = time.monotonic()
        if conn.out:
            self._watch(conn)
        else:
            self._next(conn)

    def _next(self, conn: _Conn, batch: "list | None" = None) -> None:
        """A connection with nothing left to send: close it, answer what it has, or read on."""
        if conn.sock is None or conn.lingering:
            return
        if conn.finished:
            self._linger(conn)
        elif conn.ready:  # complete requests (pipelined, or waiting for an earlier response to leave)
            if batch is None:
                self._answer([conn])
            else:
                batch.append(conn)
        elif conn.error is not None:
            self._fail(conn)
        elif conn.closing:
            self._close(conn)
        else:
            self._watch(conn)

    def _watch(self, conn: _Conn) -> None:
        """Poll for writability while output waits; read more only when it does not."""
        events = _WRITE if conn.out else _READ
        if events != conn.events and conn.sock is not None:
            self.selector.modify(conn.sock, events, conn)
            conn.events = events

    def _fail(self, conn: _Conn) -> None:
        """A request we could not parse or accept: answer its error and close."""
        conn.out += conn.error
        conn.error = None
        conn.finished = conn.closing = True
        conn.ready = []
        self._flush(conn)

    def _linger(self, conn: _Conn) -> None:
        """Half-close after the last response, and read (discarding) until the client closes: closing
        with unread bytes would make the kernel reset the connection, and a client still sending a
        refused body could lose the answer before reading it (nginx's lingering_close)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.lingering = True
        conn.last = time.monotonic()
        self._watch(conn)

    def _close(self, conn: _Conn) -> None:
        sock = conn.sock
        if sock is None:
            return
        conn.sock = None
        self.conns.pop(sock.fileno(), None)
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass

    def _sweep(self, now: float) -> None:
        """Close keep-alive connections idle past `keepalive` and requests stalled mid-way."""
        keepalive = self.cfg.keepalive
        for conn in list(self.conns.values()):
            idle = now - conn.last
            if conn.lingering:
                limit = _LINGER_TIMEOUT
            elif conn.req is not None or conn.out:
                limit = _PARTIAL_TIMEOUT
            else:
                limit = keepalive
            if idle > limit:
                self._close(conn)

    def _shutdown(self) -> None:
        """Graceful stop: no new connections or requests. A request that is arriving gets a second to
        arrive; answers still leaving get graceful_timeout; idle connections close at once."""
        for listener in self.sockets:
            try:
                self.selector.unregister(listener)
            except (KeyError, ValueError):
                pass
            listener.close()
        t0 = time.monotonic()
        while self.conns and time.monotonic() - t0 < self.cfg.graceful_timeout:
            arriving = time.monotonic() - t0 < 1.0
            for conn in list(self.conns.values()):
                if conn.lingering or not conn.out and not conn.ready and (conn.req is None or not arriving):
                    self._close(conn)
            if self.conns:
                self._step(self.selector.select(0.05))


class _Responder:
    """start_response for one request; `result(app_iter)` -> (status, headers, body bytes)."""

    __slots__ = ("status", "headers", "written")

    def __init__(self):
        self.status = None
        self.headers = None
        self.written: list = []

    def __call__(self, status, headers, exc_info=None):
        if exc_info is not None and self.status is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, headers
        return self.written.append

    def result(self, app_iter) -> tuple:
        try:
            if isinstance(app_iter, list) and len(app_iter) == 1 and not self.written:
                body = app_iter[0]
            else:
                body = b"".join(self.written) + b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        if self.status is None:
            raise RuntimeError("the WSGI app returned without calling start_response")
        return self.status, self.headers, bytes(body)
