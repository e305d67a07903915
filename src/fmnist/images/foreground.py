"""The garment cut out of a busy background, before the dataset-style conversion (preprocess.photo_to_dataset).

A product shot or a drawing has a plain page around the garment, and the conversion finds the garment
as "far from the page". A phone photo of a shirt on a bed or a shoe on gravel has none: trimming finds
the whole picture, and the model sees the gravel. So:

- `is_busy`: decided from the picture itself, by how much of its border the fitted background plane
  explains (a plain page, a lighting gradient: nearly all; grass, wood, a sofa: little) and how textured
  the part it explains is. Cheap (the border only), and only for pictures of at least EXTRACT_MIN_SIDE
  pixels a side, which the loop worker never converts on its event loop (create_app refuses a
  loop_max_pixels that would let it).
- `extract`: OpenCV's GrabCut (Rother et al. 2004), seeded with a rectangle INSET inside the border
  (a garment photographed is in the middle of the frame), run at GRABCUT_SIDE pixels for GRABCUT_ITERS
  iterations: its cost is bounded whatever the picture (~15-25 ms on one core). The largest connected
  region is kept, its holes filled. None when it finds no plausible garment (nothing, or nearly the
  whole frame): the caller converts the picture as it is.

bench/foreground_bench.py measures the candidates (GrabCut at several sizes, colour clustering) by
accuracy and cost; docs/benchmarks.md has the figures behind these constants.
"""

from __future__ import annotations

import numpy as np

EXTRACT_MIN_SIDE = 48  # smaller pictures are icons or dataset-like: converted as they are
# is_busy's rule, from the border of 150 pictures per benchmark style and of test images enlarged, inverted,
# tinted and JPEG-compressed (garments touching the frame): busy for 1 % of product shots, 0 % of the other
# plain styles, 3 % of the enlarged dataset images, 80 % of onphoto, 48 % of cluttered, 41 % of busy (the
# rest of those lie on smooth or paper-like backgrounds, where the plain conversion works)
BUSY_BELOW = 0.90  # share of the border that is page, under which a textured page makes the picture busy
TEXTURED = 6.0  # median distance (levels of 255) of the page pixels from the fitted plane: above, it is textured
MOSTLY_NOT_PAGE = 0.5  # under this share of page on the border, busy whatever its texture
PLANE_TOLERANCE = 0.10 * 255  # "explained": within 10 % of full intensity of the plane (preprocess.TRIM_TOLERANCE)
GRABCUT_SIDE = 96  # 96 px x 2 iterations: the accuracy of 128 x 3 and 160 x 5 at a half and a quarter of the cost
GRABCUT_ITERS = 2
INSET = 0.05
MIN_AREA, MAX_AREA = 0.02, 0.92  # a cut-out outside this share of the frame is not a garment found
METHODS = ("grabcut", "clusters")


def border_stats(rgb: np.ndarray, plane: np.ndarray) -> tuple[float, float]:
    """(share of the border pixels, two deep, within PLANE_TOLERANCE of the fitted background plane; the median
    distance of those from it, in levels of 255): how much of the border is page, and how textured that page is."""
    def band(a: np.ndarray) -> np.ndarray:  # the border two pixels deep, (n, 3): never the whole picture
        return np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3), a[2:-2, :2].reshape(-1, 3),
                               a[2:-2, -2:].reshape(-1, 3)])

    ring = np.abs(band(rgb) - band(plane)).max(axis=1)
    ok = ring <= PLANE_TOLERANCE
    if not ring.size or not ok.any():
        return (1.0, 0.0) if not ring.size else (0.0, float("inf"))
    return float(ok.mean()), float(np.median(ring[ok]))


def is_busy(rgb: np.ndarray, plane: np.ndarray) -> bool:
    """True when the picture is large enough and its border is not a plain page: less than half of it is page,
    or less than BUSY_BELOW of it and that page is textured (a garment touching the frame of an otherwise
    plain picture leaves the rest of the border smooth: not busy)."""
    if min(rgb.shape[:2]) < EXTRACT_MIN_SIDE:
        return False
    explained, texture = border_stats(rgb, plane)
    return explained < MOSTLY_NOT_PAGE or (explained < BUSY_BELOW and texture > TEXTURED)


def _largest_region(mask: np.ndarray) -> np.ndarray:
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == k).astype(np.uint8)
    # fill holes: flood the outside from a padded corner, what it cannot reach is inside
    padded = np.pad(region, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    return (padded | (1 - flood)).astype(bool)[1:-1, 1:-1]


def _grabcut(small: np.ndarray, iters: int) -> np.ndarray:
    import cv2

    h, w = small.shape[:2]
    dy, dx = max(1, int(h * INSET)), max(1, int(w * INSET))
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation draws: the same picture, the same cut
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, (dx, dy, w - 2 * dx, h - 2 * dy), bgd, fgd, iters,
                cv2.GC_INIT_WITH_RECT)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _clusters(small: np.ndarray, k: int = 6) -> np.ndarray:
    """Colour clustering: k-means in Lab; a cluster mostly seen on the border is background."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(0)
    _, labels, _ = cv2.kmeans(lab, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0), 2,
                              cv2.KMEANS_PP_CENTERS)
    labels = labels.reshape(small.shape[:2])
    h, w = labels.shape
    dy, dx = max(1, int(h * INSET)), max(1, int(w * INSET))
    inner = np.zeros((h, w), bool)
    inner[dy:h - dy, dx:w - dx] = True
    fg = np.zeros((h, w), bool)
    for c in range(k):
        sel = labels == c
        outside, total = int((sel & ~inner).sum()), int(sel.sum())
        if total and outside / total < 0.5 * (~inner).sum() / inner.size:  # rarer on the border than chance
            fg |= sel
    return fg & inner


def extract(rgb: np.ndarray, method: str = "grabcut", side: "int | None" = None, iters: "int | None" = None
            ) -> "np.ndarray | None":
    """float32/uint8 RGB (H, W, 3) -> bool (H, W): the garment, or None when none is found (see module doc).
    side, iters: the working size and GrabCut's iterations (default GRABCUT_SIDE, GRABCUT_ITERS)."""
    import cv2

    side, iters = side or GRABCUT_SIDE, iters or GRABCUT_ITERS
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    src = np.clip(rgb, 0, 255).astype(np.uint8)
    small = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA) if (sh, sw) != (h, w) else src
    if method == "grabcut":
        fg = _grabcut(small, iters)
    elif method == "clusters":
        fg = _clusters(small)
    else:
        raise ValueError(f"unknown extraction method {method!r}: expected one of {METHODS}")
    fg = _largest_region(fg)
    area = fg.mean()
    if not MIN_AREA <= area <= MAX_AREA:
        return None
    if (sh, sw) != (h, w):
        fg = cv2.resize(fg.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) >= 128
    return fg
