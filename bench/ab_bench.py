"""Two checkouts of fmnist served alike and loaded alike, alternating, in one run: did a change cost throughput?

    git worktree add /tmp/before <rev>
    python bench/ab_bench.py /tmp/before . [--rounds 4] [--concurrency 16,64] [--duration 10]

Each checkout serves its own src/ and models/ (2 loop workers, `fmnist serve`), loaded by wrk with one real
28x28 PNG per request (bench/serve_bench.py's script) at each concurrency; the order alternates every round so
that a machine getting busier slows both alike. Not a test: figures depend on the machine (and on the noise:
compare the spread of one checkout's rounds before reading a difference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--duration", type=int, default=10)
    a = ap.parse_args()
    concs = [int(c) for c in a.concurrency.split(",")]
    tmp = Path(tempfile.mkdtemp())
    script = sb.wrk_script(sb.test_png(), tmp / "post.lua")
    builds = {"before": Path(a.before).resolve(), "after": Path(a.after).resolve()}
    rps: dict = {(b, c): [] for b in builds for c in concs}
    for rnd in range(a.rounds):
        for name in (("before", "after") if rnd % 2 == 0 else ("after", "before")):
            src, port = builds[name], sb.free_port()
            env = {**os.environ, "PYTHONPATH": str(src / "src"), "FMNIST_MODELS": str(src / "models"),
                   "FMNIST_PREDICTION_LOG": str(tmp / f"{name}-{rnd}.sqlite")}
            proc, _ = sb.start([sys.executable, "-m", "fmnist.cli", "serve", "--port", str(port), "--workers", "2",
                                "--quiet"], port, env)
            try:
                for c in concs:
                    r = sb.run_wrk(f"http://127.0.0.1:{port}", script, c, a.duration)
                    rps[name, c].append(r["rps"])
                    print(f"round {rnd} {name:6s} c={c:<4d} {r['rps']:8,.0f} req/s  p50 {r['p50_ms']:.1f} ms  "
                          f"p99 {r['p99_ms']:.1f} ms  errors {r['errors']} of {r['requests']:,}", flush=True)
            finally:
                sb.stop(proc)
    for c in concs:
        b, f = rps["before", c], rps["after", c]
        print(f"c={c}: before {statistics.mean(b):,.0f} req/s (spread {min(b):,.0f}-{max(b):,.0f}), after "
              f"{statistics.mean(f):,.0f} ({min(f):,.0f}-{max(f):,.0f}), "
              f"after/before {statistics.mean(f) / statistics.mean(b):.2f}")


if __name__ == "__main__":
    main()
