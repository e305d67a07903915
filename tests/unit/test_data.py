import gzip

import numpy as np
import pytest

from fmnist import data
from fmnist.data import DatasetError, parse_idx, read_idx_gz
from tests.conftest import idx_bytes, write_gz


def test_parse_good_images_and_labels():
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    out = parse_idx(idx_bytes(imgs), "imgs")
    assert out.shape == (2, 28, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, imgs)
    labels = parse_idx(idx_bytes(np.array([0, 9, 3])), "labels")
    assert labels.tolist() == [0, 9, 3]


def test_truncated_file_names_file_and_sizes(tmp_path):
    raw = idx_bytes(np.zeros((3, 28, 28)))[:-100]
    path = write_gz(tmp_path / "train-images-idx3-ubyte.gz", raw)
    with pytest.raises(DatasetError) as e:
        read_idx_gz(path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "truncated" in msg and "(3, 28, 28)" in msg


def test_truncated_header():
    with pytest.raises(DatasetError, match="truncated IDX header"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00", "x")
    with pytest.raises(DatasetError, match="too short"):
        parse_idx(b"\x00", "x")


def test_wrong_magic():
    raw = bytearray(idx_bytes(np.zeros((1, 28, 28))))
    raw[0] = 0x12
    with pytest.raises(DatasetError, match="bad IDX magic number 0x12000803"):
        parse_idx(bytes(raw), "x")
    raw = bytearray(idx_bytes(np.zeros(3)))
    raw[2] = 0x42  # unknown dtype code
    with pytest.raises(DatasetError, match="magic"):
        parse_idx(bytes(raw), "x")


def test_trailing_bytes():
    with pytest.raises(DatasetError, match="trailing bytes"):
        parse_idx(idx_bytes(np.zeros(3)) + b"\x00", "x")


def test_not_gzip(tmp_path):
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip file"):
        read_idx_gz(p)


def _fake_dir(tmp_path, n_train=20, n_test=10, bad_label=False):
    rng = np.random.default_rng(0)
    d = tmp_path / "fake"
    d.mkdir()
    tr_y = np.arange(n_train) % 10
    if bad_label:
        tr_y[5] = 12
    write_gz(d / data.FILES["train_images"], idx_bytes(rng.integers(0, 256, (n_train, 28, 28))))
    write_gz(d / data.FILES["train_labels"], idx_bytes(tr_y))
    write_gz(d / data.FILES["test_images"], idx_bytes(rng.integers(0, 256, (n_test, 28, 28))))
    write_gz(d / data.FILES["test_labels"], idx_bytes(np.arange(n_test) % 10))
    return d


def test_wrong_counts_are_reported(tmp_path):
    d = _fake_dir(tmp_path)
    with pytest.raises(DatasetError, match="expected 60000 images, found 20"):
        data.load(d, allow_download=False, verify=False)


def test_label_out_of_range(tmp_path, monkeypatch):
    d = _fake_dir(tmp_path, bad_label=True)
    monkeypatch.setitem(data.EXPECTED_COUNT, "train", 20)
    monkeypatch.setitem(data.EXPECTED_COUNT, "test", 10)
    with pytest.raises(DatasetError, match="label 12 at index 5 is out of range 0-9"):
        data.load(d, allow_download=False, verify=False)


def test_checksum_refuses_other_data(tmp_path, monkeypatch):
    d = _fake_dir(tmp_path)
    monkeypatch.setitem(data.EXPECTED_COUNT, "train", 20)
    monkeypatch.setitem(data.EXPECTED_COUNT, "test", 10)
    with pytest.raises(DatasetError, match="is not Fashion-MNIST's"):
        data.load(d, allow_download=False)
    ds = data.load(d, allow_download=False, verify=False)
    assert ds.source == "--data-dir" and ds.train_images.shape == (20, 28, 28)


def test_search_order(tmp_path, monkeypatch):
    d = _fake_dir(tmp_path)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.find_data_dir(allow_download=False) == ("FMNIST_DATA_DIR", d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="--data-dir .* lacks"):
        data.find_data_dir(empty, allow_download=False)


def test_nothing_found_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        data.find_data_dir(allow_download=False)


def test_download_checks_md5(tmp_path, monkeypatch):
    """The real download code, pointed at a local file:// mirror: a wrong md5 is refused."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for fname in data.GZ_MD5:
        (mirror / fname).write_bytes(gzip.compress(b"not the real file"))
    with pytest.raises(DatasetError, match="does not match the published"):
        data.download(tmp_path / "dest", mirror=mirror.as_uri() + "/")
    assert not list((tmp_path / "dest").glob("*.gz"))  # nothing half-written is left behind


def test_split_is_fixed_and_stratified():
    labels = np.repeat(np.arange(10), 600)
    tr1, va1 = data.split_indices(labels, 500)
    tr2, va2 = data.split_indices(labels, 500)
    np.testing.assert_array_equal(va1, va2)
    assert len(va1) == 500 and len(tr1) == 5500
    assert set(np.bincount(labels[va1]).tolist()) == {50}
    assert not set(tr1) & set(va1)


@pytest.mark.realdata
def test_real_dataset(real_data):
    s = data.summary(real_data)
    assert s["counts"] == {"train": 55000, "val": 5000, "test": 10000}
    assert all(c["test"] == 1000 for c in s["per_class"].values())
    assert abs(s["pixel_mean"] - 0.2860) < 1e-3
    assert s["checksums_sha256"] == data.CONTENT_SHA256
