"""Shared fixtures: the real dataset (skipped where absent), a temporary registry, a tiny artifact."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_gz(path: Path, raw: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(raw)
    return path


@pytest.fixture(scope="session")
def real_data():
    from fmnist import data

    try:
        return data.load(allow_download=False)
    except data.DatasetError as e:
        pytest.skip(f"real Fashion-MNIST not available ({e}); apt-get install dataset-fashion-mnist")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    root = tmp_path / "models"
    monkeypatch.setenv("FMNIST_MODELS", str(root))
    return root


@pytest.fixture
def tiny_artifact(registry):
    """A smallcnn with random (seeded) weights, saved through the real artifact writer."""
    import torch

    from fmnist.artifact import save_artifact
    from fmnist.models import create_model
    from fmnist.preprocess import Preprocessing

    torch.manual_seed(0)
    model = create_model("smallcnn", width=8, hidden=16)
    return save_artifact(
        model, registry=registry, name="tiny", arch="smallcnn", model_kwargs={"width": 8, "hidden": 16},
        preprocessing=Preprocessing(), metrics={"test": {"accuracy": 0.1}},
    )


SHIPPED = REPO / "models" / "smallcnn" / "1"


@pytest.fixture(scope="session")
def app():
    from fmnist.serving import create_app

    return create_app({"model": str(SHIPPED), "log_requests": False, "max_content_length": 2_000_000})


@pytest.fixture
def client(app):
    return app.test_client()
