"""`fmnist import FILE`: a model made elsewhere becomes a verified artifact, evaluated like a trained one.

The format is read from the content, not the suffix:
- a Keras 3 `.keras` file (a zip with config.json) or a legacy Keras `.h5` (HDF5 with a
  model_config): loaded with Keras on the torch backend, never TensorFlow (`keras.py`);
- a plain ONNX model (`onnxfile.py`);
- a torch state dict (`.pth`, read with weights_only=True) of one of fmnist's architectures (--arch).
Whatever the source's input layout (NHWC, HW, flat, NCHW), output (logits or probabilities) and
class order, the artifact's `model.onnx` takes the standard input `[N,1,28,28]` and gives logits in
Fashion-MNIST's class order, checked against the source's own outputs on real test images (max abs
difference in the manifest; over 1e-4 refuses). The manifest records the preprocessing the model
expects, test metrics on the real test set, drift reference statistics of the validation split,
and provenance (source file, its sha256, format, library versions). Nothing is written to the
registry unless everything succeeded (the artifact writer is atomic).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from fmnist.artifact import Artifact, ArtifactError, ArtifactInfo, import_state_dict, save_artifact
from fmnist.checksum import file_digest
from fmnist.images.preprocess import Preprocessing
from fmnist.labels import CLASSES

FORMATS = ("keras", "h5", "onnx", "pth")
PARITY_TOLERANCE = 1e-4
LESSON_PREPROCESSING = Preprocessing(mean=0.0, std=1.0)  # the lesson's `pixels / 255`, no mean/std


def detect_format(path: "str | Path") -> str:
    """keras | h5 | onnx | pth, from the file's content; ArtifactError naming what was expected."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror})") from None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except zipfile.BadZipFile as e:
            raise ArtifactError(f"{path}: a damaged zip file ({e}); expected a Keras .keras file or a torch .pth") \
                from None
        if "config.json" in names:
            return "keras"
        if any(n.endswith("data.pkl") for n in names):
            return "pth"
        raise ArtifactError(f"{path}: a zip file that is neither a Keras .keras model (no config.json) nor a "
                            "torch state dict")
    if path.suffix.lower() in (".pth", ".pt"):
        return "pth"  # torch's legacy (non-zip) pickle format
    try:
        import onnx

        onnx.load(str(path), load_external_data=False)
        return "onnx"
    except Exception:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        pass
    raise ArtifactError(f"{path}: not a model fmnist can import; expected a Keras .keras or .h5 file, an ONNX "
                        "model or a torch .pth state dict (with --arch)")


def class_permutation(classes: "list[str] | None") -> "list[int] | None":
    """--classes (the model's output order) -> for each Fashion-MNIST class, the model's output index."""
    if not classes:
        return None
    if sorted(classes) != sorted(CLASSES) or len(classes) != len(CLASSES):
        raise ArtifactError(f"--classes must name the ten Fashion-MNIST classes once each, in the model's output "
                            f"order; got {classes}")
    perm = [classes.index(c) for c in CLASSES]
    return None if perm == list(range(len(CLASSES))) else perm


def evaluate_probabilities(predict, preprocessing: Preprocessing, data_dir=None) -> "tuple[dict, dict]":
    """predict: normalised (N,1,28,28) float32 -> logits (N,10). -> (metrics with the test report,
    reference statistics of the validation split), on the real dataset."""
    from fmnist import data
    from fmnist.evaluation.metrics import classification_report, reference_statistics, softmax

    ds = data.load(data_dir, allow_download=False)
    (_, _), (va_x, _) = ds.split()
    test_out = predict(preprocessing.normalize(ds.test_images))
    val_out = predict(preprocessing.normalize(va_x))
    reference = reference_statistics(softmax(val_out), va_x)
    reference["source"] = f"validation split ({len(va_x)} images)"
    return {"test": classification_report(ds.test_labels, test_out.argmax(1))}, reference


def import_file(path: "str | Path", registry: Path, *, name: "str | None" = None, arch: "str | None" = None,
                model_kwargs: "dict | None" = None, preprocessing: "Preprocessing | None" = None,
                classes: "list[str] | None" = None, evaluate: bool = True, data_dir=None) -> Artifact:
    """Any supported model file -> an artifact in `registry`."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "pth":
        if not arch:
            raise ArtifactError(f"{path} is a torch state dict: say which architecture with --arch (see fmnist archs)")
        return import_pth(path, arch, registry, name=name, model_kwargs=model_kwargs, preprocessing=preprocessing,
                          evaluate=evaluate, data_dir=data_dir)
    if arch:
        raise ArtifactError(f"--arch is for torch state dicts; {path} is a {fmt} model")
    perm = class_permutation(classes)
    if fmt in ("keras", "h5"):
        from fmnist.importer.keras import import_keras

        return import_keras(path, fmt, registry, name=name, preprocessing=preprocessing or LESSON_PREPROCESSING,
                            permutation=perm, evaluate=evaluate, data_dir=data_dir)
    from fmnist.importer.onnxfile import import_onnx

    return import_onnx(path, registry, name=name, preprocessing=preprocessing or LESSON_PREPROCESSING,
                       permutation=perm, evaluate=evaluate, data_dir=data_dir)


def import_pth(path: "str | Path", arch: str, registry: Path, name: "str | None" = None,
               model_kwargs: "dict | None" = None, preprocessing: "Preprocessing | None" = None,
               evaluate: bool = True, data_dir=None) -> Artifact:
    """A `.pth` state dict of `arch` -> an artifact in `registry` (atomic: nothing written on failure)."""
    import torch

    model = import_state_dict(path, arch, model_kwargs)
    pre = preprocessing or Preprocessing()
    metrics, reference = {}, {}
    if evaluate:
        def predict(x):
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        metrics, reference = evaluate_probabilities(predict, pre, data_dir)
    info = ArtifactInfo(registry, name or arch, pre, metrics=metrics, reference=reference,
                        training={"imported_from": str(path), "source_sha256": file_digest(path), "format": "pth"})
    return save_artifact(model, info, arch=arch, model_kwargs=model_kwargs)


def parity_inputs(preprocessing: Preprocessing, n: int = 1000, data_dir=None):
    """Real test images, normalised, for parity checks (random ones where the dataset is absent)."""
    import numpy as np

    from fmnist import data

    try:
        images = data.load(data_dir, allow_download=False).test_images[:n]
    except data.DatasetError:
        images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return images, preprocessing.normalize(images)
