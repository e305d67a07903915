"""Metrics, drift, feedback and live accuracy through the Flask test client on the shipped model."""

import io
import subprocess

import numpy as np
import pytest

from fmnist.monitoring.drift import Thresholds, ks_against_histogram, psi
from tests.conftest import program
from tests.images import png


@pytest.fixture
def mon_app(make_app):
    return make_app(drift_window=300, min_samples=100)


def predict(client, pixels):
    r = client.post("/predict", data={"image": (io.BytesIO(png(pixels)), "x.png")})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_psi_and_ks_basics():
    even = np.full(10, 0.1)
    assert psi(even, even) == pytest.approx(0)
    assert psi([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], even) > 2
    hist = {"edges": np.linspace(0, 1, 11).tolist(), "counts": [10] * 10}
    assert ks_against_histogram(np.random.default_rng(0).uniform(0, 1, 5000), hist) < 0.03
    assert ks_against_histogram(np.full(100, 0.99), hist) == pytest.approx(0.9)
    assert Thresholds.from_settings().psi_warn == 0.1 and Thresholds.from_settings().psi_alert == 0.25


@pytest.mark.realdata
def test_drift_ok_on_test_data_then_alert_on_shifted_stream(mon_app, real_data):
    c = mon_app.test_client()
    x = real_data.test_images
    rng = np.random.default_rng(0)
    for i in rng.choice(len(x), 300, replace=False):
        predict(c, x[i])
    m = c.get("/monitoring").get_json()
    assert m["drift"]["window_size"] == 300
    assert m["drift"]["status"] == "ok", m["drift"]["checks"]

    # a shifted stream: only footwear (Sandal, Sneaker, Ankle boot), dimmed to 40 %
    shoes = np.flatnonzero(np.isin(real_data.test_labels, [5, 7, 9]))
    for i in rng.choice(shoes, 300, replace=False):
        predict(c, (x[i] * 0.4).astype(np.uint8))
    m = c.get("/monitoring").get_json()
    checks = m["drift"]["checks"]
    assert m["drift"]["status"] == "alert" and m["status"] == "alert"
    assert checks["class_psi"]["status"] == "alert" and checks["class_psi"]["score"] > 0.25
    assert checks["mean_pixel_ks"]["status"] == "alert"
    dist = m["drift"]["window"]["class_distribution"]
    assert dist["Sandal"] + dist["Sneaker"] + dist["Ankle boot"] > 0.8


def test_single_class_dominance_alert(mon_app):
    c = mon_app.test_client()
    blank = np.zeros((28, 28), np.uint8)
    blank[4:24, 10:18] = 255  # the same picture over and over
    label = predict(c, blank)["label"]
    for _ in range(119):
        predict(c, blank)
    checks = c.get("/monitoring").get_json()["drift"]["checks"]
    assert checks["dominant_class_share"]["score"] == 1.0 and checks["dominant_class_share"]["class"] == label
    assert checks["dominant_class_share"]["status"] == "alert"


def test_too_few_samples_stay_ok(mon_app):
    c = mon_app.test_client()
    blank = np.zeros((28, 28), np.uint8)
    for _ in range(5):
        predict(c, blank)
    m = c.get("/monitoring").get_json()
    assert m["drift"]["window_size"] == 5 and not m["drift"]["enough_samples"] and m["drift"]["status"] == "ok"


@pytest.mark.realdata
def test_feedback_and_live_accuracy(mon_app, real_data):
    c = mon_app.test_client()
    x, y = real_data.test_images[:150], real_data.test_labels[:150]
    answers = [predict(c, a) for a in x]
    from fmnist.labels import CLASSES

    for i, (r, t) in enumerate(zip(answers, y)):
        label = CLASSES[t] if i % 2 else int(t)  # names and ids both work
        fb = c.post("/feedback", json={"request_id": r["request_id"], "label": label})
        assert fb.status_code == 200 and fb.get_json()["correct"] == (r["class_id"] == t)
    expected = np.mean([r["class_id"] == t for r, t in zip(answers, y)])
    acc = c.get("/monitoring").get_json()["accuracy"]
    assert acc["n"] == 150 and acc["accuracy"] == pytest.approx(expected)
    assert sum(v["n"] for v in acc["per_class"].values()) == 150
    text = c.get("/metrics").get_data(as_text=True)
    correct = sum(float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("fmnist_feedback_total") and 'outcome="correct"' in line)
    assert correct == round(expected * 150)


def test_feedback_errors(mon_app):
    c = mon_app.test_client()
    rid = predict(c, np.zeros((28, 28), np.uint8))["request_id"]
    r = c.post("/feedback", json={"request_id": "no-such-id", "label": 3})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "unknown_request_id"
    for body, code in (({"request_id": rid, "label": "Hat"}, "bad_label"), ({"request_id": rid, "label": 12}, "bad_label"),
                       ({"request_id": rid}, "missing_label"), ({"label": 3}, "missing_request_id"),
                       ({"request_id": rid, "label": 3, "index": -1}, "bad_parameter")):
        r = c.post("/feedback", json=body)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == code, (body, r.get_json())
    assert c.post("/feedback", data="nope", content_type="application/json").status_code == 400


def test_prediction_log_survives_restart_and_is_bounded(tmp_path, make_app):
    db = tmp_path / "p.sqlite"
    app = make_app(prediction_log=str(db), retention_rows=50)
    c = app.test_client()
    rid = predict(c, np.zeros((28, 28), np.uint8))["request_id"]
    store = app.extensions["fmnist"].store
    store.flush()
    store.close()
    again = make_app(prediction_log=str(db))
    c2 = again.test_client()
    assert c2.post("/feedback", json={"request_id": rid, "label": 0}).status_code == 200
    st = again.extensions["fmnist"].store
    row = st.get(rid)
    assert row["true_label"] == 0 and len(row["input_sha256"]) == 64
    st.retention_rows = 50
    for _ in range(80):
        predict(c2, np.zeros((28, 28), np.uint8))
    st.flush()
    st.prune()
    assert st.count() <= 50


