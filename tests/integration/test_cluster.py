"""`fmnist cluster` with a real nginx: load through it, kill -9 a replica and a worker, no failed requests."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fmnist.cluster import nginx_config
from tests.conftest import REPO, SHIPPED, free_port, needs, program
from tests.wrk import COUNT_NON200, pixels_script

NGINX, WRK = program("nginx"), program("wrk")
pytestmark = [pytest.mark.integration, needs("nginx", "wrk")]


def cli(*args, check=True, timeout=180, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "fmnist.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def test_generated_nginx_config_is_valid(tmp_path):
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, "127.0.0.1", free_port(), [free_port(), free_port()]))
    proc = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = conf.read_text()
    assert "proxy_next_upstream error timeout non_idempotent;" in text
    assert "client_max_body_size 10m" in text and "max_fails=1" in text


class _Upstream:
    """Stub replicas behind a real nginx: they count what reaches them and answer POST /answer/STATUS[/SECONDS]."""

    def __init__(self, n: int):
        import http.server
        import socketserver

        self.hits = hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                hits.append((self.server.server_address[1], self.headers.get("Authorization")))
                _, _, status, *pause = self.path.split("/")
                time.sleep(float(pause[0]) if pause else 0)
                body = b'{"error": {"code": "server_busy", "message": "full"}, "request_id": null}'
                self.send_response(int(status))
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.servers = [Server(("127.0.0.1", 0), Handler) for _ in range(n)]
        for u in self.servers:
            threading.Thread(target=u.serve_forever, daemon=True).start()
        self.ports = [u.server_address[1] for u in self.servers]

    def close(self):
        for u in self.servers:
            u.shutdown()


@contextlib.contextmanager
def _nginx(tmp_path, upstream_ports, **limits):
    """A real nginx with the config `fmnist cluster` writes over these ports -> post(path) -> (status, headers, body)."""
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir(exist_ok=True)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, "127.0.0.1", port, upstream_ports, **limits))
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"], stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx-health", timeout=1)
            break
        except OSError:
            time.sleep(0.05)

    def post(path):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"x", method="POST",
                                     headers={"Authorization": "Bearer fmk_0000abcd_" + "k" * 32})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    try:
        yield post
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


def test_nginx_passes_a_shed_or_limited_answer_on_and_retries_only_a_dead_replica(tmp_path):
    """Real nginx (the config `fmnist cluster` writes) over two upstreams that count what reaches them: a 503
    (a replica shedding load) or 429 (a key over its rate) reaches the client as it is, from one replica, the
    key passed through; a replica that is down is skipped; nginx's own per-address limit answers 429 in the
    API's error shape."""
    ups = _Upstream(2)
    try:
        with _nginx(tmp_path, [free_port()] + ups.ports, ip_rate=50, ip_burst=20) as post:  # the first: down
            for status in (503, 429, 503, 429):
                ups.hits.clear()
                code, headers, body = post(f"/answer/{status}")
                assert code == status and headers["Retry-After"] == "1" and b"server_busy" in body
                assert b'"full"' in body  # the replica's own answer, not nginx's @busy (its 503 is not intercepted)
                assert len(ups.hits) == 1 and ups.hits[0][1] == "Bearer fmk_0000abcd_" + "k" * 32, ups.hits
            # the per-address ceiling (here 50/s, burst 20): nginx itself answers 429, in the API's error shape
            answers = [post("/answer/200") for _ in range(60)]
            limited = [a for a in answers if a[0] == 429 and b"rate_limited" in a[2]]
            assert limited and all(a[1]["Retry-After"] == "1" and json.loads(a[2])["error"]["code"] == "rate_limited"
                                   for a in limited)
            assert all(a[0] in (200, 429) for a in answers)
    finally:
        ups.close()


