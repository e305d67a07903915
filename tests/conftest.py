"""Shared fixtures: the real dataset (skipped where absent), a temporary registry, a tiny artifact."""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """tests/integration/ holds the tests that start real processes: each is marked `integration` (so
    `-m 'not integration'` still selects the unit tests alone, wherever they are run from)."""
    for item in items:
        if Path(str(item.fspath)).parent.name == "integration":
            item.add_marker(pytest.mark.integration)


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

    from fmnist.artifact import ArtifactInfo, save_artifact
    from fmnist.images.preprocess import Preprocessing
    from fmnist.models import create_model

    torch.manual_seed(0)
    model = create_model("smallcnn", width=8, hidden=16)
    info = ArtifactInfo(registry, "tiny", Preprocessing(), metrics={"test": {"accuracy": 0.1}})
    return save_artifact(model, info, arch="smallcnn", model_kwargs={"width": 8, "hidden": 16})


def program(key: str) -> "str | None":
    """The path of a test program (tools/testdeps.py: found wherever it came from, new enough), or None."""
    return _find_program(key).path if _find_program(key).ok else None


def needs(*keys: str):
    """Skip, saying what is missing or too old, unless every program named is usable."""
    problems = [f"{k} ({_find_program(k).problem or 'not found'})" for k in keys if not _find_program(k).ok]
    return pytest.mark.skipif(bool(problems), reason=f"needs {', '.join(problems)}: make test-deps installs it")


@functools.cache
def _find_program(key: str):
    from tools.testdeps import find

    return find(key)


SHIPPED = REPO / "models" / "smallcnn" / "6"  # the shipped default: the latest smallcnn


@pytest.fixture(scope="session")
def make_app(tmp_path_factory):
    """create_app(...) the way the tests want it: the shipped model, no access log, no registry watcher,
    and a prediction log of its own in a temporary directory (nothing written outside one); keyword
    arguments set any other Settings field (prediction_log=... to share one between two apps)."""
    from fmnist.serving import create_app

    def make(**settings):
        base = {"model": str(SHIPPED), "log_requests": False, "reload_interval": 0,
                "prediction_log": str(tmp_path_factory.mktemp("app") / "predictions.sqlite")}
        return create_app({**base, **settings})

    return make


@pytest.fixture(scope="session")
def app(make_app):
    return make_app(max_content_length=2_000_000)


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float, pause: float = 0.05, request_timeout: float = 1.0,
               describe=lambda: "", exited=lambda: False) -> float:
    """Poll GET url/ready until it answers 200; seconds waited. RuntimeError (with describe()) when the
    server has exited or is not ready in time."""
    t0 = time.monotonic()
    while True:
        if exited():
            raise RuntimeError(f"server exited early:\n{describe()}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"server not ready in {timeout:.0f} s:\n{describe()}")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=request_timeout) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(pause)


@contextlib.contextmanager
def running_server(workdir: Path, *extra: str, workers: int = 2, model: str = str(SHIPPED),
                   extra_env: "dict | None" = None):
    """A real `fmnist serve` (Gunicorn) on a free loopback port; yields url, port, proc, log, ready_after."""
    port = free_port()
    log = workdir / "server.log"
    env = {**os.environ, "FMNIST_MODELS": str(REPO / "models"),
           "FMNIST_PREDICTION_LOG": str(workdir / "predictions.sqlite"),
           "FMNIST_METRICS_REUSE": "0"}  # tests read /metrics right after what they count (test_metrics_cost: the default)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra_env or {})
    with open(log, "wb") as out:
        model_args = [] if any(a.startswith("--model") for a in extra) else ["--model", model]
        proc = subprocess.Popen([sys.executable, "-m", "fmnist.cli", "serve", *model_args, "--host",
                                 "127.0.0.1", "--port", str(port), "--workers", str(workers), *extra],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        ready_after = wait_ready(url, 30, describe=log.read_text, exited=lambda: proc.poll() is not None)
        yield {"url": url, "port": port, "proc": proc, "log": log, "ready_after": ready_after}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=["loop", "gthread"])
def kind_server(request, tmp_path_factory):
    """A real `fmnist serve` with one worker of each kind (the loop worker; gthread with 4 threads), per
    test module: the HTTP conformance and abuse suites run against both."""
    extra = ["--worker", request.param] + (["--threads", "4"] if request.param == "gthread" else [])
    with running_server(tmp_path_factory.mktemp(request.param), *extra, workers=1) as srv:
        srv["kind"] = request.param
        yield srv
