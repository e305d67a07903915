"""The HTTP contract and the error table, through Flask's test client on the shipped model."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from fmnist.labels import CLASSES
from tests.conftest import SHIPPED
from tests.images import encode, png

rng = np.random.default_rng(0)
GARMENT = np.zeros((28, 28), np.uint8)
GARMENT[3:25, 6:22] = 180


def post_files(client, files, query=""):
    data = {}
    for field, blob, name in files:
        data.setdefault(field, []).append((io.BytesIO(blob), name))
    return client.post(f"/predict{query}", data=data, content_type="multipart/form-data")


def assert_prediction(p, top_k=3):
    assert p["label"] in CLASSES and CLASSES[p["class_id"]] == p["label"]
    assert 0 <= p["confidence"] <= 1 and len(p["top_k"]) == top_k
    assert p["top_k"][0]["label"] == p["label"] and p["top_k"][0]["probability"] == p["confidence"]
    probs = [t["probability"] for t in p["top_k"]]
    assert probs == sorted(probs, reverse=True)


def assert_error(resp, status, code, *fragments):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"]["code"] == code, body
    for f in fragments:
        assert f in body["error"]["message"], body["error"]["message"]
    assert body["request_id"]


# --------------------------------------------------------------------------- the contract


def test_single_image_multipart(client):
    r = post_files(client, [("image", png(GARMENT), "g.png")])
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert_prediction(body)
    assert body["model"] == {"name": "smallcnn", "version": SHIPPED.name}
    assert body["request_id"] == r.headers["X-Request-ID"] and body["latency_ms"] > 0


def test_top_k_and_request_id_header(client):
    r = client.post("/predict?top_k=10", data={"image": (io.BytesIO(png(GARMENT)), "g.png")},
                    headers={"X-Request-ID": "abc-123"})
    body = r.get_json()
    assert_prediction(body, top_k=10)
    assert abs(sum(t["probability"] for t in body["top_k"]) - 1) < 1e-6
    assert body["request_id"] == "abc-123" and r.headers["X-Request-ID"] == "abc-123"
    r = client.post("/predict", data={"image": (io.BytesIO(png(GARMENT)), "g.png")},
                    headers={"X-Request-ID": "bad id with spaces"})
    assert r.get_json()["request_id"] != "bad id with spaces" and len(r.headers["X-Request-ID"]) == 32


def test_several_files(client):
    r = post_files(client, [("images", png(GARMENT), "a.png"), ("images", png(255 - GARMENT), "b.png")])
    body = r.get_json()
    assert r.status_code == 200 and len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert_prediction(p)
    r = post_files(client, [("image", png(GARMENT), "a.png"), ("image", png(GARMENT), "b.png")])
    assert len(r.get_json()["predictions"]) == 2
    r = post_files(client, [("images", png(GARMENT), "a.png")])
    assert len(r.get_json()["predictions"]) == 1  # the batch field always answers with a list


def test_json_base64_and_pixels(client):
    b64 = base64.b64encode(png(GARMENT)).decode()
    single = client.post("/predict", json={"image": b64}).get_json()
    assert_prediction(single)
    data_url = client.post("/predict", json={"image": "data:image/png;base64," + b64}).get_json()
    assert data_url["label"] == single["label"]
    many = client.post("/predict", json={"images": [b64, b64]}).get_json()
    assert [p["label"] for p in many["predictions"]] == [single["label"]] * 2
    px = client.post("/predict", json={"pixels": GARMENT.tolist()}).get_json()
    assert px["label"] == single["label"] and px["confidence"] == pytest.approx(single["confidence"])
    pxs = client.post("/predict", json={"pixels": [GARMENT.tolist()] * 3}).get_json()
    assert len(pxs["predictions"]) == 3


def test_same_preprocessing_as_training(client, app):
    """The served probabilities equal the artifact's ONNX graph on the training normalisation, at the
    temperature its manifest's calibration gives."""
    from fmnist.calibration import softmax_t
    from fmnist.evaluation.evaluate import artifact_logits

    art = app.extensions["fmnist"].current.predictor.artifact
    img = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    temperature = art.manifest["calibration"]["temperature"]
    assert temperature != 1.0
    want = softmax_t(artifact_logits(art, img[None]), temperature)[0]
    got = post_files(client, [("image", png(img), "r.png")], "?top_k=10").get_json()
    for t in got["top_k"]:
        assert t["probability"] == pytest.approx(want[t["class_id"]], abs=1e-5)


