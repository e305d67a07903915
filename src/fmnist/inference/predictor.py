"""Predictor: load an artifact once, preprocess pixels with its own settings, return probabilities."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fmnist.artifact import Artifact
from fmnist.errors import InvalidValue
from fmnist.labels import CLASSES


@dataclass(frozen=True)
class Prediction:
    class_id: int
    label: str
    confidence: float
    probabilities: np.ndarray  # (10,)

    def top_k(self, k: int) -> list[dict]:
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [{"label": CLASSES[i], "class_id": int(i), "probability": float(self.probabilities[i])} for i in order]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictor:
    """An artifact loaded once (the constructor), then normalize (uint8 pixels -> the model's input) and
    predict_batch (normalised float32 (N,1,28,28) -> probabilities (N,10)).

    backend "onnx" runs the artifact's model.onnx with ONNX Runtime (no torch needed);
    "torch" rebuilds the torch model from safetensors.
    """

    def __init__(self, artifact: Artifact, backend: str = "onnx", intra_op_threads: int = 1):
        self.artifact = artifact
        self.backend = backend
        self.preprocessing = artifact.preprocessing
        if backend == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = intra_op_threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(str(artifact.onnx_path), opts, providers=["CPUExecutionProvider"])
            self._run = lambda x: self._session.run(["logits"], {"input": x})[0]
        elif backend == "torch":
            import torch

            from fmnist.artifact import load_model

            torch.set_num_threads(intra_op_threads)
            model = load_model(artifact)

            def run(x):
                with torch.inference_mode():
                    return model(torch.from_numpy(x)).numpy()

            self._run = run
        else:
            raise InvalidValue(f"unknown backend {backend!r}: expected onnx or torch")

    @property
    def name(self) -> str:
        return self.artifact.name

    @property
    def version(self) -> str:
        return self.artifact.version

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) with the artifact's mean and std."""
        return self.preprocessing.normalize(pixels)

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 (N, 1, 28, 28) -> probabilities (N, 10)."""
        return _softmax(self._run(np.ascontiguousarray(x, dtype=np.float32)).astype(np.float64))

    def warm_up(self) -> float:
        """One prediction on a blank image (readiness check); returns its latency in seconds."""
        t0 = time.perf_counter()
        probs = self.predict_batch(self.normalize(np.zeros((1, 28, 28), np.uint8)))
        if probs.shape != (1, len(CLASSES)) or not np.isfinite(probs).all():
            raise RuntimeError(f"warm-up prediction returned {probs.shape} / non-finite values")
        return time.perf_counter() - t0

    @staticmethod
    def to_predictions(probs: np.ndarray) -> list[Prediction]:
        ids = probs.argmax(axis=1)
        return [
            Prediction(int(i), CLASSES[int(i)], float(p[i]), p) for i, p in zip(ids, probs)
        ]
