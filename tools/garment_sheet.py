"""The renderer's contact sheet: for every class, each cut in each style (the picture, then the 28x28 the model
gets), and the non-garment objects; written to docs/garments.png (or the path given).

    python tools/garment_sheet.py [OUT.png]
"""

from __future__ import annotations

import sys

from PIL import Image, ImageDraw

from fmnist.images.preprocess import to_model_pixels
from fmnist.labels import CLASSES
from fmnist.pictures.garments.objects import EVAL_OBJECTS, TRAIN_OBJECTS
from fmnist.pictures.garments.render import STYLES, draw, garment
from fmnist.pictures.garments.shapes import CUTS
from fmnist.pictures.styles import image_rng

CELL = 72


def _cell(im: Image.Image) -> tuple:
    px = to_model_pixels(im, "auto")
    pic = im.convert("RGBA")
    flat = Image.new("RGB", pic.size, (255, 255, 255))
    flat.paste(pic, (0, 0), pic)
    flat.thumbnail((CELL, CELL))
    return flat, Image.fromarray(px).resize((CELL // 2, CELL // 2), Image.Resampling.NEAREST)


def main(out: str = "docs/garments.png") -> None:
    rows = []
    for y in range(10):
        for c, fn in enumerate(CUTS[y]):
            tag = f"{CLASSES[y]}: {fn.__name__}{' (held out)' if c == len(CUTS[y]) - 1 else ''}"
            rows.append((tag, [garment(y, c, st, image_rng(5, y * 10 + c, st), "train") for st in STYLES]))
    for name, kinds in (("train objects", TRAIN_OBJECTS), ("eval objects", EVAL_OBJECTS)):
        ims = [draw(fn(image_rng(6, i, k)), STYLES[i % 4], image_rng(6, i, k)) for i, (k, fn) in enumerate(kinds.items())]
        rows.append((f"{name}: {', '.join(kinds)}"[:40], ims[:5]))
        rows.append(("", ims[5:]))
    label_w = 240
    sheet = Image.new("RGB", (label_w + len(STYLES) * (CELL + CELL // 2 + 8), len(rows) * (CELL + 6) + 24), "white")
    d = ImageDraw.Draw(sheet)
    for j, st in enumerate(STYLES):
        d.text((label_w + j * (CELL + CELL // 2 + 8), 4), st, fill="black")
    for r, (tag, ims) in enumerate(rows):
        top = 20 + r * (CELL + 6)
        d.text((4, top + CELL // 2 - 6), tag, fill="black")
        for j, im in enumerate(ims):
            pic, px = _cell(im)
            x = label_w + j * (CELL + CELL // 2 + 8)
            sheet.paste(pic, (x, top))
            sheet.paste(px, (x + CELL + 2, top + CELL // 4))
    sheet.save(out)
    print(f"wrote {out} ({len(rows)} rows)")


if __name__ == "__main__":
    main(*sys.argv[1:])
