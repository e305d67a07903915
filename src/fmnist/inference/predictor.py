"""Predictor: load an artifact once, preprocess pixels with its own settings, return calibrated probabilities,
and say how far each answer is from what the model knows (fmnist.calibration)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fmnist.artifact import Artifact
from fmnist.calibration import Calibration
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


UNCALIBRATED = Calibration()  # an artifact with no "calibration" section: T = 1, raw entropy, never "unsure"


class Predictor:
    """An artifact loaded once (the constructor), then normalize (uint8 pixels -> the model's input) and
    predict_batch (normalised float32 (N,1,28,28) -> probabilities (N,10), calibrated by the manifest's
    temperature); assess (probabilities -> out-of-distribution scores and flags).

    An input with no garment at all (every pixel the background: a blank page after conversion) gets the
    uniform answer, so it is flagged not_a_garment whatever the model would have said of an empty image.

    backend "onnx" runs the artifact's model.onnx with ONNX Runtime (no torch needed);
    "torch" rebuilds the torch model from safetensors.
    """

    def __init__(self, artifact: Artifact, backend: str = "onnx", intra_op_threads: int = 1):
        self.artifact = artifact
        self.backend = backend
        self.preprocessing = artifact.preprocessing
        self.calibration = Calibration.from_dict(artifact.manifest.get("calibration")) or UNCALIBRATED
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

    num_classes = len(CLASSES)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) with the artifact's mean and std."""
        return self.preprocessing.normalize(pixels)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not UNCALIBRATED

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 (N, 1, 28, 28) -> calibrated probabilities (N, 10)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        probs = self.calibration.probabilities(self._run(x))
        flat = x.reshape(len(x), -1)
        blank = flat.max(axis=1) == flat.min(axis=1)
        if blank.any():
            probs[blank] = 1.0 / probs.shape[1]
        return probs

    def assess(self, probs: np.ndarray) -> tuple[np.ndarray, list]:
        """Calibrated probabilities (N, 10) -> (ood_score (N,) in 0-1, flag per answer: None, unsure or
        not_a_garment)."""
        ood = self.calibration.ood_scores(probs)
        return ood, self.calibration.flags(probs, ood)

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
