"""What one worker holds (WorkerState): settings, metrics, the prediction log, the model in service
(inference.ServedModel: predictor + batcher), readiness, hot reload.

A request takes `state.current` once and uses that model from start to end, so a model swap
between two requests (a promotion) never mixes the preprocessing of one version with another.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from fmnist.config import Settings
from fmnist.inference import Limits, MicroBatcher, Predictor, Result, ServedModel
from fmnist.inference.memory import PixelBudget, give_back_freed_memory
from fmnist.monitoring.prometheus import Metrics
from fmnist.monitoring.store import open_store
from fmnist.serving.auth import KeyStore

log = logging.getLogger("fmnist.serving")


class WorkerState:
    """Everything one worker process holds: its settings, metrics, prediction log, the model in service
    (swapped whole on a promotion) and the explain slots."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()  # this process's Prometheus metrics (merged across workers at scrape time)
        self.current: "ServedModel | None" = None
        self.error: "str | None" = None
        self.replica = settings.replica_name
        self.store = open_store(settings.prediction_log, settings.retention_rows, settings.retention_days,
                                buffer_rows=settings.prediction_log_buffer_rows, on_drop=self.metrics.log_dropped.inc,
                                password_file=settings.prediction_log_password_file or None)
        self._swap_lock = threading.Lock()
        self.explain_slots = threading.BoundedSemaphore(max(1, settings.explain_concurrency))
        self.limits = Limits(settings.max_images, settings.max_image_pixels)  # per request
        self.pixels = PixelBudget(settings.decode_pixels, settings.decode_wait_s)  # big pictures decoded at once
        give_back_freed_memory()  # this process's freed big blocks go back to the system (inference/memory.py)
        self.auth = KeyStore(settings.api_keys, settings.worker_count) if settings.api_keys else None  # serving/auth.py
        from fmnist.serving.rollout_worker import WorkerRollout

        self.rollout = WorkerRollout(self)  # a candidate beside production while a rollout runs

    @property
    def ready(self) -> bool:
        return self.current is not None

    def _open(self, artifact) -> ServedModel:
        """Verified artifact -> predictor, warm-up prediction, batcher: everything before it takes traffic."""
        t0 = time.perf_counter()
        s = self.settings
        predictor = Predictor(artifact, s.backend, s.intra_op_threads)
        predictor.warm_up()
        batcher = None
        if s.batching:
            batcher = MicroBatcher(predictor.predict_batch, s.max_batch_size, s.max_batch_wait_ms,
                                   on_batch=self.metrics.observe_batch)
        if not predictor.calibrated:
            log.warning("%s has no calibration in its manifest: confidences are uncalibrated and answers are never "
                        "flagged unsure (run: fmnist calibrate %s)", artifact.ref, artifact.ref)
        return ServedModel(predictor, batcher, time.time(), time.perf_counter() - t0, self.metrics.observe_batch,
                           flagged_label=s.flagged_label, max_batch_size=s.max_batch_size)

    def _resolve(self, verify: bool = True):
        from fmnist.registry import resolve

        return resolve(self.settings.model, self.settings.models or None, verify=verify)

    def open_version(self, name: str, version: str) -> ServedModel:
        """name:version from the registry, verified and warmed up (a rollout's candidate)."""
        from fmnist.registry import resolve

        return self._open(resolve(f"{name}:{version}", self.settings.models or None, verify=True))

    def load(self) -> None:
        """The start-up load; on failure stay not-ready (503) with the reason."""
        try:
            served = self._open(self._resolve())
        except Exception as e:
            self.error = f"model {self.settings.model!r} could not be loaded: {e}"
            log.error(self.error)
            return
        self._install(served)
        self.rollout.follow()  # a worker (re)starting mid-rollout joins it at once
        if self.settings.reload_interval > 0:
            threading.Thread(target=self._watch, name="fmnist-model-watch", daemon=True).start()

    def _install(self, served: ServedModel) -> None:
        with self._swap_lock:
            old = self.current
            self.metrics.init_model(served.name, served.version)
            self.current = served
            self.error = None
        if old is not None and old.version != served.version:
            self.metrics.retire_model(old.name, old.version)
            if old.batcher is not None:  # requests already queued there still get their answers
                threading.Timer(5.0, old.batcher.close).start()
        log.info("serving %s:%s (%s backend), loaded in %.3fs", served.name, served.version,
                 served.predictor.backend, served.load_seconds)

    def reload_if_changed(self) -> "str | None":
        """Follow the registry (production alias, else latest): verify, warm up, then swap.

        Returns the new version, or None when nothing changed. A model that fails to load is
        refused: the one in service keeps serving and the failure is logged and counted.
        """
        try:
            target = self._resolve(verify=False)
        except Exception as e:
            log.error("model watch: cannot resolve %r: %s", self.settings.model, e)
            return None
        cur = self.current
        if cur is not None and target.path == cur.predictor.artifact.path:
            return None
        try:
            served = self._open(self._resolve(verify=True))
        except Exception as e:
            self.metrics.model_reload_failures.inc()
            log.error("refusing model %s: %s; still serving %s", target.ref, e,
                      cur.predictor.artifact.ref if cur else "nothing")
            return None
        self._install(served)
        return served.version

    def _watch(self) -> None:
        while True:
            time.sleep(self.settings.reload_interval)
            try:
                self.reload_if_changed()
                self.rollout.follow()
            except Exception:  # the watcher must never die
                log.exception("model watch failed")

    def record(self, served: ServedModel, request_id: "str | list[tuple[str, int, str, float | None]]",
               result: Result, key_id: str = "", latency_ms: "float | None" = None) -> None:
        """Metrics and the prediction log for each image of a Result (its pixels: uint8 (N, 28, 28)) of one
        request (request_id, asked with the API key `key_id`, in the server for latency_ms so far), or of
        several at once: then one (request id, index in its request, key id, latency ms) per image."""
        probs, pixels, flags = result.probabilities, result.pixels, result.flags
        n = len(probs)
        ids = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        mean_px = pixels.reshape(n, -1).mean(axis=1) / 255.0
        self.metrics.observe_predictions(served.version, ids, conf, mean_px, result.ood, flags)
        keys = ([(request_id, i, key_id, latency_ms) for i in range(n)] if isinstance(request_id, str)
                else request_id)
        now = time.time()
        keep = self.settings.store_images
        name, version, replica = served.name, served.version, self.replica
        self.store.record([  # store.ROW_FIELDS order
            (rid, idx, now, replica, name, version, c, p, m, hashlib.sha256(px).hexdigest(), px if keep else None, kid,
             ms, f or "") for (rid, idx, kid, ms), c, p, m, px, f in zip(keys, ids.tolist(), conf.tolist(),
                                                                     mean_px.tolist(), (pixels[i].tobytes()
                                                                                        for i in range(n)), flags)
        ])
        self.rollout.shadow(served, keys, pixels)

    def record_failure(self, served: ServedModel, request_id: str, key_id: str = "") -> None:
        """A request this model failed to answer (its run raised), logged as `<request id>@error` (class -1):
        a rollout's error-rate gate counts them; monitoring's windows leave them out."""
        self.store.record([(request_id + "@error", 0, time.time(), self.replica, served.name, served.version, -1, 0.0,
                            0.0, "", None, key_id, None, "")])
