"""Client-visible latency with and without a shadow rollout: does the candidate's copy of the traffic delay
production's answers?

    python bench/shadow_bench.py [--duration 10] [--conns 16]

A copy of the registry's smallcnn (versions 1 and 4) in a temporary directory; `fmnist serve` with 2 loop
workers follows it. wrk posts one 28x28 test-set PNG per request: first with no rollout, then during a
shadow rollout of version 1 (its gates set so that it never decides during the run), then again with none
(the machine's drift between the two quiet runs bounds the noise). Prints req/s, p50, p99 and how many images
the shadow thread saw or dropped. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serve_bench as sb

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--conns", type=int, default=16)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shadow-bench-"))
    registry = tmp / "models"
    for v in ("1", "4"):
        shutil.copytree(REPO / "models" / "smallcnn" / v, registry / "smallcnn" / v)
    port = sb.free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "FMNIST_PREDICTION_LOG": str(tmp / "log.sqlite"),
           "FMNIST_RELOAD_INTERVAL": "0.5"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "fmnist.cli", "serve", "--model", "smallcnn", "--registry", str(registry), "--host",
           "127.0.0.1", "--port", str(port), "--workers", "2", "--quiet"]
    script = sb.wrk_script(sb.test_png(), tmp / "png.lua")
    proc, _ = sb.start(cmd, port, env)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        sb.run_wrk(url, script, 4, 2)
        rows.append(("no rollout", sb.run_wrk(url, script, a.conns, a.duration)))
        subprocess.run([sys.executable, "-m", "fmnist.cli", "rollout", "start", "smallcnn", "1", "--shadow", "--gate",
                        "min_seconds=100000", "--registry", str(registry)], env=env, check=True, capture_output=True)
        time.sleep(2)  # every worker loads the candidate
        t0 = time.time()
        rows.append(("shadow of version 1", sb.run_wrk(url, script, a.conns, a.duration)))
        time.sleep(2)
        with sqlite3.connect(tmp / "log.sqlite") as db:
            shadowed = db.execute("SELECT COUNT(*) FROM predictions WHERE request_id LIKE '%@shadow' AND ts >= ?",
                                  (t0,)).fetchone()[0]
        subprocess.run([sys.executable, "-m", "fmnist.cli", "rollout", "abort", "smallcnn", "--registry", str(registry),
                        "--prediction-log", str(tmp / "log.sqlite")], env=env, check=True, capture_output=True)
        time.sleep(2)
        rows.append(("no rollout, again", sb.run_wrk(url, script, a.conns, a.duration)))
    finally:
        sb.stop(proc)
    print(f"2 loop workers, wrk -c {a.conns} for {a.duration} s, one 28x28 PNG per request\n")
    print("| run | req/s | p50 | p99 | errors |\n|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['errors']} |")
    answered = rows[1][1]["requests"]
    print(f"\nshadow: {shadowed:,} of {answered:,} answered requests also run by the candidate "
          f"({100 * shadowed / max(answered, 1):.0f} %); the rest dropped (its time budget, or a full queue)")


if __name__ == "__main__":
    main()