def test_nginx_answers_503_at_once_when_every_replica_is_at_its_in_flight_limit(tmp_path):
    """With one request in flight allowed per replica and both replicas busy for a second, a third request is
    answered 503 + Retry-After by nginx at once (server_busy), never queued, and not logged; then all is served."""
    ups = _Upstream(2)
    try:
        with _nginx(tmp_path, ups.ports, inflight=1) as post, ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(post, "/answer/200/1.0") for _ in range(2)]
            time.sleep(0.3)
            t0 = time.monotonic()
            code, headers, body = post("/answer/200")
            assert time.monotonic() - t0 < 0.5  # at once, not after the slow ones
            assert code == 503 and headers["Retry-After"] == "1" and json.loads(body)["error"]["code"] == "server_busy"
            assert [f.result()[0] for f in slow] == [200, 200]
            assert post("/answer/200")[0] == 200
            assert len(ups.hits) == 3  # the refused one never reached a replica
        # a refusal writes nothing to the error log (a storm would write a line per refusal)
        log = (tmp_path / "nginx-error.log").read_text()
        assert "limiting connections" not in log and "no live upstreams" not in log, log
    finally:
        ups.close()


def _load(url, script, seconds, out):
    out["proc"] = subprocess.run([WRK, "-t", "2", "-c", "8", "-d", f"{seconds}s", "-s", str(script), "--timeout",
                                  "10s", url + "/predict"], capture_output=True, text=True)


def _failures(stdout):
    return int(re.search(r"NON200 (\d+)", stdout).group(1)), int(re.search(r"ERRORS (\d+)", stdout).group(1))


def _status(state):
    return json.loads(cli("cluster", "status", "--state-dir", str(state), "--json").stdout)


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_cluster_survives_killed_replica_and_worker(tmp_path):
    state = tmp_path / "cluster"
    port = free_port()
    # replicas use port+1.., so pick a port whose neighbours are free enough in practice
    # cwd: the replicas keep their prediction log (.fmnist/) there
    cli("cluster", "up", "--replicas", "2", "--workers", "2", "--port", str(port), "--model", str(SHIPPED),
        "--state-dir", str(state), "--detach", cwd=tmp_path)
    try:
        st = _status(state)
        assert st["load_balancer_ready"] and all(r["ready"] for r in st["replicas"]) and len(st["replicas"]) == 2
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url + "/ready") as r:
            assert json.loads(r.read())["model"]["name"] == "smallcnn"
        script = pixels_script(tmp_path / "load.lua", np.zeros((28, 28)), COUNT_NON200)

        # 1) kill -9 one replica's Gunicorn master in the middle of the load
        out = {}
        t = threading.Thread(target=_load, args=(url, script, 8, out))
        t.start()
        time.sleep(2.5)
        victim = st["replicas"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        t.join(timeout=60)
        non200, errors = _failures(out["proc"].stdout)
        assert non200 == 0 and errors == 0, out["proc"].stdout
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st2 = _status(state)
            r0 = next(r for r in st2["replicas"] if r["port"] == victim["port"])
            if r0["ready"] and r0["pid"] != victim["pid"]:
                break
            time.sleep(0.5)
        assert r0["ready"] and r0["pid"] != victim["pid"] and st2["restarts"] == 1, st2  # it came back

        # 2) kill -9 one Gunicorn worker of the other replica in the middle of the load
        other = next(r for r in st2["replicas"] if r["port"] != victim["port"])
        workers = _children(other["pid"])
        assert len(workers) == 2
        out = {}
        t = threading.Thread(target=_load, args=(url, script, 6, out))
        t.start()
        time.sleep(2)
        os.kill(workers[0], signal.SIGKILL)
        t.join(timeout=60)
        non200, errors = _failures(out["proc"].stdout)
        assert non200 == 0 and errors == 0, out["proc"].stdout
        deadline = time.monotonic() + 20
        while len(_children(other["pid"])) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_children(other["pid"])) == 2 and workers[0] not in _children(other["pid"])  # replaced
    finally:
        cli("cluster", "down", "--state-dir", str(state), check=False)
    assert not (state / "state.json").exists()
    bad = cli("cluster", "status", "--state-dir", str(state), check=False)
    assert bad.returncode == 2 and "no cluster is running" in bad.stderr
