"""Dataset images rendered as the pictures people send, and brought back the way the server sees them.

One renderer serves two ends: the training recipe's picture augmentation (`roundtrip` on training
images, random styles) and the picture benchmark (`benchmark_set`: test images, a fixed seed, one
named style each). A picture is a 28x28 dataset image (light garment on black) turned into what a
shop, an illustrator or a phone makes of a garment: upscaled, coloured and shaded, patterned,
outlined, rotated or seen in perspective, shadowed, on a white, transparent, grey, dark or busy
background, off-centre on a larger canvas, JPEG-compressed. `roundtrip` then runs it through
`preprocess.to_model_pixels(..., "auto")`, the very code `/predict` runs, so training sees what
serving will see.

Styles marked `held_out` are never drawn by the training recipe: they measure what the recipe did
not see (line art, clutter). Nothing here is drawn from emoji or icon fonts.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fmnist.fileio import atomic_path
from fmnist.images.preprocess import fill_holes, to_model_pixels

SHOES = (5, 7, 9)  # Sandal, Sneaker, Ankle boot: the dataset shows them from the side only


@dataclass(frozen=True)
class Style:
    name: str
    description: str
    held_out: bool = False  # never used by the training recipe


STYLES = (
    Style("product", "colour and shading on white, slight tilt, JPEG"),
    Style("drawing", "flat colours with a dark outline, white or transparent background"),
    Style("pattern", "stripes, checks or dots inside the garment, off-white background"),
    Style("photo", "off-centre on a large grey gradient with a shadow, noise, low-quality JPEG"),
    Style("rotated", "rotated (garments up to 30 degrees, shoes and bags up to 60) and in perspective"),
    Style("dark", "a light-coloured garment on a dark coloured background"),
    Style("lineart", "outline strokes only, dark on white", held_out=True),
    Style("busy", "on a photograph or texture (grass, sand, wood, flowers, paper) with a shadow, JPEG"),
    Style("cluttered", "on a busy background of other shapes and colours", held_out=True),
    Style("onphoto", "on photographs no training run sees (a shore, leaves, a forest, a beach, artwork), JPEG",
          held_out=True),
)
PHOTO_SETS = {"busy": "train", "onphoto": "held_out"}  # the styles laid on real pictures (fmnist.pictures.backgrounds)
STYLE_NAMES = tuple(s.name for s in STYLES)
TRAIN_STYLES = tuple(s.name for s in STYLES if not s.held_out)


# --------------------------------------------------------------------------- garment layers


def garment_mask(pixels: np.ndarray, threshold: int = 12) -> np.ndarray:
    """Bool (28, 28): the garment's silhouette, holes filled (dark fabric inside it is still garment)."""
    return fill_holes(pixels > threshold)


