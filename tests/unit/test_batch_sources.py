"""fmnist batch's array sources (batch/sources.py): a gzipped IDX file inflates in a thread while the job runs, and
gives exactly what reading it whole gives; a corrupt, truncated or over-long one fails the rows it cannot give,
with the reason; array items are made when asked for, with the same fingerprint as ever."""
import gzip
import hashlib
import struct

import numpy as np
import pytest

from fmnist.batch import sources
from fmnist.errors import InvalidValue


def _idx(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return b"\0\0\x08\x03" + struct.pack(">III", n, h, w) + images.tobytes()


def test_a_gzipped_idx_file_streams_in_and_equals_the_whole_read(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5000, 28, 28), dtype=np.uint8)
    labels = np.arange(5000, dtype=np.uint8) % 10
    path, lab = tmp_path / "x-images.gz", tmp_path / "x-labels.gz"
    # two gzip members: a file made by concatenating gzip streams is still one IDX file
    raw = _idx(images)
    path.write_bytes(gzip.compress(raw[:1_000_003]) + gzip.compress(raw[1_000_003:]))
    lab.write_bytes(gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 5000) + labels.tobytes()))
    src = sources.open_source(str(path), str(lab))
    assert src.kind == "array" and len(src) == 5000 and src.stream is not None
    src.wait_rows(5000)
    assert np.array_equal(src.array, images)
    first = src.items()[7]
    assert first == sources.Item("x-images.gz#7", None, 7, 7)
    assert sources.columns(src.items()[10:13], [0, 2]) == (["x-images.gz#10", "x-images.gz#12"], [None, None], [0, 2])
    old = hashlib.sha256()  # the fingerprint as it was computed from Item objects
    for i in range(5000):
        old.update(f"x-images.gz#{i}\0None\0{i}\0{int(labels[i])}\n".encode())
    assert src.fingerprint() == old.hexdigest()[:16]


@pytest.mark.parametrize("damage, reason", [
    (lambda z, raw: gzip.compress(raw[:-5000]), "truncated: 993 of the 1000 images"),
    (lambda z, raw: gzip.compress(raw + b"\0" * 784), "trailing bytes"),
    (lambda z, raw: z[:len(z) // 2] + bytes(200) + z[len(z) // 2 + 200:], "not a readable gzip file"),
])
def test_a_damaged_stream_fails_the_rows_it_cannot_give(tmp_path, damage, reason):
    raw = _idx(np.random.default_rng(1).integers(0, 256, (1000, 28, 28), dtype=np.uint8))
    path = tmp_path / "d.gz"
    path.write_bytes(damage(gzip.compress(raw), raw))
    src = sources.open_source(str(path))
    with pytest.raises(InvalidValue, match=reason):
        src.wait_rows(1000)


def test_a_gzipped_file_of_other_shapes_is_refused_at_once(tmp_path):
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(b"\0\0\x08\x03" + struct.pack(">III", 2, 32, 32) + bytes(2 * 32 * 32)))
    with pytest.raises(InvalidValue, match=r"\(N, 28, 28\), got \(N, 32, 32\)"):
        sources.open_source(str(path))
