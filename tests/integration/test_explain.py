"""POST /explain on the shipped model and real test images: the same prediction as /predict, the image
the model saw, a saliency map that points at the garment, and the one-PNG form."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.images import png

pytestmark = pytest.mark.realdata


def test_explain_json_matches_predict_and_points_at_the_garment(client, real_data):
    for k in range(5):
        img = real_data.test_images[k]
        files = {"image": (io.BytesIO(png(img)), "x.png")}
        r = client.post("/explain?top_k=3", data=files, content_type="multipart/form-data")
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        pred = client.post("/predict?top_k=3", data={"image": (io.BytesIO(png(img)), "x.png")},
                           content_type="multipart/form-data").get_json()
        assert body["label"] == pred["label"] and body["top_k"] == pred["top_k"]
        ex = body["explanation"]
        assert ex["model_calls"] == 4 and np.array_equal(np.array(ex["seen_pixels"], np.uint8), img)
        sal = np.array(ex["saliency"])
        assert sal.shape == (28, 28) and sal.min() >= 0 and sal.max() == pytest.approx(1.0)
        garment = img > 30  # dataset images: light garment on a black background
        assert sal[garment].mean() > sal[~garment].mean()  # the evidence is on the garment, not the background
        for key in ("original_png", "seen_png", "overlay_png"):
            assert Image.open(io.BytesIO(base64.b64decode(ex[key]))).size == (224, 224)


def test_explain_as_one_png_and_its_refusals(client, real_data):
    img = real_data.test_images[0]
    r = client.post("/explain", json={"pixels": img.tolist()}, headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert Image.open(io.BytesIO(r.data)).size == (3 * 224, 224)
    two = client.post("/explain", json={"pixels": [img.tolist(), img.tolist()]})
    assert two.status_code == 400 and two.get_json()["error"]["code"] == "one_image_only"
    assert client.post("/explain", json={}).status_code == 400
    bad = client.post("/explain", data={"image": (io.BytesIO(b"not an image"), "x.png")},
                      content_type="multipart/form-data")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_image"


@pytest.mark.integration
def test_explain_through_gunicorn_on_the_loop_worker(tmp_path, real_data):
    """Served by the real server: the loop worker hands /explain to its thread pool."""
    import urllib.request

    from tests.conftest import running_server

    with running_server(tmp_path, workers=1) as srv:
        body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
                + png(real_data.test_images[1]) + b"\r\n--b--\r\n")
        req = urllib.request.Request(srv["url"] + "/explain", data=body, headers={
            "Content-Type": "multipart/form-data; boundary=b", "Accept": "image/png"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.headers["Content-Type"] == "image/png"
            assert Image.open(io.BytesIO(r.read())).size == (3 * 224, 224)


def test_explain_is_bounded_per_worker_and_counted(make_app, real_data):
    app = make_app(explain_concurrency=1)
    c = app.test_client()
    img = real_data.test_images[0].tolist()
    assert c.post("/explain", json={"pixels": img}).status_code == 200
    slots = app.extensions["fmnist"].explain_slots
    assert slots.acquire(blocking=False)  # as if one explanation were being computed now
    try:
        busy = c.post("/explain", json={"pixels": img})
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert busy.get_json()["error"]["code"] == "busy"
        assert c.post("/predict", json={"pixels": img}).status_code == 200  # /predict is not held up
    finally:
        slots.release()
    assert c.post("/explain", json={"pixels": img}).status_code == 200
    text = c.get("/metrics").get_data(as_text=True)
    assert 'fmnist_explanations_total{outcome="done"} 2.0' in text
    assert 'fmnist_explanations_total{outcome="busy"} 1.0' in text
    assert "fmnist_explain_duration_seconds_count 2.0" in text
