"""Load-test `fmnist serve` with wrk and compare it with the seed-style baseline in the same run.

    python bench/serve_bench.py [--duration 10] [--out docs/benchmarks.md]

Starts each server on a free loopback port, posts one real 28x28 test-set PNG per request
(multipart field `image`) at concurrency 1, 16 and 64, and prints requests/s, p50, p99 and
errors; also ready time and worker RSS, and (when models/vgg exists) VGG through HTTP against
its in-process batch-64 throughput. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VGG_IMAGES = 64  # images per request in the VGG many-images run: the same batch as in-process
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_png() -> bytes:
    from fmnist import data
    from tests.images import png

    return png(data.load(allow_download=False).test_images[0])


def wrk_script(png: bytes, path: Path, images: int = 1) -> Path:
    """A wrk script posting `png` once (field `image`) or `images` times (repeated field `images`)."""
    boundary = "fmnistbenchboundary"
    field = "image" if images == 1 else "images"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"x.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png + b"\r\n"
    body = part * images + f"--{boundary}--\r\n".encode()
    lua_body = "".join(f"\\{b}" for b in body)
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{lua_body}"\n'
        f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))\n'
        "end\n"
    )
    return path


def run_wrk(url: str, script: Path, conc: int, duration: int) -> dict:
    threads = 1 if conc == 1 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{duration}s", "-s", str(script),
                          "--timeout", "5s", url + "/predict"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sock_errors = sum(int(v) for v in sock.groups()) if sock else 0
    p50 = int(re.search(r"P50 (\d+)", out).group(1)) / 1000
    p99 = int(re.search(r"P99 (\d+)", out).group(1)) / 1000
    return {"c": conc, "rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": non2xx + sock_errors, "requests": total,
            "non2xx": non2xx, "ok_rps": rps * (total - non2xx) / total if total else 0.0}


def start(cmd: list[str], port: int, env: dict) -> tuple[subprocess.Popen, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while time.monotonic() - t0 < 60:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, time.monotonic() - t0
        except urllib.error.HTTPError as e:
            if e.code in (404, 405):  # the baseline has no /ready: its port answering is all it offers
                return proc, time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)
    stop(proc)
    raise RuntimeError(f"{cmd} did not become ready")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def worker_rss_mb(master: subprocess.Popen) -> list[float]:
    """RSS of the Gunicorn workers: the master's children (`fmnist serve` execs Gunicorn in place)."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(master.pid)], capture_output=True, text=True).stdout
    return [int(v) / 1024 for v in out.split()]


