"""The shared prediction log on a real PostgreSQL (Debian's initdb/pg_ctl, a throwaway cluster on a free
loopback port): schema versions, idempotent writes, two servers sharing it, a kill -9, an outage
under load, and many writers. Skipped, saying why, where PostgreSQL or psycopg is missing."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.conftest import free_port, needs, program, running_server
from tests.pg import PgServer
from tests.wrk import pixels_script

WRK = program("wrk")
pytestmark = [
    pytest.mark.integration,
    needs("postgresql"),
    pytest.mark.skipif(__import__("importlib").util.find_spec("psycopg") is None,
                       reason="needs psycopg (pip install .[postgres])"),
]
PIXELS = json.dumps({"pixels": [[0] * 28] * 28}).encode()
COUNT = r"""
function init(args) ok = 0; bad = 0 end
function response(status, headers, body) if status == 200 then ok = ok + 1 else bad = bad + 1 end end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  io.write("OK " .. o .. "\nBAD " .. b .. "\nP99 " .. latency:percentile(99) .. "\n")
  io.write("ERRORS " .. (summary.errors.connect + summary.errors.read + summary.errors.write
                        + summary.errors.status + summary.errors.timeout) .. "\n")
end
"""


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    server = PgServer(tmp_path_factory.mktemp("pg") / "cluster", free_port()).init()
    yield server
    server.stop("immediate")


@pytest.fixture
def fresh(pg):
    """An empty prediction log for each test."""
    pg.query("DROP TABLE IF EXISTS predictions, fmnist_schema_version")
    return pg


def _row(i: int, replica: str = "a"):
    return (f"r{i}", 0, time.time(), replica, "smallcnn", "1", i % 10, 0.9, 0.3, "0" * 64, None, "0000abcd", 2.5,
            "unsure" if i % 7 == 0 else "")


def _post(url: str, path: str, body: bytes, timeout: float = 10) -> "tuple[int, dict]":
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=10) as r:
        return json.loads(r.read())


def test_schema_is_versioned_safe_to_start_together_and_writes_are_idempotent(fresh):
    from fmnist.monitoring.store import open_store

    errors = []

    def start():
        try:
            open_store(fresh.url, flush_interval=0.01).close()
        except Exception as e:  # noqa: BLE001 (any failure is the test's finding)
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(8)]  # eight "pods" starting at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fresh.query("SELECT version FROM fmnist_schema_version") == [(5,)]
    store = open_store(fresh.url, flush_interval=0.01)
    rows = [_row(i) for i in range(500)]
    store.record(rows)
    store.record(rows[:100])  # the same keys again (a retried batch): no duplicates
    assert store.flush(5.0)
    assert store.count() == 500 and fresh.query("SELECT COUNT(DISTINCT (request_id, idx)) FROM predictions") == [(500,)]
    assert store.get("r7")["replica"] == "a" and store.get("r7")["key_id"] == "0000abcd" and store.set_feedback("r7", 0, 7)
    assert store.recent_feedback(10)["true"].tolist() == [7]
    assert store.recent(100)["replicas"] == 1
    assert store.recent(500)["flag"].count("unsure") == 72  # rows 0, 7, ..., 497
    plan = " ".join(r[0] for r in fresh.query("EXPLAIN SELECT * FROM predictions WHERE request_id = 'r1' AND idx = 0"))
    assert "Index" in plan  # feedback finds its row through the primary key
    store.close()


def test_a_version_1_log_is_upgraded(fresh, tmp_path):
    from fmnist.monitoring.store import open_store
    from fmnist.monitoring.store_postgres import MIGRATIONS
    from fmnist.monitoring.store_sqlite import MIGRATIONS as SQLITE_MIGRATIONS

    fresh.query(MIGRATIONS[0])
    fresh.query("INSERT INTO predictions (request_id, idx, ts, model_name, model_version, class_id, confidence, "
                "mean_pixel, input_sha256) VALUES ('old', 0, 1, 'm', '1', 3, 0.5, 0.2, 'x')")
    fresh.query("CREATE TABLE fmnist_schema_version (version INTEGER NOT NULL); INSERT INTO fmnist_schema_version VALUES (1)")
    store = open_store(fresh.url)
    assert store.get("old")["replica"] == "" and fresh.query("SELECT version FROM fmnist_schema_version") == [(5,)]
    assert store.get("old")["key_id"] == ""
    assert store.recent(10)["flag"] == [None]  # a row from before the flag existed
    store.close()
    path = tmp_path / "old.sqlite"  # a SQLite log from before schema versions
    with sqlite3.connect(path) as conn:
        for statement in SQLITE_MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO predictions (request_id, idx, ts, model_name, model_version, class_id, confidence, "
                     "mean_pixel, input_sha256) VALUES ('old', 0, 1, 'm', '1', 3, 0.5, 0.2, 'x')")
    store = open_store(str(path))
    assert store.get("old")["replica"] == "" and store.get("old")["key_id"] == "" and store.count() == 1
    assert store.recent(10)["flag"] == [None]
    store.close()


def test_two_servers_share_predictions_feedback_and_the_window(fresh, tmp_path):
    env = {"FMNIST_PREDICTION_LOG": fresh.url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", extra_env={**env, "FMNIST_REPLICA": "pod-a"}) as a, \
            running_server(tmp_path / "b", extra_env={**env, "FMNIST_REPLICA": "pod-b"}) as b:
        ids = []
        for i in range(60):
            srv = a if i % 2 == 0 else b
            ids.append((srv is a, _post(srv["url"], "/predict", PIXELS)[1]["request_id"]))
        for made_on_a, rid in ids:  # each label goes to the other server
            status, body = _post((b if made_on_a else a)["url"], "/feedback",
                                 json.dumps({"request_id": rid, "label": "T-shirt/top"}).encode())
            assert status == 200, body
        ma, mb = _get(a["url"], "/monitoring"), _get(b["url"], "/monitoring")
        assert ma["accuracy"]["n"] == mb["accuracy"]["n"] == 60
        assert ma["accuracy"]["accuracy"] == pytest.approx(mb["accuracy"]["accuracy"])
        assert ma["drift"]["window_size"] == mb["drift"]["window_size"] == 60 and ma["drift"]["replicas"] == 2
        assert ma["store"]["backend"] == "postgresql" and ma["store"]["ok"] and "secret" not in json.dumps(ma)
        first = ids[0][1]

        os.killpg(a["proc"].pid, signal.SIGKILL)  # kill -9 server A: its rows were already in the database
        a["proc"].wait(timeout=10)
    with running_server(tmp_path / "a", extra_env={**env, "FMNIST_REPLICA": "pod-a"}) as a2:
        status, body = _post(a2["url"], "/feedback", json.dumps({"request_id": first, "label": 1}).encode())
        assert status == 200 and body["label"] == "Trouser"
    assert fresh.query("SELECT COUNT(*), COUNT(DISTINCT replica) FROM predictions") == [(60, 2)]


def _dropped(metrics_text: str) -> float:
    """fmnist_prediction_log_dropped_total summed over the server's workers."""
    return sum(float(line.split()[-1]) for line in metrics_text.splitlines()
               if line.startswith("fmnist_prediction_log_dropped_total"))


