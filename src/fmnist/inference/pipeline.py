"""The stages of a prediction, each written once and knowing nothing of HTTP. Every door walks them: the
fast path and the Flask view of /predict, /explain, /v2, `fmnist batch` (and whatever comes next).

    decode      [(name, bytes)] -> images: headers read and checked, no pixel decoded yet
    preprocess  images -> uint8 (N, 28, 28): pixels decoded no larger than needed, then the conversion
    infer       pixels -> probabilities (N, 10): one model, one batching story (ServedModel.run)
    assess      probabilities -> a Result: calibrated probabilities, OOD score, flag, the model
    record      the caller's (metrics and the prediction log: serving's WorkerState.record)
    encode      a Result -> the answer (inference.answer: JSON, OIP v2 outputs, batch columns)

A refusal (a bad image: ImageError; no memory to decode it in time: BudgetExceeded) is an
`fmnist.errors.Refused` with its status and code: each door answers it in its own shape.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fmnist.config import Settings
from fmnist.errors import Refused
from fmnist.images.preprocess import WORK_SIDE, decoded_pixels, load_image, open_image, to_model_pixels
from fmnist.inference.batcher import MicroBatcher
from fmnist.inference.memory import PixelBudget
from fmnist.inference.predictor import Predictor


@dataclass(frozen=True)
class Limits:
    """What one request may hold: images, and pixels per picture (read from its header before decoding)."""

    max_images: int = Settings.max_images
    max_image_pixels: int = Settings.max_image_pixels


def decode(blobs: list, limits: Limits) -> list:
    """[(name, bytes)] -> [(name, PIL image)] with their headers read and checked (format, size, pixel
    limit); nothing decoded yet. Refused (400 too_many_images, ImageError) otherwise."""
    if len(blobs) > limits.max_images:
        raise Refused(400, "too_many_images", f"{len(blobs)} images in one request; the limit is {limits.max_images}")
    return [(name, open_image(b, limits.max_image_pixels, name)) for name, b in blobs]


_NO_SHARE = contextlib.nullcontext()


def preprocess(images: list, mode: str, timings: "list | None" = None, budget: "PixelBudget | None" = None,
               keep: bool = False) -> np.ndarray:
    """Decoded images -> uint8 (N, 28, 28) in the dataset's polarity (the serving conversion), each decoded
    no larger than the conversion's working size. `timings` gets (header pixels, decode s, convert s,
    foreground extraction s or None, garment found) per image. ImageError on a bad image.

    `budget` (the worker's PixelBudget): a big picture is decoded only while holding its share of it
    (BudgetExceeded, a 503, when it cannot have it in time). Each picture's pixels are freed once converted
    unless `keep`."""
    out = []
    for name, im in images:
        t0 = time.perf_counter()
        pixels = im.size[0] * im.size[1]
        info: dict = {}
        with budget.hold(decoded_pixels(im, WORK_SIDE)) if budget is not None else _NO_SHARE:
            load_image(im, name, WORK_SIDE)
            t1 = time.perf_counter()
            out.append(to_model_pixels(im, mode, info=info))
            if not keep:
                im.close()  # its pixel array goes now, not when the request ends
        if timings is not None:
            timings.append((pixels, t1 - t0, time.perf_counter() - t1, info.get("extract_s"),
                            info.get("extracted", False)))
    return np.stack(out)


@dataclass(frozen=True)
class ServedModel:
    """A model in service: its Predictor, its batcher (None: batching off), when and how fast it loaded, and
    `on_batch(images, seconds)` for each model call (the worker's metrics)."""

    predictor: Predictor
    batcher: "MicroBatcher | None"
    loaded_at: float
    load_seconds: float
    on_batch: "Callable[[int, float], None] | None" = None
    flagged_label: bool = True  # a flagged answer still names its class (Settings.flagged_label)
    max_batch_size: int = Settings.max_batch_size  # images per model call

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def version(self) -> str:
        return self.predictor.version

    @property
    def ref(self) -> dict:
        return {"name": self.predictor.name, "version": self.predictor.version}

    @classmethod
    def offline(cls, artifact, threads: int = 1, max_batch_size: int = Settings.max_batch_size,
                flagged_label: bool = Settings.flagged_label) -> "ServedModel":
        """An artifact's model for a job with no server (fmnist batch): ONNX Runtime, no batcher, no metrics."""
        t0 = time.perf_counter()
        predictor = Predictor(artifact, "onnx", max(1, threads))
        return cls(predictor, None, time.time(), time.perf_counter() - t0, None, flagged_label, max_batch_size)

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) -> probabilities (N, 10), model calls in this thread (run_now)."""
        if not len(pixels):
            return np.zeros((0, self.predictor.num_classes), np.float32)
        return self.run_now(self.predictor.normalize(pixels))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Normalised (N,1,28,28) -> probabilities (N,10): through the batcher when batching is on (shared
        with concurrent requests), else in this thread."""
        if self.batcher is not None:
            return self.batcher.predict(x)
        return self.run_now(x)

    def run_now(self, x: np.ndarray) -> np.ndarray:
        """Model calls in this thread for a batch already formed (the loop worker's, /explain's, a batch
        job's chunk), max_batch_size images per call."""
        step = self.max_batch_size
        if len(x) <= step:
            return self._call(x)
        return np.concatenate([self._call(x[k:k + step]) for k in range(0, len(x), step)])

    def _call(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.predictor.predict_batch(x)
        if self.on_batch is not None:
            self.on_batch(len(x), time.perf_counter() - t0)
        return out


def infer(served: ServedModel, load: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """load() -> uint8 pixels (the decoding), then probabilities. While it decodes, the batcher knows one
    more request is on its way, so a busy worker's batch waits for it."""
    batcher = served.batcher
    if batcher is None:
        pixels = load()
        return pixels, served.run(served.predictor.normalize(pixels))
    batcher.enter()
    try:
        pixels = load()
        x = served.predictor.normalize(pixels)
    finally:
        batcher.leave()
    return pixels, served.run(x)


@dataclass(frozen=True)
class Result:
    """What the model said of N images: calibrated probabilities (N, 10), out-of-distribution scores (N,),
    a flag each (None, "unsure", "not_a_garment"), the model ({"name", "version"}) and the uint8 pixels it saw
    (None for an input given already normalised)."""

    probabilities: np.ndarray
    ood: np.ndarray
    flags: list
    model: dict
    pixels: "np.ndarray | None" = None

    def __len__(self) -> int:
        return len(self.probabilities)

    def part(self, start: int, stop: int) -> "Result":
        return Result(self.probabilities[start:stop], self.ood[start:stop], self.flags[start:stop], self.model,
                      None if self.pixels is None else self.pixels[start:stop])


def assess(served: ServedModel, probs: np.ndarray, pixels: "np.ndarray | None" = None) -> Result:
    """Probabilities -> a Result: the OOD score and flag of each answer, computed once per answer."""
    ood, flags = served.predictor.assess(probs)
    return Result(probs, ood, flags, served.ref, pixels)
