"""The loop worker's threads for every request its batched fast path does not take.

A WSGI app called in a pool thread may be slow (waiting for the prediction log, rendering metrics):
that costs its own connection time, never the event loop's. Results come back to the loop through
a queue, and a byte on a socket pair wakes the loop's poll. Bounded: `threads` threads and at most
`max_waiting` requests submitted and not yet collected (the worker answers 503 beyond)."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from fmnist.serving.apierror import error_json
from fmnist.serving.http import exchange
from fmnist.serving.http.connection import Responder

log = logging.getLogger("fmnist.serving")


def _lower_priority(nice: int) -> None:
    """This thread's CPU priority lowered by `nice` (Linux schedules threads one by one): its work yields
    the cores to the event loop's. Most of a picture's decode runs in Pillow's C code with the GIL
    released, so the loop is not left waiting on the GIL for it."""
    if nice > 0 and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
        except OSError as e:
            log.warning("could not lower the priority of a %s thread: %s", threading.current_thread().name, e)


class AppPool:
    def __init__(self, app, threads: int, max_waiting: int, name: str = "app_pool", nice: int = 0, admit=None):
        self.app = app
        self.admit = admit  # admit(key, environ, name) -> None (run it) or the answer instead, in the thread
        self.name = name  # told to the app as its Exchange.pool (where its work ran, for metrics)
        self.max_waiting = max_waiting
        self.waiting = 0  # submitted, result not collected yet (touched by the loop thread only)
        self._done: "queue.SimpleQueue" = queue.SimpleQueue()
        self.wakeup, self._notify = socket.socketpair()  # the loop polls `wakeup` for reading
        self.wakeup.setblocking(False)
        self._notify.setblocking(False)
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix=f"fmnist-{name}", initializer=_lower_priority,
                                           initargs=(nice,))

    @property
    def full(self) -> bool:
        return self.waiting >= self.max_waiting

    def submit(self, key, environ: dict) -> None:
        """Call the app on `environ` in a thread; `results()` gives (key, (status, headers, body)) later."""
        self.waiting += 1
        exchange.of(environ).pool = self.name
        self._threads.submit(self._run, key, environ)

    def _run(self, key, environ: dict) -> None:
        try:
            result = self.admit(key, environ, self.name) if self.admit is not None else None
            if result is None:
                result = Responder().call(self.app, environ)
        except Exception:
            log.exception("Error handling request %s", environ.get("RAW_URI"))
            result = ("500 Internal Server Error", [("Content-Type", "application/json")],
                      error_json("internal_error", "internal server error; see the server log"))
        self._done.put((key, result))
        try:
            self._notify.send(b"\0")
        except OSError:
            pass  # the socket buffer is full: a wake-up is pending already

    def results(self) -> list:
        """What finished since the last call (the loop calls this when `wakeup` is readable)."""
        try:
            while self.wakeup.recv(4096):
                pass
        except OSError:
            pass
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        self.waiting -= len(out)
        return out

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
