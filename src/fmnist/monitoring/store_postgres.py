"""The prediction log in PostgreSQL: one store for every replica (psycopg 3 and its connection pool).

`postgresql://user:password@host:port/dbname`; the password may instead come from PGPASSWORD or a
file (`prediction_log_password_file`, e.g. a mounted Kubernetes Secret). Every call has a bound:
connecting 3 s, a statement 5 s, waiting for a pooled connection 2 s; a failure is
`StoreUnavailable`, and the pool reconnects when the database returns.

Schema versions (table `fmnist_schema_version`) are applied under a transaction-scoped advisory
lock, so many pods starting at once apply each step exactly once:
  1. `predictions` with its indexes ((request_id, idx) primary key for feedback; ts; model_version
     and ts for the drift window; feedback_ts where set);
  2. the `replica` column;
  3. the `key_id` column (which API key asked; '' without keys);
  4. the `latency_ms` column (NULL for a shadow run).
  5. the `flag` column: "" (none), "unsure" or "not_a_garment" (NULL: logged before it existed).
Inserts are idempotent (ON CONFLICT on the primary key), so a batch retried after a lost commit
makes no duplicate rows.
"""

from __future__ import annotations

import time
from pathlib import Path

from fmnist.errors import InvalidValue
from fmnist.monitoring.store_common import READ_FIELDS, Queries, StoreUnavailable, labelled, low_rows, window

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS predictions (
        id            BIGSERIAL,
        request_id    TEXT             NOT NULL,
        idx           INTEGER          NOT NULL,
        ts            DOUBLE PRECISION NOT NULL,
        model_name    TEXT             NOT NULL,
        model_version TEXT             NOT NULL,
        class_id      SMALLINT         NOT NULL,
        confidence    REAL             NOT NULL,
        mean_pixel    REAL             NOT NULL,
        input_sha256  TEXT             NOT NULL,
        image         BYTEA,
        true_label    SMALLINT,
        feedback_ts   DOUBLE PRECISION,
        PRIMARY KEY (request_id, idx)
    );
    CREATE INDEX IF NOT EXISTS predictions_id ON predictions (id);
    CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
    CREATE INDEX IF NOT EXISTS predictions_version_ts ON predictions (model_version, ts);
    CREATE INDEX IF NOT EXISTS predictions_feedback ON predictions (feedback_ts) WHERE feedback_ts IS NOT NULL;
    """,
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS replica TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS key_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS latency_ms REAL",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS flag TEXT",
]
_LOCK_ID = 0x666D6E697374  # "fmnist": the advisory lock that serialises schema changes
_INSERT = ("INSERT INTO predictions (request_id, idx, ts, replica, model_name, model_version, class_id, confidence, "
           "mean_pixel, input_sha256, image, key_id, latency_ms, flag) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
           "ON CONFLICT (request_id, idx) DO UPDATE SET ts = EXCLUDED.ts, replica = EXCLUDED.replica, "
           "model_name = EXCLUDED.model_name, model_version = EXCLUDED.model_version, class_id = EXCLUDED.class_id, "
           "confidence = EXCLUDED.confidence, mean_pixel = EXCLUDED.mean_pixel, "
           "input_sha256 = EXCLUDED.input_sha256, image = EXCLUDED.image, key_id = EXCLUDED.key_id, "
           "latency_ms = EXCLUDED.latency_ms, flag = EXCLUDED.flag")
_Q = Queries("%s")


class PostgresBackend:
    kind = "postgresql"

    def __init__(self, url: str, password_file: "str | None" = None, pool_size: int = 4):
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict, make_conninfo
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise InvalidValue("a postgresql:// prediction log needs psycopg: pip install 'fmnist[postgres]'") from None
        self._errors = (psycopg.Error, TimeoutError, OSError)
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as e:
            raise InvalidValue(f"prediction log URL is not a valid PostgreSQL URL: {e}") from None
        if password_file and "password" not in params:
            params["password"] = Path(password_file).read_text().strip()
        self._where = f"{params.get('user', '')}@{params.get('host', 'localhost')}:{params.get('port', 5432)}" \
                      f"/{params.get('dbname', '')}"  # never the password
        conninfo = make_conninfo(**{"connect_timeout": 3, "application_name": "fmnist", **params,
                                    "options": "-c statement_timeout=5000"})
        self.pool = ConnectionPool(conninfo, min_size=1, max_size=pool_size, timeout=2.0, open=False,
                                   name="fmnist-store")
        self.pool.open(wait=False)

    def describe(self) -> str:
        return f"postgresql://{self._where}"

    def _run(self, fn):
        """fn(connection) in a pooled connection's transaction; StoreUnavailable on any database failure."""
        try:
            with self.pool.connection() as conn:
                return fn(conn)
        except self._errors as e:
            raise StoreUnavailable(f"PostgreSQL {self._where}: {str(e).strip() or e.__class__.__name__}") from None

    def ensure_schema(self) -> None:
        def migrate(conn):
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                cur.execute("CREATE TABLE IF NOT EXISTS fmnist_schema_version (version INTEGER NOT NULL)")
                cur.execute("SELECT MAX(version) FROM fmnist_schema_version")
                version = cur.fetchone()[0] or 0
                for v in range(version, len(MIGRATIONS)):
                    cur.execute(MIGRATIONS[v])
                if version < len(MIGRATIONS):
                    cur.execute("DELETE FROM fmnist_schema_version")
                    cur.execute("INSERT INTO fmnist_schema_version VALUES (%s)", (len(MIGRATIONS),))

        self._run(migrate)

    def insert(self, rows: list) -> None:
        def write(conn):
            with conn.cursor() as cur:
                cur.executemany(_INSERT, rows)

        self._run(write)

    def prune(self, retention_rows: int, retention_days: float) -> int:
        def delete(conn):
            with conn.cursor() as cur:
                cur.execute("DELETE FROM predictions WHERE id <= (SELECT MAX(id) FROM predictions) - %s OR ts < %s",
                            (retention_rows, time.time() - retention_days * 86400))
                return cur.rowcount

        return self._run(delete)

    def close(self) -> None:
        self.pool.close(timeout=2.0)

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, args=()) -> list:
        def query(conn):
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()

        return self._run(query)

    def get(self, request_id: str, idx: int) -> "dict | None":
        rows = self._query(_Q.get, (request_id, idx))
        return dict(zip(READ_FIELDS, rows[0])) if rows else None

    def set_feedback(self, request_id: str, idx: int, true_label: int, ts: float) -> bool:
        def update(conn):
            with conn.cursor() as cur:
                cur.execute(_Q.set_feedback,
                            (true_label, ts, request_id, idx))
                return cur.rowcount > 0

        return self._run(update)

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
