"""Keras models, the lesson's `model.save('fashion_classifier.keras')` (or a legacy `.h5`), without
TensorFlow: Keras 3 on the torch backend (`pip install .[keras]`).

Before anything is deserialised, the model's configuration is read as JSON and refused when it
holds a `Lambda` layer (arbitrary Python code) or a class Keras does not ship (a custom object):
the message says which layer and what to do. Then `keras.saving.load_model(safe_mode=True)`,
Keras's own ONNX export, and `onnxfile.save_standardized`, which folds the input layout, class order
and softmax into fmnist's contract and checks the result against Keras's own `predict` on real
test images.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

from fmnist.artifact import Artifact, ArtifactError
from fmnist.importer.onnxfile import layout_of, save_standardized

_MODEL_CLASSES = {"Sequential", "Functional", "Model"}


def read_config(path: Path, fmt: str) -> dict:
    """The model's configuration, read as data (nothing is executed)."""
    try:
        if fmt == "keras":
            with zipfile.ZipFile(path) as z:
                return json.loads(z.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise ArtifactError(f"{path}: an HDF5 file that is not a Keras model (no model_config); expected a "
                                    "file written by Keras's model.save('....h5')")
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"{path}: not a readable Keras model ({e.__class__.__name__}: {str(e)[:200]})") from None


def check_config(config: dict, path: Path) -> None:
    """Refuse Lambda layers and custom objects, naming the layer."""
    import keras

    builtin = set(dir(keras.layers)) | _MODEL_CLASSES

    def walk(node, where):
        if isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str):
                layer = (node.get("config") or {}).get("name", cls) if isinstance(node.get("config"), dict) else cls
                if cls == "Lambda":
                    raise ArtifactError(
                        f"{path}: layer {layer!r} is a Lambda layer: it holds arbitrary Python code, which fmnist "
                        "does not load (safe mode). Rewrite it with built-in Keras layers (e.g. Rescaling, "
                        "Reshape, Activation), save again and import that file.")
                module = node.get("module")
                custom = (isinstance(module, str) and not module.startswith("keras")) or (
                    where == "layer" and module is None and cls not in builtin)
                if custom or (node.get("registered_name") or "").count(">"):
                    raise ArtifactError(
                        f"{path}: layer {layer!r} uses the custom object {cls!r} ({module or 'unregistered'}): fmnist "
                        "loads only Keras's built-in layers. Rebuild the model from built-in layers, or export it "
                        "to ONNX yourself and import the .onnx file.")
            for key, value in node.items():
                walk(value, "layer" if key == "layers" else "value")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(config, "model")


def load(path: Path, fmt: str):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        raise ArtifactError(f"{path} is a Keras model: install Keras on the torch backend with "
                            "pip install 'fmnist[keras]' (no TensorFlow needed)") from None
    if keras.backend.backend() != "torch":
        raise ArtifactError(f"KERAS_BACKEND={keras.backend.backend()}: fmnist imports Keras models on the torch "
                            "backend; unset KERAS_BACKEND or set it to torch")
    check_config(read_config(path, fmt), path)
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ArtifactError(f"{path}: Keras could not load it ({e.__class__.__name__}: {str(e)[:300]})") from None


def ends_in_softmax(model) -> bool:
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def import_keras(path: Path, fmt: str, registry: Path, *, name, preprocessing, permutation, evaluate,
                 data_dir) -> Artifact:
    import importlib.metadata as md

    import onnx

    model = load(path, fmt)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ArtifactError(f"{path}: expected one input and one output, got {len(model.inputs)} and "
                            f"{len(model.outputs)}")
    layout = layout_of(tuple(model.inputs[0].shape)[1:], f"{path}")
    out_shape = tuple(model.outputs[0].shape)
    if len(out_shape) != 2 or out_shape[1] != 10:
        raise ArtifactError(f"{path}: the output has shape {list(out_shape)}; expected (None, 10): the ten classes")
    probabilities = ends_in_softmax(model)

    def reference(x):
        return model.predict(x, batch_size=500, verbose=0)

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "keras.onnx"
        try:
            model.predict(np.zeros((1, *tuple(model.inputs[0].shape)[1:]), np.float32), verbose=0)  # built
            model.export(str(src), format="onnx", verbose=False)
        except Exception as e:  # noqa: BLE001
            raise ArtifactError(f"{path}: Keras's ONNX export failed ({e.__class__.__name__}: {str(e)[:300]})") \
                from None
        source_onnx = onnx.load(str(src))
    libraries = {"keras": md.version("keras"), "backend": "torch", "torch": md.version("torch")}
    return save_standardized(
        source_onnx, path, fmt, reference, registry, name=name or path.stem, layout=layout,
        probabilities=probabilities, permutation=permutation, preprocessing=preprocessing,
        architecture={"name": "keras", "params": int(model.count_params()), "flops_per_image": None,
                      "layers": [layer.__class__.__name__ for layer in model.layers]},
        evaluate=evaluate, data_dir=data_dir, libraries=libraries)
