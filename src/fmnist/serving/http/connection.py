"""One client connection of the loop worker (serving/http/worker.py), and start_response for one request."""

from __future__ import annotations

import selectors
import socket
import time
from collections import deque

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Conn:
    """A socket, its `http11.RequestReader`, the bytes waiting to leave, and the answers in order."""

    __slots__ = ("worker", "sock", "addr", "reader", "out", "last", "finished", "lingering", "busy", "pending",
                 "queued", "events")

    def __init__(self, worker, sock, addr, reader):
        self.worker = worker
        self.sock = sock
        self.addr = addr
        self.reader = reader
        self.out: deque = deque()  # response bytes the socket has not taken yet, in pieces
        self.last = time.monotonic()
        self.finished = False  # a last response (Connection: close) is queued: close once `out` is sent
        self.lingering = False  # sent all, half-closed: discarding what the client still sends until it closes
        self.busy = False  # a request of this connection is in the worker's thread pool
        self.pending: deque = deque()  # (request, environ, result or None) answered in this order
        self.queued = False  # in the worker's runnable queue
        self.events = _READ

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def send(self) -> None:
        """Send what the socket takes now (one system call for all the pieces); the rest waits."""
        if not self.out or self.sock is None:
            return
        data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the client went away
            self.worker.close(self)
            return
        self.out.clear()
        if sent < len(data):
            self.out.append(memoryview(data)[sent:])  # no copy of what is left
        self.last = time.monotonic()

    def fail(self, response: bytes) -> None:
        """Answer a request the server refused (malformed, over a limit, too slow) and close after it."""
        self.reader.ready.clear()
        self.reader.closing = True
        self.write(response)
        self.finished = True

    def linger(self) -> None:
        """Half-close after the last response, and read (discarding) until the client closes: closing
        with unread bytes would make the kernel reset the connection, and a client still sending a
        refused body could lose the answer before reading it (nginx's lingering_close)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.worker.close(self)
            return
        self.lingering = True
        self.last = time.monotonic()
        self.reader.discard()
        self.watch()

    def watch(self) -> None:
        """Poll for writability while output waits; for reading while the reader takes more bytes."""
        if self.sock is None:
            return
        want = (_WRITE if self.out else 0) | (0 if self.reader.paused and not self.lingering else _READ)
        if want == self.events:
            return
        sel = self.worker.selector
        if want == 0:
            sel.unregister(self.sock)
        elif self.events == 0:
            sel.register(self.sock, want, self)
        else:
            sel.modify(self.sock, want, self)
        self.events = want


class Responder:
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

    def call(self, app, environ) -> tuple:
        return self.result(app(environ, self))

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
