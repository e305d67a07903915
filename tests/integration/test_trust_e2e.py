"""Pictures as people take them, and honesty about them: busy backgrounds, calibration, the not-a-garment flag."""
import socket
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHIPPED, running_server
from tests.httpprobe import metric, predict_request, read_responses
from tests.images import encode

rng = np.random.default_rng(11)


def _busy_picture(pixels: np.ndarray, label: int, seed: int) -> bytes:
    from fmnist.pictures import styles

    im = styles.render(pixels, label, "onphoto", styles.image_rng(seed, 0, "onphoto")).convert("RGB")
    return encode(im, "JPEG", quality=90)


@pytest.mark.integration
def test_busy_photo_takes_the_heavy_pool_and_is_counted(tmp_path, real_data):
    """Through a real Gunicorn loop worker: a picture on a busy photograph is converted in the heavy pool,
    its garment cut out (fmnist_foreground_extractions_total, _seconds), and answered as the library answers
    the same bytes; the blank page beside it is flagged and counted."""
    from fmnist.images.preprocess import decode_image, to_model_pixels
    from fmnist.inference.predictor import Predictor
    from fmnist.registry import resolve

    busy = None
    for i in range(20):  # the first test image whose picture takes the extraction path and finds a garment
        data = _busy_picture(real_data.test_images[i], int(real_data.test_labels[i]), i)
        info: dict = {}
        seen = to_model_pixels(decode_image(data), "auto", info=info)
        if info.get("extracted"):
            busy = data
            break
    assert busy is not None
    blank = encode(Image.new("RGB", (120, 90), (240, 240, 240)))
    with running_server(tmp_path, "--worker", "loop", workers=1) as srv:
        with socket.create_connection(("127.0.0.1", srv["port"]), timeout=20) as s:
            s.sendall(predict_request(srv["port"], [("busy.jpg", busy)], "busy")
                      + predict_request(srv["port"], [("b.png", blank)], "blank"))
            (st1, _, body), (st2, _, empty) = read_responses(s, 2)
        assert st1 == st2 == 200
        pred = Predictor(resolve(str(SHIPPED)))
        probs = pred.predict_batch(pred.normalize(seen[None]))
        assert body["label"] == pred.to_predictions(probs)[0].label
        assert body["ood_score"] == pytest.approx(float(pred.assess(probs)[0][0]), abs=1e-4)
        assert empty["flag"] == "not_a_garment"
        assert metric(srv["url"], "fmnist_foreground_extractions_total", outcome="found") == 1
        text = urllib.request.urlopen(srv["url"] + "/metrics", timeout=10).read().decode()
        assert "\nfmnist_foreground_extraction_seconds_count 1.0\n" in text
        assert metric(srv["url"], "fmnist_pictures_total", size="small", where="heavy_pool") == 2
        assert metric(srv["url"], "fmnist_predictions_flagged_total", model_version=SHIPPED.name,
                       flag="not_a_garment") == 1
