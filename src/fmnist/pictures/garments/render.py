"""Parametric garments as pictures, in families: what trains, what validates, what is held out whole.

A picture is one cut of one class (fmnist.pictures.garments.shapes.CUTS) drawn in one style, with random
proportions, colours, tilt, placement and compression, then converted back by the server's own
`preprocess.to_model_pixels(..., "auto")`.

Styles: `flat` (flat colours, an icon), `outline` (ink strokes on paper), `shaded` (a product shot:
shading, patterns, a drop shadow, JPEG), `photo` (laid on a photograph, JPEG) and `sticker` (a flat
fill with a thick white border on a coloured page). A **family** is a (cut, style) pair. Training
draws only `TRAIN_STYLES` on every class's cuts but the last, on the training photographs. Whole
families stay out for validation (`HELD_OUT`): each class's last cut (in every style), the `sticker`
style, and garments laid on the held-out photographs. Model choice and the regression gate read
these; nothing in them is ever trained on.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fmnist.images.preprocess import to_model_pixels
from fmnist.pictures import backgrounds
from fmnist.pictures.garments.objects import EVAL_OBJECTS, TRAIN_OBJECTS
from fmnist.pictures.garments.shapes import CUTS, Shape
from fmnist.pictures.styles import SHOES, _colour, _pattern, image_rng

TRAIN_STYLES = ("flat", "outline", "shaded", "photo")
STYLES = (*TRAIN_STYLES, "sticker")
# held-out validation families: name -> (which cuts, styles, photographs)
HELD_OUT = {
    "unseen_cut": ("last", ("flat", "outline", "shaded"), "train"),
    "unseen_style": ("train", ("sticker",), "train"),
    "unseen_photo": ("train", ("photo",), "held_out"),
    "unseen_cut_photo": ("last", ("photo",), "held_out"),
}
SEEN = ("train", TRAIN_STYLES, "train")  # the training families, drawn afresh: what a model learned, for contrast
VAL_SEED, TRAIN_SEED, OBJECT_SEED = 20_261_202, 31_337, 27_182


def cut_indices(label: int, which: str) -> tuple:
    n = len(CUTS[label])
    return (n - 1,) if which == "last" else tuple(range(n - 1))


def _rgb(c) -> tuple:
    return tuple(int(v * 255 + 0.5) for v in np.clip(c, 0, 1))


def rasterise(shape: Shape, size: int, aspect: float = 1.0, flip: bool = False) -> tuple:
    """(silhouette, details, accents) as float 0-1 maps of size x size (drawn at 2x, then reduced)."""
    s2 = size * 2

    def xy(pts):
        out = []
        for x, y in pts:
            x = 0.5 + (x - 0.5) * aspect
            out.append(((1 - x if flip else x) * s2, y * s2))
        return out

    def layer(polys=(), lines=(), clip=None):
        im = Image.new("L", (s2, s2), 0)
        d = ImageDraw.Draw(im)
        for p in polys:
            d.polygon(xy(p), fill=255)
        for pts, w in lines:
            px, lw = xy(pts), max(2, int(w * s2))
            d.line(px, fill=255, width=lw, joint="curve")
            for x, y in (px[0], px[-1]):
                d.ellipse((x - lw / 2, y - lw / 2, x + lw / 2, y + lw / 2), fill=255)
        a = np.asarray(im.reduce(2), np.float32) / 255.0
        return a if clip is None else a * clip

    sil = layer(shape.polys, shape.strokes)
    if shape.holes:
        sil = sil * (1 - layer(shape.holes))
    return sil, layer((), shape.details, sil), layer(shape.accents, (), sil)


def _edge(alpha: np.ndarray, width: int) -> np.ndarray:
    a = Image.fromarray((alpha * 255).astype(np.uint8))
    inner = np.asarray(a.filter(ImageFilter.MinFilter(2 * width + 1)), np.float32) / 255.0
    return np.clip(alpha - inner, 0, 1)


def _grow(alpha: np.ndarray, width: int) -> np.ndarray:
    a = Image.fromarray((alpha * 255).astype(np.uint8))
    return np.asarray(a.filter(ImageFilter.MaxFilter(2 * width + 1)), np.float32) / 255.0


def draw(shape: Shape, style: str, rng, photos: str = "train", flip: "bool | None" = None) -> Image.Image:
    """One picture of `shape` in `style` (RGB, or RGBA for a transparent flat icon)."""
    size = int(rng.integers(96, 225))
    flip = bool(rng.random() < 0.5) if flip is None else flip
    sil, det, acc = rasterise(shape, size, float(rng.uniform(0.88, 1.12)), flip)
    base, second = _colour(rng), _colour(rng)
    ink = _colour(rng, light=False) * rng.uniform(0.1, 0.4)
    lw = max(1, int(size * rng.uniform(0.01, 0.03)))
    if style == "outline":
        rgb = np.ones((size, size, 3), np.float32) * rng.uniform(0.93, 1.0)
        line = np.maximum(_edge(sil, lw), np.maximum(det, _edge(acc, max(1, lw // 2)) if acc.any() else det))
        rgb = rgb * (1 - line[..., None]) + ink * line[..., None]
    else:
        lit = np.ones((size, size), np.float32)
        if style in ("shaded", "photo"):
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
            cx, cy = rng.uniform(0.2, 0.8, 2)
            lit = 1.0 - rng.uniform(0.2, 0.5) * np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        colour = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
        if style in ("shaded", "photo", "flat") and rng.random() < 0.3:
            p = _pattern(rng, size)[..., None]
            colour = colour * (1 - p) + _colour(rng) * p
        rgb = colour * lit[..., None]
        rgb = rgb * (1 - acc[..., None]) + second * acc[..., None]
        dark = base * rng.uniform(0.3, 0.6)
        rgb = rgb * (1 - det[..., None]) + dark * det[..., None]
        if style in ("flat", "sticker") and rng.random() < 0.6:
            e = _edge(sil, lw)
            rgb = rgb * (1 - e[..., None]) + ink * e[..., None]
    alpha = sil
    if style == "sticker":  # a white border, then a thin dark edge, around the flat drawing
        border = _grow(sil, max(2, int(size * rng.uniform(0.03, 0.06))))
        rim = _grow(border, 1) - border
        rgb = rgb * sil[..., None] + (1 - sil[..., None]) * np.ones(3, np.float32)
        rgb = rgb * (1 - rim[..., None]) + ink * rim[..., None]
        alpha = np.maximum(border, rim)
    layer = Image.fromarray((np.dstack([np.clip(rgb, 0, 1), alpha]) * 255 + 0.5).astype(np.uint8), "RGBA")
    layer = layer.rotate(float(rng.uniform(-12, 12)), Image.Resampling.BICUBIC, expand=True)
    return _compose(layer, style, rng, photos)


def _compose(layer: Image.Image, style: str, rng, photos: str) -> Image.Image:
    w, h = layer.size
    margin = rng.uniform(1.3, 2.2) if style == "photo" else rng.uniform(1.02, 1.4)
    cw, ch = int(w * margin) + 2, int(h * margin) + 2
    x0, y0 = int(rng.uniform(0, cw - w)), int(rng.uniform(0, ch - h))
    if style == "flat" and rng.random() < 0.25:
        out = Image.new("RGBA", (cw, ch), (0, 0, 0, 0))
        out.paste(layer, (x0, y0), layer)
        return out
    if style == "photo":
        bg = backgrounds.crop(photos, rng, cw, ch)
    elif style == "sticker":
        bg = Image.new("RGB", (cw, ch), _rgb(_colour(rng) * rng.uniform(0.6, 1.0)))
    else:
        grey = rng.uniform(0.88, 1.0) if style == "shaded" else rng.uniform(0.95, 1.0)
        bg = Image.new("RGB", (cw, ch), _rgb(np.full(3, grey)))
    if style in ("shaded", "photo") and rng.random() < 0.7:
        a = layer.getchannel("A").filter(ImageFilter.GaussianBlur(max(2, w // 25)))
        sa = Image.new("L", (cw, ch), 0)
        sa.paste(a.point(lambda v: int(v * 0.35)), (x0 + w // 30 + 2, y0 + h // 20 + 2))
        bg = Image.composite(Image.new("RGB", (cw, ch), (0, 0, 0)), bg, sa)
    bg.paste(layer, (x0, y0), layer)
    if style in ("shaded", "photo") or rng.random() < 0.3:
        buf = io.BytesIO()
        bg.save(buf, "JPEG", quality=int(rng.integers(35 if style == "photo" else 50, 92)))
        bg = Image.open(io.BytesIO(buf.getvalue()))
        bg.load()
    return bg


def garment(label: int, cut: int, style: str, rng, photos: str = "train") -> Image.Image:
    flip = bool(rng.random() < 0.5) if label in SHOES else False
    return draw(CUTS[label][cut](rng), style, rng, photos, flip)


def family_pixels(family: tuple, per_class: int, seed: int, start: int = 0) -> tuple:
    """(uint8 (10 * per_class, 28, 28), labels, cut indices, styles): pictures of `family` = (cuts, styles, photos),
    converted as /predict converts them; picture i is drawn from image_rng(seed, start + i)."""
    which, styles, photos = family
    n = 10 * per_class
    px, ys, cuts, sts = np.empty((n, 28, 28), np.uint8), np.empty(n, np.int64), np.empty(n, np.int64), []
    for j in range(n):
        i = start + j
        rng = image_rng(seed, i, "garment")
        y = i % 10
        cut = int(rng.choice(cut_indices(y, which)))
        st = styles[int(rng.integers(len(styles)))]
        px[j] = to_model_pixels(garment(y, cut, st, rng, photos), "auto")
        ys[j], cuts[j] = y, cut
        sts.append(st)
    return px, ys, cuts, sts


def object_pixels(kinds: dict, n: int, seed: int, photos: str, start: int = 0) -> tuple:
    """(uint8 (n, 28, 28), kind names): non-garment things drawn in the garments' styles, converted as /predict does."""
    names = sorted(kinds)
    out, which = np.empty((n, 28, 28), np.uint8), []
    for j in range(n):
        i = start + j
        rng = image_rng(seed, i, "object")
        k = names[i % len(names)]
        st = STYLES[int(rng.integers(len(STYLES)))] if kinds is EVAL_OBJECTS else TRAIN_STYLES[int(rng.integers(4))]
        out[j] = to_model_pixels(draw(kinds[k](rng), st, rng, photos), "auto")
        which.append(k)
    return out, which


