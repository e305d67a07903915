"""The prediction log in SQLite: every worker writes to it, so feedback and drift see all of them.

One row per predicted image: request id and index, time, model name and version, class,
confidence, mean pixel, sha256 of the 28x28 input (the pixels themselves only when configured),
and the true label once feedback arrives. WAL mode lets several worker processes write while
others read; each worker batches its inserts in a background thread, off the request path.
Bounded: rows beyond `retention_rows` (oldest first) and older than `retention_days` are pruned.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("fmnist.serving")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id    TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    ts            REAL    NOT NULL,
    model_name    TEXT    NOT NULL,
    model_version TEXT    NOT NULL,
    class_id      INTEGER NOT NULL,
    confidence    REAL    NOT NULL,
    mean_pixel    REAL    NOT NULL,
    input_sha256  TEXT    NOT NULL,
    image         BLOB,
    true_label    INTEGER,
    feedback_ts   REAL,
    PRIMARY KEY (request_id, idx)
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE INDEX IF NOT EXISTS predictions_feedback ON predictions (feedback_ts) WHERE feedback_ts IS NOT NULL;
"""
_INSERT = ("INSERT OR REPLACE INTO predictions (request_id, idx, ts, model_name, model_version, class_id, "
           "confidence, mean_pixel, input_sha256, image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class PredictionStore:
    def __init__(self, path: "str | Path", retention_rows: int = 1_000_000, retention_days: float = 30.0,
                 flush_interval: float = 0.05):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_rows = retention_rows
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        with _connect(self.path) as conn:
            conn.executescript(SCHEMA)
        self._read = _connect(self.path)
        self._read_lock = threading.Lock()
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._wake = threading.Event()
        self._inserted = 0
        self._writer = threading.Thread(target=self._write_loop, name="fmnist-store", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ writing (off the request path)

    def record(self, rows: list[tuple]) -> None:
        """rows: (request_id, idx, ts, model_name, model_version, class_id, confidence, mean_pixel, sha256, image)."""
        self._queue.put(rows)  # no wake-up: the writer drains the queue on its own schedule

    def flush(self, timeout: float = 5.0) -> None:
        """Write everything queued so far (readers of this worker then see their own predictions)."""
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        done.wait(timeout)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._wake.set()
        self._writer.join(timeout=5)
        with self._read_lock:
            self._read.close()

    def _write_loop(self) -> None:
        """Every flush_interval (or when woken by flush/close), drain the queue into one transaction.

        One wake-up per interval, not one per request: a busy server's request threads never
        trade the GIL with this thread for each prediction.
        """
        conn = _connect(self.path)
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            batch, events, stop = [], [], False
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    batch.extend(item)
            if batch:
                self._insert(conn, batch)
            for e in events:
                e.set()
            if stop:
                conn.close()
                return

    def _insert(self, conn: sqlite3.Connection, rows: list[tuple]) -> None:
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
                break
            except sqlite3.OperationalError as e:  # busy beyond the timeout: retry, then say so
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if attempt == 4:
                    log.error("prediction log %s: %d rows not written (%s)", self.path, len(rows), e)
                    return
                time.sleep(0.05 * (attempt + 1))
        self._inserted += len(rows)
        if self._inserted >= 1000:
            self._inserted = 0
            self.prune(conn)

    def prune(self, conn: "sqlite3.Connection | None" = None) -> int:
        own = conn is None
        conn = conn or _connect(self.path)
        try:
            cur = conn.execute(
                "DELETE FROM predictions WHERE rowid <= (SELECT MAX(rowid) FROM predictions) - ? OR ts < ?",
                (self.retention_rows, time.time() - self.retention_days * 86400),
            )
            return cur.rowcount
        finally:
            if own:
                conn.close()

    # ------------------------------------------------------------------ reading (any worker)

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._read_lock:
            return self._read.execute(sql, args).fetchall()

    def get(self, request_id: str, idx: int = 0) -> "dict | None":
        rows = self._query("SELECT request_id, idx, ts, model_name, model_version, class_id, confidence, "
                           "mean_pixel, input_sha256, true_label FROM predictions WHERE request_id = ? AND idx = ?",
                           (request_id, idx))
        if not rows:
            return None
        keys = ("request_id", "index", "ts", "model_name", "model_version", "class_id", "confidence", "mean_pixel",
                "input_sha256", "true_label")
        return dict(zip(keys, rows[0]))

    def set_feedback(self, request_id: str, idx: int, true_label: int) -> bool:
        with self._read_lock:
            cur = self._read.execute("UPDATE predictions SET true_label = ?, feedback_ts = ? "
                                     "WHERE request_id = ? AND idx = ?", (true_label, time.time(), request_id, idx))
        return cur.rowcount > 0

    def recent(self, n: int, model_version: "str | None" = None) -> dict:
        """The last n predictions (all workers): class ids, confidences, mean pixels as arrays."""
        where, args = ("WHERE model_version = ?", (model_version, n)) if model_version else ("", (n,))
        rows = self._query(f"SELECT class_id, confidence, mean_pixel FROM predictions {where} "
                           "ORDER BY ts DESC LIMIT ?", args)
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
        return {"class_id": arr[:, 0].astype(int), "confidence": arr[:, 1], "mean_pixel": arr[:, 2]}

    def recent_feedback(self, n: int) -> dict:
        rows = self._query("SELECT class_id, true_label FROM predictions WHERE feedback_ts IS NOT NULL "
                           "ORDER BY feedback_ts DESC LIMIT ?", (n,))
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        return {"predicted": arr[:, 0], "true": arr[:, 1]}

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM predictions")[0][0])
