"""A Gunicorn worker that runs one event loop per process: `worker_class = "fmnist.serving.http.worker.LoopWorker"`.

Why: with a ~100 µs model, Gunicorn's gthread worker spends more of a request in its own machinery
than in the model. This worker polls, reads every request that has arrived (parsed by
`http11.RequestReader`: httptools/llhttp with every buffer bounded), and answers the batched
`/predict` fast path right there: the requests that arrived together go to the app's
`batch(environs, start_responses)` hook at once and share one model call, so an idle server answers
a lone request at once and a busy one runs the model batched.

Nothing else runs on the loop. Every request the fast path does not take (another route, JSON, a
bad image, an app without a `batch` hook) goes to a small thread pool (`AppHooks.pool`: threads, and at
most so many waiting; beyond that a 503 with Retry-After): a slow view (/feedback waiting for the
prediction log, /monitoring, /metrics) costs its own connection time, never the loop's. A request the
app marks heavy (its `Exchange.heavy`: a big picture, known from its header before decoding) goes
to a second pool of its own (`AppHooks.heavy_pool`: threads, queue, nice; 503 beyond), so photos
neither hold the loop nor crowd out the other slow views. Answers on one connection leave in request
order; a connection whose request is in a pool waits for it.

Bounds: request line, header fields and the whole header section (incomplete lines counted), a
deadline for the header section (closing.HEAD_TIMEOUT) and for a stalled body (BODY_TIMEOUT), bodies
spooled to a temporary file beyond 64 KB, at most `Limits.pipeline` parsed requests per connection
(reading pauses while they wait), output kept as a list of pieces (no quadratic copying), at most
`STEP_REQUESTS` answered per loop turn, and the heartbeat kept during long turns.
Gunicorn's master does the rest: forking, signals, timeouts, max_requests, graceful stop.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import sys
import time
from collections import deque

from gunicorn.workers import base

from fmnist.serving.apierror import error_json
from fmnist.serving.http import exchange, http11
from fmnist.serving.http.admission import Admission, path_of, too_late
from fmnist.serving.http.closing import Closing
from fmnist.serving.http.connection import Conn, Responder
from fmnist.serving.http.exchange import AppHooks
from fmnist.serving.http.pool import AppPool

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_LISTENER, _WAKEUP, _POOL, _HEAVY = "listener", "wakeup", "pool", "heavy"  # selector data of the other files
STEP_REQUESTS = 256  # requests answered per loop turn at most (then the loop polls and beats again)


def _raise_open_files(wanted: int) -> None:
    """Lift this process's soft limit on open files towards `wanted` (never past the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class LoopWorker(Closing, base.Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.cfg.is_ssl:  # refused before serving rather than answering TLS clients in plain HTTP
            raise SystemExit("the loop worker speaks plain HTTP: terminate TLS in front of it (nginx), "
                             "or use --worker gthread with Gunicorn's certfile/keyfile")

    def init_process(self):
        self.selector = selectors.DefaultSelector()
        self.conns: dict = {}
        self.runnable: deque = deque()  # connections with requests left over from a full turn
        self.max_conns = self.cfg.worker_connections
        _raise_open_files(self.max_conns + 64)
        self.pool: "AppPool | None" = None  # made in run(): threads must not exist before the fork
        self.heavy: "AppPool | None" = None
        self.beat = 0.0
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        self.hooks = hooks = AppHooks.of(self.wsgi)  # the app's side of the contract (serving/http/exchange.py)
        cfg = self.cfg
        self.limits = http11.Limits(
            request_line=cfg.limit_request_line or sys.maxsize, fields=cfg.limit_request_fields or sys.maxsize,
            field_size=cfg.limit_request_field_size or 64 * 1024, body=hooks.max_body)
        self.batch_app = hooks.batch
        self.admission = Admission(hooks.default_deadline, STEP_REQUESTS, hooks.dropped, hooks.probe_paths)
        host, port = self._server_name()
        self.base_environ = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": self.cfg.workers > 1, "wsgi.run_once": False,
            "wsgi.input_terminated": True,  # the whole body is here: the stream ends where it ends
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

    # ------------------------------------------------------------------ the loop
    def run(self):
        sel = self.selector
        for listener in self.sockets:
            listener.setblocking(False)
            sel.register(listener, _READ, _LISTENER)
        sel.register(self.PIPE[0], _READ, _WAKEUP)  # signals wake the loop (set_wakeup_fd)
        threads, queue = self.hooks.pool
        self.pool = AppPool(self.wsgi, threads, queue, "app_pool", admit=self._admit_in_pool)
        sel.register(self.pool.wakeup, _READ, _POOL)
        threads, queue, nice = self.hooks.heavy_pool
        self.heavy = AppPool(self.wsgi, threads, queue, "heavy_pool", nice, admit=self._admit_in_pool)
        sel.register(self.heavy.wakeup, _READ, _HEAVY)
        accepting = True
        while self.alive:
            if self._beat():
                self._sweep(time.monotonic())
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
            if accepting and len(self.conns) >= self.max_conns:
                self._listen(False)
                accepting = False
            elif not accepting and len(self.conns) < self.max_conns:
                self._listen(True)
                accepting = True
            self._step(sel.select(0 if self.runnable else 1.0))
        self._shutdown()

    def _beat(self) -> bool:
        """Tell the master this worker lives, at most once a second; True when it did."""
        now = time.monotonic()
        if now - self.beat < 1.0:
            return False
        self.notify()
        self.beat = now
        return True

    def _listen(self, on: bool) -> None:
        for listener in self.sockets:
            if on:
                self.selector.register(listener, _READ, _LISTENER)
            else:
                self.selector.unregister(listener)

    def _step(self, events) -> None:
        touched = []
        for key, mask in events:
            conn = key.data
            if conn is _LISTENER:
                self._accept(key.fileobj)
            elif conn is _WAKEUP:
                self._drain(self.PIPE[0])
            elif conn is _POOL:
                touched += self._pool_results(self.pool)
            elif conn is _HEAVY:
                touched += self._pool_results(self.heavy)
            else:
                if mask & _WRITE:
                    conn.send()
                if mask & _READ and conn.sock is not None:
                    self._read(conn)
                touched.append(conn)
        # Oldest first: what was left over from earlier turns, then what arrived now. A request is refused only
        # when it could no longer be answered within its deadline (admission.py), so under a storm the requests
        # started are those that still can be, in the order they came.
        budget = self.admission.turn_requests()
        batch: list = []
        while self.runnable and budget > 0:
            conn = self.runnable.popleft()
            conn.queued = False
            budget -= self._advance(conn, batch, budget)
        for conn in touched:
            budget -= self._advance(conn, batch, budget)
        if batch:
            self._answer(batch)
            for conn, _ in batch:
                self._advance(conn, None, 0)
        if self.runnable:
            self._refuse_stale(time.monotonic())

    def _refuse_stale(self, now: float) -> None:
        """Answer at once, without starting them, the waiting requests admission refuses (waited too long,
        deadline passed), oldest first, up to the first it would still start."""
        admission, runnable = self.admission, self.runnable
        while runnable:
            conn = runnable[0]
            ready = conn.reader.ready
            if conn.sock is not None and ready:
                refusal = admission.verdict(ready[0], now)
                if refusal is None:
                    return
                while ready and refusal is not None:
                    conn.pending.append((ready.popleft(), None, refusal))
                    refusal = admission.verdict(ready[0], now) if ready else None
            runnable.popleft()
            conn.queued = False
            self._advance(conn, None, 0)  # sends the refusals; queued again if it still has requests waiting

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass

    def _accept(self, listener) -> None:
        # the whole backlog: a connection left there waits a whole turn unseen by admission, its request aging
        # where no deadline or queue limit can see it (under overload: timeouts). The workers share the
        # listener; a worker that is free takes what waits, which balances (measured: 2 workers, wrk -c 64,
        # the same req/s as accepting 64 a wake-up)
        for _ in range(min(self.cfg.backlog, max(0, self.max_conns - len(self.conns)))):
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
            conn = Conn(self, sock, addr, http11.RequestReader(self.limits))
            self.conns[sock.fileno()] = conn
            self.selector.register(sock, _READ, conn)

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client closed (or reset) the connection: what it sent and is waiting is never started
            for req in conn.reader.ready:
                self.admission.count("client_gone", "loop", req.method, path_of(req))
            self.close(conn)
            return
        conn.last = time.monotonic()
        if not conn.lingering:
            conn.reader.feed(data)

    # ------------------------------------------------------------------ what a connection does next
    def _advance(self, conn: Conn, batch: "list | None", budget: int) -> int:
        """Move one connection on: send, answer, fail, close, or read on. -> requests put in `batch`."""
        reader = conn.reader
        for _ in range(8):
            if conn.sock is None or conn.lingering:
                return 0
            conn.send()
            if conn.sock is None:
                return 0
            if conn.out or conn.busy:
                break
            if conn.pending:  # answers computed already (or one for the pool), in request order
                self._release(conn)
                continue
            if conn.finished:
                conn.linger()
                return 0
            if reader.paused and len(reader.ready) < self.limits.pipeline:
                reader.resume()
            if reader.ready:
                if batch is None or budget <= 0:  # answered in the next turn
                    if not conn.queued:
                        conn.queued = True
                        self.runnable.append(conn)
                    break
                n = min(len(reader.ready), budget)
                batch.append((conn, [reader.ready.popleft() for _ in range(n)]))
                conn.watch()
                return n
            if reader.error is not None:
                conn.fail(reader.error.response())
            elif reader.continue_owed is not None:
                reader.continue_owed = None  # nothing is ahead of it now: the client may send its body
                conn.write(http11.CONTINUE)
            elif reader.closing:
                self.close(conn)
                return 0
            else:
                break
        conn.watch()
        return 0

    def _answer(self, batch: list) -> None:
        """Answer the complete requests of these connections: refused at once if admission says so
        (admission.py), the fast path's now, the rest in the pool."""
        jobs = []
        now = time.monotonic()
        admission = self.admission
        backlog = bool(self.runnable)  # requests beyond this turn's budget are waiting
        size = sum(len(reqs) for _, reqs in batch)  # done together: a deadline must hold for the whole batch
        for conn, reqs in batch:
            for req in reqs:
                refusal = admission.verdict(req, now, backlog, size)
                if refusal is not None:
                    env = refusal
                else:
                    try:
                        env = http11.environ(self.base_environ, req, conn.addr)
                    except http11.HttpError as e:  # checked at the head already; kept as a guard
                        env = (e.status_line, [("Content-Type", "application/json")], error_json(e.code, e.message))
                jobs.append((conn, req, env))
        environs = [env for _, _, env in jobs if isinstance(env, dict)]
        t0 = time.perf_counter()
        results = self._call_batch(environs)
        admission.measured(len(environs), time.perf_counter() - t0)
        it = iter(results)
        for conn, req, env in jobs:
            if isinstance(env, dict):
                conn.pending.append((req, env, next(it)))
            else:
                conn.pending.append((req, None, env))
        self.nr += len(jobs)
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False

    def _call_batch(self, environs: list) -> list:
        """[(status, headers, body) or None (the pool answers it)] for these environs, in order."""
        if self.batch_app is None or not environs:
            return [None] * len(environs)
        responders = [Responder() for _ in environs]
        try:
            bodies = self.batch_app(environs, responders)
        except Exception:
            self.log.exception("Error handling a batch of %d requests; answering them one by one", len(environs))
            for env in environs:
                env["wsgi.input"].seek(0)
            return [None] * len(environs)
        return [responders[i].result(body) if body is not None else None for i, body in enumerate(bodies)]

    def _release(self, conn: Conn) -> None:
        """Send the computed answers in order, up to the first that still needs the app (-> the pool)."""
        while conn.pending and not conn.busy:
            req, env, result = conn.pending[0]
            if result is None:
                self._submit(conn, req, env)
                return
            conn.pending.popleft()
            self._respond(conn, req, result)

    def _submit(self, conn: Conn, req, env: dict) -> None:
        heavy = exchange.of(env).heavy
        pool = self.heavy if heavy else self.pool
        if pool.full:
            self.admission.count("heavy_full" if heavy else "pool_full", pool.name, req.method, path_of(req))
            conn.pending.popleft()
            body = error_json("server_busy", "too many large pictures waiting for this worker; retry shortly" if heavy
                              else "too many requests waiting for this worker; retry shortly")
            self._respond(conn, req, ("503 Service Unavailable", [("Content-Type", "application/json"),
                                                                   ("Retry-After", "1")], body))
            return
        conn.busy = True
        pool.submit((conn, req), env)

    def _admit_in_pool(self, key, environ: dict, where: str) -> "tuple | None":
        """In a pool thread, before the app gets the request: None to run it; else the answer instead (a client
        gone is dropped: its answer is never sent; a deadline passed while it waited is a 504)."""
        conn, req = key
        if conn.sock is None:
            self.admission.count("client_gone", where, req.method, path_of(req))
            return "499 Client Closed Request", [], b""
        if req.timeout:
            now = time.monotonic()
            if now >= req.started + req.timeout:
                self.admission.count("deadline", where, req.method, path_of(req))
                return too_late(req, now)
        return None

    def _pool_results(self, pool: AppPool) -> list:
        """Answers from a pool: sent in their connection's order; -> the connections to move on."""
        conns = []
        for (conn, req), result in pool.results():
            if conn.busy and conn.pending:
                conn.pending.popleft()
            conn.busy = False
            if conn.sock is not None:
                self._respond(conn, req, result)
                conns.append(conn)
            else:
                req.body.close()
        return conns

    def _respond(self, conn: Conn, req, result: tuple) -> None:
        status, headers, body = result
        req.body.close()
        if conn.finished:
            return  # pipelined behind a response that closes the connection: never answered
        if result is self.admission.busy and req.keep_alive and req.version == "1.1" and req.method != "HEAD":
            conn.write(self.admission.busy_bytes)  # shedding costs as little as it can: the bytes are made once
            return
        keep = req.keep_alive and not conn.reader.closing and self.alive and not http11.wants_close(headers)
        conn.write(http11.response_bytes(status, headers, body, keep, req.version, req.method == "HEAD",
                                         http11.http_date()))
        if not keep:
            conn.finished = True
            conn.reader.closing = True  # nothing after this response is parsed
