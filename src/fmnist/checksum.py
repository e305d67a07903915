"""A file's digest, read in 1 MiB blocks: the one loop for the dataset's md5s, the artifacts' and the
imported files' sha256s."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: "str | Path", algorithm: str = "sha256") -> str:
    """Hex digest of the file at `path` (sha256 by default; md5 for the dataset mirror's published sums)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
