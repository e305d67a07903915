"""Per-image model time of artifacts under ONNX Runtime (as served: one intra-op thread), as ratios.

    python bench/model_cost.py smallcnn:1 smallcnn [more models...]

Batch 1 (a lone request) and batch 64 (the micro-batcher's largest), best of 5 rounds of ~2,000
images each; every ratio is against the first model, measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def per_image_us(path: str, batch: int, rounds: int = 5) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    for _ in range(50):
        sess.run(None, {"input": x})
    calls = 2000 // batch + 20
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(None, {"input": x})
        best = min(best, (time.perf_counter() - t0) / (calls * batch) * 1e6)
    return best


def main() -> None:
    from fmnist.registry import resolve

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="name[:version] or artifact paths; the first is the baseline")
    ap.add_argument("--registry")
    args = ap.parse_args()
    arts = [resolve(m, args.registry) for m in args.models]
    times = {a.ref: {b: per_image_us(str(a.onnx_path), b) for b in (1, 64)} for a in arts}
    base = times[arts[0].ref]
    for a in arts:
        flops = a.manifest["architecture"].get("flops_per_image")
        ratio_f = f"{flops / arts[0].manifest['architecture']['flops_per_image']:.2f}x" if flops else "-"
        t = times[a.ref]
        print(f"{a.ref:<14} MFLOPs {flops / 1e6 if flops else float('nan'):6.2f} ({ratio_f})  "
              + "  ".join(f"batch {b}: {t[b]:6.1f} us/image ({t[b] / base[b]:.2f}x)" for b in (1, 64)))


if __name__ == "__main__":
    main()
