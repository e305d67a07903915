"""Find, verify and parse the real Fashion-MNIST IDX files; the fixed train/validation split."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.checksum import file_digest
from fmnist.errors import FmnistError
from fmnist.fileio import atomic_path
from fmnist.labels import CLASSES, NUM_CLASSES

# The official mirror (github.com/zalandoresearch/fashion-mnist README) and the md5 of each
# .gz file as published there.
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# sha256 of the *decompressed* IDX content. Debian recompresses the .gz files, so the gz md5
# differs there; the content must not.
CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
EXPECTED_COUNT = {"train": 60_000, "test": 10_000}
IMAGE_SIZE = 28

VAL_SIZE = 5_000  # carved from the 60k training images, 500 per class
SPLIT_SEED = 20170825  # fixed: the validation split must never change between runs or versions


class DatasetError(FmnistError):
    """The dataset is missing, truncated or not what Fashion-MNIST should be."""


# --------------------------------------------------------------------------- IDX parsing

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (magic 0x0000TTNN, NN big-endian uint32 dims, then the data)."""
    if len(raw) < 4:
        raise DatasetError(f"{name}: {len(raw)} bytes is too short for an IDX header (need at least 4)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{name}: bad IDX magic number 0x{raw[:4].hex()} "
            "(expected 0x00000801 for labels or 0x00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name}: truncated IDX header: {len(raw)} bytes, the {ndim} dimensions need {header}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DatasetError(
            f"{name}: file {what}: {len(raw)} bytes, but the header {tuple(dims)} says {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_idx_gz(path: Path) -> tuple[np.ndarray, str]:
    """Read and parse one gzipped IDX file: (array, sha256 of the decompressed bytes)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: not a readable gzip file ({e})") from None
    return parse_idx(raw, str(path)), hashlib.sha256(raw).hexdigest()


def _check_images(arr: np.ndarray, name: str, count: int) -> None:
    if arr.ndim != 3 or arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or arr.dtype != np.uint8:
        raise DatasetError(f"{name}: expected uint8 images of shape (N, 28, 28), got {arr.dtype} {arr.shape}")
    if arr.shape[0] != count:
        raise DatasetError(f"{name}: expected {count} images, found {arr.shape[0]}")


def _check_labels(arr: np.ndarray, name: str, count: int) -> None:
    if arr.ndim != 1 or arr.dtype != np.uint8:
        raise DatasetError(f"{name}: expected a uint8 label vector, got {arr.dtype} {arr.shape}")
    if arr.shape[0] != count:
        raise DatasetError(f"{name}: expected {count} labels, found {arr.shape[0]}")
    if arr.size and int(arr.max()) >= NUM_CLASSES:
        bad = int(np.argmax(arr >= NUM_CLASSES))
        raise DatasetError(f"{name}: label {int(arr[bad])} at index {bad} is out of range 0-{NUM_CLASSES - 1}")


# --------------------------------------------------------------------------- finding the files


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fmnist" / "fashion-mnist"


def candidate_dirs(data_dir: "str | Path | None" = None) -> list[tuple[str, Path]]:
    """Where to look, in order: --data-dir, FMNIST_DATA_DIR, the user cache, Debian's package."""
    out = []
    if data_dir:
        out.append(("--data-dir", Path(data_dir)))
    if os.environ.get("FMNIST_DATA_DIR"):
        out.append(("FMNIST_DATA_DIR", Path(os.environ["FMNIST_DATA_DIR"])))
    out.append(("user cache", user_cache_dir()))
    out.append(("dataset-fashion-mnist package", DEBIAN_DIR))
    return out


def _has_all(d: Path) -> bool:
    return all((d / f).is_file() for f in FILES.values())


def download(dest: Path, mirror: str = MIRROR, timeout: float = 60.0) -> Path:
    """Download the four files from the official mirror into dest, checking each md5."""
    dest.mkdir(parents=True, exist_ok=True)
    for fname, md5 in GZ_MD5.items():
        target = dest / fname
        if target.is_file() and file_digest(target, "md5") == md5:
            continue
        url = mirror + fname
        try:
            with atomic_path(target) as tmp:  # only a download whose md5 matches takes the name
                with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
                got = file_digest(tmp, "md5")
                if got != md5:
                    raise DatasetError(f"{url}: md5 {got} does not match the published {md5}")
        except OSError as e:
            raise DatasetError(
                f"could not download {url} ({e}); install the Debian/Ubuntu package "
                "dataset-fashion-mnist or pass --data-dir with the four .gz files"
            ) from None
    return dest


def find_data_dir(data_dir: "str | Path | None" = None, allow_download: bool = True) -> tuple[str, Path]:
    """Return (source, directory) of the first place holding all four files."""
    tried = []
    for source, d in candidate_dirs(data_dir):
        if _has_all(d):
            return source, d
        tried.append(f"{source}: {d}")
        if source == "--data-dir":  # an explicit directory is not silently replaced by another
            missing = [f for f in FILES.values() if not (d / f).is_file()]
            raise DatasetError(f"--data-dir {d} lacks {', '.join(missing)}")
    if allow_download:
        return "download", download(user_cache_dir())
    raise DatasetError(
        "Fashion-MNIST not found; looked in " + "; ".join(tried)
        + ". Install it with `apt-get install dataset-fashion-mnist` or pass --data-dir."
    )


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class FashionMNIST:
    """The whole dataset as uint8 arrays: images (N, 28, 28), labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    directory: Path
    checksums: dict

    def split(self, val_size: int = VAL_SIZE, seed: int = SPLIT_SEED):
        """The fixed, stratified train/validation split of the training set."""
        train_idx, val_idx = split_indices(self.train_labels, val_size, seed)
        return (
            (self.train_images[train_idx], self.train_labels[train_idx]),
            (self.train_images[val_idx], self.train_labels[val_idx]),
        )


def split_indices(labels: np.ndarray, val_size: int = VAL_SIZE, seed: int = SPLIT_SEED):
    """Stratified: val_size / 10 images of every class go to validation, chosen by a fixed seed."""
    rng = np.random.default_rng(seed)
    per_class = val_size // NUM_CLASSES
    val = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        val.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    val_idx = np.sort(np.concatenate(val))
    mask = np.ones(len(labels), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def load(data_dir: "str | Path | None" = None, allow_download: bool = True, verify: bool = True) -> FashionMNIST:
    """Find, parse, validate and checksum the four files."""
    source, d = find_data_dir(data_dir, allow_download)
    arrays, checksums = {}, {}
    for key, fname in FILES.items():
        path = d / fname
        arr, digest = read_idx_gz(path)
        split = "train" if key.startswith("train") else "test"
        if key.endswith("images"):
            _check_images(arr, str(path), EXPECTED_COUNT[split])
        else:
            _check_labels(arr, str(path), EXPECTED_COUNT[split])
        if verify and digest != CONTENT_SHA256[fname]:
            raise DatasetError(
                f"{path}: content sha256 {digest} is not Fashion-MNIST's {CONTENT_SHA256[fname]} "
                "(a different or modified dataset)"
            )
        arrays[key] = arr
        checksums[fname] = digest
    return FashionMNIST(**arrays, source=source, directory=d, checksums=checksums)


def summary(ds: FashionMNIST) -> dict:
    """Counts per split and class, pixel statistics: what `fmnist data` prints."""
    (_, tr_y), (_, va_y) = ds.split()
    px = ds.train_images.astype(np.float32) / 255.0
    return {
        "source": ds.source,
        "directory": str(ds.directory),
        "image_size": [IMAGE_SIZE, IMAGE_SIZE],
        "classes": list(CLASSES),
        "counts": {"train": int(len(tr_y)), "val": int(len(va_y)), "test": int(len(ds.test_labels))},
        "per_class": {
            name: {
                "train": int((tr_y == i).sum()),
                "val": int((va_y == i).sum()),
                "test": int((ds.test_labels == i).sum()),
            }
            for i, name in enumerate(CLASSES)
        },
        "pixel_mean": float(px.mean()),
        "pixel_std": float(px.std()),
        "checksums_sha256": ds.checksums,
        "verified": True,
    }
