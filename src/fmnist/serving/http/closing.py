"""The loop worker's closing side (a mixin of worker.LoopWorker): closing a connection, the periodic sweep of
idle, slow and stalled connections, and the graceful stop."""

from __future__ import annotations

import time

from fmnist.serving.http import http11
from fmnist.serving.http.connection import Conn

HEAD_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its header section
BODY_TIMEOUT = 15.0  # seconds a body may stall (no byte) before its connection is closed
LINGER_TIMEOUT = 2.0  # seconds a half-closed connection is read (and discarded) before it is closed


class Closing:
    """Needs of its worker: selector, conns, sockets, pool, heavy, cfg, alive, _advance, _beat, _step."""

    def close(self, conn: Conn) -> None:
        sock = conn.sock
        if sock is None:
            return
        conn.sock = None
        conn.out.clear()
        if not conn.busy:
            conn.reader.discard()
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
        """Close idle keep-alive connections, slow header sections, stalled bodies and answers."""
        keepalive = self.cfg.keepalive
        for conn in list(self.conns.values()):
            reader = conn.reader
            if conn.busy:
                continue  # the app has its request; Gunicorn's own timeout bounds a stuck worker
            if conn.lingering:
                expired = now - conn.last > LINGER_TIMEOUT
            elif reader.receiving_head:
                expired = now - reader.req.started > HEAD_TIMEOUT
                if expired and not conn.out and not reader.ready and not conn.pending:
                    conn.fail(http11.HttpError(408, "request_timeout",
                                               f"the request head did not arrive within {HEAD_TIMEOUT:.0f} s")
                              .response())
                    self._advance(conn, None, 0)  # sent now, then the lingering close
                    continue
            elif reader.req is not None or conn.out:
                expired = now - conn.last > BODY_TIMEOUT
            else:
                expired = not reader.ready and not conn.pending and now - conn.last > keepalive
            if expired:
                self.close(conn)

    def _shutdown(self) -> None:
        """Graceful stop: no new connections or requests. A request that is arriving gets a second to
        arrive; answers still leaving (or in the pool) get graceful_timeout; idle connections close at once."""
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
                idle = not conn.out and not conn.busy and not conn.pending and not conn.reader.ready
                if conn.lingering or idle and (conn.reader.req is None or not arriving):
                    self.close(conn)
            if self.conns:
                self._beat()
                self._step(self.selector.select(0.05))
        self.pool.shutdown()
        self.heavy.shutdown()
