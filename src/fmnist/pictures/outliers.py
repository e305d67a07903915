"""Pictures that are not garments, brought back the way the server sees them: for the flag's training and its test.

Two families that share no source, so that the out-of-distribution benchmark measures what training
never showed:

- `TRAIN_KINDS` (the recipe's outlier exposure, Hendrycks et al. 2019: the model learns to be unsure
  of them): views of the `train` background photographs and textures with no garment; one to three
  random polygons and stars on a page; smoothed colour noise.
- `EVAL_KINDS` (`ood_benchmark`, never trained or tuned on): views of the `held_out` photographs (a shore,
  leaves, a forest: scenes with no garment); letters and digits of a typeface; circles, rings, crosses and
  arrows; blank pages (paper, a grey card, a flat colour); pixel noise.

Nothing is drawn from emoji or icon sets or scikit-image's samples.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fmnist.images.preprocess import to_model_pixels
from fmnist.pictures import backgrounds
from fmnist.pictures.styles import _colour, image_rng, map_processes

TRAIN_KINDS = ("scene", "polygons", "smooth_noise")
EVAL_KINDS = ("scene", "text", "shapes", "blank", "noise")
OOD_SEED = 20_261_130


def _page(rng, w: int, h: int) -> Image.Image:
    light = rng.random() < 0.7
    return Image.new("RGB", (w, h), tuple(int(c * 255) for c in _colour(rng, light=light)))


def _fill(rng) -> tuple:
    return tuple(int(c * 255) for c in _colour(rng))


def render_outlier(kind: str, rng: np.random.Generator) -> Image.Image:
    """One non-garment picture of `kind` (TRAIN_KINDS or EVAL_KINDS), RGB, 64-240 px a side."""
    w, h = int(rng.integers(64, 241)), int(rng.integers(64, 241))
    if kind == "scene":  # the training kind takes the training photos; the benchmark's, the held-out ones
        raise ValueError("scene pictures come from render_scene(which, rng)")
    if kind == "polygons":
        im = _page(rng, w, h)
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, r = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h, rng.uniform(0.15, 0.45) * min(w, h)
            k = int(rng.integers(3, 9))
            star = rng.random() < 0.4
            pts = []
            for i in range(k * (2 if star else 1)):
                a = 2 * np.pi * i / (k * (2 if star else 1)) + rng.uniform(-0.3, 0.3)
                rr = r * (0.45 if star and i % 2 else 1.0) * rng.uniform(0.7, 1.0)
                pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
            d.polygon(pts, fill=_fill(rng))
        return im
    if kind == "smooth_noise":
        small = rng.random((int(rng.integers(3, 12)), int(rng.integers(3, 12)), 3)) * 255
        im = Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        return im.filter(ImageFilter.GaussianBlur(rng.uniform(0, 3)))
    if kind == "text":
        from PIL import ImageFont

        im = _page(rng, w, h)
        d = ImageDraw.Draw(im)
        chars = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnpqrtuy0123456789&?#%"
        text = "".join(chars[int(i)] for i in rng.integers(len(chars), size=int(rng.integers(1, 4))))
        size = int(min(w, h) * rng.uniform(0.4, 0.8) / max(1, len(text) * 0.6))
        font = ImageFont.load_default(max(size, 12))
        d.text((w / 2, h / 2), text, fill=_fill(rng), font=font, anchor="mm")
        return im
    if kind == "shapes":
        im = _page(rng, w, h)
        d = ImageDraw.Draw(im)
        cx, cy, r = w / 2, h / 2, rng.uniform(0.25, 0.45) * min(w, h)
        which, colour, lw = int(rng.integers(4)), _fill(rng), max(2, int(r * rng.uniform(0.15, 0.35)))
        if which == 0:
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif which == 1:
            d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=lw)
        elif which == 2:
            d.line((cx - r, cy, cx + r, cy), fill=colour, width=lw)
            d.line((cx, cy - r, cx, cy + r), fill=colour, width=lw)
        else:
            d.line((cx - r, cy, cx + r * 0.4, cy), fill=colour, width=lw)
            d.polygon([(cx + r, cy), (cx + r * 0.3, cy - r * 0.5), (cx + r * 0.3, cy + r * 0.5)], fill=colour)
        return im
    if kind == "blank":
        im = _page(rng, w, h)
        arr = np.asarray(im, np.float32) + rng.normal(0, rng.uniform(0, 3), (h, w, 1))
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    raise ValueError(f"unknown outlier kind {kind!r}")


def render_scene(which: str, rng: np.random.Generator) -> Image.Image:
    w, h = int(rng.integers(64, 241)), int(rng.integers(64, 241))
    return backgrounds.crop(which, rng, w, h)


def outlier_pixels(kinds, n: int, seed: int, scenes: str, start: int = 0) -> np.ndarray:
    """uint8 (n, 28, 28): pictures start..start+n-1 of the sequence of non-garment pictures (kinds in turn,
    picture i from image_rng(seed, i, kind)), each converted as /predict converts it."""
    out = np.empty((n, 28, 28), np.uint8)
    for j in range(n):
        i = start + j
        kind = kinds[i % len(kinds)]
        rng = image_rng(seed, i, kind)
        im = render_scene(scenes, rng) if kind == "scene" else render_outlier(kind, rng)
        out[j] = to_model_pixels(im, "photo")
    return out


def _chunk(args):
    return outlier_pixels(*args)


def training_outliers(n: int, seed: int, workers: int = 1) -> np.ndarray:
    """The recipe's outlier exposure set (TRAIN_KINDS, training photographs only), over `workers` processes
    (the same pictures however it is split)."""
    if workers <= 1 or n < 200:
        return outlier_pixels(TRAIN_KINDS, n, seed, "train")
    step = -(-n // (workers * 4))
    jobs = [(TRAIN_KINDS, min(step, n - s), seed, "train", s) for s in range(0, n, step)]
    return np.concatenate(list(map_processes(_chunk, jobs, workers)))


def ood_benchmark(per_kind: int = 200) -> dict:
    """{kind: uint8 (per_kind, 28, 28)}: the out-of-distribution benchmark (EVAL_KINDS, held-out photographs)."""
    return {k: outlier_pixels((k,), per_kind, OOD_SEED, "held_out") for k in EVAL_KINDS}
