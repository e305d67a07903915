"""A second, independent picture check: garments drawn from hand-written outlines, not from dataset images.

    python bench/drawn_pictures.py smallcnn:1 smallcnn [--sheet docs/report/drawn.png]

The picture benchmark (fmnist.pictures.styles) restyles test images, so a recipe trained on its styles is
partly judged on its own renderer. These ten outlines (one per class, written as polygons and
strokes on a 100x100 grid) share nothing with the dataset: each is drawn flat-coloured with a dark
outline on white, in 2 colourways x 3 poses (upright, tilted 20 degrees, mirrored) = 60 pictures,
converted with preprocess=auto as /predict does. It is small and drawn by one hand: a sanity check
of the direction, not a benchmark to tune against.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

# (class id, polygons, strokes): points on a 100x100 grid; strokes are drawn as thick dark lines
SHAPES = {
    0: ([[(30, 15), (42, 12), (50, 18), (58, 12), (70, 15), (90, 32), (80, 42), (72, 36), (72, 90), (28, 90),
          (28, 36), (20, 42), (10, 32)]], []),  # T-shirt
    1: ([[(30, 8), (70, 8), (75, 94), (57, 94), (50, 34), (43, 94), (25, 94)]], []),  # trousers
    2: ([[(32, 10), (50, 15), (68, 10), (84, 20), (96, 82), (84, 86), (74, 42), (74, 92), (26, 92), (26, 42),
          (16, 86), (4, 82), (16, 20)]], [[(26, 86), (74, 86)]]),  # pullover, ribbed hem
    3: ([[(40, 6), (60, 6), (63, 32), (82, 94), (18, 94), (37, 32)]], [[(37, 32), (63, 32)]]),  # dress
    4: ([[(32, 6), (50, 14), (68, 6), (86, 18), (97, 86), (85, 90), (76, 44), (76, 97), (24, 97), (24, 44),
          (15, 90), (3, 86), (14, 18)]], [[(50, 14), (50, 97)], [(32, 6), (50, 30), (68, 6)]]),  # coat, open front
    5: ([[(4, 78), (96, 72), (96, 82), (4, 88)]],
        [[(12, 78), (30, 55), (50, 76)], [(40, 76), (60, 50), (80, 73)], [(70, 73), (88, 58), (94, 72)]]),  # sandal
    6: ([[(32, 10), (44, 8), (50, 16), (56, 8), (68, 10), (84, 20), (94, 80), (82, 84), (73, 44), (73, 94),
          (27, 94), (27, 44), (18, 84), (6, 80), (16, 20)]],
        [[(44, 8), (50, 22), (56, 8)], [(50, 22), (50, 94)]]),  # shirt: collar, button placket
    7: ([[(4, 58), (30, 52), (48, 36), (66, 36), (80, 50), (96, 60), (96, 78), (4, 78)]],
        [[(4, 70), (96, 70)], [(50, 40), (58, 52)]]),  # sneaker (toe on the left, as in the dataset)
    8: ([[(12, 40), (88, 40), (92, 92), (8, 92)]], [[(30, 40), (30, 20), (70, 20), (70, 40)]]),  # bag with handle
    9: ([[(30, 8), (62, 8), (62, 50), (94, 62), (96, 86), (8, 86), (8, 60), (30, 52)]],
        [[(8, 78), (96, 78)]]),  # ankle boot
}
COLOURWAYS = ((40, 90, 170), (205, 170, 120))  # a navy and a beige garment


def draw(class_id: int, colour, pose: str, size: int = 200) -> Image.Image:
    polys, strokes = SHAPES[class_id]
    k = size / 100
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    for poly in polys:
        d.polygon([(x * k, y * k) for x, y in poly], fill=colour, outline=(25, 25, 25), width=max(2, size // 60))
    for line in strokes:
        d.line([(x * k, y * k) for x, y in line], fill=(25, 25, 25), width=max(2, size // 60), joint="curve")
    if pose == "tilted":
        im = im.rotate(20, Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    elif pose == "mirrored":
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return im


def pictures() -> "tuple[list, np.ndarray]":
    ims, labels = [], []
    for c in SHAPES:
        for colour in COLOURWAYS:
            for pose in ("upright", "tilted", "mirrored"):
                ims.append(draw(c, colour, pose))
                labels.append(c)
    return ims, np.array(labels)


def main() -> None:
    from fmnist.evaluation.evaluate import artifact_logits
    from fmnist.images.preprocess import to_model_pixels
    from fmnist.labels import CLASSES
    from fmnist.registry import resolve

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--registry")
    ap.add_argument("--sheet", help="write the pictures and what the model sees as one PNG")
    args = ap.parse_args()
    ims, y = pictures()
    px = np.stack([to_model_pixels(im, "auto") for im in ims])
    for ref in args.models:
        art = resolve(ref, args.registry)
        pred = artifact_logits(art, px).argmax(1)
        per = {CLASSES[c].split("/")[0]: int((pred[y == c] == c).sum()) for c in SHAPES}
        wrong = sorted({f"{CLASSES[t].split('/')[0]}->{CLASSES[p].split('/')[0]}" for t, p in zip(y, pred) if t != p})
        print(f"{art.ref:<12} {int((pred == y).sum())}/{len(y)} right ({100 * (pred == y).mean():.0f} %); "
              f"per class (of 6): {per}")
        print(f"{'':<12} mistakes: {', '.join(wrong) or 'none'}")
    if args.sheet:
        tile = 64
        sheet = Image.new("RGB", (len(ims) // 2 * tile, 4 * tile), "white")
        for i, (im, p) in enumerate(zip(ims, px)):
            row, col = divmod(i, len(ims) // 2)
            thumb = im.copy()
            thumb.thumbnail((tile, tile))
            sheet.paste(thumb, (col * tile, 2 * row * tile))
            sheet.paste(Image.fromarray(p).resize((tile, tile), Image.Resampling.NEAREST).convert("RGB"),
                        (col * tile, (2 * row + 1) * tile))
        sheet.save(args.sheet, optimize=True)


if __name__ == "__main__":
    main()
