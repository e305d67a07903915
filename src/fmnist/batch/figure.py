"""The batch summary's figure (`<out>.summary.png`), drawn with Pillow.

Pillow is loaded already (it decodes the pictures); matplotlib's import alone took ~0.5 s and drawing
~0.3 s of a 60,000-image run that takes ~4 s in all (docs/benchmarks.md). The same panels as before:
the run's class distribution beside the model's reference (with the PSI), the confidence histogram with the
reference as a step line (with the KS statistic), and with labels the row-normalised confusion matrix.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fmnist.fileio import atomic_path
from fmnist.labels import CLASSES

PANEL_W, HEIGHT, TOP = 572, 480, 44  # one panel's width, the figure's height, the title's band
RUN, REF, INK, GRID = (31, 119, 180), (255, 127, 14), (25, 25, 25), (228, 228, 228)
# matplotlib's "Blues" at 0 and 1: the confusion matrix's cells go from one to the other
LIGHT, DARK = np.array([247, 251, 255]), np.array([8, 48, 107])


def _font(size: int):
    return ImageFont.load_default(size=size)


def _ticks(top: float) -> list:
    """Round tick values from 0 to at least `top` (steps of 1, 2 or 5 times a power of ten)."""
    top = max(top, 1e-9)
    raw = top / 8
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def _label(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"


class _Panel:
    """One plot: a frame at `box` (left, top, right, bottom of its plotting area), data x in [x0, x1], y in
    [0, y1]."""

    def __init__(self, img: Image.Image, box: tuple, title: str):
        self.img, self.draw, self.box = img, ImageDraw.Draw(img), box
        left, top, right, _ = box
        self.draw.text(((left + right) / 2, top - 26), title, fill=INK, font=_font(15), anchor="ms")
        self.x0 = self.x1 = self.y1 = None

    def axes(self, x0: float, x1: float, y1: float, yticks: bool = True) -> None:
        self.x0, self.x1, self.y1 = x0, x1, y1
        left, top, right, bottom = self.box
        if yticks:
            for v in _ticks(y1):
                if v > y1 * 1.0001:
                    break
                y = self.py(v)
                self.draw.line((left, y, right, y), fill=GRID)
                self.draw.text((left - 6, y), _label(v), fill=INK, font=_font(12), anchor="rm")

    def px(self, x: float) -> float:
        left, _, right, _ = self.box
        return left + (x - self.x0) / (self.x1 - self.x0) * (right - left)

    def py(self, y: float) -> float:
        _, top, _, bottom = self.box
        return bottom - y / self.y1 * (bottom - top)

    def frame(self) -> None:
        self.draw.rectangle(self.box, outline=INK)

    def bar(self, x: float, width: float, height: float, color) -> None:
        left, right = sorted((self.px(x), self.px(x + width)))
        self.draw.rectangle((left, self.py(height), right, self.py(0)), fill=color)

    def legend(self, items: list) -> None:
        """One line above the frame, right-aligned: a colour box and a name per item."""
        _, top, right, _ = self.box
        font = _font(11)
        x = right
        for name, color in reversed(items):
            x -= self.draw.textlength(name, font=font) + 26
            self.draw.rectangle((x, top - 15, x + 14, top - 7), fill=color)
            self.draw.text((x + 18, top - 11), name, fill=INK, font=font, anchor="lm")

    def slanted(self, x: float, y: float, text: str, size: int = 11) -> None:
        """`text` at 60 degrees, its end at (x, y): a class name under its tick."""
        font = _font(size)
        w = int(self.draw.textlength(text, font=font)) + 2
        mask = Image.new("L", (w, size + 4))
        ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=font)
        mask = mask.rotate(60, expand=True, resample=Image.BICUBIC)
        self.img.paste(Image.new("RGB", mask.size, INK), (int(x - mask.size[0]), int(y)), mask)


def write_figure(summary: dict, path: Path) -> "Path | None":
    """Class distribution vs reference, confidence histogram and (with labels) the confusion matrix."""
    if "drift" not in summary:
        return None
    panels = 3 if "accuracy" in summary else 2
    img = Image.new("RGB", (PANEL_W * panels, HEIGHT), (255, 255, 255))
    drift = summary["drift"]
    n = len(CLASSES)
    # classes
    live = [drift["window"]["class_distribution"][c] for c in CLASSES]
    ref = [drift["reference"]["class_distribution"][c] for c in CLASSES]
    psi = drift["checks"]["class_psi"]
    p = _Panel(img, (70, TOP + 40, PANEL_W - 20, HEIGHT - 95), f"classes (PSI {psi['score']:.3f}, {psi['status']})")
    p.axes(-0.6, n - 0.4, max(max(live), max(ref)) * 1.08)
    for i in range(n):
        p.bar(i - 0.4, 0.4, live[i], RUN)
        p.bar(i, 0.4, ref[i], REF)
        p.slanted(p.px(i) + 4, p.box[3] + 4, CLASSES[i])
    p.frame()
    p.legend([("this run", RUN), ("model's reference", REF)])
    # confidence
    edges = np.asarray(summary["confidence_histogram"]["edges"], float)
    counts = np.asarray(summary["confidence_histogram"]["counts"], float)
    share = counts / max(counts.sum(), 1)
    refc = np.asarray(drift["reference"]["confidence_histogram"], float)
    refs = refc / max(refc.sum(), 1)
    ks = drift["checks"]["confidence_ks"]["score"]
    p = _Panel(img, (PANEL_W + 60, TOP + 40, 2 * PANEL_W - 20, HEIGHT - 95), f"confidence (KS {ks:.3f})")
    p.axes(edges[0] - 0.05, edges[-1] + 0.05, max(share.max(), refs.max(), 1e-9) * 1.08)
    for lo, hi, v in zip(edges[:-1], edges[1:], share):
        p.bar(lo, hi - lo, v, RUN)
    points = []
    for lo, hi, v in zip(edges[:-1], edges[1:], refs):
        points += [(p.px(lo), p.py(v)), (p.px(hi), p.py(v))]
    p.draw.line(points, fill=INK, width=2)
    for t in np.linspace(edges[0], edges[-1], 6):
        p.draw.line((p.px(t), p.box[3], p.px(t), p.box[3] + 4), fill=INK)
        p.draw.text((p.px(t), p.box[3] + 8), _label(round(t, 2)), fill=INK, font=_font(12), anchor="mt")
    p.draw.text(((p.box[0] + p.box[2]) / 2, p.box[3] + 30), "max probability", fill=INK, font=_font(13), anchor="mt")
    p.frame()
    p.legend([("this run", RUN), ("reference", INK)])
    # confusion matrix
    if panels == 3:
        acc = summary["accuracy"]
        cm = np.asarray(acc["confusion"], float)
        rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        side = HEIGHT - 95 - (TOP + 40)
        left = 2 * PANEL_W + 110
        p = _Panel(img, (left, TOP + 40, left + side, TOP + 40 + side),
                   f"accuracy {acc['accuracy']:.2%} on {acc['n']:,} labelled")
        cell = side / n
        for i in range(n):
            for j in range(n):
                color = tuple(int(c) for c in LIGHT + (DARK - LIGHT) * min(max(rows[i, j], 0.0), 1.0))
                x, y = left + j * cell, TOP + 40 + i * cell
                p.draw.rectangle((x, y, x + cell, y + cell), fill=color)
            p.draw.text((left - 6, TOP + 40 + (i + 0.5) * cell), CLASSES[i], fill=INK, font=_font(10), anchor="rm")
            p.slanted(left + (i + 0.5) * cell + 4, p.box[3] + 4, CLASSES[i], 10)
        p.frame()
        p.draw.text((left + side / 2, HEIGHT - 14), "predicted", fill=INK, font=_font(13), anchor="ms")
    title = (f"{summary['model']['name']}:{summary['model']['version']} on {summary['n']:,} images, "
             f"{summary['errors']:,} unreadable; drift {drift['status']}")
    ImageDraw.Draw(img).text((img.size[0] / 2, 22), title, fill=INK, font=_font(14), anchor="ms")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=False)
    return path
