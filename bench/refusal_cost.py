"""What one refusal costs on each path that refuses, against what one served request costs, in CPU time.

    python bench/refusal_cost.py [--duration 5]

Each path gets a load (wrk, 16 connections, one 28x28 PNG per request, pinned to CPU 1) of which (nearly) every
request is refused on that path; the refusing processes (one `fmnist serve` loop worker, or nginx) run on CPU 0,
and their CPU time (user + system, /proc) over the run is divided by the answers of each kind. Paths:

- served: a plain POST /predict answered 200 (the reference);
- loop, deadline passed: `X-Request-Timeout-Ms: 1` with 16 requests pipelined per connection: admission answers
  504 without starting them (the same check and write as the default deadline's 503);
- loop, bad key: a server with API keys, requests without one: 401 on the loop before the body is read;
- nginx, in flight: nginx (fmnist.cluster's config, one in flight allowed) whose one slot is held by a request to an
  upstream that never answers: every other request is answered 503 by limit_conn, in C;
- nginx, per address: nginx with `ip_rate` 1/s: 429 by limit_req, in C.
Where a path also served some requests, their cost (the served path's) is taken out first. Not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import overload_bench as ob
import serve_bench as sb

REPO = Path(__file__).resolve().parents[1]
SERVER_CPU, CLIENT_CPU = "0", "1"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (after the state field: 14th and 15th)
    return total / TICK


def tree(pid: int) -> list:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def lua(path: Path, png: bytes, headers: dict, pipeline: int = 1) -> Path:
    boundary = "refusalcostboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    hs = {"Content-Type": f"multipart/form-data; boundary={boundary}", **headers}
    lua_body = "".join(f"\\{b}" for b in body)
    heads = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in hs.items())
    req = (f'init = function(args) local r = wrk.format() req = string.rep(r, {pipeline}) end\n'
           f'request = function() return req end\n') if pipeline > 1 else ""
    path.write_text(f'wrk.method = "POST"\nwrk.body = "{lua_body}"\n{heads}{req}'
                    'done = function(s, l, r) io.write(string.format("TOTAL %d\\n", s.requests)) end\n')
    return path


def load(port: int, script: Path, duration: int, path: str = "/predict") -> str:
    return subprocess.run(["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c16", f"-d{duration}s", "-s", str(script),
                           "--timeout", "5s", f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                          check=True).stdout


def statuses(url: str, auth: "str | None" = None) -> dict:
    """POST /predict answers so far, by status (the server's own counter; with keys, read with one)."""
    head = ["-H", f"Authorization: Bearer {auth}"] if auth else []
    text = subprocess.run(["curl", "-s", *head, url + "/metrics"], capture_output=True, text=True).stdout
    out: dict = {}
    for m in re.finditer(r'fmnist_http_requests_total\{method="POST",route="/predict",status="(\d+)"\} ([\d.e+]+)', text):
        out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def measure_server(name, tmp, png, duration, args=(), headers=None, pipeline=1, auth=None):
    """One `fmnist serve` worker on CPU 0 (bench/overload_bench.py's), loaded by wrk -> (CPU s, answers by status)."""
    proc, port = ob.start_server(REPO, name, "smallcnn", tmp, list(args))
    url = f"http://127.0.0.1:{port}"
    try:
        script = lua(tmp / f"{name}.lua", png, headers or {}, pipeline)
        load(port, lua(tmp / "plain.lua", png, {}), 1)  # warm: the worker learns its cost per request
        pids = tree(proc.pid)
        before, cpu0 = statuses(url, auth), cpu_seconds(pids)
        load(port, script, duration)
        cpu, after = cpu_seconds(pids) - cpu0, statuses(url, auth)
    finally:
        sb.stop(proc)
    return cpu, {k: after.get(k, 0) - before.get(k, 0) for k in after}


def hold_upstream() -> tuple:
    """A port that accepts connections and never answers (an upstream whose one slot stays taken)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    held: list = []
    threading.Thread(target=lambda: [held.append(s.accept()) for _ in iter(int, 1)], daemon=True).start()
    return s, s.getsockname()[1]


def measure_nginx(name, tmp, png, duration, upstream: int, **limits) -> tuple:
    from fmnist.cluster import find_nginx, nginx_config

    state = tmp / f"nginx-{name}"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    port = sb.free_port()
    (state / "nginx.conf").write_text(nginx_config(state, "127.0.0.1", port, [upstream], **limits))
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, find_nginx(), "-c", str(state / "nginx.conf"), "-p", str(state),
                             "-g", "daemon off;"], start_new_session=True)
    try:
        for _ in range(100):
            if subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/nginx-health"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        script = lua(tmp / f"{name}.lua", png, {})
        if "inflight" in limits:  # take the one slot: this request waits for an upstream that never answers
            threading.Thread(target=lambda: subprocess.run(["curl", "-s", "-m", str(duration + 10), "-F", "image=@/dev/null",
                                                           f"http://127.0.0.1:{port}/predict"], capture_output=True),
                             daemon=True).start()
            time.sleep(0.3)
        pids = tree(proc.pid)
        cpu0 = cpu_seconds(pids)
        out = load(port, script, duration)
        cpu = cpu_seconds(pids) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return cpu, int(re.search(r"TOTAL (\d+)", out).group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="refusal-cost-"))
    png = sb.test_png()
    rows = []
    cpu, st = measure_server("served", tmp, png, a.duration)
    served_cost = cpu / st["200"]
    rows.append(("served: 200 from the loop worker", st["200"], served_cost))
    cpu, st = measure_server("deadline", tmp, png, a.duration, headers={"X-Request-Timeout-Ms": "1"}, pipeline=16)
    refused = st.get("504", 0)
    rows.append(("loop worker, deadline passed: 504 unstarted", refused,
                 (cpu - st.get("200", 0) * served_cost) / max(refused, 1)))
    keys = tmp / "keys.json"
    made = subprocess.run([sys.executable, "-m", "fmnist.cli", "keys", "create", "--file", str(keys), "--scopes",
                           "predict,monitor", "--rate", "0", "--image-rate", "0"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")}, check=True).stdout
    key = made.split()[0]  # printed once, first
    cpu, st = measure_server("badkey", tmp, png, a.duration, args=["--api-keys", str(keys)], auth=key)
    rows.append(("loop worker, no API key: 401 before the body", st.get("401", 0), cpu / max(st.get("401", 0), 1)))
    held, up = hold_upstream()
    cpu, n = measure_nginx("inflight", tmp, png, a.duration, up, inflight=1)
    rows.append(("nginx, in-flight limit: 503 by limit_conn", n, cpu / max(n, 1)))
    held.close()
    cpu, n = measure_nginx("perip", tmp, png, a.duration, sb.free_port(), ip_rate=1, ip_burst=1)
    rows.append(("nginx, per-address rate: 429 by limit_req", n, cpu / max(n, 1)))
    print(f"\nCPU time per answer, {a.duration} s of wrk -t1 -c16 each (refusing process on CPU {SERVER_CPU}, wrk on "
          f"CPU {CLIENT_CPU})\n")
    print("| path | answers | CPU per answer | share of a served request |\n|---|---:|---:|---:|")
    for name, n, cost in rows:
        print(f"| {name} | {n:,.0f} | {cost * 1e6:,.1f} µs | {cost / served_cost:.1%} |")


if __name__ == "__main__":
    main()
