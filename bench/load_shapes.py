"""Every load shape of issue 32, before and after, in one run: closed loop at 16, 64 and 1,024 connections, and
open loop at 1x, 2x and 4x of capacity on the bare server and behind nginx.

    python bench/load_shapes.py --before DIR [--rounds 3] [--duration 6]

DIR: a git worktree of the earlier commit (`git worktree add /tmp/before <commit>`). Each round runs every shape
on both builds, alternating which goes first, so that a machine that drifts (this one does, by +-20 % within
minutes) slows both alike; the tables give the median over the rounds.

- Closed loop (wrk, one 28x28 test-set PNG per request): `fmnist serve` as `make run` starts it (2 loop workers),
  unpinned; capacity is the better of c=16 and c=64 (2xx/s) in the same round, and goodput at c=1,024 is its
  share of that.
- Open loop (bench/openloop.py, clients give up after 1 s): one worker pinned to CPU 0 (with nginx, nginx too),
  the generator on CPU 1; capacity is measured (wrk -c 64) right before each open-loop run of that round, and
  offered rates are multiples of it. Behind nginx each build has its own nginx config (fmnist.cluster).
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import overload_bench as ob
import serve_bench as sb

REPO = Path(__file__).resolve().parents[1]
CLOSED = (16, 64, 1024)


def wrk(port: int, script: Path, conc: int, duration: int) -> dict:
    r = sb.run_wrk(f"http://127.0.0.1:{port}", script, conc, duration)
    return {"answers": r["rps"], "ok": r["ok_rps"], "non2xx": r["non2xx"], "p50": r["p50_ms"], "p99": r["p99_ms"]}


def start_two_workers(tree: Path, tmp: Path, name: str) -> tuple:
    import os

    port = sb.free_port()
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "FMNIST_MODELS": str(REPO / "models"),
           "FMNIST_PREDICTION_LOG": str(tmp / f"{name}-closed.sqlite"), "FMNIST_LOG_REQUESTS": "false"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "fmnist.cli", "serve", "--model", "smallcnn", "--host", "127.0.0.1", "--port",
           str(port), "--workers", "2"]
    proc, _ = sb.start(cmd, port, env)
    return proc, port


def closed_round(trees: list, tmp: Path, script: Path, duration: int, out: dict) -> None:
    for name, tree in trees:
        proc, port = start_two_workers(tree, tmp, name)
        try:
            wrk(port, script, 16, 2)  # warm both workers
            rows = {c: wrk(port, script, c, duration) for c in CLOSED}
        finally:
            sb.stop(proc)
        cap = max(rows[16]["ok"], rows[64]["ok"])
        for c, r in rows.items():
            out.setdefault((name, c), []).append({**r, "share": r["ok"] / cap})
        print(f"  {name}: " + "; ".join(f"c={c} {r['ok']:,.0f} 2xx/s ({r['ok'] / cap:.0%}), {r['non2xx']} non-2xx, "
                                        f"p99 {r['p99']:.0f} ms" for c, r in rows.items()), flush=True)


def open_round(trees: list, tmp: Path, script: Path, duration: int, mults: list, out: dict) -> None:
    for name, tree in trees:
        for front_name in ("bare", "nginx"):
            proc, port = ob.start_server(tree, f"{name}-{front_name}", "smallcnn", tmp, [])
            front = None
            try:
                if front_name == "nginx":
                    front, port = ob.start_nginx(port, tmp, tree)
                ob.capacity(port, script, 2)  # warm
                for m in mults:
                    cap = ob.capacity(port, script, 4)["rps"]
                    r = ob.open_loop(port, m * cap, duration, 1.0, [])
                    ok = r["latency_ms"].get("2xx", {})
                    out.setdefault((name, front_name, m), []).append(
                        {"share": r["goodput_rps"] / cap, "goodput": r["goodput_rps"], "cap": cap,
                         "p99": ok.get("p99", float("nan")), "shed": r["shed_share"], "timeouts": r["timeout"],
                         "late": r["generator_late_ms"]["p99"]})
                    print(f"  {name} {front_name} {m:g}x: capacity {cap:,.0f}, goodput {r['goodput_rps']:,.0f} "
                          f"({r['goodput_rps'] / cap:.0%}), admitted p99 {ok.get('p99', float('nan')):.0f} ms, "
                          f"shed {r['shed_share']:.0%}, timeouts {r['timeout']}", flush=True)
            finally:
                if front is not None:
                    sb.stop(front)
                sb.stop(proc)


def med(rows: list, key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="a git worktree of the earlier commit")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=6, help="seconds per load run")
    p.add_argument("--multipliers", default="1,2,4")
    p.add_argument("--skip-open", action="store_true")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="load-shapes-"))
    script = sb.wrk_script(sb.test_png(), tmp / "png.lua")
    mults = [float(m) for m in a.multipliers.split(",")]
    closed: dict = {}
    opened: dict = {}
    for rnd in range(a.rounds):
        trees = [("before", Path(a.before)), ("after", REPO)]
        if rnd % 2:
            trees.reverse()
        print(f"round {rnd + 1}: closed loop", flush=True)
        closed_round(trees, tmp, script, a.duration, closed)
        if not a.skip_open:
            print(f"round {rnd + 1}: open loop", flush=True)
            open_round(trees, tmp, script, a.duration, mults, opened)
    print(f"\nClosed loop, 2 loop workers, unpinned; medians of {a.rounds} rounds, {a.duration} s each\n")
    print("| build | connections | answers/s | 2xx/s | goodput (of capacity) | non-2xx (median) | p50 | p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("before", "after"):
        for c in CLOSED:
            rows = closed[(name, c)]
            print(f"| {name} | {c:,} | {med(rows, 'answers'):,.0f} | {med(rows, 'ok'):,.0f} | {med(rows, 'share'):.0%} | "
                  f"{med(rows, 'non2xx'):,.0f} | {med(rows, 'p50'):.0f} ms | {med(rows, 'p99'):.0f} ms |")
    if opened:
        print(f"\nOpen loop, 1 worker on CPU 0 (nginx too), the generator on CPU 1; medians of {a.rounds} rounds\n")
        print("| build | front | offered | capacity req/s | goodput req/s | goodput (of capacity) | admitted p99 | "
              "shed | timeouts | generator late p99 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in ("before", "after"):
            for front in ("bare", "nginx"):
                for m in mults:
                    rows = opened[(name, front, m)]
                    print(f"| {name} | {front} | {m:g}x | {med(rows, 'cap'):,.0f} | {med(rows, 'goodput'):,.0f} | "
                          f"{med(rows, 'share'):.0%} | {med(rows, 'p99'):.0f} ms | {med(rows, 'shed'):.0%} | "
                          f"{med(rows, 'timeouts'):,.0f} | {med(rows, 'late'):.1f} ms |")


if __name__ == "__main__":
    main()
