"""The shipped default artifact: verified, produced by `fmnist train`, and ≥ 92 % on the real test set."""

import pytest

from fmnist.artifact import load_model, read_artifact
from fmnist.evaluation.evaluate import evaluate_artifact
from fmnist.registry import resolve
from tests.conftest import REPO, SHIPPED


def test_shipped_artifact_loads_verified_in_eval_mode():
    art = read_artifact(SHIPPED)  # every sha256 checked
    assert art.ref == "smallcnn:1" and art.arch == "smallcnn"
    assert art.manifest["training"]["command"].startswith("fmnist train --arch smallcnn")
    assert art.manifest["onnx"]["max_abs_diff_vs_torch"] < 1e-4
    assert not load_model(art).training
    assert resolve("smallcnn", REPO / "models").path == SHIPPED  # the default reference


@pytest.mark.realdata
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_shipped_model_accuracy_on_real_test_set(real_data, backend):
    report = evaluate_artifact(read_artifact(SHIPPED), real_data.test_images, real_data.test_labels, backend)
    assert report["n"] == 10_000
    assert report["accuracy"] >= 0.92
    assert report["accuracy"] == pytest.approx(read_artifact(SHIPPED).manifest["metrics"]["test"]["accuracy"], abs=1e-4)