def bench_server(name, cmd, port, env, script, duration, concs) -> dict:
    proc, ready = start(cmd, port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        run_wrk(url, script, 4, 2)  # warm every worker
        rows = [run_wrk(url, script, c, duration) for c in concs]
        rss = worker_rss_mb(proc)
    finally:
        stop(proc)
    return {"name": name, "ready_s": ready, "rows": rows, "rss_mb": rss}


def side_traffic(url: str, stop: threading.Event, counts: dict) -> None:
    """What issue 10 measured: 4 POST /feedback a second for unknown request ids (each waits ~1 s for
    the prediction log) and a GET /monitoring a second, each in its own thread so they overlap."""
    def one(path: str, body: "bytes | None") -> None:
        req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                r.read()
        except urllib.error.HTTPError as e:
            counts[e.code] = counts.get(e.code, 0) + 1
            return
        except OSError:
            counts["error"] = counts.get("error", 0) + 1
            return
        counts[200] = counts.get(200, 0) + 1

    n = 0
    while not stop.wait(0.25):
        n += 1
        body = json.dumps({"request_id": f"side-{n}", "label": 1}).encode()
        threading.Thread(target=one, args=("/feedback", body), daemon=True).start()
        if n % 4 == 0:
            threading.Thread(target=one, args=("/monitoring", None), daemon=True).start()


def bench_side_traffic(name, cmd, port, env, script, duration) -> dict:
    """/predict at c=16 quiet, then the same with side traffic: -> rows and ratios."""
    proc, _ = start(cmd, port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        run_wrk(url, script, 4, 2)
        quiet = run_wrk(url, script, 16, duration)
        halt, counts = threading.Event(), {}
        t = threading.Thread(target=side_traffic, args=(url, halt, counts))
        t.start()
        try:
            busy = run_wrk(url, script, 16, duration)
        finally:
            halt.set()
            t.join()
    finally:
        stop(proc)
    return {"name": name, "quiet": quiet, "busy": busy, "side": counts}


def in_process_batch64(model_dir: Path, seconds: float = 5.0) -> float:
    from fmnist.artifact import read_artifact
    from fmnist.inference import Predictor

    pred = Predictor(read_artifact(model_dir), "onnx", intra_op_threads=os.cpu_count())
    x = pred.normalize(np.zeros((64, 28, 28), np.uint8))
    pred.predict_batch(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pred.predict_batch(x)
        n += 64
    return n / (time.perf_counter() - t0)


def table(results: list[dict]) -> str:
    lines = ["| server | concurrency | requests/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---:|"]
    for res in results:
        for r in res["rows"]:
            lines.append(f"| {res['name']} | {r['c']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['errors']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--worker", choices=["loop", "gthread", "sync"], default="loop")
    ap.add_argument("--threads", type=int, default=2, help="threads per worker, for the gthread rows")
    ap.add_argument("--out", help="write the Markdown results here")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--matrix", action="store_true",
                    help="also: workers 1..CPUs x worker type x batching on/off at c=16 and 64 (the tuning table)")
    ap.add_argument("--side-traffic", action="store_true",
                    help="also: /predict at c=16 with slow side traffic (/feedback, /monitoring) vs quiet")
    ap.add_argument("--replicas", action="store_true", help="also: `fmnist cluster` with 1 vs 2 replicas behind nginx")
    ap.add_argument("--ceiling", action="store_true",
                    help="also: bare WSGI apps on the same Gunicorn settings (bench/ceiling_app.py): what is left "
                         "for Flask, monitoring and batching")
    ap.add_argument("--compare-model", help="also: the default server on this artifact directory, in the same run "
                                             "(e.g. models/smallcnn/4 against the baseline model smallcnn:1)")
    args = ap.parse_args()

    model = REPO / "models" / "smallcnn" / "1"
    tmp = Path(tempfile.mkdtemp())
    script = wrk_script(test_png(), tmp / "post.lua")
    concs = [1, 16, 64]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = []

    def serve(model_dir: Path, port: int, workers: int, worker: str, *extra: str) -> list:
        cmd = [sys.executable, "-m", "fmnist.cli", "serve", "--model", str(model_dir), "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--worker", worker, "--quiet", *extra]
        return cmd + (["--threads", str(args.threads)] if worker == "gthread" else [])

    def label(workers: int, worker: str) -> str:
        return f"{workers}w {worker}" + (f" x {args.threads}t" if worker == "gthread" else "")

    port = free_port()
    results.append(bench_server(f"fmnist serve (onnx, {label(args.workers, args.worker)}, batching)",
                                serve(model, port, args.workers, args.worker), port, env, script, args.duration, concs))
    if args.compare_model:
        port = free_port()
        other = Path(args.compare_model)
        results.append(bench_server(f"same, on {other.parent.name}:{other.name}",
                                    serve(other, port, args.workers, args.worker), port, env, script, args.duration,
                                    concs))
    port = free_port()
    results.append(bench_server("same, fast path off (every request through Flask)",
                                serve(model, port, args.workers, args.worker), port, {**env, "FMNIST_FAST_PATH": "0"},
                                script, args.duration, [16, 64]))
    if args.worker != "gthread":
        port = free_port()
        results.append(bench_server(f"same, Gunicorn's gthread worker ({label(args.workers, 'gthread')})",
                                    serve(model, port, args.workers, "gthread"), port, env, script, args.duration,
                                    concs))
    if not args.skip_baseline:
        port = free_port()
        cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "bench.baseline_app:app"]
        results.append(bench_server("seed-style baseline (Flask + gunicorn -w 2, torch, no batching)", cmd, port,
                                    {**env, "FMNIST_BASELINE_MODEL": str(model)}, script, args.duration, concs))

    vgg_line = ""
    vgg = REPO / "models" / "vgg"
    if vgg.is_dir():
        from fmnist.registry import resolve

        vgg_dir = resolve("vgg", REPO / "models").path
        in_proc = in_process_batch64(vgg_dir)
        port = free_port()
        cmd = serve(vgg_dir, port, args.workers, args.worker)
        # one image per request, then VGG_IMAGES images per request (field `images`): the HTTP work per
        # request is the same, the model work grows, so the share of time spent in the model rises
        script_many = wrk_script(test_png(), tmp / "post-many.lua", VGG_IMAGES)
        proc, _ = start(cmd, port, env)
        try:
            url = f"http://127.0.0.1:{port}"
            run_wrk(url, script, 4, 2)
            one = run_wrk(url, script, 64, args.duration)
            many = run_wrk(url, script_many, 4, args.duration)  # 2 requests per worker keep both busy
        finally:
            stop(proc)
        many_img = many["rps"] * VGG_IMAGES
        vgg_line = (f"VGG ({vgg_dir.name}): in-process ONNX Runtime batch 64 = {in_proc:,.0f} images/s; through HTTP, "
                    f"one image per request at c=64 = {one['rps']:,.0f} images/s ({100 * one['rps'] / in_proc:.0f} %), "
                    f"p99 {one['p99_ms']:.1f} ms, errors {one['errors']}; {VGG_IMAGES} images per request at c=4 = "
                    f"{many_img:,.0f} images/s ({100 * many_img / in_proc:.0f} %), p99 {many['p99_ms']:.1f} ms, "
                    f"errors {many['errors']}")

    if args.matrix:
        matrix = []
        cpus = os.cpu_count() or 1
        for workers in range(1, cpus + 2):
            for worker, batching in (("loop", True), ("loop", False), ("gthread", True), ("sync", False)):
                if workers > cpus and worker != "loop":
                    continue  # more workers than cores: only for the loop worker, whose model calls leave the GIL
                port = free_port()
                cmd = serve(model, port, workers, worker, *([] if batching else ["--no-batching"]))
                res = bench_server(f"{label(workers, worker)}, batching {'on' if batching else 'off'}", cmd, port,
                                   env, script, args.duration, [16, 64])
                matrix.append(res)
        results_matrix = table(matrix)
    if args.side_traffic:
        side_rows = ["| worker | quiet req/s | p99 ms | with side traffic req/s | p99 ms | kept | p99 ratio | "
                     "side answers |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for worker in ("loop", "gthread"):
            port = free_port()
            res = bench_side_traffic(label(args.workers, worker), serve(model, port, args.workers, worker), port, env,
                                     script, args.duration)
            q, b = res["quiet"], res["busy"]
            side_rows.append(f"| {res['name']} | {q['rps']:,.0f} | {q['p99_ms']:.2f} | {b['rps']:,.0f} | "
                             f"{b['p99_ms']:.2f} | {100 * b['rps'] / q['rps']:.0f} % | {b['p99_ms'] / q['p99_ms']:.2f}x | "
                             f"{res['side']} (errors {q['errors'] + b['errors']}) |")
        results_side = "\n".join(side_rows)
    if args.replicas:
        cluster_rows = []
        for replicas in (1, 2):
            port = free_port()
            state = tmp / f"cluster-{replicas}"
            up = [sys.executable, "-m", "fmnist.cli", "cluster", "up", "--replicas", str(replicas), "--port", str(port),
                  "--model", str(model), "--state-dir", str(state), "--detach"]
            subprocess.run(up, check=True, env=env, cwd=tmp, capture_output=True)
            try:
                url = f"http://127.0.0.1:{port}"
                run_wrk(url, script, 4, 2)
                cluster_rows.append({"name": f"nginx + {replicas} replica(s)",
                                     "rows": [run_wrk(url, script, c, args.duration) for c in (16, 64)]})
            finally:
                subprocess.run([sys.executable, "-m", "fmnist.cli", "cluster", "down", "--state-dir", str(state)],
                               env=env, cwd=tmp, capture_output=True)
        ratio = cluster_rows[1]["rows"][1]["rps"] / cluster_rows[0]["rows"][1]["rps"]
        results_cluster = table(cluster_rows) + f"\n\n2 replicas / 1 replica at c=64: {ratio:.2f}x"

    if args.ceiling:
        ceiling = []
        workers = {"loop": "fmnist.serving.http.worker.LoopWorker", "gthread": "gthread"}
        for name, target in (("bare WSGI hello (reads the body, fixed JSON)", "hello"),
                             ("bare WSGI predict (fast multipart, decode, ONNX Runtime, JSON; nothing else; "
                              "one model call per request)", "lean")):
            for worker, cls in workers.items():
                port = free_port()
                cmd = [sys.executable, "-m", "gunicorn", "-k", cls, "-w", str(args.workers), "--threads",
                       str(args.threads if worker == "gthread" else 1), "-b", f"127.0.0.1:{port}",
                       f"bench.ceiling_app:{target}"]
                ceiling.append(bench_server(f"{name}, {label(args.workers, worker)}", cmd, port,
                                            {**env, "FMNIST_BASELINE_MODEL": str(model)}, script, args.duration,
                                            [16, 64]))
        results_ceiling = table(ceiling)

    md = [table(results), ""]
    for res in results:
        rss = ", ".join(f"{v:.0f}" for v in res["rss_mb"])
        md.append(f"- {res['name']}: ready in {res['ready_s']:.2f} s; worker RSS {rss} MB")
    if vgg_line:
        md.append(f"- {vgg_line}")
    if args.matrix:
        md += ["", "### Workers x worker type x batching (c=16 and c=64)", "", results_matrix]
    if args.side_traffic:
        md += ["", "### /predict beside slow side traffic (4 /feedback + 1 /monitoring a second), c=16", "",
               results_side]
    if args.replicas:
        md += ["", "### Replicas behind nginx (`fmnist cluster`)", "", results_cluster]
    if args.ceiling:
        md += ["", "### Ceilings: bare WSGI apps on Gunicorn, same image", "",
               results_ceiling]
    text = "\n".join(md)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
