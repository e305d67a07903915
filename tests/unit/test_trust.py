"""Pictures as people take them, and honesty about them: busy backgrounds, calibration, the not-a-garment flag."""
import io

import numpy as np
import pytest
from PIL import Image

from fmnist import calibration as C
from tests.conftest import SHIPPED
from tests.images import encode, png

rng = np.random.default_rng(11)


def _busy_picture(pixels: np.ndarray, label: int, seed: int) -> bytes:
    from fmnist.pictures import styles

    im = styles.render(pixels, label, "onphoto", styles.image_rng(seed, 0, "onphoto")).convert("RGB")
    return encode(im, "JPEG", quality=90)


def test_temperature_is_recovered_and_calibration_error_falls():
    """Labels drawn from softmax(z / 2.5): the fit finds T near 2.5; ECE of the raw logits is large, after it small."""
    z = rng.normal(0, 4, (20_000, 10))
    p_true = C.softmax_t(z, 2.5)
    y = np.array([rng.choice(10, p=p) for p in p_true])
    t = C.fit_temperature(z, y)
    assert t == pytest.approx(2.5, rel=0.05)
    assert C.expected_calibration_error(C.softmax_t(z, 1.0), y) > 0.1
    assert C.expected_calibration_error(C.softmax_t(z, t), y) < 0.02


def test_ood_score_ranks_against_the_reference_and_flags_follow_the_thresholds():
    cal = C.Calibration(temperature=1.0, ood_reference=np.linspace(0.0, 0.5, 101).tolist(), ood_above=0.98,
                        unsure_below=0.7)
    certain, split, uniform = np.eye(10)[[3]] * 0.99 + 0.001, np.full((1, 10), 0.0), np.full((1, 10), 0.1)
    split[0, [2, 6]] = 0.5
    probs = np.concatenate([certain, split, uniform])
    ood = cal.ood_scores(probs)
    assert 0 <= ood[0] < ood[1] < ood[2] == 1.0
    assert cal.flags(probs) == [None, "unsure", "not_a_garment"]
    assert C.Calibration.from_dict(cal.to_dict()) == cal and C.Calibration.from_dict(None) is None


def test_every_shipped_model_is_calibrated_on_validation_data():
    from fmnist.registry import list_artifacts, resolve
    from tests.conftest import REPO

    for name, version in list_artifacts(REPO / "models"):
        c = resolve(f"{name}:{version}", REPO / "models").manifest["calibration"]
        assert c["fitted_on"].startswith("validation split") and len(c["ood_reference"]) == 101
        assert c["ece"]["after"] <= c["ece"]["before"] + 0.005, (name, version, c["ece"])
    shipped = resolve(str(SHIPPED)).manifest
    assert shipped["calibration"]["ece"]["after"] < 0.03 and shipped["reference"]["flagged_share"]["not_a_garment"] == 0.02
    assert shipped["training"]["config"]["outliers"] > 0  # outlier exposure: non-garments taught to be unsure


@pytest.mark.realdata
def test_not_a_garment_is_flagged_more_often_than_garments(real_data):
    """The out-of-distribution benchmark's kinds (held-out scenes, text, shapes, blank pages, noise) against
    the test images: the shipped model flags far more of them, and few garments."""
    from fmnist.inference.predictor import Predictor
    from fmnist.pictures import outliers
    from fmnist.registry import resolve

    pred = Predictor(resolve(str(SHIPPED)))
    odd = np.concatenate(list(outliers.ood_benchmark(per_kind=30).values()))
    garments = real_data.test_images[:500]
    flagged = {k: np.mean([f == "not_a_garment" for f in pred.assess(pred.predict_batch(pred.normalize(px)))[1]])
               for k, px in (("odd", odd), ("garments", garments))}
    assert flagged["garments"] <= 0.05 and flagged["odd"] >= 0.4, flagged


def test_answers_carry_ood_score_and_flag_and_a_blank_page_is_not_a_garment(client, real_data):
    body = client.post("/predict", data={"image": (io.BytesIO(png(real_data.test_images[0])), "a.png")}).get_json()
    assert body["label"] == "Ankle boot" and body["flag"] is None and 0 <= body["ood_score"] < 0.98
    blank = encode(Image.new("RGB", (200, 150), (250, 250, 245)))
    body = client.post("/predict", data={"image": (io.BytesIO(blank), "blank.png")}).get_json()
    assert body["flag"] == "not_a_garment" and body["ood_score"] == 1.0 and body["confidence"] == pytest.approx(0.1)
    assert body["label"] is not None  # flagged_label on (the default): still named


def test_flagged_answers_without_a_label_when_set(make_app, real_data):
    client = make_app(flagged_label=False).test_client()
    blank = encode(Image.new("L", (64, 64), 255))
    many = client.post("/predict", data={"image": [(io.BytesIO(blank), "b.png"),
                                                   (io.BytesIO(png(real_data.test_images[1])), "p.png")]}).get_json()
    first, second = many["predictions"]
    assert first["flag"] == "not_a_garment" and first["label"] is None and first["class_id"] is None
    assert second["label"] == "Pullover" and second["flag"] is None


def test_busy_background_is_cut_out_and_plain_pictures_are_left_alone(real_data):
    from fmnist.images.preprocess import decode_image, to_model_pixels

    found = 0
    for i in range(8):  # pictures on held-out photographs: most take the extraction path and find a garment
        info: dict = {}
        to_model_pixels(decode_image(_busy_picture(real_data.test_images[i], int(real_data.test_labels[i]), i)),
                        "auto", info=info)
        found += bool(info.get("extracted"))
    assert found >= 4
    for pixels in real_data.test_images[:8]:  # a product-style picture and a dataset image enlarged: untouched
        info = {}
        big = Image.fromarray(255 - pixels).resize((224, 224), Image.Resampling.BICUBIC)
        to_model_pixels(decode_image(encode(big)), "auto", info=info)
        assert "extract_s" not in info


def test_drift_flags_traffic_the_model_does_not_know():
    """The prediction log's window carries each answer's flag: a window where 30 % are not_a_garment (expected 2 %)
    is an alert; one with the expected share is ok; fmnist batch's windows (no flags) have no such check."""
    from fmnist.monitoring.drift import Thresholds, drift_report
    from fmnist.registry import resolve

    reference = resolve(str(SHIPPED)).manifest["reference"]
    n = 1000
    base = {"class_id": np.arange(n) % 10, "confidence": np.full(n, 0.9), "mean_pixel": np.full(n, 0.3)}
    odd = drift_report({**base, "flag": ["not_a_garment"] * 300 + [""] * 700}, reference, Thresholds.from_settings())
    usual = drift_report({**base, "flag": ["not_a_garment"] * 20 + ["unsure"] * 100 + [""] * 880}, reference,
                         Thresholds.from_settings())
    assert odd["checks"]["not_a_garment_excess"]["status"] == "alert" and odd["window"]["flagged_share"]["not_a_garment"] == 0.3
    assert usual["checks"]["not_a_garment_excess"]["score"] == 0.0
    assert "not_a_garment_excess" not in drift_report(base, reference, Thresholds.from_settings())["checks"]


def test_a_loop_limit_that_would_run_the_costly_path_on_the_event_loop_is_refused(make_app):
    from fmnist.errors import InvalidValue

    with pytest.raises(InvalidValue, match="loop_max_pixels must be below 2304"):
        make_app(loop_max_pixels=4096)