def _family_chunk(args):
    family, per_class, seed, start = args
    return family_pixels(family, per_class, seed, start)[:2]


def _object_chunk(args):
    n, seed, start = args
    return object_pixels(TRAIN_OBJECTS, n, seed, "train", start)[0]


def _map(fn, jobs: list, workers: int) -> list:
    """fn(job) for every job, in order: over `workers` processes (fmnist.pictures.styles.map_processes), or here for one."""
    from fmnist.pictures.styles import map_processes

    return list(map_processes(fn, jobs, workers)) if workers > 1 else [fn(j) for j in jobs]


def training_garments(n: int, seed: int = TRAIN_SEED, workers: int = 1) -> tuple:
    """(pixels, labels): n pictures (a multiple of 10) of the training families, over `workers` processes."""
    per = max(1, n // 10)
    step = max(1, min(per, 200))
    parts = _map(_family_chunk, [(SEEN, min(step, per - s), seed, s * 10) for s in range(0, per, step)], workers)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def training_objects(n: int, seed: int = OBJECT_SEED, workers: int = 1) -> np.ndarray:
    step = 2000
    return np.concatenate(_map(_object_chunk, [(min(step, n - s), seed, s) for s in range(0, n, step)], workers))


def validation_families(per_class: int = 60, workers: int = 0) -> dict:
    """{family name: (pixels, labels)}: the held-out families and the seen ones, fixed seeds (the same pictures
    however the work is split over `workers` processes)."""
    import os

    fams = {"seen": (SEEN, VAL_SEED)} | {n: (f, VAL_SEED + 1 + k) for k, (n, f) in enumerate(HELD_OUT.items())}
    step = max(1, per_class // 5)
    jobs = [(name, (fam, min(step, per_class - s), seed, s * 10)) for name, (fam, seed) in fams.items()
            for s in range(0, per_class, step)]
    parts = _map(_family_chunk, [j for _, j in jobs], workers or min(os.cpu_count() or 1, 8))
    out: dict = {}
    for (name, _), (px, y) in zip(jobs, parts):
        out.setdefault(name, []).append((px, y))
    return {n: (np.concatenate([p for p, _ in v]), np.concatenate([y for _, y in v])) for n, v in out.items()}


def validation_objects(n: int = 400) -> tuple:
    """(pixels, kinds): kinds never trained on, in every style, on the held-out photographs when on a photo."""
    return object_pixels(EVAL_OBJECTS, n, OBJECT_SEED + 1, "held_out")
