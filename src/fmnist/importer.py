"""`fmnist import`: a model made elsewhere becomes a verified artifact, evaluated like a trained one.

Today: a torch state dict (`.pth`, read with weights_only=True) for one of our architectures. The
artifact gets test metrics on the real test set and drift reference statistics of the validation
split, exactly as `fmnist train` writes them, and provenance (the source file and its sha256).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fmnist.artifact import Artifact, import_state_dict, save_artifact
from fmnist.preprocess import Preprocessing


def file_sha256(path: "str | Path") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evaluate_probabilities(predict, preprocessing: Preprocessing, data_dir=None) -> "tuple[dict, dict]":
    """predict: normalised (N,1,28,28) float32 -> logits or probabilities (N,10). -> (metrics with the
    test report, reference statistics of the validation split), on the real dataset."""
    from fmnist import data
    from fmnist.evaluation.metrics import classification_report, reference_statistics, softmax

    ds = data.load(data_dir, allow_download=False)
    (_, _), (va_x, _) = ds.split()
    test_out = predict(preprocessing.normalize(ds.test_images))
    val_out = predict(preprocessing.normalize(va_x))
    reference = reference_statistics(softmax(val_out), va_x)
    reference["source"] = f"validation split ({len(va_x)} images)"
    return {"test": classification_report(ds.test_labels, test_out.argmax(1))}, reference


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
    return save_artifact(
        model, registry=registry, name=name or arch, arch=arch, model_kwargs=model_kwargs, preprocessing=pre,
        metrics=metrics, reference=reference,
        training={"imported_from": str(path), "source_sha256": file_sha256(path), "format": "pth"},
    )