def _up(arr01: np.ndarray, size: int) -> np.ndarray:
    """A 28x28 float map in 0-1 upscaled to size x size (bicubic), as float32 0-1."""
    im = Image.fromarray(np.clip(arr01 * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(im.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def _colour(rng, light: "bool | None" = None) -> np.ndarray:
    """A random RGB colour (0-1); light=True: pale, False: dark or saturated, None: anything."""
    h = rng.random()
    s = rng.uniform(0.0, 1.0)
    v = rng.uniform(0.75, 1.0) if light else rng.uniform(0.1, 0.75) if light is False else rng.uniform(0.1, 1.0)
    if light:
        s *= 0.35
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def _pattern(rng, size: int) -> np.ndarray:
    """A 0/1 float map: stripes (any angle), checks or dots, period 6-20 % of the size."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = size * rng.uniform(0.06, 0.2)
    kind = rng.integers(3)
    if kind == 0:
        a = rng.uniform(0, np.pi)
        return (((xx * np.cos(a) + yy * np.sin(a)) / period) % 1.0 < rng.uniform(0.3, 0.6)).astype(np.float32)
    if kind == 1:
        return (((xx // period) + (yy // period)) % 2).astype(np.float32)
    r = period * rng.uniform(0.2, 0.4)
    return ((((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2) < r * r).astype(np.float32)


def _outline(alpha: np.ndarray, width: int) -> np.ndarray:
    """The band just inside a silhouette's edge, `width` pixels thick (0-1 float)."""
    a = Image.fromarray((alpha * 255).astype(np.uint8))
    inner = np.asarray(a.filter(ImageFilter.MinFilter(2 * width + 1)), dtype=np.float32) / 255.0
    return np.clip(alpha - inner, 0, 1)


def _layer(pixels: np.ndarray, style: str, rng, size: int) -> Image.Image:
    """The garment alone as RGBA at size x size: colour, shading, pattern and outline by style."""
    shade = _up(pixels.astype(np.float32) / 255.0, size)  # the dataset's light = lit fabric
    alpha = _up(garment_mask(pixels).astype(np.float32), size)
    alpha = np.clip((alpha - 0.5) * 4 + 0.5, 0, 1)  # a crisp edge, as a cut-out or a drawing has
    lit = shade / max(float(shade.max()), 1e-3)
    if style == "dark":
        base = _colour(rng, light=True)
    else:
        base = _colour(rng)
    if style == "drawing":
        levels = int(rng.integers(2, 4))
        lit = np.round(lit * (levels - 1)) / (levels - 1)  # flat fills, a few tones
        rgb = base * (0.55 + 0.45 * lit[..., None])
    elif style == "pattern" or (style in PHOTO_SETS and rng.random() < 0.25):
        p = _pattern(rng, size)[..., None]
        rgb = (base * (1 - p) + _colour(rng) * p) * (0.35 + 0.65 * lit[..., None])
    elif style == "lineart":
        rgb = np.ones((size, size, 3), np.float32)  # filled with the page colour, strokes added below
    else:
        rgb = base * (0.3 + 0.7 * lit[..., None])
    if style in ("drawing", "lineart"):
        width = max(1, int(size * rng.uniform(0.012, 0.035)))
        ink = _colour(rng, light=False) * 0.3
        line = _outline(alpha, width)
        if style == "lineart":  # folds and seams too: where the dataset's shading changes sharply
            edges = np.asarray(Image.fromarray((lit * 255).astype(np.uint8)).filter(ImageFilter.FIND_EDGES),
                               dtype=np.float32) / 255.0
            line = np.maximum(line, (edges > 0.25).astype(np.float32) * alpha)
        rgb = rgb * (1 - line[..., None]) + ink * line[..., None]
    rgba = np.dstack([np.clip(rgb, 0, 1), alpha]) * 255 + 0.5
    return Image.fromarray(rgba.astype(np.uint8), "RGBA")


# --------------------------------------------------------------------------- geometry and scene


def _geometry(layer: Image.Image, style: str, label: int, rng) -> Image.Image:
    """Tilt or rotation, and sometimes perspective (shear and foreshortening), of the garment layer."""
    big = style == "rotated"
    max_deg = (60 if label in SHOES or label == 8 else 30) if big else (8 if style in ("product", "photo") else 15)
    if style in ("drawing", "pattern", "dark", "lineart", "cluttered", *PHOTO_SETS) and label in SHOES:
        max_deg = 25
    layer = layer.rotate(rng.uniform(-max_deg, max_deg), Image.Resampling.BICUBIC, expand=True)
    if big or rng.random() < 0.3:
        w, h = layer.size
        k = 0.18 if big else 0.08
        pad = int(max(w, h) * k) + 1
        canvas = Image.new("RGBA", (w + 2 * pad, h + 2 * pad), (0, 0, 0, 0))
        canvas.paste(layer, (pad, pad))
        w2, h2 = canvas.size
        src = [(pad, pad), (pad + w, pad), (pad + w, pad + h), (pad, pad + h)]
        dst = [(x + rng.uniform(-1, 1) * k * w, y + rng.uniform(-1, 1) * k * h) for x, y in src]
        layer = canvas.transform((w2, h2), Image.Transform.PERSPECTIVE, _perspective_coeffs(dst, src),
                                 Image.Resampling.BICUBIC)
    return layer


def _perspective_coeffs(dst, src) -> list:
    """PIL's 8 perspective coefficients mapping output points `dst` back to input points `src`."""
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.array(src, dtype=np.float64).reshape(8)
    return np.linalg.solve(np.array(a, dtype=np.float64), b).tolist()


def _background(style: str, rng, w: int, h: int) -> "Image.Image | None":
    """The page behind the garment (None: transparent)."""
    if style == "drawing" and rng.random() < 0.5:
        return None
    if style == "dark":
        return Image.new("RGB", (w, h), tuple(int(c * 255) for c in _colour(rng, light=False) * 0.5))
    if style == "photo":
        top, bottom = rng.uniform(0.75, 0.97), rng.uniform(0.6, 0.9)
        ramp = np.linspace(top, bottom, h, dtype=np.float32)[:, None, None] * np.ones((1, w, 3), np.float32)
        tint = 1 - 0.06 * _colour(rng)
        return Image.fromarray((np.clip(ramp * tint, 0, 1) * 255).astype(np.uint8), "RGB")
    if style in PHOTO_SETS:
        from fmnist.pictures import backgrounds

        bg = backgrounds.crop(PHOTO_SETS[style], rng, w, h)
        if rng.random() < 0.5:  # uneven light across the scene
            ramp = np.linspace(rng.uniform(0.7, 1.15), rng.uniform(0.7, 1.15), w, dtype=np.float32)
            bg = Image.fromarray(np.clip(np.asarray(bg, np.float32) * ramp[None, :, None], 0, 255).astype(np.uint8))
        return bg
    if style == "cluttered":
        bg = Image.new("RGB", (w, h), tuple(int(c * 255) for c in _colour(rng, light=True)))
        d = ImageDraw.Draw(bg)
        for _ in range(int(rng.integers(6, 14))):
            x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
            x1, y1 = x0 + rng.uniform(0.1, 0.5) * w, y0 + rng.uniform(0.1, 0.5) * h
            fill = tuple(int(c * 255) for c in _colour(rng))
            (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=fill)
        return bg
    grey = 1.0 if style in ("product", "drawing", "lineart") else rng.uniform(0.9, 1.0)
    return Image.new("RGB", (w, h), tuple(int(grey * 255) for _ in range(3)))


def render(pixels: np.ndarray, label: int, style: str, rng: np.random.Generator) -> Image.Image:
    """A 28x28 dataset image (light garment on black) as a picture in `style` (RGB, or RGBA when transparent)."""
    size = int(rng.integers(64, 141))
    layer = _geometry(_layer(pixels, style, rng, size), style, label, rng)
    w, h = layer.size
    margin = (rng.uniform(1.6, 2.6) if style in ("photo", "cluttered") else rng.uniform(1.25, 2.2) if style in PHOTO_SETS
              else rng.uniform(1.05, 1.4))
    cw, ch = int(w * margin) + 2, int(h * margin) + 2
    bg = _background(style, rng, cw, ch)
    x0, y0 = int(rng.uniform(0, cw - w)), int(rng.uniform(0, ch - h))
    if bg is None:
        out = Image.new("RGBA", (cw, ch), (0, 0, 0, 0))
        out.paste(layer, (x0, y0), layer)
        return out
    if style in ("photo", "product", *PHOTO_SETS) and rng.random() < 0.7:  # a soft drop shadow below and behind
        a = layer.getchannel("A").filter(ImageFilter.GaussianBlur(max(2, w // 25)))
        shadow = Image.new("RGB", (cw, ch), (0, 0, 0))
        sa = Image.new("L", (cw, ch), 0)
        sa.paste(a.point(lambda v: int(v * 0.35)), (x0 + w // 30 + 2, y0 + h // 20 + 2))
        bg = Image.composite(shadow, bg, sa)
    bg.paste(layer, (x0, y0), layer)
    if style == "photo":
        arr = np.asarray(bg, dtype=np.float32) + rng.normal(0, rng.uniform(2, 8), (ch, cw, 1))
        bg = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if style in ("product", "photo", "pattern", "cluttered", *PHOTO_SETS) or rng.random() < 0.3:
        q = int(rng.integers(15, 45) if style == "photo" else rng.integers(30 if style in PHOTO_SETS else 40, 90))
        buf = io.BytesIO()
        bg.save(buf, "JPEG", quality=q)
        bg = Image.open(io.BytesIO(buf.getvalue()))
        bg.load()
    return bg


def roundtrip(pixels: np.ndarray, label: int, style: str, rng: np.random.Generator) -> np.ndarray:
    """render, then the server's own preprocess=auto: the 28x28 uint8 image the model gets."""
    return to_model_pixels(render(pixels, label, style, rng), "auto")


# --------------------------------------------------------------------------- sets


def image_rng(seed: int, index: int, salt: str = "") -> np.random.Generator:
    """One generator per (seed, image, salt): any image renders the same alone or in a batch."""
    return np.random.default_rng([seed, index, zlib.crc32(salt.encode())])


def render_many(images: np.ndarray, labels: np.ndarray, styles, seed: int, start: int = 0) -> np.ndarray:
    """Round trips of images[i] in styles[i] (uint8 (N, 28, 28)); image i uses image_rng(seed, start + i)."""
    out = np.empty((len(images), 28, 28), np.uint8)
    for i, (px, y, st) in enumerate(zip(images, labels, styles)):
        out[i] = roundtrip(px, int(y), st, image_rng(seed, start + i, st))
    return out


def cache_key(*arrays: np.ndarray, modules=()) -> str:
    """What cached pictures depend on: the arrays they were made from (images, labels), and the source of the
    renderer, of the conversion and of any other `modules` that drew them (a cached picture is stale when one
    changes; the background pictures are named in fmnist.pictures.backgrounds' source, and change only with it)."""
    import fmnist.images.foreground
    import fmnist.images.preprocess
    import fmnist.pictures.backgrounds

    mods = (fmnist.images.preprocess, fmnist.images.foreground, fmnist.pictures.backgrounds, *modules)
    src = Path(__file__).read_bytes() + b"".join(Path(m.__file__).read_bytes() for m in mods)
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays) + src).hexdigest()[:16]


progress_log = logging.getLogger("fmnist.progress")  # the CLI prints it; long steps say what they do


def cached_array(path: Path, make, cache: bool = True) -> np.ndarray:
    """np.load(path) if it exists (and `cache`); else make(), written atomically to path (when `cache`)."""
    if cache and path.is_file():
        return np.load(path)
    t0 = time.monotonic()
    progress_log.info("making %s (once: later runs read it from %s)", path.name, path.parent)
    out = make()
    progress_log.info("made %s in %.0f s", path.name, time.monotonic() - t0)
    if cache:
        with atomic_path(path) as tmp:
            np.save(tmp, out)
    return out


def map_processes(fn, jobs: list, workers: int):
    """fn(job) for every job over `workers` processes, results in the jobs' order (a generator). Forked where
    the platform can (a spawned worker would re-run a caller's script that lacks the `if __name__ ==
    "__main__"` guard); the workers run only NumPy, Pillow and OpenCV, never the caller's torch."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        yield from pool.map(fn, jobs)


def _render_chunk(args):
    x, y, styles, seed, start = args
    return render_many(x, y, styles, seed, start)


def render_parallel(images, labels, styles, seed: int, workers: int = 0, progress=None) -> np.ndarray:
    """render_many over processes (the same output: every image has its own generator).

    progress(done, total) is called as chunks finish (map_processes).
    """
    workers = workers or min(os.cpu_count() or 1, 8)
    n = len(images)
    if workers <= 1 or n < 200:
        return render_many(images, labels, styles, seed)
    step = min(-(-n // (workers * 4)), 2000)
    jobs = [(images[s:s + step], labels[s:s + step], list(styles[s:s + step]), seed, s) for s in range(0, n, step)]
    out, done, told, t0 = [], 0, 0, time.monotonic()
    for chunk in map_processes(_render_chunk, jobs, workers):
        out.append(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, n)
        elif done * 4 // n > told:  # a line at each quarter: minutes of drawing are never silent
            told = done * 4 // n
            progress_log.info("drawing pictures: %s/%s (%.0f s)", f"{done:,}", f"{n:,}", time.monotonic() - t0)
    return np.concatenate(out)


BENCH_SEED = 20_261_129  # the benchmark's pictures; the training recipe draws with its own seed
BENCH_PER_STYLE = 1000  # the first 1,000 test images (100 per class, within a few) in every style

