"""Which distributed engine runs `fmnist batch` beyond one machine: Dask distributed against Ray Data, on a
local cluster of 2 worker processes each, same model, same 10,000 test images in chunks of 512.

    python bench/engine_bench.py [--repeat 3]

For each engine: the time to start the local cluster, the time to classify the images (the model loaded
once per worker; answers collected on the driver) and the driver's and workers' memory. Needs both
engines installed (`pip install 'dask[distributed]' 'ray[data]'`). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = str(REPO / "models" / "smallcnn" / "4")
CHUNK = 512


def _classify(model_path: str, pixels: np.ndarray) -> np.ndarray:
    from fmnist.batch.job import load_model

    global _MODEL
    try:
        served = _MODEL
    except NameError:
        served = _MODEL = load_model(model_path, None, 1)
    return served.classify(pixels).argmax(1)


def _rss_mb(pids) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-p", ",".join(map(str, pids))], capture_output=True, text=True).stdout
    return sum(int(v) for v in out.split()) / 1024


def dask_run(x: np.ndarray) -> dict:
    import os

    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    started = time.perf_counter() - t0
    try:
        runs = []
        for _ in range(2):
            t1 = time.perf_counter()
            futs = [client.submit(_classify, MODEL, x[i:i + CHUNK], pure=False) for i in range(0, len(x), CHUNK)]
            labels = np.concatenate(client.gather(futs))
            runs.append(time.perf_counter() - t1)
        pids = list(client.run(os.getpid).values()) + [os.getpid()]
        rss = _rss_mb(pids)
    finally:
        client.close()
        cluster.close()
    return {"start_s": started, "first_s": runs[0], "warm_s": runs[1], "labels": labels, "rss_mb": rss}


class _RayClassifier:
    def __init__(self):
        from fmnist.batch.job import load_model

        self.served = load_model(MODEL, None, 1)

    def __call__(self, batch: dict) -> dict:
        return {"label": self.served.classify(np.stack(batch["data"]).astype(np.uint8)).argmax(1)}


def ray_run(x: np.ndarray) -> dict:
    import os

    import psutil
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO / "src")}})
    started = time.perf_counter() - t0
    try:
        runs = []
        for _ in range(2):
            t1 = time.perf_counter()
            ds = ray.data.from_numpy(x).map_batches(_RayClassifier, batch_size=CHUNK, concurrency=2, num_cpus=1)
            labels = np.concatenate([b["label"] for b in ds.iter_batches(batch_size=None)])
            runs.append(time.perf_counter() - t1)
        me = psutil.Process(os.getpid())
        pids = [p.pid for p in psutil.process_iter(["cmdline"]) if "ray" in " ".join(p.info["cmdline"] or [])]
        rss = _rss_mb(set(pids + [me.pid]))
    finally:
        ray.shutdown()
    return {"start_s": started, "first_s": runs[0], "warm_s": runs[1], "labels": labels, "rss_mb": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.parse_args()
    from fmnist import data

    x = data.load(allow_download=False).test_images
    results = {"Dask distributed": dask_run(x), "Ray Data": ray_run(x)}
    same = np.array_equal(results["Dask distributed"]["labels"], results["Ray Data"]["labels"])
    print(f"10,000 test images, chunks of {CHUNK}, a local cluster of 2 worker processes; answers identical: {same}\n")
    print("| engine | cluster start | first run | second run | images/s (second) | memory (driver + workers) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['start_s']:.1f} s | {r['first_s']:.2f} s | {r['warm_s']:.2f} s | "
              f"{len(x) / r['warm_s']:,.0f} | {r['rss_mb']:,.0f} MB |")


if __name__ == "__main__":
    main()
