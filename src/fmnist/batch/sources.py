"""What `fmnist batch` reads: a directory tree, a glob, a manifest (CSV or JSONL of paths, with optional
ids and labels), or an array file (IDX, gzipped or not, or `.npy`) of 28x28 images.

A source yields its items in one deterministic order (sorted paths, manifest order, array order), so a
run, its resume and every shard (`--shard i/N`: the items whose position is i modulo N) agree on what
is what. Array files are memory-mapped where they can be (raw IDX, `.npy`): the job's memory does not
grow with the input.
"""

from __future__ import annotations

import csv
import glob as globmod
import gzip
import hashlib
import json
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.errors import InvalidValue
from fmnist.labels import class_id

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Item:
    id: str
    path: "str | None" = None  # a file to decode; None for an array row
    row: "int | None" = None  # the row of the array file
    label: "int | None" = None  # the true class, when the manifest or a labels file gives it


class ArrayItems(Sequence):
    """The items of an array file (`<name>#<row>`, with its label where a labels file gives one), made when asked
    for: building 60,000 Item objects up front cost more than the rest of the job's start. A slice is another
    ArrayItems (a range of rows), so chunks and shards stay light."""

    def __init__(self, name: str, labels: "np.ndarray | None", rows: range):
        self.name, self.labels, self.rows = name, labels, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return ArrayItems(self.name, self.labels, self.rows[k])
        i = self.rows[k]
        return Item(f"{self.name}#{i}", None, i, None if self.labels is None else int(self.labels[i]))

    def columns(self, ks) -> "tuple[list, list, list]":
        """(ids, paths, labels) of the items at positions ks, without making an Item each."""
        rows = [self.rows[k] for k in ks]
        labels = [None] * len(rows) if self.labels is None else self.labels[rows].tolist()
        return [f"{self.name}#{i}" for i in rows], [None] * len(rows), labels



def columns(items, ks) -> "tuple[list, list, list]":
    """(ids, paths, labels) of items[k] for k in ks, for any sequence of items."""
    if isinstance(items, ArrayItems):
        return items.columns(ks)
    chosen = [items[k] for k in ks]
    return [it.id for it in chosen], [it.path for it in chosen], [it.label for it in chosen]