@pytest.mark.integration
def test_metrics_names_and_promtool(mon_app):
    c = mon_app.test_client()
    predict(c, np.zeros((28, 28), np.uint8))
    c.get("/nope")
    text = c.get("/metrics").get_data(as_text=True)
    for name in ("fmnist_http_requests_total", "fmnist_http_request_duration_seconds_bucket",
                 "fmnist_http_requests_in_progress", "fmnist_inference_duration_seconds_bucket",
                 "fmnist_inference_batch_size_bucket", "fmnist_predictions_total", "fmnist_prediction_confidence_bucket",
                 "fmnist_input_mean_pixel_bucket", "fmnist_feedback_total", "fmnist_model_info",
                 "fmnist_process_cpu_seconds_total", "fmnist_process_resident_memory_bytes",
                 "fmnist_reference_class_share"):
        assert name in text, name
    classes = [line for line in text.splitlines() if line.startswith("fmnist_predictions_total{")]
    assert len(classes) == 10  # all ten classes from the start
    assert 'route="<unmatched>",status="404"' in text
    assert "fmnist_gpu_" not in text  # absent, not zero, without a GPU
    promtool = program("promtool")
    if promtool is None:
        pytest.skip("promtool not installed or too old (make test-deps installs Debian's prometheus)")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prediction_log_is_written_under_sustained_load(tmp_path):
    """Rows reach SQLite within a few flush intervals even while predictions never pause."""
    import threading
    import time

    from fmnist.monitoring.store import open_store

    store = open_store(str(tmp_path / "p.sqlite"), flush_interval=0.05)
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            store.record([(f"r{i}", 0, time.time(), "replica-a", "m", "1", i % 10, 0.9, 0.3, "0" * 64, None, "", None, "")])
            i += 1
            time.sleep(0.001)

    t = threading.Thread(target=produce)
    t.start()
    try:
        deadline = time.monotonic() + 2
        while store.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        written_while_busy = store.count()
    finally:
        stop.set()
        t.join()
    assert written_while_busy > 0
    store.close()


def test_bulk_histogram_writes_equal_one_observation_at_a_time():
    """metrics._observe_many (used by the bulk flush) fills the same buckets as Histogram.observe."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from fmnist.monitoring.prometheus import LATENCY_BUCKETS, _observe_many

    values = [0.0, 0.001, 0.0010001, 0.0049999, 0.025, 0.03, 7.0, 1e9] + list(np.random.default_rng(0).exponential(0.01, 500))
    one, bulk = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("x_seconds", "x", buckets=LATENCY_BUCKETS, registry=one)
    h2 = Histogram("x_seconds", "x", buckets=LATENCY_BUCKETS, registry=bulk)
    for v in values:
        h1.observe(v)
    _observe_many(h2, values)
    def lines(reg):
        return [line for line in generate_latest(reg).decode().splitlines() if "_sum" not in line and "_created" not in line]

    assert lines(one) == lines(bulk)
    assert h1._sum.get() == pytest.approx(h2._sum.get(), rel=1e-12)


def _open_and_report(path, q):
    from fmnist.monitoring.store import open_store

    store = open_store(path)
    q.put(store.health())
    store.close()


def test_processes_opening_a_new_sqlite_log_together_all_come_up_healthy(tmp_path):
    """Gunicorn starts its workers together: each applies the schema versions in one transaction, so
    none finds a half-migrated log (an ALTER TABLE run twice) and starts unhealthy."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for trial in range(15):
        q = ctx.Queue()
        procs = [ctx.Process(target=_open_and_report, args=(str(tmp_path / f"p{trial}.sqlite"), q)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=30)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]  # none died opening it
        health = [q.get(timeout=5) for _ in procs]
        assert all(h["ok"] for h in health), health


@pytest.mark.realdata
def test_low_confidence_inputs_as_the_model_saw_them(make_app, real_data):
    import base64

    from PIL import Image

    app = make_app(store_images=True, drift_window=500)
    c = app.test_client()
    x = real_data.test_images[:200]
    answers = {}
    for a in x:
        r = predict(c, a)
        answers[r["request_id"]] = (a, r["confidence"])
    unsure = {rid for rid, (_, conf) in answers.items() if conf < 0.7}
    assert 0 < len(unsure) < 48  # a handful of the 200 test images
    body = c.get("/monitoring/low-confidence?below=0.7&limit=48").get_json()
    assert body["store_images"] and body["below"] == 0.7
    assert {it["request_id"] for it in body["items"]} == unsure
    for it in body["items"]:
        seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(it["image_png"]))))
        assert np.array_equal(seen, answers[it["request_id"]][0])  # the 28x28 the model saw
        assert it["confidence"] < 0.7 and it["predicted"]
    assert len(c.get("/monitoring/low-confidence?below=0.7&limit=2").get_json()["items"]) == 2
    for bad in ("below=2", "limit=0", "limit=x"):
        r = c.get("/monitoring/low-confidence?" + bad)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "bad_parameter"
    off = make_app()
    body = off.test_client().get("/monitoring/low-confidence").get_json()
    assert body["items"] == [] and "store_images" in body["note"]


def test_low_confidence_rows_from_the_sqlite_log(tmp_path):
    from fmnist.monitoring.store import open_store
    from tests.storecheck import check_low_confidence

    store = open_store(str(tmp_path / "p.sqlite"), flush_interval=0.01)
    try:
        check_low_confidence(store)
    finally:
        store.close()
