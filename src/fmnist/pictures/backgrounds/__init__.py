"""Real photographs and textures to lay garments on: the picture renderer's busy backgrounds.

Two sets, never mixed (SOURCES.tsv says where each file comes from and under which licence; each
keeps its own):

- `train`: 34 pictures from Debian's mate-backgrounds (nature photographs: grass, sand, wood, flowers,
  rain), ukui-wallpapers and mypaint-data-extras (paper, canvas and cork textures). The training
  recipe's `busy` style draws on these.
- `held_out`: 30 pictures from Debian's plasma-workspace-wallpapers (boats on a shore, autumn leaves,
  a forest path, a beach, cups, artwork). Only the benchmark's `onphoto` style and the
  out-of-distribution set use them: no training run or threshold ever sees them.

Each file is a copy downscaled to 480 pixels on its long side. Nothing here comes from emoji or icon
sets or from scikit-image's samples (reserved for independent checks).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
SETS = ("train", "held_out")


@lru_cache(maxsize=2)
def photos(which: str) -> tuple:
    """The set's pictures as RGB uint8 arrays, loaded once per process (~15 MB decoded per set)."""
    from PIL import Image

    if which not in SETS:
        raise ValueError(f"background set must be one of {SETS}, got {which!r}")
    files = sorted((HERE / which).glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no background pictures under {HERE / which}")
    return tuple(np.asarray(Image.open(f).convert("RGB")) for f in files)


def crop(which: str, rng: np.random.Generator, w: int, h: int):
    """A random w x h view of one of the set's pictures (any scale from a quarter of it to all of it,
    mirrored at random) as a PIL RGB image."""
    from PIL import Image

    pics = photos(which)
    src = pics[int(rng.integers(len(pics)))]
    sh, sw = src.shape[:2]
    aspect = w / h
    frac = rng.uniform(0.25, 1.0)  # the share of the picture's short side the view covers
    ch = max(8, int(min(sh, sw / aspect) * frac))
    cw = max(8, int(ch * aspect))
    y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
    view = Image.fromarray(src[y0:y0 + ch, x0:x0 + cw])
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return view.resize((w, h), Image.Resampling.BILINEAR)
