"""Foreground extraction candidates for pictures on busy backgrounds: accuracy and cost per picture.

    python bench/foreground_bench.py [--per-style 200] [--model smallcnn:4]

For each candidate (none: today's conversion alone; GrabCut at several working sizes and iteration
counts; colour clustering), the picture benchmark's pictures (`fmnist.pictures.styles`, its seed and styles:
the busy ones and two plain ones, to show a plain picture is left alone) are converted as /predict
converts them and classified by the model. Prints accuracy per style, the share of pictures that took
the extraction path and the mean conversion time per picture (one core, this process). Nothing
reserved for independent checks is used. Last, what the busy check costs a plain picture (product and
photo styles, extraction off and on, alternating). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CANDIDATES = [  # (label, method, working side, iterations)
    ("none", None, 0, 0),
    ("grabcut 96px x2", "grabcut", 96, 2),
    ("grabcut 128px x3", "grabcut", 128, 3),
    ("grabcut 160px x5", "grabcut", 160, 5),
    ("clusters 128px", "clusters", 128, 0),
]
STYLES = ("onphoto", "busy", "cluttered", "product", "photo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-style", type=int, default=200)
    ap.add_argument("--model", default="smallcnn:4")
    ap.add_argument("--registry", default=str(REPO / "models"))
    args = ap.parse_args()

    from fmnist import data
    from fmnist.images import foreground
    from fmnist.images.preprocess import to_model_pixels
    from fmnist.inference.predictor import Predictor
    from fmnist.pictures import styles
    from fmnist.registry import resolve

    ds = data.load(allow_download=False)
    pred = Predictor(resolve(args.model, args.registry))
    x, y = ds.test_images[: args.per_style], ds.test_labels[: args.per_style]
    rendered = {s: [styles.render(px, int(lab), s, styles.image_rng(styles.BENCH_SEED, i, s))
                    for i, (px, lab) in enumerate(zip(x, y))] for s in STYLES}
    print(f"{args.per_style} pictures per style, model {pred.name}:{pred.version}; accuracy / share extracted / "
          "ms per picture (conversion only, one core)")
    print(f"{'candidate':<20}" + "".join(f"{s:>24}" for s in STYLES))
    for label, method, side, iters in CANDIDATES:
        saved = foreground.GRABCUT_SIDE, foreground.GRABCUT_ITERS
        foreground.GRABCUT_SIDE, foreground.GRABCUT_ITERS = side or saved[0], iters or saved[1]
        real_extract = foreground.extract
        if method == "clusters":
            def clusters(rgb, m, _e=real_extract, _side=side):
                return _e(rgb, "clusters", _side)

            foreground.extract = clusters
        cells = []
        try:
            for s in STYLES:
                out, took, t0 = [], 0, time.perf_counter()
                for im in rendered[s]:
                    info: dict = {}
                    out.append(to_model_pixels(im, "auto", extract=method, info=info))
                    took += bool(info.get("extracted"))
                ms = (time.perf_counter() - t0) * 1000 / len(out)
                acc = float((pred.predict_batch(pred.normalize(np.stack(out))).argmax(1) == y).mean())
                cells.append(f"{acc:6.1%} {took / len(out):5.0%} {ms:6.1f}ms")
        finally:
            foreground.GRABCUT_SIDE, foreground.GRABCUT_ITERS = saved
            foreground.extract = real_extract
        print(f"{label:<20}" + "".join(f"{c:>24}" for c in cells), flush=True)
    plain_cost(rendered, to_model_pixels)


def plain_cost(rendered: dict, to_model_pixels, rounds: int = 5) -> None:
    """What the busy check costs a plain picture: its conversion timed with extraction off and on,
    alternating picture by picture (the same machine state for both), best of `rounds`."""
    for s in ("product", "photo"):
        best = {None: float("inf"), "grabcut": float("inf")}
        for _ in range(rounds):
            spent = {None: 0.0, "grabcut": 0.0}
            for im in rendered[s]:
                for method in (None, "grabcut"):
                    t0 = time.perf_counter()
                    to_model_pixels(im, "auto", extract=method)
                    spent[method] += time.perf_counter() - t0
            best = {m: min(best[m], spent[m] / len(rendered[s])) for m in best}
        print(f"plain {s}: conversion {best[None] * 1000:.2f} ms without the busy check, "
              f"{best['grabcut'] * 1000:.2f} ms with it ({best['grabcut'] / best[None]:.2f}x)")


if __name__ == "__main__":
    main()
