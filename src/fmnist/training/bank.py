"""The picture bank: every training image rendered as pictures once, for the recipe's picture mix.

Rendering a picture and converting it back (fmnist.pictures.styles.roundtrip) costs ~5 ms of Python per
image, too slow for every image of every epoch on a CPU. The bank renders `variants` round trips of
each training image once (each in a random training style, with its own random colours, geometry,
background and compression), in worker processes, and caches them under the user cache keyed on
the images, the seed and the source of the renderer and the conversion. Training then swaps an
image for one of its round trips with the recipe's probability: the swap is a tensor index, free.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from fmnist.errors import InvalidValue
from fmnist.pictures import styles as P

BANK_SALT = 7_919  # the bank's pictures never share generators with the benchmark's
OUTLIER_SALT = 104_729


def _styles(n: int, seed: int, variant: int) -> list:
    rng = np.random.default_rng([seed, variant, BANK_SALT])
    return [P.TRAIN_STYLES[k] for k in rng.integers(len(P.TRAIN_STYLES), size=n)]


def picture_bank(images: np.ndarray, labels: np.ndarray, variants: int, seed: int, workers: int = 0,
                 cache: bool = True, quiet: bool = False) -> np.ndarray:
    """uint8 (variants, N, 28, 28): round trips of every training image, rendered once and cached."""
    from fmnist.data import user_cache_dir

    if variants < 1:
        raise InvalidValue(f"picture variants must be at least 1, got {variants}")
    key = P.cache_key(images, labels)
    path = user_cache_dir() / "pictures" / f"bank-{len(images)}-s{seed}-{key}-v{{}}.npy"
    out = np.empty((variants, len(images), 28, 28), np.uint8)
    for v in range(variants):
        def render(v=v):
            t0 = time.perf_counter()

            def progress(done, total):
                if not quiet:
                    print(f"\rpicture bank {v + 1}/{variants}: {done:,}/{total:,} round trips "
                          f"({time.perf_counter() - t0:.0f}s)", end="", file=sys.stderr, flush=True)

            px = P.render_parallel(images, labels, _styles(len(images), seed, v), seed * 1_000 + BANK_SALT + v,
                                   workers=workers, progress=progress)
            if not quiet:
                print(file=sys.stderr, flush=True)
            return px

        out[v] = P.cached_array(path.parent / path.name.format(v), render, cache)
    return out


def outlier_bank(n: int, seed: int, workers: int = 0, cache: bool = True, quiet: bool = False) -> np.ndarray:
    """uint8 (n, 28, 28): the recipe's non-garment pictures (fmnist.pictures.outliers.TRAIN_KINDS), rendered once and cached."""
    import os

    from fmnist.data import user_cache_dir
    from fmnist.pictures import outliers

    def render():
        t0 = time.perf_counter()
        out = outliers.training_outliers(n, seed * 1_000 + OUTLIER_SALT, workers or min(os.cpu_count() or 1, 16))
        if not quiet:
            print(f"outlier bank: {n:,} non-garment pictures ({time.perf_counter() - t0:.0f}s)", file=sys.stderr,
                  flush=True)
        return out

    f = user_cache_dir() / "pictures" / f"outliers-{n}-s{seed}-{P.cache_key(modules=(outliers,))}.npy"
    return P.cached_array(f, render, cache)


GARMENT_SALT = 15_485_863


def garment_bank(n: int, seed: int, workers: int = 0, cache: bool = True, quiet: bool = False) -> tuple:
    """(uint8 (n, 28, 28), int64 labels): pictures of the parametric garments' training families, rendered once
    and cached (fmnist.pictures.garments.render.training_garments)."""
    import os

    from fmnist.data import user_cache_dir
    from fmnist.pictures.garments import objects, render, shapes

    key = P.cache_key(modules=(render, shapes, objects))
    base = user_cache_dir() / "pictures" / f"garments-{n}-s{seed}-{key}"

    def make():
        t0 = time.perf_counter()
        px, ys = render.training_garments(n, seed * 1_000 + GARMENT_SALT, workers or min(os.cpu_count() or 1, 16))
        if not quiet:
            print(f"garment bank: {len(px):,} parametric garments ({time.perf_counter() - t0:.0f}s)", file=sys.stderr,
                  flush=True)
        return np.concatenate([px.reshape(len(px), -1), ys[:, None].astype(np.uint8)], axis=1)

    both = P.cached_array(base.with_name(base.name + ".npy"), make, cache)
    return both[:, :784].reshape(-1, 28, 28).copy(), both[:, 784].astype(np.int64)


def object_bank(n: int, seed: int, workers: int = 0, cache: bool = True) -> np.ndarray:
    """uint8 (n, 28, 28): the parametric non-garment objects of the training kinds, rendered once and cached."""
    import os

    from fmnist.data import user_cache_dir
    from fmnist.pictures.garments import objects, render, shapes

    key = P.cache_key(modules=(render, shapes, objects))
    f = user_cache_dir() / "pictures" / f"objects-{n}-s{seed}-{key}.npy"
    return P.cached_array(f, lambda: render.training_objects(n, seed * 1_000 + OUTLIER_SALT,
                                                             workers or min(os.cpu_count() or 1, 16)), cache)
