"""The shipped default artifact: verified, produced by `fmnist train` with the picture recipe, at most 1.5x the
previous default's compute, ≥ 92.4 % on the real test set and far better than it on the picture benchmark."""

import numpy as np
import pytest

from fmnist.artifact import load_model, read_artifact
from fmnist.evaluation.evaluate import evaluate_artifact
from fmnist.registry import resolve
from tests.conftest import REPO, SHIPPED


def test_shipped_artifact_loads_verified_in_eval_mode():
    art = read_artifact(SHIPPED)  # every sha256 checked
    assert art.ref == f"smallcnn:{SHIPPED.name}" and art.arch == "smallcnn"
    assert art.manifest["training"]["command"].startswith("fmnist train --arch smallcnn")
    assert art.manifest["training"]["config"]["pictures"] > 0  # trained on picture round trips too
    before = read_artifact(REPO / "models" / "smallcnn" / "1").manifest["architecture"]["flops_per_image"]
    assert art.manifest["architecture"]["flops_per_image"] <= 1.5 * before
    assert art.manifest["onnx"]["max_abs_diff_vs_torch"] < 1e-4
    assert not load_model(art).training
    assert resolve("smallcnn", REPO / "models").path == SHIPPED  # the default reference


@pytest.mark.realdata
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_shipped_model_accuracy_on_real_test_set(real_data, backend):
    report = evaluate_artifact(read_artifact(SHIPPED), real_data.test_images, real_data.test_labels, backend)
    assert report["n"] == 10_000
    assert report["accuracy"] >= 0.924
    assert report["accuracy"] == pytest.approx(read_artifact(SHIPPED).manifest["metrics"]["test"]["accuracy"], abs=1e-4)


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_model_on_the_picture_benchmark(real_data):
    from fmnist.evaluation.evaluate import artifact_logits
    from fmnist.evaluation.picture_benchmark import load_benchmark, picture_report

    bench = load_benchmark(real_data)  # 8 styles x the first 1,000 test images (cached after the first run)
    shipped, first = read_artifact(SHIPPED), read_artifact(REPO / "models" / "smallcnn" / "1")
    new = picture_report(lambda px: artifact_logits(shipped, px), bench)
    old = picture_report(lambda px: artifact_logits(first, px), bench)
    assert new["accuracy"] >= 0.85 and new["accuracy"] >= old["accuracy"] + 0.2
    assert new["styles"]["lineart"] >= old["styles"]["lineart"] + 0.2  # a style the recipe never drew


def test_shipped_model_on_garments_drawn_from_outlines():
    """bench/drawn_pictures.py: 60 pictures drawn from hand-written outlines, nothing from the dataset."""
    import importlib.util

    import numpy as np

    from fmnist.evaluation.evaluate import artifact_logits
    from fmnist.images.preprocess import to_model_pixels

    spec = importlib.util.spec_from_file_location("drawn_pictures", REPO / "bench" / "drawn_pictures.py")
    drawn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drawn)
    ims, y = drawn.pictures()
    px = np.stack([to_model_pixels(im, "auto") for im in ims])
    right = {ref: int((artifact_logits(read_artifact(path), px).argmax(1) == y).sum())
             for ref, path in (("new", SHIPPED), ("old", REPO / "models" / "smallcnn" / "1"))}
    assert right["new"] >= 50 and right["new"] >= right["old"] + 5, right


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_model_passes_the_garment_gate_against_the_models_it_replaced(real_data):
    """The default was chosen on held-out families: no worse than smallcnn:4 or smallcnn:5 on any of them (the gate
    `fmnist promote` applies), and far better on the parametric garments and at flagging objects it never saw."""
    from fmnist.evaluation import garment_benchmark as gb
    from fmnist.evaluation.picture_benchmark import load_benchmark

    bench, pictures = gb.load(), load_benchmark(real_data)
    new = gb.artifact_report(read_artifact(SHIPPED), bench, pictures)
    for v in ("4", "5"):
        old = gb.artifact_report(read_artifact(REPO / "models" / "smallcnn" / v), bench, pictures)
        assert gb.regression(new, old) == [], gb.format_gate(gb.regression(new, old), SHIPPED.name, v)
    four = gb.artifact_report(read_artifact(REPO / "models" / "smallcnn" / "4"), bench)
    garments = [f for f in new["held_out"] if not f.startswith("pictures:")]
    assert np.mean([new["families"][f]["accuracy"] - four["families"][f]["accuracy"] for f in garments]) > 0.08
    assert new["objects"]["flagged"] >= 0.85 and new["objects"]["false_accepts"]["Bag"] <= 40