def _wrk(url: str, script, seconds: int, conns: int = 8) -> dict:
    out = subprocess.run([WRK, "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "-s", str(script), "--timeout",
                          "5s", url + "/predict"], capture_output=True, text=True, timeout=seconds + 60).stdout
    vals = {k: int(re.search(rf"{k} (\d+)", out).group(1)) for k in ("OK", "BAD", "P99", "ERRORS")}
    return vals


@needs("wrk")
def test_an_outage_under_load_fails_no_prediction_and_writes_resume(fresh, tmp_path):
    script = pixels_script(tmp_path / "load.lua", np.zeros((28, 28)), COUNT)
    env = {"FMNIST_PREDICTION_LOG": fresh.url, "FMNIST_PREDICTION_LOG_BUFFER_ROWS": "500", "FMNIST_LOG_REQUESTS": "0"}
    with running_server(tmp_path, extra_env=env) as srv:
        url = srv["url"]
        before = _wrk(url, script, 3)
        fresh.stop("immediate")
        try:
            # Load in 2 s rounds until a worker's 500-row buffer overflowed (rows, not seconds: a slow machine
            # takes more rounds); at most 15 rounds.
            rounds = []
            while len(rounds) < 15:
                rounds.append(_wrk(url, script, 2))
                metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
                if _dropped(metrics) > 0:
                    break
            during = {k: sum(r[k] for r in rounds) for k in ("OK", "BAD", "ERRORS")}
            during["P99"] = max(r["P99"] for r in rounds)
            status, body = _post(url, "/feedback", json.dumps({"request_id": "x", "label": 1}).encode())
            health = _get(url, "/monitoring")["store"]
        finally:
            fresh.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _get(url, "/monitoring")["store"]["ok"]:
            time.sleep(0.5)
        count_after_outage = fresh.query("SELECT COUNT(*) FROM predictions")[0][0]
        dropped_before = _dropped(urllib.request.urlopen(url + "/metrics", timeout=10).read().decode())
        after = _wrk(url, script, 3)
        final, settle = None, time.monotonic() + 30  # the buffers drain: poll until the count stops growing
        while time.monotonic() < settle:
            time.sleep(0.5)
            now = fresh.query("SELECT COUNT(*), COUNT(DISTINCT (request_id, idx)) FROM predictions")[0]
            if now == final:
                break
            final = now
        # a worker that has not reconnected yet (each has its own connection and backoff) drops what overflows
        # its 500 rows, and counts it: every answered prediction is written or counted, none twice
        dropped_after = _dropped(urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()) - dropped_before
    print(f"outage: before {before}, during {during} in {len(rounds)} rounds, after {after}; dropped "
          f"{_dropped(metrics):.0f}; rows {count_after_outage} when the store came back, {final[0]} at the end "
          f"({dropped_after:.0f} dropped after)")
    assert before["BAD"] == before["ERRORS"] == 0 and during["BAD"] == during["ERRORS"] == 0, (before, during)
    assert during["P99"] <= 2 * max(before["P99"], 5000), (before, during)  # µs; 5 ms floor for a noisy machine
    assert status == 503 and body["error"]["code"] == "store_unavailable"
    assert not health["ok"] and health["error"]
    assert _dropped(metrics) > 0, rounds  # the load overflowed the buffers within 15 rounds
    assert count_after_outage >= before["OK"]  # what waited in the buffers was written when it came back
    assert final[0] == final[1], final  # no duplicates
    assert final[0] > count_after_outage and final[0] + dropped_after >= count_after_outage + after["OK"], (
        final, dropped_after)  # writes resumed; what is missing was counted as dropped


