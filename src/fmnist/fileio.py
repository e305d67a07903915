"""Files written whole or not at all: the one atomic writer every module uses (manifests, aliases, rollout
plans, key files, checkpoints, caches, batch parts, a cluster's state).

A unique temporary file beside the target (mkstemp: two writers never share one), written, flushed and
fsynced (`durable`: an operating-system crash cannot leave the new name on an empty file), given its
permissions (`mode`; default: as any new file here, 0666 less the umask, where mkstemp would make 0600),
then renamed onto the target: a reader sees the old file or the new one, never half of one. Any failure
removes the temporary file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_path(path: "str | Path", mode: "int | None" = None, durable: bool = True) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to (by any writer that takes a path: np.save,
    torch.save, ...); renamed onto `path` when the block ends, removed if it raises. It keeps path's suffix
    (np.save adds ".npy" to a name without it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, (0o666 & ~_UMASK) if mode is None else mode)
        os.close(fd)
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: "str | Path", data: "bytes | str", mode: "int | None" = None, durable: bool = True) -> None:
    """`data` (text is written as UTF-8) as `path`, whole or not at all."""
    with atomic_path(path, mode, durable) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
