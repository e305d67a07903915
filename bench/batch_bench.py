"""`fmnist batch` against the in-process ceiling and the HTTP path, on the same model in one run.

    python bench/batch_bench.py [--model smallcnn] [--pictures 1000]

1. in-process ceiling: ONNX Runtime over the 10,000 test images in batches of 64 on every core;
2. `fmnist batch` on the test-set IDX file (end to end, as a user runs it, and its classification loop);
3. the HTTP path: `fmnist serve` (2 loop workers) loaded by wrk with one 28x28 PNG per request (c=16)
   and with 64 per request (c=4), images/s;
4. pictures: the first N test images rendered by `fmnist.pictures.styles` in the benchmark's styles (PNG and
   JPEG, 64-360 px) in a folder: `fmnist batch` with 1 and with 2 decoding processes, and the decode and
   convert cost per picture in one process;
5. peak memory (max RSS of the `fmnist batch` process) on 10,000 and 60,000 images (.npy).
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def ceiling(model: str, x: np.ndarray) -> float:
    from fmnist.batch.job import load_model
    from fmnist.config import cpu_count

    served = load_model(model, str(REPO / "models"), cpu_count())
    served.classify(x[:640])
    t0 = time.perf_counter()
    served.classify(x)
    return len(x) / (time.perf_counter() - t0)


def run_batch(args: list, cwd: Path) -> tuple[float, float]:
    """-> (seconds end to end, max RSS MB) of one `fmnist batch` process."""
    # a fresh parent per run: RUSAGE_CHILDREN's max RSS is then this run's alone
    wrapper = ("import resource, subprocess, sys, time; t0 = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode); "
               "sys.stderr.write(r.stderr)")
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "fmnist.cli", "batch", *map(str, args),
                          "--quiet"], cwd=cwd, capture_output=True, text=True)
    seconds, rss_kb, rc = out.stdout.split()
    if int(rc) not in (0, 1):
        raise RuntimeError(out.stderr)
    return float(seconds), int(rss_kb) / 1024


def loop_rate(model: str, source_spec: str, out: Path, workers: int = 0) -> float:
    """The job's own loop: producing the parts, without the start, the merge and the summary."""
    from fmnist.batch import job
    from fmnist.batch.sources import open_source

    src = open_source(source_spec)
    report = job.run(src, job.Options(model=model, registry=str(REPO / "models"), out=str(out), progress=False,
                                      workers=workers))
    return len(src) / report.loop_seconds


