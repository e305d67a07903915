"""A real `fmnist serve` (Gunicorn, 2 workers) end to end: start, ready, predict real test PNGs, v2, stop."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fmnist.client import predict_bytes
from tests.conftest import REPO, SHIPPED
from tests.images import png


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "FMNIST_MODELS": str(REPO / "models")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fmnist.cli", "serve", "--model", str(SHIPPED), "--host",
                                 "127.0.0.1", "--port", str(port), "--workers", "2", "--threads", "4"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    ready_after = None
    while time.monotonic() - t0 < 30:
        if proc.poll() is not None:
            pytest.fail(f"server exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=1) as r:
                if r.status == 200:
                    ready_after = time.monotonic() - t0
                    break
        except OSError:
            time.sleep(0.05)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"server not ready in 30 s:\n{log.read_text()}")
    yield {"url": url, "proc": proc, "log": log, "ready_after": ready_after, "port": port}
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read())


def test_ready_and_health(server):
    print(f"ready after {server['ready_after']:.2f}s")
    assert get_json(server["url"] + "/health")[0] == 200
    status, body = get_json(server["url"] + "/ready")
    assert status == 200 and body["model"]["name"] == "smallcnn"


@pytest.mark.realdata
def test_predict_real_test_pngs_concurrently(server, real_data):
    x, y = real_data.test_images[:400], real_data.test_labels[:400]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda a: predict_bytes(png(a), server["url"]), x))
    assert all("error" not in r for r in results), [r for r in results if "error" in r][:3]
    acc = np.mean([r["class_id"] == t for r, t in zip(results, y)])
    assert acc >= 0.9, acc
    assert len({r["request_id"] for r in results}) == len(results)


def test_bad_input_never_kills_a_worker(server):
    for blob in (b"", b"garbage", png(np.zeros((28, 28)))[:-20]):
        r = predict_bytes(blob, server["url"])
        assert r["error"]["code"] == "bad_image"
    ok = predict_bytes(png(np.zeros((28, 28))), server["url"])
    assert "label" in ok
    log = server["log"].read_text()
    assert "Worker exiting" not in log and "Traceback" not in log


def test_access_log_is_json_lines(server):
    predict_bytes(png(np.zeros((28, 28))), server["url"])
    time.sleep(0.2)
    lines = [json.loads(line) for line in server["log"].read_text().splitlines() if line.startswith('{"ts"')]
    assert lines and {"request_id", "route", "status", "latency_ms"} <= set(lines[-1])


def test_tritonclient_against_v2(server, real_data):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{server['port']}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("smallcnn")
    meta = client.get_model_metadata("smallcnn")
    assert meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

    from fmnist.artifact import read_artifact

    pre = read_artifact(SHIPPED).preprocessing
    x = real_data.test_images[:32]
    y = real_data.test_labels[:32]
    # FP32, already normalised, binary tensors (the client's default), both outputs
    inp = httpclient.InferInput("input", [32, 1, 28, 28], "FP32")
    inp.set_data_from_numpy(pre.normalize(x))
    outs = [httpclient.InferRequestedOutput("probabilities"), httpclient.InferRequestedOutput("labels")]
    res = client.infer("smallcnn", [inp], outputs=outs)
    probs = res.as_numpy("probabilities")
    assert probs.shape == (32, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    labels = [b.decode() for b in res.as_numpy("labels")]
    assert (probs.argmax(1) == y).mean() >= 0.85
    from fmnist.labels import CLASSES
    assert labels == [CLASSES[i] for i in probs.argmax(1)]

    # UINT8 raw pixels [N,28,28] as JSON data: the same probabilities
    inp8 = httpclient.InferInput("input", [32, 28, 28], "UINT8")
    inp8.set_data_from_numpy(x, binary_data=False)
    res8 = client.infer("smallcnn", [inp8], outputs=[httpclient.InferRequestedOutput("probabilities",
                                                                                      binary_data=False)])
    assert np.allclose(res8.as_numpy("probabilities"), probs, atol=1e-5)

    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("resnet", [inp])
    bad = httpclient.InferInput("input", [2, 3, 28, 28], "FP32")
    bad.set_data_from_numpy(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(InferenceServerException, match=r"shape \[2, 3, 28, 28\] is not supported"):
        client.infer("smallcnn", [bad])


def test_sigterm_stops_gracefully(server):
    proc = server["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=25) == 0