def test_health_ready_model(client):
    assert client.get("/health").get_json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["model"] == {"name": "smallcnn", "version": SHIPPED.name}
    card = client.get("/model").get_json()
    assert card["name"] == "smallcnn" and card["classes"] == list(CLASSES)
    assert card["architecture"]["name"] == "smallcnn" and card["metrics"]["test_accuracy"] >= 0.92
    assert card["input"]["preprocessing"]["mean"] > 0 and card["backend"] == "onnx"


# --------------------------------------------------------------------------- the error table


def test_missing_field(client):
    r = client.post("/predict", data={"file": (io.BytesIO(png(GARMENT)), "g.png")})
    assert_error(r, 400, "missing_image", "field 'image'", "got fields file")


def test_a_text_part_where_a_picture_belongs_is_refused(client):
    """`-F images=shirt.png` (text) beside a real file: refused, not silently dropped (the document says files)."""
    for path in ("/predict", "/explain"):
        r = client.post(path, data={"image": (io.BytesIO(png(GARMENT)), "g.png"), "images": "shirt.png"})
        assert_error(r, 400, "bad_image", "'images' is text", "images=@shirt.png")


def test_empty_and_undecodable_images(client):
    assert_error(post_files(client, [("image", b"", "e.png")]), 400, "bad_image", "empty")
    assert_error(post_files(client, [("image", b"hello world", "t.txt")]), 400, "bad_image",
                 "t.txt could not be decoded")
    assert_error(post_files(client, [("image", png(GARMENT)[:-40], "cut.png")]), 400, "bad_image",
                 "truncated or corrupt")
    assert_error(client.post("/predict", json={"image": "!!!notbase64"}), 400, "bad_image", "not valid base64")


@pytest.mark.parametrize("query,fragment", [("?top_k=0", "top_k must be an integer 1-10"),
                                            ("?top_k=abc", "got 'abc'"), ("?top_k=11", "got 11"),
                                            ("?preprocess=magic", "preprocess must be one of auto, raw, photo")])
def test_bad_parameters(client, query, fragment):
    assert_error(post_files(client, [("image", png(GARMENT), "g.png")], query), 400, "bad_parameter", fragment)


def test_raw_mode_needs_28x28(client):
    big = encode(Image.new("L", (64, 64)))
    assert_error(post_files(client, [("image", big, "b.png")], "?preprocess=raw"), 400, "bad_image",
                 "needs a 28x28 image, got 64x64")


@pytest.mark.parametrize("body,code,fragment", [
    ("{not json", "bad_json", "not valid JSON"),
    ("[1, 2]", "bad_json", "JSON object"),
    ('{"foo": 1}', "missing_image", '"image"'),
    ('{"images": []}', "bad_image", "non-empty list"),
    ('{"pixels": [[1, 2], [3, 4]]}', "bad_pixels", "shape [2, 2]"),
    ('{"pixels": [[1, 2], [3]]}', "bad_pixels", "ragged"),
    ('{"pixels": "abc"}', "bad_pixels", "must be numbers"),
])
def test_bad_json_bodies(client, body, code, fragment):
    assert_error(client.post("/predict", data=body, content_type="application/json"), 400, code, fragment)


