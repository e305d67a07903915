"""The prediction log: one row per predicted image, for feedback, live accuracy and drift.

One interface (`PredictionStore`), two backends the rest of the code never names:
- a path: SQLite (`store_sqlite.py`), the embedded default, shared by the workers and replicas of
  one machine;
- `postgresql://user:password@host:port/dbname`: PostgreSQL (`store_postgres.py`, psycopg 3 with
  its pool), one store for every replica of a fleet (Kubernetes, several machines).

A row: request id and index, time, replica, model name and version, class, confidence, mean pixel,
sha256 of the 28x28 input (the pixels themselves only when configured), and the true label once
feedback arrives. Writing is best-effort and never on the request path: `record()` appends to a
bounded in-memory buffer (beyond `buffer_rows`, rows are dropped and counted) and one writer
thread per process inserts them in batches. When the database is unreachable the rows wait in the
buffer, the writer retries with back-off, and `health()` says so; reads raise `StoreUnavailable`
(the API answers 503). Bounded: rows beyond `retention_rows` and older than `retention_days` are
pruned.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time

from fmnist.monitoring.store_common import READ_FIELDS, ROW_FIELDS, StoreUnavailable  # noqa: F401

log = logging.getLogger("fmnist.serving")

BATCH_ROWS = 5000  # rows per insert transaction


def open_store(spec: str, retention_rows: int = 1_000_000, retention_days: float = 30.0, **kw) -> "PredictionStore":
    """A path -> SQLite; a postgresql:// (or postgres://) URL -> PostgreSQL."""
    if spec.startswith(("postgresql://", "postgres://")):
        from fmnist.monitoring.store_postgres import PostgresBackend

        backend = PostgresBackend(spec, password_file=kw.pop("password_file", None))
    else:
        from fmnist.monitoring.store_sqlite import SQLiteBackend

        kw.pop("password_file", None)
        backend = SQLiteBackend(spec)
    return PredictionStore(backend, retention_rows, retention_days, **kw)


class PredictionStore:
    def __init__(self, backend, retention_rows: int = 1_000_000, retention_days: float = 30.0,
                 flush_interval: float = 0.05, buffer_rows: int = 100_000, on_drop=None):
        self.backend = backend
        self.retention_rows = retention_rows
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.buffer_rows = buffer_rows
        self.on_drop = on_drop  # callback(n) for rows dropped because the buffer was full
        self._buf: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._written = threading.Condition(self._lock)
        self._recorded = 0  # rows ever kept in the buffer
        self._done = 0  # of those, rows written (or given up on after a non-retryable error)
        self._stop = threading.Event()
        self.dropped = 0
        self.error: "str | None" = None
        self.error_since: "float | None" = None
        self._inserted = 0
        try:
            backend.ensure_schema()
        except StoreUnavailable as e:  # the model serves anyway; the writer creates the schema when it can
            self._fail(str(e))
        self._writer = threading.Thread(target=self._write_loop, name="fmnist-store", daemon=True)
        self._writer.start()

    @property
    def kind(self) -> str:
        return self.backend.kind

    # ------------------------------------------------------------------ writing (off the request path)

    def record(self, rows: list) -> None:
        """rows: tuples in ROW_FIELDS order. Never blocks; beyond the buffer's bound rows are dropped."""
        with self._lock:
            room = self.buffer_rows - len(self._buf)
            keep = rows if len(rows) <= room else rows[:max(room, 0)]
            self._buf.extend(keep)
            self._recorded += len(keep)
            lost = len(rows) - len(keep)
            if lost:
                self.dropped += lost
        if lost and self.on_drop is not None:
            self.on_drop(lost)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was recorded so far is written (True), or `timeout` (False: store down)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._recorded
            self._wake.set()
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._written.wait(left)
        return True

    def close(self) -> None:
        self.flush(timeout=2.0)
        self._stop.set()
        self._wake.set()
        self._writer.join(timeout=5)
        self.backend.close()

    def _write_loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            if backoff:  # the store is down: retry on the back-off schedule, however often flush() asks
                self._stop.wait(backoff)
            else:
                self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._lock:
                batch = list(itertools.islice(self._buf, BATCH_ROWS))
                if len(self._buf) > len(batch):
                    self._wake.set()  # more waiting: go on without sleeping
            if not batch:
                continue
            try:
                if self.error is not None:
                    self.backend.ensure_schema()  # a store that was never reached may have no tables yet
                self.backend.insert(batch)  # idempotent on (request_id, idx): a retry makes no duplicate
            except StoreUnavailable as e:
                self._fail(str(e))
                backoff = min(max(backoff * 2, 0.1), 5.0)
                continue
            except Exception as e:  # a bug or a bad row: never kill the writer; these rows are lost
                log.exception("prediction log: %d rows not written", len(batch))
                self._fail(f"{e.__class__.__name__}: {e}")
            else:
                if self.error is not None:
                    log.warning("prediction log %s is back after %.1f s", self.backend.describe(),
                                time.time() - (self.error_since or time.time()))
                self.error = self.error_since = None
            backoff = 0.0
            with self._lock:
                for _ in range(len(batch)):  # only the writer removes rows: the batch is the buffer's head
                    self._buf.popleft()
                self._done += len(batch)
                self._written.notify_all()
            self._inserted += len(batch)
            if self._inserted >= 1000:
                self._inserted = 0
                try:
                    self.backend.prune(self.retention_rows, self.retention_days)
                except StoreUnavailable:
                    pass

    def _fail(self, message: str) -> None:
        if self.error is None:
            log.error("prediction log %s unavailable: %s; rows wait in memory (at most %d)",
                      self.backend.describe(), message, self.buffer_rows)
            self.error_since = time.time()
        self.error = message

    # ------------------------------------------------------------------ state

    def health(self) -> dict:
        with self._lock:
            buffered = len(self._buf)
        return {"backend": self.kind, "where": self.backend.describe(), "ok": self.error is None,
                "error": self.error, "since": self.error_since, "buffered_rows": buffered,
                "buffer_rows": self.buffer_rows, "dropped_rows": self.dropped}

    # ------------------------------------------------------------------ reading (every replica's rows)

    def get(self, request_id: str, idx: int = 0) -> "dict | None":
        return self.backend.get(request_id, idx)

    def set_feedback(self, request_id: str, idx: int, true_label: int) -> bool:
        return self.backend.set_feedback(request_id, idx, true_label, time.time())

    def recent(self, n: int, model_version: "str | None" = None) -> dict:
        """The last n predictions of every replica: class ids, confidences, mean pixels (arrays), and
        how many replicas they came from."""
        return self.backend.recent(n, model_version)

    def recent_feedback(self, n: int) -> dict:
        return self.backend.recent_feedback(n)

    def low_confidence(self, below: float, window: int, n: int) -> list:
        """Among the last `window` predictions of every replica, the latest n under `below` confidence that
        kept their input image (store_images): dicts with LOW_FIELDS, image as 784 bytes."""
        return self.backend.low_confidence(below, window, n)

    def since(self, name: str, ts: float, n: int = 200_000) -> list:
        """Every replica's latest n predictions of model `name` since `ts` (a rollout's window), all versions:
        (request_id, idx, model_version, class_id, confidence, true_label, latency_ms) rows."""
        return self.backend.since(name, ts, n)

    def count(self) -> int:
        return self.backend.count()

    def prune(self) -> int:
        return self.backend.prune(self.retention_rows, self.retention_days)
