"""Evaluate an artifact on the test set with the same graph serving runs (ONNX Runtime) or torch."""

from __future__ import annotations

import numpy as np

from fmnist.artifact import Artifact
from fmnist.errors import InvalidValue
from fmnist.evaluation.metrics import classification_report
from fmnist.labels import CLASSES


def artifact_logits(art: Artifact, pixels: np.ndarray, backend: str = "onnx", batch_size: int = 1000,
                    tta: bool = False) -> np.ndarray:
    """Logits (N, 10) for uint8 pixels (N, 28, 28), preprocessed with the artifact's own settings.

    tta: test-time augmentation, the mean of the log-probabilities of each image and its mirror image
    (two model calls per image).
    """
    x = art.preprocessing.normalize(pixels)
    if tta:
        both = artifact_logits(art, np.concatenate([pixels, pixels[:, :, ::-1]]), backend, batch_size)
        logp = both - np.logaddexp.reduce(both, axis=1, keepdims=True)
        return (logp[: len(pixels)] + logp[len(pixels):]) / 2
    out = []
    if backend == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(art.onnx_path), providers=["CPUExecutionProvider"])
        for s in range(0, len(x), batch_size):
            out.append(sess.run(["logits"], {"input": x[s : s + batch_size]})[0])
    elif backend == "torch":
        import torch

        from fmnist.artifact import load_model

        model = load_model(art)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                out.append(model(torch.from_numpy(x[s : s + batch_size])).numpy())
    else:
        raise InvalidValue(f"unknown backend {backend!r}: expected onnx or torch")
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def evaluate_artifact(art: Artifact, images: np.ndarray, labels: np.ndarray, backend: str = "onnx",
                      tta: bool = False) -> dict:
    logits = artifact_logits(art, images, backend, tta=tta)
    report = classification_report(labels, logits.argmax(1))
    report["model"] = {"name": art.name, "version": art.version, "arch": art.arch}
    report["backend"] = backend
    report["tta"] = tta
    return report


def format_report(report: dict) -> str:
    """The readable table `fmnist evaluate` prints."""
    lines = [
        f"model {report['model']['name']}:{report['model']['version']} ({report['model']['arch']}), "
        f"{report['n']} test images, backend {report['backend']}" + (", mirror TTA" if report.get("tta") else ""),
        f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}",
        "",
        f"{'class':<13}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for name, m in report["per_class"].items():
        lines.append(f"{name:<13}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>9d}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    short = [c.split("/")[0][:7] for c in CLASSES]
    lines.append(" " * 13 + "".join(f"{s:>8}" for s in short))
    for name, row in zip(CLASSES, report["confusion_matrix"]):
        lines.append(f"{name:<13}" + "".join(f"{v:>8d}" for v in row))
    return "\n".join(lines)
