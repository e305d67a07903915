"""`fmnist import` of the lesson's Keras model (.keras and .h5), of ONNX files, and of bad files; the
imported models served by a real Gunicorn answer as Keras itself does, at the temperature the import
calibrated. Keras runs on the torch
backend (no TensorFlow); the tests skip, saying why, where keras is not installed."""

import json
import os
import subprocess
import sys
import urllib.request
import zipfile

import numpy as np
import pytest

from fmnist.calibration import softmax_t
from tests.conftest import REPO, running_server

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="needs keras and h5py (pip install .[keras]; make test installs them)")
pytestmark = [pytest.mark.integration, pytest.mark.realdata]
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _lesson_model(real_data, softmax: bool = True, steps: int = 300):
    """The lesson's CNN: Conv2D-MaxPool-Conv2D-MaxPool-Flatten-Dense-(softmax) on (28, 28, 1), pixels / 255."""
    keras.utils.set_random_seed(0)
    out = keras.layers.Dense(10, activation="softmax" if softmax else None)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"), out])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax), metrics=["accuracy"])
    n = steps * 64
    x = real_data.train_images[:n].astype("float32")[..., None] / 255.0
    model.fit(x, real_data.train_labels[:n], batch_size=64, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def lesson(real_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("keras")
    model = _lesson_model(real_data)
    model.save(d / "fashion_classifier.keras")
    model.save(d / "fashion_classifier.h5")
    logits = _lesson_model(real_data, softmax=False, steps=100)
    logits.save(d / "logits.keras")
    return {"dir": d, "model": model, "logits": logits}


def _import(registry, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fmnist.cli", "import", *map(str, args), "--registry", str(registry)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


def _temperature(registry, name: str) -> float:
    """The temperature `fmnist import` calibrated the model with (served probabilities are softmax(logits / T))."""
    return json.loads((registry / name / "1" / "manifest.json").read_text())["calibration"]["temperature"]


def _served(url: str, images: np.ndarray) -> "tuple[list, np.ndarray]":
    labels, conf = [], []
    for i in range(0, len(images), 60):
        req = urllib.request.Request(url + "/predict?top_k=10", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"pixels": images[i:i + 60].astype(int).tolist()}).encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            for p in json.loads(r.read())["predictions"]:
                labels.append(p["label"])
                conf.append(p["confidence"])
    return labels, np.array(conf)


def test_the_lessons_keras_and_h5_files_are_served_as_keras_predicts(lesson, real_data, tmp_path):
    registry = tmp_path / "models"
    for fname, name in (("fashion_classifier.keras", "lesson"), ("fashion_classifier.h5", "lesson-h5")):
        out = _import(registry, lesson["dir"] / fname, "--name", name)
        assert out.returncode == 0, out.stdout + out.stderr
        manifest = json.loads((registry / name / "1" / "manifest.json").read_text())
        assert manifest["architecture"]["name"] == "keras" and manifest["training"]["format"] in ("keras", "h5")
        assert manifest["source"] == {"input_layout": "NHWC", "output": "probabilities", "class_order": None,
                                      "softmax_applied_once": True}
        assert manifest["onnx"]["max_abs_diff_vs_source"] <= 1e-4 and manifest["onnx"]["parity_images"] == 1000
        assert manifest["preprocessing"]["mean"] == 0.0 and manifest["preprocessing"]["std"] == 1.0
        assert manifest["metrics"]["test"]["accuracy"] > 0.7 and manifest["reference"]["class_distribution"]
        assert len(manifest["training"]["source_sha256"]) == 64
        assert manifest["calibration"]["fitted_on"].startswith("validation split")  # imported models get it too
    images = real_data.test_images[:300]
    want = lesson["model"].predict(images.astype("float32")[..., None] / 255.0, verbose=0)
    for name in ("lesson", "lesson-h5"):
        with running_server(tmp_path, "--model", name, "--registry", str(registry), workers=1) as srv:
            labels, conf = _served(srv["url"], images)
        assert labels == [CLASSES[i] for i in want.argmax(1)]
        t = _temperature(registry, name)
        diff = float(np.abs(conf - softmax_t(np.log(want), t).max(1)).max())
        print(f"{name}: served vs Keras on 300 test images: labels agree, max |confidence diff| {diff:.1e} (T={t:.3f})")
        assert diff <= 1e-4  # softmax applied once: the served confidence is Keras's own, calibrated


def test_a_logits_model_an_onnx_file_and_another_class_order(lesson, real_data, tmp_path):
    registry = tmp_path / "models"
    out = _import(registry, lesson["dir"] / "logits.keras", "--name", "logits")
    assert out.returncode == 0, out.stderr
    assert json.loads((registry / "logits/1/manifest.json").read_text())["source"]["output"] == "logits"
    onnx_file = tmp_path / "exported.onnx"
    lesson["logits"].export(str(onnx_file), format="onnx", verbose=False)
    out = _import(registry, onnx_file, "--name", "from-onnx")
    assert out.returncode == 0, out.stderr
    order = list(reversed(CLASSES))  # a model whose outputs are in another order, told with --classes
    out = _import(registry, lesson["dir"] / "fashion_classifier.keras", "--name", "reversed", "--classes", ",".join(order))
    assert out.returncode == 0, out.stderr
    images = real_data.test_images[:120]
    x = images.astype("float32")[..., None] / 255.0
    z = lesson["logits"].predict(x, verbose=0)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    probs = lesson["model"].predict(x, verbose=0)
    with running_server(tmp_path, "--model", "logits", "--registry", str(registry), workers=1) as srv:
        labels, conf = _served(srv["url"], images)
    want = softmax_t(z, _temperature(registry, "logits")).max(1)
    assert labels == [CLASSES[i] for i in z.argmax(1)] and np.abs(conf - want).max() <= 1e-4
    with running_server(tmp_path, "--model", "from-onnx", "--registry", str(registry), workers=1) as srv:
        labels, conf = _served(srv["url"], images)
    want = softmax_t(z, _temperature(registry, "from-onnx")).max(1)
    assert labels == [CLASSES[i] for i in z.argmax(1)] and np.abs(conf - want).max() <= 1e-4
    with running_server(tmp_path, "--model", "reversed", "--registry", str(registry), workers=1) as srv:
        labels, conf = _served(srv["url"], images)
    want = softmax_t(np.log(probs), _temperature(registry, "reversed")).max(1)
    assert labels == [order[i] for i in probs.argmax(1)] and np.abs(conf - want).max() <= 1e-4


def test_unsafe_and_broken_files_are_refused_and_nothing_is_written(lesson, tmp_path):
    import h5py
    import onnx
    from onnx import TensorProto, helper

    registry = tmp_path / "models"
    lam = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2.0), keras.layers.Flatten(),
                            keras.layers.Dense(10, activation="softmax")])
    lam.save(tmp_path / "lambda.keras")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes((lesson["dir"] / "fashion_classifier.keras").read_bytes()[:2000])
    not_keras_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(not_keras_zip, "w") as z:
        z.writestr("hello.txt", "not a model")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.zeros(3)
    bad_rank = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])]))
    onnx.save(bad_rank, tmp_path / "rank2.onnx")
    (tmp_path / "text.onnx").write_text("hello")
    cases = {
        "lambda.keras": "Lambda layer",
        "truncated.keras": "damaged zip",
        "other.keras": "neither a Keras .keras model",
        "data.h5": "not a Keras model (no model_config)",
        "rank2.onnx": "fmnist serves 28x28 grayscale models",
        "text.onnx": "not a model fmnist can import",
    }
    for fname, message in cases.items():
        out = _import(registry, tmp_path / fname)
        assert out.returncode == 2, (fname, out.stdout, out.stderr)
        assert message in out.stderr and fname in out.stderr, (fname, out.stderr)
        assert "Traceback" not in out.stderr
    assert not registry.exists() or not any(registry.rglob("manifest.json"))  # nothing half-written
