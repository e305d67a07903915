"""A real `fmnist serve` (Gunicorn, 2 workers) end to end: start, ready, predict real test PNGs, v2, stop."""

import json
import os
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fmnist.client import predict_bytes
from tests.conftest import SHIPPED, running_server
from tests.images import png

pytestmark = pytest.mark.integration  # starts real processes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("serve")) as srv:
        yield srv


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
    # FP32, already normalised, binary tensors (the client's default), every output; image 32 is blank
    inp = httpclient.InferInput("input", [33, 1, 28, 28], "FP32")
    inp.set_data_from_numpy(pre.normalize(np.concatenate([x, np.zeros((1, 28, 28), np.uint8)])))
    outs = [httpclient.InferRequestedOutput(n) for n in ("probabilities", "labels", "ood_score", "flags")]
    res = client.infer("smallcnn", [inp], outputs=outs)
    probs = res.as_numpy("probabilities")
    assert probs.shape == (33, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    labels = [b.decode() for b in res.as_numpy("labels")]
    assert (probs[:32].argmax(1) == y).mean() >= 0.85
    from fmnist.labels import CLASSES
    assert labels == [CLASSES[i] for i in probs.argmax(1)]
    ood, flags = res.as_numpy("ood_score"), [b.decode() for b in res.as_numpy("flags")]
    assert ood.shape == (33,) and 0 <= ood.min() and ood.max() <= 1
    assert flags[32] == "not_a_garment" and ood[32] == 1.0 and set(flags) <= {"", "unsure", "not_a_garment"}
    assert flags[:32].count("") >= 20  # most dataset images are answered unflagged
    probs = probs[:32]

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


@pytest.mark.realdata
def test_metrics_and_monitoring_aggregate_all_workers(server, real_data):
    time.sleep(0.2)  # earlier tests' predictions: written by now (each worker writes its metrics every 50 ms)
    before = _predictions_total(server["url"])
    x, y = real_data.test_images[400:520], real_data.test_labels[400:520]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda a: predict_bytes(png(a), server["url"]), x))
    deadline = time.monotonic() + 2  # each worker writes its metrics in bulk every 50 ms
    while _predictions_total(server["url"]) - before < len(x) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _predictions_total(server["url"]) - before == len(x)  # whichever worker is scraped
    text = urllib.request.urlopen(server["url"] + "/metrics").read().decode()
    roles = [line for line in text.splitlines() if line.startswith("fmnist_process_resident_memory_bytes{")]
    assert sum('role="worker"' in r for r in roles) == 2 and sum('role="master"' in r for r in roles) == 1
    # feedback finds a prediction whichever worker served it (new connection each time)
    for r, t in zip(results, y):
        req = urllib.request.Request(server["url"] + "/feedback", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"request_id": r["request_id"], "label": int(t)}).encode())
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["correct"] == (r["class_id"] == t)
    time.sleep(0.2)  # each worker flushes its log every 50 ms
    m = get_json(server["url"] + "/monitoring")[1]
    assert m["accuracy"]["n"] >= len(x) and m["drift"]["window_size"] >= len(x)
    assert len(m["system"]["processes"]) == 3


def _predictions_total(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("fmnist_predictions_total{"))


def test_sigterm_stops_gracefully(server):
    proc = server["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=25) == 0