class Source:
    """The items of one input, in order; `pixels(rows)` for array sources."""

    kind: str = "files"

    def __init__(self, description: str, items: list, array=None):
        self.description = description
        self._items = items
        # (N, 28, 28) uint8 for array sources: memory-mapped where possible, else still inflating (`stream`)
        self.stream = array if isinstance(array, StreamedArray) else None
        self.array = array.array if self.stream is not None else array

    def start(self) -> None:
        """Begin what reading remains (a gzipped array inflating): call it after forking any workers."""
        if self.stream is not None:
            self.stream.start()

    def wait_rows(self, stop: int) -> None:
        """Return once the array's rows before `stop` are there (a gzipped file inflates while the job runs)."""
        if self.stream is not None:
            self.stream.wait(stop)

    def __len__(self) -> int:
        return len(self._items)

    def items(self, shard: "tuple[int, int] | None" = None) -> list:
        if shard is None:
            return self._items
        i, n = shard
        return self._items[i::n]

    def fingerprint(self) -> str:
        """Identifies the input (ids and paths, in order): a resume refuses a different one."""
        items = self._items
        ids, paths, labels = columns(items, range(len(items)))
        rows = items.rows if isinstance(items, ArrayItems) else [it.row for it in items]
        text = "".join([f"{i}\0{p}\0{r}\0{y}\n" for i, p, r, y in zip(ids, paths, rows, labels)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_shard(text: "str | None") -> "tuple[int, int] | None":
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InvalidValue(f"--shard {text!r}: expected i/N, e.g. 0/4 (this copy's index and the number of copies)") from None
    if not (n >= 1 and 0 <= i < n):
        raise InvalidValue(f"--shard {text!r}: the index must be 0..N-1 and N at least 1")
    return i, n


def open_source(spec: str, labels: "str | None" = None) -> Source:
    """The source named by `spec` (see the module's docstring); `labels`: an IDX labels file for an IDX
    or .npy images file (e.g. t10k-labels-idx1-ubyte.gz)."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return Source(f"directory {path} ({len(files)} pictures)",
                      [Item(str(p.relative_to(path)), str(p)) for p in files])
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return _manifest(path)
    if path.is_file() and (path.suffix.lower() == ".npy" or _is_idx(path)):
        arr = _array(path)
        ys = _labels(Path(labels), len(arr)) if labels else None
        src = Source(f"array {path} ({len(arr)} images)", ArrayItems(path.name, ys, range(len(arr))), arr)
        src.kind = "array"
        return src
    if any(c in spec for c in "*?["):
        files = sorted(p for p in globmod.glob(spec, recursive=True) if os.path.isfile(p))
        return Source(f"glob {spec} ({len(files)} files)", [Item(p, p) for p in files])
    if path.is_file():
        return Source(f"file {path}", [Item(path.name, str(path))])
    raise InvalidValue(f"{spec}: not a directory, a glob, a manifest (.csv, .jsonl), an array file (IDX, .npy) "
                       "or an image file")


def _manifest(path: Path) -> Source:
    base = path.parent
    rows: list = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise InvalidValue(f"{path}: a CSV manifest needs a header with a 'path' column (and optional 'id', "
                                   f"'label'); got {reader.fieldnames}")
            rows = list(reader)
    else:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InvalidValue(f"{path}:{n}: not a JSON object ({e})") from None
                    if not isinstance(row, dict) or "path" not in row:
                        raise InvalidValue(f"{path}:{n}: each line needs a \"path\" (and optional \"id\", \"label\")")
                    rows.append(row)
    items, seen = [], set()
    for n, row in enumerate(rows, 1):
        p = str(row["path"])
        full = p if os.path.isabs(p) else str(base / p)
        rid = str(row.get("id") or p)
        if rid in seen:
            raise InvalidValue(f"{path}: id {rid!r} appears twice (row {n}): ids must be unique")
        seen.add(rid)
        raw = row.get("label")
        try:
            label = class_id(int(raw) if isinstance(raw, str) and raw.strip().isdigit() else raw) \
                if raw not in (None, "") else None
        except ValueError as e:
            raise InvalidValue(f"{path}: row {n}: {e}") from None
        items.append(Item(rid, full, None, label))
    return Source(f"manifest {path} ({len(items)} rows)", items)


def _is_idx(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] == 0x08 and head[3] in (1, 3)


class StreamedArray:
    """The images of a gzipped IDX file, inflated by a thread into memory that worker processes forked before it
    started share (an anonymous shared mapping): they classify the first chunks while the rest still inflates.
    A gzip stream cannot be mapped, and inflating the 47 MB of the training set takes ~0.25 s of one core while
    the other has nothing to do. `start()` (the job, once its workers are forked: never fork beside a running
    thread) begins it; `wait(rows)` returns once that many rows are there, starting it first in the process
    that opened the file; a corrupt or truncated stream makes every wait raise InvalidValue with the reason
    (the job fails, as a whole read would)."""

    ROW = 28 * 28

    def __len__(self) -> int:
        return self.n

    def __init__(self, path: Path, n: int, header: int):
        self.path, self.n, self.header = path, n, header
        self._mm = mmap.mmap(-1, max(1, n * self.ROW))  # MAP_SHARED: forked workers see it fill
        self.array = np.frombuffer(self._mm, np.uint8, count=n * self.ROW).reshape(n, 28, 28)
        self._rows = multiprocessing_value("q")
        self._failed = multiprocessing_value("b")
        self._error = mmap.mmap(-1, 1024)  # the reason, for the workers too
        self._owner, self._thread = os.getpid(), None

    def start(self) -> None:
        if self._thread is None and os.getpid() == self._owner:
            self._thread = threading.Thread(target=self._fill, name="fmnist-inflate", daemon=True)
            self._thread.start()

    def _fill(self) -> None:
        size, at, skip = self.n * self.ROW, 0, self.header
        try:
            with open(self.path, "rb") as f:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                while block := f.read(1 << 20):
                    while block:
                        out = d.decompress(block)
                        block = d.unused_data  # the next gzip member, if the file has several
                        if block:
                            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                        cut = min(skip, len(out))
                        out, skip = out[cut:], skip - cut
                        if at + len(out) > size:
                            raise InvalidValue(f"{self.path}: file has trailing bytes after the {self.n} images its "
                                               "header counts")
                        self._mm[at:at + len(out)] = out
                        at += len(out)
                        self._rows.value = at // self.ROW
            if at < size:
                raise InvalidValue(f"{self.path}: file truncated: {at // self.ROW} of the {self.n} images its header "
                                   "counts")
        except Exception as e:  # whatever it is, the waiting workers must hear of it (never wait forever)
            if isinstance(e, InvalidValue):
                reason = str(e)
            elif isinstance(e, (OSError, EOFError, zlib.error)):
                reason = f"{self.path}: not a readable gzip file ({e})"
            else:
                reason = f"{self.path}: cannot be read ({e!r})"
            self._error[:] = reason.encode()[:1024].ljust(1024, b"\0")
            self._failed.value = 1

    def wait(self, rows: int) -> None:
        self.start()
        while self._rows.value < rows:
            if self._failed.value:
                raise InvalidValue(bytes(self._error).rstrip(b"\0").decode(errors="replace"))
            time.sleep(0.001)


def multiprocessing_value(code: str):
    """A number in shared memory that forked processes see change (no lock: one writer)."""
    from multiprocessing.sharedctypes import RawValue

    return RawValue(code, 0)


def _streamed(path: Path) -> StreamedArray:
    """A gzipped IDX file of 28x28 uint8 images, its header checked now, its images inflating."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(16)
    except (OSError, EOFError) as e:
        raise InvalidValue(f"{path}: not a readable gzip file ({e})") from None
    if len(head) < 16 or head[:4] != b"\0\0\x08\x03":
        raise InvalidValue(f"{path}: expected uint8 images of shape (N, 28, 28) (IDX magic 0x00000803), got "
                           f"0x{head[:4].hex()}")
    n, rows, cols = struct.unpack(">III", head[4:16])
    if (rows, cols) != (28, 28):
        raise InvalidValue(f"{path}: expected uint8 images of shape (N, 28, 28), got (N, {rows}, {cols})")
    return StreamedArray(path, n, 16)


def _array(path: Path) -> "np.ndarray | StreamedArray":
    """The images of an array file: memory-mapped (.npy, raw IDX) or inflating (.gz, StreamedArray)."""
    if path.suffix == ".gz":
        return _streamed(path)
    if path.suffix.lower() == ".npy":
        arr = np.load(path, mmap_mode="r")
    else:
        with open(path, "rb") as f:
            _, _, ndim = struct.unpack(">HBB", f.read(4))
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        arr = np.memmap(path, np.uint8, "r", offset=4 + 4 * ndim, shape=dims)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (28, 28):
        raise InvalidValue(f"{path}: expected uint8 images of shape (N, 28, 28), got {arr.dtype} {arr.shape}")
    return arr


def _labels(path: Path, n: int) -> np.ndarray:
    from fmnist.data import parse_idx

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        ys = parse_idx(f.read(), str(path))
    if ys.ndim != 1 or len(ys) != n:
        raise InvalidValue(f"{path}: {ys.shape} labels for {n} images")
    return ys