@needs("wrk")
def test_many_writers_lose_no_row(fresh, tmp_path):
    script = pixels_script(tmp_path / "load.lua", np.zeros((28, 28)), COUNT)
    env = {"FMNIST_PREDICTION_LOG": fresh.url, "FMNIST_LOG_REQUESTS": "0"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", workers=4, extra_env=env) as a, \
            running_server(tmp_path / "b", workers=4, extra_env=env) as b:
        results = {}
        threads = [threading.Thread(target=lambda s=s: results.update({s["url"]: _wrk(s["url"], script, 30)}))
                   for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.5)  # the last flush of every worker
        drops = [_dropped(urllib.request.urlopen(s["url"] + "/metrics", timeout=10).read().decode()) for s in (a, b)]
        rows = fresh.query("SELECT COUNT(*) FROM predictions")[0][0]
    made = sum(r["OK"] for r in results.values())
    lost_answers = sum(r["ERRORS"] for r in results.values())  # a timeout: predicted (and logged) or not
    print(f"{made} predictions by 2 servers x 4 workers in 30 s; {rows} rows in PostgreSQL; {results}")
    assert all(r["BAD"] == 0 for r in results.values()) and lost_answers <= 5, results
    in_flight = 2 * 8  # wrk stops with up to one request per connection sent and not counted
    assert sum(drops) == 0 and made <= rows <= made + lost_answers + in_flight


def test_low_confidence_rows_come_back_with_their_images(fresh):
    from fmnist.monitoring.store import open_store
    from tests.storecheck import check_low_confidence

    store = open_store(fresh.url, flush_interval=0.01)
    try:
        check_low_confidence(store)
    finally:
        store.close()
