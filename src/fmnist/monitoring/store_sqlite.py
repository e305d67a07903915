"""The prediction log in SQLite: the embedded default for one machine (every worker and replica there
shares the file; WAL mode lets several processes write while others read).

Schema versions (table `schema_version`), applied in order inside one BEGIN IMMEDIATE transaction,
so processes starting together apply each step once:
  1. `predictions` (the original table and its indexes);
  2. the `replica` column (which server made the prediction);
  3. the `key_id` column (which API key asked for it; '' without keys);
  4. the `latency_ms` column (the request's time in the server when it was answered, less any time its worker spent
     on another model's group of the same batch; NULL for a shadow run).
  5. the `flag` column: "" (none), "unsure" or "not_a_garment" (NULL: logged before it existed).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from fmnist.monitoring.store_common import READ_FIELDS, Queries, StoreUnavailable, labelled, low_rows, window

# each a list of statements, run with execute() inside the migration's transaction (executescript()
# would COMMIT first and let another process migrate at the same time)
MIGRATIONS = [
    ["""
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
    )""",
     "CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts)",
     "CREATE INDEX IF NOT EXISTS predictions_feedback ON predictions (feedback_ts) WHERE feedback_ts IS NOT NULL"],
    ["ALTER TABLE predictions ADD COLUMN replica TEXT NOT NULL DEFAULT ''"],
    ["ALTER TABLE predictions ADD COLUMN key_id TEXT NOT NULL DEFAULT ''"],
    ["ALTER TABLE predictions ADD COLUMN latency_ms REAL"],
    ["ALTER TABLE predictions ADD COLUMN flag TEXT"],
]
_INSERT = ("INSERT OR REPLACE INTO predictions (request_id, idx, ts, replica, model_name, model_version, class_id, "
           "confidence, mean_pixel, input_sha256, image, key_id, latency_ms, flag) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_Q = Queries("?")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    # Switching a new file to WAL needs it to itself: while another process (a worker starting at the
    # same moment) holds a lock, SQLite answers "database is locked" at once, without waiting
    for attempt in range(50):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 49:
                conn.close()
                raise
            time.sleep(0.02 * (1 + attempt % 10))
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class SQLiteBackend:
    kind = "sqlite"

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read: "sqlite3.Connection | None" = None  # opened on first use (a locked file must not stop a worker)
        self._read_lock = threading.Lock()
        self._write: "sqlite3.Connection | None" = None  # the writer thread's own connection

    def describe(self) -> str:
        return str(self.path)

    def ensure_schema(self) -> None:
        try:
            conn = _connect(self.path)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite {self.path}: {e}") from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
            if version == 0 and conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'predictions'").fetchone():
                version = 1  # a log written before schema versions existed
            for v in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
            if version < len(MIGRATIONS):
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite {self.path}: {e}") from None
        finally:
            conn.close()

    def insert(self, rows: list) -> None:
        if self._write is None:
            try:
                self._write = _connect(self.path)
            except sqlite3.Error as e:
                raise StoreUnavailable(f"SQLite {self.path}: {e}") from None
        conn = self._write
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as e:  # busy beyond the timeout: retry, then say so
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if attempt == 4:
                    raise StoreUnavailable(f"SQLite {self.path}: {e}") from None
                time.sleep(0.05 * (attempt + 1))

    def prune(self, retention_rows: int, retention_days: float) -> int:
        return self._execute(
            "DELETE FROM predictions WHERE rowid <= (SELECT MAX(rowid) FROM predictions) - ? OR ts < ?",
            (retention_rows, time.time() - retention_days * 86400))

    def close(self) -> None:
        with self._read_lock:
            if self._read is not None:
                self._read.close()
        if self._write is not None:
            self._write.close()

    # ------------------------------------------------------------------ reading
    def _run(self, fn):
        """fn(the read connection), serialised; StoreUnavailable when SQLite fails (locked past its timeout)."""
        with self._read_lock:
            try:
                if self._read is None:
                    self._read = _connect(self.path)
                return fn(self._read)
            except sqlite3.Error as e:
                raise StoreUnavailable(f"SQLite {self.path}: {e}") from None

    def _query(self, sql: str, args=()) -> list:
        return self._run(lambda conn: conn.execute(sql, args).fetchall())

    def _execute(self, sql: str, args=()) -> int:
        """-> rows changed."""
        return self._run(lambda conn: conn.execute(sql, args).rowcount)

    def get(self, request_id: str, idx: int) -> "dict | None":
        rows = self._query(_Q.get, (request_id, idx))
        return dict(zip(READ_FIELDS, rows[0])) if rows else None

    def set_feedback(self, request_id: str, idx: int, true_label: int, ts: float) -> bool:
        return self._execute(_Q.set_feedback,
                             (true_label, ts, request_id, idx)) > 0

    def recent(self, n: int, model_version: "str | None") -> dict:
        return window(self._query(*_Q.recent_args(n, model_version)))

    def recent_feedback(self, n: int) -> dict:
        return labelled(self._query(_Q.recent_feedback, (n,)))

    def low_confidence(self, below: float, window: int, n: int) -> list:
        return low_rows(self._query(_Q.low_confidence, (window, below, n)))

    def since(self, name: str, ts: float, n: int) -> list:
        return self._query(_Q.since, (name, ts, n))

    def count(self) -> int:
        return int(self._query(_Q.count)[0][0])