def test_pixel_range_and_type(client):
    bad = GARMENT.astype(int)
    bad[0, 0] = 300
    assert_error(client.post("/predict", json={"pixels": bad.tolist()}), 400, "bad_pixels", "expected 0-255")
    frac = GARMENT.astype(float)
    frac[0, 0] = 0.5
    assert_error(client.post("/predict", json={"pixels": frac.tolist()}), 400, "bad_pixels", "whole numbers")
    neg = GARMENT.astype(int)
    neg[1, 1] = -1
    assert_error(client.post("/predict", json={"pixels": neg.tolist()}), 400, "bad_pixels", "-1")


def test_too_many_images(client):
    r = client.post("/predict", json={"pixels": [GARMENT.tolist()] * 65})
    assert_error(r, 400, "too_many_images", "65 images", "limit is 64")


def test_body_over_limit(client):
    r = post_files(client, [("image", b"\0" * 2_100_000, "huge.png")])
    assert_error(r, 413, "payload_too_large", "2,000,000-byte limit")


def test_pixel_bomb(client):
    bomb = encode(Image.new("L", (6000, 6000)))
    assert_error(post_files(client, [("image", bomb, "bomb.png")]), 413, "image_too_large", "36,000,000 pixels")


def test_unsupported_content_type(client):
    r = client.post("/predict", data=b"\x89PNG", content_type="image/png")
    assert_error(r, 415, "unsupported_media_type", "'image/png'", "multipart/form-data")
    assert_error(client.post("/predict"), 400, "missing_image", "empty request")


def test_404_and_405_are_json(client):
    assert_error(client.get("/nope"), 404, "not_found", "GET /nope")
    assert_error(client.get("/predict"), 405, "method_not_allowed", "use POST")
    assert_error(client.delete("/health"), 405, "method_not_allowed")


def test_not_ready_is_503_and_health_stays_up(tmp_path, make_app):
    app = make_app(model=str(tmp_path / "missing"))
    c = app.test_client()
    assert c.get("/health").status_code == 200
    r = c.get("/ready")
    assert r.status_code == 503 and "could not be loaded" in r.get_json()["reason"]
    assert_error(post_files(c, [("image", png(GARMENT), "g.png")]), 503, "not_ready", "could not be loaded")
    assert c.get("/v2/health/ready").status_code == 503


def test_model_failure_is_a_json_500_not_a_crash(app, client, monkeypatch):
    st = app.extensions["fmnist"]

    def broken(x):
        raise RuntimeError("simulated ONNX Runtime failure")

    import dataclasses

    monkeypatch.setattr(st.current.predictor, "predict_batch", broken)
    monkeypatch.setattr(st, "current", dataclasses.replace(st.current, batcher=None))
    r = post_files(client, [("image", png(GARMENT), "g.png")])
    assert_error(r, 500, "internal_error", "RuntimeError")


def test_access_log_line(make_app):
    import logging

    app = make_app(log_requests=True)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("fmnist.access")
    logger.addHandler(handler)
    try:
        app.test_client().post("/predict", data={"image": (io.BytesIO(png(GARMENT)), "g.png")},
                               headers={"X-Request-ID": "log-me"})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(r.getMessage()) for r in records]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "log-me" and line["route"] == "/predict" and line["status"] == 200
    assert line["label"] in CLASSES and 0 < line["confidence"] <= 1 and line["model_version"] == SHIPPED.name
    assert line["latency_ms"] > 0


@pytest.mark.realdata
def test_accuracy_through_http(client, real_data):
    x, y = real_data.test_images[:500], real_data.test_labels[:500]
    r = post_files(client, [("images", png(a), f"{i}.png") for i, a in enumerate(x[:64])])
    assert len(r.get_json()["predictions"]) == 64
    correct = 0
    for i in range(0, 500, 50):
        body = client.post("/predict", json={"pixels": x[i:i + 50].tolist()}).get_json()
        correct += sum(p["class_id"] == t for p, t in zip(body["predictions"], y[i:i + 50]))
    assert correct / 500 >= 0.9
