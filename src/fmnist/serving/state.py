"""What one worker holds: settings, the loaded model (predictor + batcher) and its readiness."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from fmnist.config import Settings
from fmnist.inference import MicroBatcher, Predictor
from fmnist.monitoring import metrics
from fmnist.monitoring.store import PredictionStore

log = logging.getLogger("fmnist.serving")


@dataclass
class ModelState:
    settings: Settings
    predictor: "Predictor | None" = None
    batcher: "MicroBatcher | None" = None
    store: "PredictionStore | None" = None
    ready: bool = False
    error: "str | None" = None
    loaded_at: float = 0.0
    load_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        """Resolve, verify (sha256), open and warm up the model; on failure stay not-ready with the reason."""
        from fmnist.registry import resolve

        t0 = time.perf_counter()
        try:
            art = resolve(self.settings.model, self.settings.models_dir or None)
            predictor = Predictor(art, self.settings.backend, self.settings.intra_op_threads)
            predictor.warm_up()
        except Exception as e:  # reported by /ready and every prediction as 503, with the reason
            self.error = f"model {self.settings.model!r} could not be loaded: {e}"
            self.ready = False
            log.error(self.error)
            return
        batcher = None
        if self.settings.batching:
            batcher = MicroBatcher(predictor.predict_batch, self.settings.max_batch_size,
                                   self.settings.max_batch_wait_ms, on_batch=metrics.observe_batch)
        if self.store is None:
            s = self.settings
            self.store = PredictionStore(s.prediction_log, s.retention_rows, s.retention_days)
        metrics.init_model(predictor.name, predictor.version)
        self.predictor, self.batcher = predictor, batcher
        self.load_seconds = time.perf_counter() - t0
        self.loaded_at = time.time()
        self.error = None
        self.ready = True
        log.info("loaded %s:%s (%s backend) in %.3fs", predictor.name, predictor.version, predictor.backend,
                 self.load_seconds)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Normalised (N,1,28,28) -> probabilities (N,10), through the batcher when batching is on."""
        if self.batcher is not None:
            return self.batcher.predict(x)
        t0 = time.perf_counter()
        out = self.predictor.predict_batch(x)
        metrics.observe_batch(len(x), time.perf_counter() - t0)
        return out

    def record(self, request_id: str, pixels: np.ndarray, probs: np.ndarray) -> None:
        """Metrics and the prediction log for each image of a request (pixels: uint8 (N, 28, 28))."""
        import hashlib

        p = self.predictor
        ids = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        mean_px = pixels.reshape(len(pixels), -1).mean(axis=1) / 255.0
        metrics.observe_predictions(p.version, ids, conf, mean_px)
        now = time.time()
        keep = self.settings.store_images
        self.store.record([
            (request_id, i, now, p.name, p.version, int(ids[i]), float(conf[i]), float(mean_px[i]),
             hashlib.sha256(pixels[i].tobytes()).hexdigest(), pixels[i].tobytes() if keep else None)
            for i in range(len(ids))
        ])
