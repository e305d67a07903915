"""A throwaway PostgreSQL server for the tests: Debian's initdb/pg_ctl in a temporary directory, on a
free loopback port, run as a non-root user (the `postgres` system user when the tests run as root,
which PostgreSQL refuses to be)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def pg_bin() -> "Path | None":
    """The directory of initdb/pg_ctl (tools/testdeps.py finds them on PATH or where Debian and PGDG keep
    them, /usr/lib/postgresql/N/bin), or None."""
    from tools.testdeps import find

    found = find("postgresql")
    return Path(found.path).parent if found.ok else None


class PgServer:
    def __init__(self, root: Path, port: int):
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
        self.root, self.port = Path(root), port
        self.data = self.root / "data"
        self.user = "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root
        self.url = f"postgresql://fmnist:secret@127.0.0.1:{port}/fmnist"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.bin / cmd[0]), *cmd[1:]]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> "PgServer":
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(self.root, self.user)
            os.chmod(self.root, 0o755)
            for parent in list(self.root.parents)[:-1]:  # postgres must reach the directory
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        pw = self.root / "pw"
        pw.write_text("secret\n")
        if self.user:
            shutil.chown(pw, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "fmnist", "--auth=scram-sha-256", f"--pwfile={pw}",
                  "-E", "UTF8", "--no-instructions")
        return self.start()

    def start(self) -> "PgServer":
        opts = f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} " \
               "-c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        if not getattr(self, "_db_made", False):
            self._createdb()
            self._db_made = True
        return self

    def _createdb(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://fmnist:secret@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE fmnist")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def query(self, sql: str, args=()) -> list:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            cur = c.execute(sql, args)
            return cur.fetchall() if cur.description is not None else []
