"""The picture benchmark: test images rendered as pictures (fmnist.pictures.styles), accuracy per style and class.

`fmnist evaluate MODEL --pictures` prints it next to the raw test accuracy; `fmnist compare` adds a
"pictures" column and a per-style figure. The set is rendered once (8 styles x the first 1,000 test
images, ~20 s on 2 cores) and cached under the user cache, keyed on the test images and on the
source of the renderer and of the conversion (a change to either renders it again).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist.fileio import atomic_path
from fmnist.labels import CLASSES
from fmnist.pictures import styles as P

HEADLINE_EXCLUDES = ("cluttered", "busy", "onphoto")  # the headline is plain backgrounds, as product shots and
# drawings have; pictures on busy backgrounds are reported on their own (`busy_backgrounds`: onphoto, held out)


def load_benchmark(ds, per_style: int = P.BENCH_PER_STYLE, cache_dir: "Path | None" = None) -> dict:
    """{"labels": (n,), "pictures": {style: uint8 (n, 28, 28)}}, rendered once and cached."""
    from fmnist.data import user_cache_dir

    x, y = ds.test_images[:per_style], ds.test_labels[:per_style]
    key = P.cache_key(x, y)
    path = (cache_dir or user_cache_dir() / "pictures") / f"bench-{per_style}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {"labels": z["labels"], "pictures": {s: z[s] for s in P.STYLE_NAMES}}
    # image i of every style comes from the generator (BENCH_SEED, i, style), however the work is split
    P.progress_log.info("drawing the picture benchmark, %d styles x %d pictures (once: cached in %s)",
                        len(P.STYLE_NAMES), len(x), path.parent)
    pictures = {}
    for k, s in enumerate(P.STYLE_NAMES):
        pictures[s] = P.render_parallel(x, y, [s] * len(x), P.BENCH_SEED)
        P.progress_log.info("drew style %s (%d/%d)", s, k + 1, len(P.STYLE_NAMES))
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, labels=y, **pictures)
    return {"labels": y, "pictures": pictures}


def picture_report(logits_fn, bench: dict) -> dict:
    """Accuracy per style, per class (over all styles) and overall, for logits_fn(uint8 (N,28,28)) -> (N,10)."""
    y = bench["labels"]
    correct = {s: logits_fn(px).argmax(1) == y for s, px in bench["pictures"].items()}
    per_class = {}
    for k, c in enumerate(CLASSES):
        rows = [ok[y == k] for ok in correct.values()]
        per_class[c] = float(np.concatenate(rows).mean()) if len(rows[0]) else None
    headline = [s for s in correct if s not in HEADLINE_EXCLUDES]
    return {
        "accuracy": float(np.mean([correct[s].mean() for s in headline])),
        "styles": {s: float(ok.mean()) for s, ok in correct.items()},
        "per_class": per_class,
        "headline_styles": headline,
        "held_out_styles": [s.name for s in P.STYLES if s.held_out],
        "n_per_style": int(len(y)),
    }


def format_picture_report(rep: dict, raw_acc: "float | None" = None) -> str:
    """The table `fmnist evaluate --pictures` prints."""
    lines = [
        f"picture benchmark: the first {rep['n_per_style']:,} test images in each of {len(rep['styles'])} styles, "
        "through preprocess=auto (as /predict)",
        (f"raw test accuracy {raw_acc:.4f}   " if raw_acc is not None else "")
        + f"pictures {rep['accuracy']:.4f} (mean over {', '.join(rep['headline_styles'])})",
        "",
        f"{'style':<11}{'accuracy':>9}  what it is",
    ]
    for st in P.STYLES:
        if st.name in rep["styles"]:
            mark = " (held out from training)" if st.held_out else ""
            lines.append(f"{st.name:<11}{rep['styles'][st.name]:>9.4f}  {st.description}{mark}")
    lines += ["", f"{'class':<13}{'accuracy (all styles)':>22}"]
    for c, acc in rep["per_class"].items():
        lines.append(f"{c:<13}{acc:>22.4f}" if acc is not None else f"{c:<13}{'-':>22}")
    return "\n".join(lines)


def fig_pictures(rows: list, out: Path) -> str:
    """Grouped bars: accuracy per picture style for every model, raw test accuracy first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["raw"] + list(P.STYLE_NAMES)
    fig, ax = plt.subplots(figsize=(13, 4.6))
    width = 0.8 / max(len(rows), 1)
    idx = np.arange(len(cols))
    for i, r in enumerate(rows):
        vals = [r["acc"]] + [r["pictures"]["styles"][s] for s in P.STYLE_NAMES]
        ax.bar(idx + i * width - 0.4 + width / 2, [100 * v for v in vals], width, label=r["label"])
    ax.set_xticks(idx, cols)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(rows), 6), loc="lower left")
    ax.set_title("Raw test set vs the same test images as pictures, per style (held out from training: "
                 + ", ".join(s.name for s in P.STYLES if s.held_out) + ")")
    fig.tight_layout()
    fig.savefig(out / "pictures.png", dpi=110)
    plt.close(fig)
    return "pictures.png"


def fig_examples(ds, bench: dict, out: Path, n: int = 10) -> str:
    """What the benchmark looks like: per style, the rendered pictures and the 28x28 the model gets (from
    `bench`, the converted set)."""
    from PIL import Image

    tile = 72
    sheet = Image.new("RGB", (n * tile, 2 * len(P.STYLES) * tile + tile), (255, 255, 255))
    for j in range(n):
        sheet.paste(Image.fromarray(ds.test_images[j]).resize((tile, tile), Image.Resampling.NEAREST), (j * tile, 0))
    for i, s in enumerate(P.STYLE_NAMES):
        for j in range(n):
            im = P.render(ds.test_images[j], int(ds.test_labels[j]), s, P.image_rng(P.BENCH_SEED, j, s))
            rgba = im.convert("RGBA")
            page = Image.new("RGBA", rgba.size, (230, 230, 230, 255))  # transparency shown as light grey
            page.alpha_composite(rgba)
            pic = page.convert("RGB")
            pic.thumbnail((tile, tile))
            y0 = tile + 2 * i * tile
            sheet.paste(pic, (j * tile + (tile - pic.width) // 2, y0 + (tile - pic.height) // 2))
            seen = bench["pictures"][s][j]
            sheet.paste(Image.fromarray(seen).resize((tile, tile), Image.Resampling.NEAREST), (j * tile, y0 + tile))
    sheet.save(out / "picture_examples.png", optimize=True)
    return "picture_examples.png"