def http_rates(model: str, png: bytes, tmp: Path) -> dict:
    import os

    import serve_bench as sb

    port = sb.free_port()
    env = {**os.environ, "FMNIST_MODELS": str(REPO / "models"), "FMNIST_PREDICTION_LOG": str(tmp / "p.sqlite")}
    proc, _ = sb.start([sys.executable, "-m", "fmnist.cli", "serve", "--model", model, "--host", "127.0.0.1",
                        "--port", str(port), "--workers", "2", "--quiet"], port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        one, many = sb.wrk_script(png, tmp / "one.lua"), sb.wrk_script(png, tmp / "many.lua", images=64)
        sb.run_wrk(url, one, 4, 2)
        r1 = sb.run_wrk(url, one, 16, 10)
        r64 = sb.run_wrk(url, many, 4, 10)
    finally:
        sb.stop(proc)
    return {"one per request": r1["rps"], "64 per request": r64["rps"] * 64}


def pictures_folder(ds, n: int, d: Path) -> Path:
    from fmnist.pictures import styles
    from tests.images import encode

    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        style = styles.STYLE_NAMES[i % len(styles.STYLE_NAMES)]
        pic = styles.render(ds.test_images[i], int(ds.test_labels[i]), style, styles.image_rng(3, i, style))
        fmt = "JPEG" if i % 2 else "PNG"
        (d / f"{i:05d}.{fmt.lower()}").write_bytes(encode(pic.convert("RGB"), fmt))
    return d


def picture_costs(folder: Path) -> tuple[float, float]:
    """Median decode and convert milliseconds per picture, one process (inference.pipeline's timings)."""
    from fmnist.inference import Limits, pipeline

    limits, timings = Limits(), []
    for p in sorted(folder.iterdir())[:300]:
        pipeline.preprocess(pipeline.decode([(p.name, p.read_bytes())], limits), "auto", timings)
    t = np.asarray([(d, c) for _, d, c, *_ in timings])
    return float(np.median(t[:, 0]) * 1e3), float(np.median(t[:, 1]) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smallcnn")
    ap.add_argument("--pictures", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5, help="alternating ceiling/loop measurements")
    a = ap.parse_args()
    from fmnist import data
    from tests.images import png

    ds = data.load(allow_download=False)
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    idx = ds.directory / "t10k-images-idx3-ubyte.gz"
    np.save(tmp / "10k.npy", ds.test_images)
    np.save(tmp / "60k.npy", ds.train_images)
    pairs = []  # (ceiling, loop) measured alternately: this machine's speed drifts between runs
    for i in range(a.repeat):
        pairs.append((ceiling(a.model, ds.test_images), loop_rate(a.model, str(tmp / "10k.npy"), tmp / f"l{i}.jsonl")))
    ratios = sorted(loop / top for top, loop in pairs)
    top, loop = sorted(pairs, key=lambda p: p[1] / p[0])[len(pairs) // 2]  # the pair with the median ratio
    end, _ = run_batch([idx, "--model", a.model, "--out", tmp / "idx.jsonl"], REPO)
    loop1 = loop_rate(a.model, str(tmp / "10k.npy"), tmp / "loop1.jsonl", workers=1)
    http = http_rates(a.model, png(ds.test_images[0]), tmp)
    print(f"model {a.model}; 10,000 test images; this machine's {len(__import__('os').sched_getaffinity(0))} CPUs; "
          f"loop / ceiling over {a.repeat} alternating runs: median {ratios[len(ratios) // 2]:.0%}, "
          f"range {ratios[0]:.0%}-{ratios[-1]:.0%} (the table: the median pair)\n")
    print("| path | images/s | of the ceiling |")
    print("|---|---:|---:|")
    print(f"| in-process ONNX Runtime, batch 64, all cores (ceiling) | {top:,.0f} | 100 % |")
    print(f"| `fmnist batch` loop (.npy), one process per core | {loop:,.0f} | {100 * loop / top:.0f} % |")
    print(f"| `fmnist batch` loop (.npy), one process on every core | {loop1:,.0f} | {100 * loop1 / top:.0f} % |")
    print(f"| `fmnist batch` on the IDX, end to end ({end:.1f} s: start, model, summary figure) | "
          f"{10_000 / end:,.0f} | {100 * 10_000 / end / top:.0f} % |")
    for name, rate in http.items():
        print(f"| HTTP, `fmnist serve` 2 workers, {name} | {rate:,.0f} | {100 * rate / top:.0f} % |")
    folder = pictures_folder(ds, a.pictures, tmp / "pictures")
    dec, conv = picture_costs(folder)
    print(f"\n{a.pictures:,} pictures (PNG and JPEG, 64-360 px, 8 styles): decode {dec:.2f} ms, convert {conv:.2f} ms "
          "per picture (median, one process)\n")
    print("| decoding processes | seconds | pictures/s |")
    print("|---:|---:|---:|")
    for w in (1, 2):
        s, _ = run_batch([folder, "--model", a.model, "--out", tmp / f"pics{w}.jsonl", "--workers", w], REPO)
        print(f"| {w} | {s:.1f} | {a.pictures / s:,.0f} |")
    print("\n| input | max RSS of `fmnist batch` |")
    print("|---|---:|")
    for name in ("10k", "60k"):
        _, rss = run_batch([tmp / f"{name}.npy", "--model", a.model, "--out", tmp / f"{name}.jsonl"], REPO)
        print(f"| {name} images (.npy, memory-mapped) | {rss:,.0f} MB |")


if __name__ == "__main__":
    main()
