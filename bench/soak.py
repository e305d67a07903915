"""Soak: a long run of mixed traffic against 2 loop workers; fails on a memory slope, a leak or a drift.

    python bench/soak.py [--minutes 30] [--clients 6] [--inject-leak BYTES] [--out docs/soak-run.md]

One `fmnist serve --workers 2` (loop workers, SQLite prediction log). `--clients` threads in this process
send, each as fast as answers come (keep-alive connections, re-opened when a hostile case closes one): 28x28
PNGs (multipart), JSON pixels and base64, /v2 tensors (JSON and binary), 12-megapixel phone JPEGs and
25-megapixel pictures of a few kB (multipart and JSON), /explain, every hostile body of
tests/integration/test_hostile_bodies.py, /feedback for answers given, and /metrics and /monitoring scrapes.
Every `--sample` seconds: each worker's resident memory (its floor and peak over the interval, read every
0.25 s), open files and threads, and p50/p99 of the 28x28 requests answered since the last sample.

Verdict, on the samples after the first fifth (warm-up): it fails when a worker's memory grows at more than
`--max-slope` MB/hour (least squares over the floors) or by more than `--max-growth` MB (mean of the last five
floors against the first five), a peak is over `--max-peak` MB above the floor, its open files grow by more
than 8 or its threads beyond its pools' lazily started ones, the 28x28 p99 of the last
five samples is over twice that of the first five (+5 ms), or any answer is a 5xx. `--inject-leak BYTES`
makes the server keep BYTES per request of its batched fast path (bench/leak/sitecustomize.py, loaded
through PYTHONPATH; nothing in fmnist changes), to show the soak catches a leak. Not a test: it takes half
an hour and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import serve_bench as sb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.httpprobe import open_fds, rss_kb, workers  # noqa: E402
from tests.images import encode, heavy_pictures, png  # noqa: E402
from tests.integration.test_hostile_bodies import CASES  # noqa: E402

V2 = "/v2/models/smallcnn/infer"


def _multipart(blob: bytes, name: str = "x.png") -> tuple[str, bytes]:
    head = b'--s\r\nContent-Disposition: form-data; name="image"; filename="' + name.encode() + b'"\r\n\r\n'
    body = head + blob + b"\r\n--s--\r\n"
    return "multipart/form-data; boundary=s", body


def requests_mix() -> list:
    """[(weight, kind, method, path, content type, body, headers)]: the traffic a soak sends."""
    from PIL import Image

    rng = np.random.default_rng(0)
    garments = [np.clip(rng.normal(90, 60, (28, 28)), 0, 255).astype(np.uint8) for _ in range(8)]
    phone = encode(Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8), "RGB"), "JPEG", quality=80)
    heavy = heavy_pictures()
    j = "application/json"
    out = []
    for g in garments:
        out.append((5, "small", "POST", "/predict", *_multipart(png(g)), {}))
        out.append((2, "small", "POST", "/predict", j, json.dumps({"pixels": g.tolist()}).encode(), {}))
        out.append((1, "small", "POST", "/predict", j, json.dumps({"image": base64.b64encode(png(g)).decode()}).encode(), {}))
        out.append((1, "v2", "POST", V2, j, json.dumps({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 28, 28],
                                                                    "data": g.reshape(-1).tolist()}]}).encode(), {}))
    head = json.dumps({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 28, 28],
                                   "parameters": {"binary_data_size": 784}}]}).encode()
    out.append((4, "v2", "POST", V2, "application/octet-stream", head + garments[0].tobytes(),
                {"Inference-Header-Content-Length": str(len(head))}))
    out.append((1, "photo", "POST", "/predict", *_multipart(phone, "phone.jpg"), {}))
    for name, blob in heavy.items():
        out.append((0.3, "heavy", "POST", "/predict", *_multipart(blob, name), {}))
        out.append((0.3, "heavy", "POST", "/predict", j, json.dumps({"image": base64.b64encode(blob).decode()}).encode(), {}))
    out.append((0.5, "explain", "POST", "/explain", *_multipart(png(garments[1])), {}))
    for case in CASES:
        out.append((0.25, "hostile", *case[1:6]))
    out.append((1, "scrape", "GET", "/metrics", None, b"", {}))
    out.append((1, "scrape", "GET", "/monitoring", None, b"", {}))
    out.append((1, "probe", "GET", "/health", None, b"", {}))
    return out


class Client(threading.Thread):
    def __init__(self, port: int, mix: list, stop: threading.Event, log: list, seed: int):
        super().__init__(daemon=True)
        self.port, self.mix, self.stop, self.log = port, mix, stop, log
        self.rng = random.Random(seed)
        self.weights = [m[0] for m in mix]
        self.conn = None
        self.recent: list = []  # request ids of answers given, for /feedback

    def _send(self, method, path, ctype, body, headers):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                hdrs = {**headers, **({"Content-Type": ctype} if ctype else {})}
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    return 0, b""
        return 0, b""

    def run(self):
        while not self.stop.is_set():
            if self.recent and self.rng.random() < 0.05:
                rid = self.recent.pop()
                kind, req = "feedback", ("POST", "/feedback", "application/json",
                                         json.dumps({"request_id": rid, "label": self.rng.randrange(10)}).encode(), {})
            else:
                m = self.rng.choices(self.mix, self.weights)[0]
                kind, req = m[1], m[2:]
            t0 = time.perf_counter()
            status, data = self._send(*req)
            self.log.append((time.monotonic(), kind, status, time.perf_counter() - t0))
            if kind == "small" and status == 200 and len(self.recent) < 50:
                self.recent.append(json.loads(data)["request_id"])


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def sample(pids: list, seconds: float) -> dict:
    """{pid: (floor RSS MB, peak RSS MB, open files, threads)} over `seconds`, RSS read every 0.25 s: the
    floor is what a worker keeps between pictures (a leak raises it), the peak what one decode adds."""
    rss: dict = {p: [] for p in pids}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for p in pids:
            rss[p].append(rss_kb(p) / 1024)
        time.sleep(0.25)
    return {p: (min(rss[p]), max(rss[p]), open_fds(p), _threads(p)) for p in pids}


def slope_mb_per_hour(ts: list, values: list) -> float:
    t = np.asarray(ts) / 3600.0
    return float(np.polyfit(t - t[0], values, 1)[0]) if len(t) > 2 else 0.0


def verdict(samples: list, log: list, args) -> tuple[list, list]:
    """(problems, per-worker summary lines) over the samples after warm-up."""
    steady = samples[len(samples) // 5:]
    problems, lines = [], []
    for pid in steady[0][1]:
        ts = [s[0] for s in steady]
        rss = [s[1][pid][0] for s in steady]
        peak = max(s[1][pid][1] for s in steady)
        fds = [s[1][pid][2] for s in steady]
        threads = [s[1][pid][3] for s in steady]
        slope = slope_mb_per_hour(ts, rss)
        growth = float(np.mean(rss[-5:]) - np.mean(rss[:5]))
        lines.append(f"worker {pid}: RSS floor {min(rss):.0f}-{max(rss):.0f} MB (peak {peak:.0f}), slope {slope:+.1f} MB/h, "
                     f"growth {growth:+.1f} MB; open files {min(fds)}-{max(fds)}; threads {min(threads)}-{max(threads)}")
        if slope > args.max_slope:
            problems.append(f"worker {pid}: memory grows {slope:.1f} MB/h (limit {args.max_slope})")
        if growth > args.max_growth:
            problems.append(f"worker {pid}: memory grew {growth:.1f} MB (limit {args.max_growth})")
        if max(fds) - min(fds) > 8:
            problems.append(f"worker {pid}: open files {min(fds)} -> {max(fds)}")
        if max(threads[-5:]) > max(threads[:5]) + 1:  # pools start their threads lazily, up to their size
            problems.append(f"worker {pid}: threads grew {max(threads[:5])} -> {max(threads[-5:])}")
        if peak > rss[0] + args.max_peak:
            problems.append(f"worker {pid}: a peak of {peak:.0f} MB, over {args.max_peak} MB above its floor")
    p99 = [s[2] for s in steady if s[2] is not None]
    if len(p99) >= 10 and np.mean(p99[-5:]) > 2 * np.mean(p99[:5]) + 5:
        problems.append(f"28x28 p99 drifted {np.mean(p99[:5]):.1f} -> {np.mean(p99[-5:]):.1f} ms")
    errors = [e for e in log if e[2] >= 500 and e[2] != 503]
    if errors:
        problems.append(f"{len(errors)} answers were 5xx: {sorted({(k, s) for _, k, s, _ in errors})}")
    return problems, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--max-slope", type=float, default=20.0, help="MB/hour a worker's memory may grow")
    ap.add_argument("--max-growth", type=float, default=32.0, help="MB a worker's memory may grow over the run")
    ap.add_argument("--max-peak", type=float, default=480.0,
                    help="MB a worker may hold above its floor while decoding (~16 B a pixel of decode_pixels, 25 MP)")
    ap.add_argument("--inject-leak", type=int, default=0, metavar="BYTES", help="keep BYTES per fast-path request")
    ap.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = ap.parse_args()

    mix = requests_mix()
    tmp = Path(tempfile.mkdtemp(prefix="fmnist-soak-"))
    port = sb.free_port()
    env = {**os.environ, "FMNIST_MODELS": str(REPO / "models"), "FMNIST_PREDICTION_LOG": str(tmp / "p.sqlite"),
           "FMNIST_LOG_REQUESTS": "false"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if args.inject_leak:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "bench" / "leak"), env.get("PYTHONPATH", "")])
        env["FMNIST_SOAK_LEAK_BYTES"] = str(args.inject_leak)
    proc, _ = sb.start([sys.executable, "-m", "fmnist.cli", "serve", "--model", "smallcnn", "--host", "127.0.0.1",
                        "--port", str(port), "--workers", "2"], port, env)
    pids = workers(proc.pid)
    stop, log = threading.Event(), []
    clients = [Client(port, mix, stop, log, seed) for seed in range(args.clients)]
    samples = []  # (t, sample(), p99 ms of 28x28 since the last sample, p50, answers)
    t_start = time.monotonic()
    end = t_start + args.minutes * 60
    for c in clients:
        c.start()
    seen = 0
    report = [f"soak: {args.minutes:g} min, {args.clients} clients, 2 loop workers"
              + (f", injected leak {args.inject_leak} B/request" if args.inject_leak else "")]
    print(report[0], flush=True)
    try:
        while time.monotonic() < end:
            rss = sample(pids, args.sample)
            if workers(proc.pid) != pids:
                report.append(f"a worker was replaced: {pids} -> {workers(proc.pid)}")
                break
            now, window = time.monotonic(), log[seen:]
            seen += len(window)
            small = sorted(e[3] * 1000 for e in window if e[1] == "small" and e[2] == 200)
            p99 = small[int(0.99 * (len(small) - 1))] if small else None
            p50 = small[len(small) // 2] if small else None
            samples.append((now - t_start, rss, p99, p50, len(window)))
            if len(samples) % max(1, int(60 / args.sample)) == 0 or len(samples) == 1:
                s = samples[-1]
                line = (f"{s[0] / 60:5.1f} min  {s[4] / args.sample:6.0f} req/s  28x28 p50 {p50 or 0:6.1f} ms "
                        f"p99 {p99 or 0:6.1f} ms  "
                        + "  ".join(f"{pid}: {v[0]:.0f}/{v[1]:.0f} MB {v[2]} fds {v[3]} thr" for pid, v in s[1].items()))
                print(line, flush=True)
                report.append(line)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=70)
        sb.stop(proc)
    kinds: dict = {}
    for _, kind, status, _ in log:
        kinds.setdefault(kind, {}).setdefault(status, 0)
        kinds[kind][status] += 1
    report.append(f"{len(log)} requests: " + "; ".join(f"{k} {dict(sorted(v.items()))}" for k, v in sorted(kinds.items())))
    problems, lines = verdict(samples, log, args) if len(samples) >= 10 else (["too few samples"], [])
    report += lines
    report.append("FAIL: " + "; ".join(problems) if problems else "PASS: no slope, leak or drift")
    print("\n".join(report[-len(lines) - 2:]))
    if args.out:
        args.out.write_text("```\n" + "\n".join(report) + "\n```\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
