"""Overload, open loop: what the server does when requests arrive faster than it can answer them.

    python bench/overload_bench.py [--before DIR] [--duration 10] [--timeout 1]

One `fmnist serve` worker pinned to CPU 0; the load generator pinned to CPU 1, so neither takes the
other's core. First its capacity: `wrk -t1 -c64` (closed loop) posting one 28x28 test-set PNG per request.
Then bench/openloop.py offers 1x, 2x and 4x that rate at a fixed arrival rate (clients give up after
--timeout s), and prints per run: goodput (200s per second, and as a share of capacity), p50/p99 of the
admitted (200) answers, the share answered 503/429 at once, timeouts and errors. `--before DIR` (a git
worktree of an earlier commit) runs the same against that server first; both get the same offered rates
(from the first server's capacity). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import serve_bench as sb

REPO = Path(__file__).resolve().parents[1]
SERVER_CPU, CLIENT_CPU = 0, 1


def start_server(tree: Path, name: str, model: str, tmp: Path, extra: list) -> tuple:
    port = sb.free_port()
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "FMNIST_MODELS": str(REPO / "models"),
           "FMNIST_PREDICTION_LOG": str(tmp / f"{name}.sqlite"), "FMNIST_LOG_REQUESTS": "false"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = ["taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "fmnist.cli", "serve", "--model", model,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *extra]
    proc, _ = sb.start(cmd, port, env)
    return proc, port


def start_nginx(worker_port: int, tmp: Path, tree: Path = REPO) -> tuple:
    """nginx with the config `fmnist cluster` of `tree` writes (one replica, max_conns 64), pinned to the server's
    CPU."""
    from fmnist.cluster import find_nginx

    state = tmp / f"nginx-{abs(hash(str(tree)))}"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    port = sb.free_port()
    conf = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from fmnist.cluster import "
                           "nginx_config; print(nginx_config(Path(sys.argv[1]), '127.0.0.1', int(sys.argv[2]), "
                           "[int(sys.argv[3])]))", str(state), str(port), str(worker_port)],
                          env={**os.environ, "PYTHONPATH": str(tree / "src")}, capture_output=True, text=True, check=True)
    (state / "nginx.conf").write_text(conf.stdout)
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), find_nginx(), "-c", str(state / "nginx.conf"), "-p",
                             str(state), "-g", "daemon off;"], start_new_session=True)
    import time
    import urllib.request

    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx-health", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


def capacity(port: int, script: Path, duration: int) -> dict:
    out = subprocess.run(["taskset", "-c", str(CLIENT_CPU), "wrk", "-t", "1", "-c", "64", "-d", f"{duration}s",
                          "-s", str(script), "--timeout", "5s", f"http://127.0.0.1:{port}/predict"],
                         capture_output=True, text=True, check=True).stdout
    import re

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99_ms": int(re.search(r"P99 (\d+)", out).group(1)) / 1000}


def open_loop(port: int, rate: float, duration: float, timeout: float, headers: list) -> dict:
    cmd = [sys.executable, str(REPO / "bench" / "openloop.py"), "--port", str(port), "--rate", str(rate),
           "--duration", str(duration), "--timeout", str(timeout), "--cpu", str(CLIENT_CPU)]
    for h in headers:
        cmd += ["--header", h]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def scrape_flood(port: int, n: int) -> float:
    """Seconds until n GET /metrics pipelined in one write are all answered."""
    import socket
    import time

    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * n)
        f = s.makefile("rb")
        for _ in range(n):
            assert f.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := f.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
    return time.monotonic() - t0


def row(name: str, mult: float, cap: float, r: dict) -> str:
    ok = r["latency_ms"].get("2xx", {})
    st = r["status"]
    shed = sum(v for k, v in st.items() if k in ("429", "503"))
    other = r["answered"] - st.get("200", 0) - shed
    return (f"| {name} | {mult:g}x | {r['rate']:,.0f} | {r['goodput_rps']:,.0f} ({100 * r['goodput_rps'] / cap:.0f} %) | "
            f"{ok.get('p50', float('nan')):.1f} ms | {ok.get('p99', float('nan')):.1f} ms | "
            f"{100 * r['shed_share']:.1f} % | {r['timeout']:,} | {r['error'] + other + r['unsent']:,} | "
            f"{r['generator_late_ms']['p99']:.1f} ms |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", help="a git worktree of an earlier commit, run first with the same offered rates")
    p.add_argument("--model", default="smallcnn")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--timeout", type=float, default=1.0, help="seconds a client waits before giving up")
    p.add_argument("--multipliers", default="1,2,4")
    p.add_argument("--header", action="append", default=[], help="NAME:VALUE sent with every open-loop request")
    p.add_argument("--scrapes", type=int, default=1000, help="GET /metrics pipelined in one write, after the load")
    p.add_argument("--nginx", action="store_true", help="also: nginx (the cluster's config, max_conns 64) in front of "
                   "the server, on the same CPU; its load multiples are of its own capacity")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="overload-bench-"))
    script = sb.wrk_script(sb.test_png(), tmp / "png.lua")
    trees = ([("before", Path(a.before))] if a.before else []) + [("now", REPO)]
    if a.nginx:
        trees += ([("before + nginx", Path(a.before))] if a.before else []) + [("now + nginx", REPO)]
    mults = [float(m) for m in a.multipliers.split(",")]
    cap = ncap = None
    lines, scrapes = [], []
    for name, tree in trees:
        proc, port = start_server(tree, name, a.model, tmp, [])
        front = None
        try:
            if name.endswith("nginx"):
                front, port = start_nginx(port, tmp, tree)
            capacity(port, script, 2)  # warm
            c = capacity(port, script, a.duration)
            if front:  # behind nginx: the first nginx run's capacity sets the offered rates of every nginx run
                ncap = ncap or c["rps"]
            else:
                cap = cap or c["rps"]
            own = ncap if front else cap
            print(f"{name}: capacity {c['rps']:,.0f} req/s (wrk -c 64, p99 {c['p99_ms']:.1f} ms)", flush=True)
            for m in mults:
                r = open_loop(port, m * own, a.duration, a.timeout, a.header)
                lines.append(row(name, m, own, r))
                print(lines[-1], flush=True)
                print("   ", json.dumps({k: r[k] for k in ("status", "timeout", "error", "unsent", "opened")}), flush=True)
            if a.scrapes and not front:
                took = scrape_flood(port, a.scrapes)
                scrapes.append(f"| {name} | {a.scrapes:,} | {took:.2f} s | {1000 * took / a.scrapes:.2f} ms |")
                print(scrapes[-1], flush=True)
        finally:
            if front is not None:
                sb.stop(front)
            sb.stop(proc)
    print(f"\n1 worker on CPU {SERVER_CPU}, the generator on CPU {CLIENT_CPU}; capacity {cap:,.0f} req/s; "
          f"{a.duration} s per run; clients give up after {a.timeout:g} s\n")
    print("| server | load | offered req/s | goodput (of capacity) | admitted p50 | admitted p99 | shed 503/429 | "
          "timeouts | other failures | generator late p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    if scrapes:
        print("\n| server | GET /metrics pipelined in one write | all answered after | per scrape |\n|---|---:|---:|---:|")
        print("\n".join(scrapes))


if __name__ == "__main__":
    main()
