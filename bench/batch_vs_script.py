"""`fmnist batch` as a whole command against a bare script doing the least the same job needs, same run.

    python bench/batch_vs_script.py [--input IDX] [--model smallcnn] [--rounds 3] [--before DIR]

The bare script (`--bare`, run as its own process): read an IDX file, ONNX Runtime in batches of 64 over every
core, softmax, and one JSON line per image with the class, its confidence and the top 3 - no resume, no summary,
no checks. Both are timed the same way, as whole processes (start, imports, model load, reading, writing),
alternating, so that a busy machine slows both alike. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def bare(input_path: str, onnx_path: str, out: str, mean: float, std: float) -> None:
    import numpy as np
    import onnxruntime as ort

    raw = gzip.open(input_path).read() if input_path.endswith(".gz") else Path(input_path).read_bytes()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, 28, 28)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    names = [json.dumps(c) for c in CLASSES]
    with open(out, "w") as f:
        for k in range(0, n, 64):
            logits = sess.run(None, {name: (x[k:k + 64].astype(np.float32) / 255 - mean) / std})[0]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = (e / e.sum(axis=1, keepdims=True)).astype(np.float64)
            top = np.argsort(-p, axis=1)[:, :3].tolist()
            rows = p.tolist()
            f.write("".join(  # written as a careful script would: one f-string a line, no json.dumps per answer
                f'{{"id":{k + i},"label":{names[t[0]]},"class_id":{t[0]},"confidence":{row[t[0]]!r},"top_k":['
                + ",".join(f'{{"label":{names[j]},"class_id":{j},"probability":{row[j]!r}}}' for j in t) + "]}\n"
                for i, (row, t) in enumerate(zip(rows, top))))


def timed(cmd: list, cwd: Path, src: "Path | None" = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)} if src else None
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", default="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    ap.add_argument("--model", default="smallcnn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", help="also time `fmnist batch` of this earlier checkout (a git worktree), alternating")
    ap.add_argument("--bare", nargs=4, metavar=("ONNX", "OUT", "MEAN", "STD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.bare:
        bare(a.input, a.bare[0], a.bare[1], float(a.bare[2]), float(a.bare[3]))
        return
    sys.path.insert(0, str(REPO / "src"))
    from fmnist.registry import resolve

    art = resolve(a.model, REPO / "models")
    n = int.from_bytes((gzip.open(a.input).read(8) if a.input.endswith(".gz") else Path(a.input).read_bytes()[:8])[4:8],
                       "big")
    tmp = Path(tempfile.mkdtemp())
    fmnist = [sys.executable, "-m", "fmnist.cli", "batch", a.input, "--model", a.model, "--registry", str(REPO / "models"),
              "--quiet"]
    script = [sys.executable, __file__, "--input", a.input, "--bare", str(art.onnx_path), str(tmp / "bare.jsonl"),
              str(art.preprocessing.mean), str(art.preprocessing.std)]
    times: dict = {"fmnist batch": [], "bare script": []}
    if a.before:
        times["batch, before"] = []
    for r in range(a.rounds):
        names = list(times) if r % 2 == 0 else list(reversed(times))
        for name in names:
            if name == "bare script":
                times[name].append(timed(script, tmp))
            else:
                shutil.rmtree(tmp / "out.jsonl.parts", ignore_errors=True)
                src = Path(a.before) / "src" if name == "batch, before" else None
                times[name].append(timed(fmnist + ["--out", str(tmp / "out.jsonl"), "--restart"], tmp, src))
    print(f"{n:,} images from {a.input}, {a.rounds} rounds alternating, whole processes:")
    for name, ts in times.items():
        print(f"  {name:13s} median {statistics.median(ts):6.2f} s  {n / statistics.median(ts):8,.0f} images/s  "
              f"(runs: {', '.join(f'{t:.2f}' for t in ts)})")
    for name in [n for n in times if n != "bare script"]:
        ratio = statistics.median(times["bare script"]) / statistics.median(times[name])
        rounds = sorted(s / t for s, t in zip(times["bare script"], times[name]))  # each round's own ratio: a
        # machine that drifts between rounds moves both of a round alike
        print(f"  {name} throughput / bare script: {ratio:.2f} (medians); per round: median "
              f"{statistics.median(rounds):.2f}, {', '.join(f'{r:.2f}' for r in rounds)}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
