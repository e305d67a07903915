"""Prometheus metrics, multiprocess-safe under Gunicorn (PROMETHEUS_MULTIPROC_DIR set before start).

Names follow Prometheus conventions: base units, `_total` counters, `_seconds` durations.
The histograms' buckets match the artifact's reference histograms, so drift can be computed in
PromQL across replicas as well as in-process.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from fmnist.evaluation.metrics import CONFIDENCE_BINS, MEAN_PIXEL_BINS
from fmnist.labels import CLASSES

# around the 25 ms p99 target, fine below it
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONFIDENCE_BUCKETS = tuple(round(x, 4) for x in np.linspace(0, 1, CONFIDENCE_BINS + 1)[1:])
MEAN_PIXEL_BUCKETS = tuple(round(x, 4) for x in np.linspace(0, 1, MEAN_PIXEL_BINS + 1)[1:])

# pictures by the pixel count their header gives: the dataset's own size, small, up to 2 megapixels, beyond
PICTURE_SIZES = ((784, "28x28"), (65_536, "small"), (2_000_000, "medium"), (float("inf"), "large"))
PICTURE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def picture_size(pixels: int) -> str:
    return next(name for bound, name in PICTURE_SIZES if pixels <= bound)


def multiprocess_dir() -> "str | None":
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def _observe_many(hist, values) -> None:
    """The same as hist.observe(v) for each v (first bucket whose bound >= v), one write per bucket.
    Writes prometheus_client's private fields (_upper_bounds, _buckets, _sum): tested with the range
    pinned in pyproject.toml (test_monitoring checks it against Histogram.observe)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return
    counts = np.bincount(np.searchsorted(np.asarray(hist._upper_bounds), values, side="left"),
                         minlength=len(hist._upper_bounds))
    for i in np.flatnonzero(counts):
        hist._buckets[i].inc(float(counts[i]))
    hist._sum.inc(float(values.sum()))


_instances: "weakref.WeakSet" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for m in list(_instances):
        m._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


RENDER_REUSE = 10  # /metrics: the merged text is reused for 10x its render time (see exposition_bounded)


class Metrics:
    """One process's Prometheus metrics, owned by the app's state (`WorkerState.metrics`).

    Under Gunicorn every metric update is a locked write into a memory-mapped file; a request made
    14 of them (~50 µs). The request path only appends its observations to a queue, and a thread of
    this process writes them in bulk: every FLUSH_INTERVAL seconds, and before a scrape. One flush
    of N requests makes one write per touched bucket or series, whatever N.
    """

    FLUSH_INTERVAL = 0.05

    def __init__(self):
        c, h, g = Counter, Histogram, Gauge
        self.http_requests = c("fmnist_http_requests_total", "HTTP requests by method, route and status",
                               ["method", "route", "status"], registry=None)
        self.http_duration = h("fmnist_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                               buckets=LATENCY_BUCKETS, registry=None)
        self.http_in_progress = g("fmnist_http_requests_in_progress", "HTTP requests being served",
                                  multiprocess_mode="livesum", registry=None)
        self.inference_duration = h("fmnist_inference_duration_seconds", "Model call latency (one batch)",
                                    buckets=INFERENCE_BUCKETS, registry=None)
        self.batch_size = h("fmnist_inference_batch_size", "Images per model call", buckets=BATCH_BUCKETS,
                            registry=None)
        self.predictions = c("fmnist_predictions_total", "Predictions by model version and predicted class",
                             ["model_version", "class"], registry=None)
        self.confidence = h("fmnist_prediction_confidence", "Max-softmax probability of each prediction",
                            buckets=CONFIDENCE_BUCKETS, registry=None)
        self.flagged = c("fmnist_predictions_flagged_total", "Answers flagged, by model version and flag: unsure "
                         "(calibrated confidence below the artifact's threshold) or not_a_garment (out of distribution)",
                         ["model_version", "flag"], registry=None)
        self.ood_score = h("fmnist_prediction_ood_score", "Out-of-distribution score of each answer (0-1: its "
                           "uncertainty ranked against the validation pictures')", buckets=CONFIDENCE_BUCKETS,
                           registry=None)
        self.foreground = c("fmnist_foreground_extractions_total", "Pictures on a busy background whose garment was "
                            "cut out before conversion, by outcome: found, or none (converted as they were)",
                            ["outcome"], registry=None)
        self.foreground_seconds = h("fmnist_foreground_extraction_seconds", "Time to cut one picture's garment out of "
                                    "its busy background", buckets=PICTURE_BUCKETS, registry=None)
        self.mean_pixel = h("fmnist_input_mean_pixel", "Mean pixel (0-1, dataset polarity) of each input image",
                            buckets=MEAN_PIXEL_BUCKETS, registry=None)
        self.feedback = c("fmnist_feedback_total", "Labelled feedback by model version and outcome",
                          ["model_version", "outcome"], registry=None)
        self.model_reload_failures = c("fmnist_model_reload_failures_total",
                                       "Promoted models refused because they failed verification or warm-up",
                                       registry=None)
        self.log_dropped = c("fmnist_prediction_log_dropped_total",
                             "Prediction log rows dropped: the store was unreachable and the buffer full",
                             registry=None)
        self.explanations = c("fmnist_explanations_total",
                              "POST /explain requests by outcome: done, or busy (refused: all explain slots in use)",
                              ["outcome"], registry=None)
        self.explain_duration = h("fmnist_explain_duration_seconds",
                                  "Time to compute one explanation (its model calls and pictures)",
                                  buckets=LATENCY_BUCKETS, registry=None)
        self.pictures = c("fmnist_pictures_total", "Pictures decoded, by size class (from the header) and where: "
                          "loop (the loop worker's event loop), app_pool or heavy_pool (its threads), thread "
                          "(a gthread or sync worker's request thread)", ["size", "where"], registry=None)
        self.picture_decode = h("fmnist_picture_decode_seconds", "Time to decode one picture's pixels", ["size"],
                                buckets=PICTURE_BUCKETS, registry=None)
        self.picture_convert = h("fmnist_picture_convert_seconds",
                                 "Time to convert one decoded picture to the model's 28x28", ["size"],
                                 buckets=PICTURE_BUCKETS, registry=None)
        self.auth_failures = c("fmnist_auth_failures_total", "Requests refused for their API key, by reason: missing, "
                               "malformed, unknown, revoked, scope, unavailable", ["reason"], registry=None)
        self.shed = c("fmnist_shed_total", "Requests answered 503 or dropped without being started, by reason: queue "
                      "(could no longer be answered within default_deadline_ms), pool_full / heavy_full (the worker's "
                      "thread or heavy-picture queue was full), client_gone (its client closed first: dropped)", ["reason"],
                      registry=None)
        self.deadline_expired = c("fmnist_deadline_expired_total", "Requests whose own timeout (X-Request-Timeout-Ms) "
                                  "would pass before their work finished: answered 504, never started; by where they "
                                  "waited (loop, app_pool, heavy_pool)", ["where"], registry=None)
        self.key_requests = c("fmnist_key_requests_total", "Requests answered for each API key (its id, never the "
                              "secret), by status", ["key_id", "status"], registry=None)
        self.shadow_dropped = c("fmnist_shadow_dropped_total", "Images a rollout's shadow candidate did not see: its "
                                "queue was full (shadow work is dropped first under load)", registry=None)
        self.metrics_renders = c("fmnist_metrics_renders_total", "Times /metrics merged every worker's metrics (the "
                                 "scrapes in between reuse the text: metrics_reuse)", registry=None)
        self.model_info = g("fmnist_model_info", "The model in service (value 1)", ["name", "version"],
                            multiprocess_mode="liveall", registry=None)
        self._pending: "collections.deque[tuple]" = collections.deque()  # append/popleft are thread-safe
        self._flush_lock = threading.Lock()
        self._flusher_started = False  # in this process; reset in a forked child, which has no thread yet
        self._render_lock = threading.Lock()
        self._rendered: tuple = (None, 0.0, 0.0)  # /metrics text, when it was rendered, how long that took
        _instances.add(self)

    def _collectors(self) -> tuple:
        return (self.http_requests, self.http_duration, self.http_in_progress, self.inference_duration,
                self.batch_size, self.predictions, self.confidence, self.mean_pixel, self.feedback, self.flagged,
                self.ood_score, self.foreground, self.foreground_seconds,
                self.model_info, self.model_reload_failures, self.log_dropped, self.explanations,
                self.explain_duration, self.pictures, self.picture_decode, self.picture_convert, self.auth_failures,
                self.shed, self.deadline_expired, self.metrics_renders, self.key_requests, self.shadow_dropped)

    def _forked(self) -> None:
        self._flush_lock = threading.Lock()  # a lock held by the parent's flusher at fork time stays held here
        self._render_lock = threading.Lock()
        self._rendered = (None, 0.0, 0.0)
        self._flusher_started = False
        self._pending.clear()  # the parent writes its own observations

    # ------------------------------------------------------------------ the request path: queue only
    def observe_request(self, method: str, route: str, status: int, seconds: float, key_id: str = "") -> None:
        self._pending.append(("request", method, route, str(status), seconds, key_id))
        self._ensure_flusher()

    def observe_predictions(self, version: str, class_ids, confidences, mean_pixels, ood=(), flags=()) -> None:
        self._pending.append(("predictions", version, class_ids, confidences, mean_pixels, ood, flags))
        self._ensure_flusher()

    def observe_pictures(self, where: str, timings: list) -> None:
        """timings: (header pixels, decode seconds, convert seconds, extraction seconds or None, garment found) per
        picture of one request (the last two: pipeline.preprocess, for pictures on a busy background)."""
        self._pending.append(("pictures", where, timings))
        self._ensure_flusher()

    def observe_dropped(self, reason: str, where: str, method: str, route: str) -> None:
        """A request the worker refused or dropped before starting it (serving/http/admission.py)."""
        self._pending.append(("dropped", reason, where, method, route))
        self._ensure_flusher()

    def observe_batch(self, size: int, seconds: float) -> None:
        self._pending.append(("batch", size, seconds))
        self._ensure_flusher()

    def init_model(self, name: str, version: str) -> None:
        """Mark the model in service and create all ten class series at 0, so rates exist from the start."""
        self.model_info.labels(name=name, version=version).set(1)
        for cls in CLASSES:
            self.predictions.labels(model_version=version, **{"class": cls})
        for outcome in ("correct", "incorrect"):
            self.feedback.labels(model_version=version, outcome=outcome)
        for flag in ("unsure", "not_a_garment"):
            self.flagged.labels(model_version=version, flag=flag)

    def retire_model(self, name: str, version: str) -> None:
        self.model_info.labels(name=name, version=version).set(0)

    # ------------------------------------------------------------------ bulk writes
    def _ensure_flusher(self) -> None:
        if not self._flusher_started:  # a flag, not os.getpid(): this runs on every request
            with self._flush_lock:
                if not self._flusher_started:
                    self._flusher_started = True
                    threading.Thread(target=self._flush_loop, name="fmnist-metrics", daemon=True).start()

    def _flush_loop(self) -> None:
        while True:
            time.sleep(self.FLUSH_INTERVAL)
            try:
                self.flush()
            except Exception:  # a metrics bug must not stop the flushing
                logging.getLogger("fmnist.serving").exception("metrics flush failed")

    def flush(self) -> None:
        """Write this process's queued observations to the metrics."""
        with self._flush_lock:
            items = [self._pending.popleft() for _ in range(len(self._pending))]
            if not items:
                return
            requests: dict = collections.Counter()
            durations: dict = collections.defaultdict(list)
            classes: dict = {}
            conf, mean_px, sizes, seconds, oods, flagged, extract_s = [], [], [], [], [], collections.Counter(), []
            extracted: dict = collections.Counter()
            pictures: dict = collections.Counter()
            stage_times: dict = collections.defaultdict(lambda: ([], []))
            dropped: dict = collections.Counter()
            by_key: dict = collections.Counter()
            for kind, *rest in items:
                if kind == "request":
                    method, route, status, elapsed, key_id = rest
                    requests[(method, route, status)] += 1
                    durations[(method, route)].append(elapsed)
                    if key_id:
                        by_key[(key_id, status)] += 1
                elif kind == "predictions":
                    version, ids, c, px, ood, flags = rest
                    oods.append(np.asarray(ood, dtype=np.float64))
                    for f in flags:
                        if f:
                            flagged[(version, f)] += 1
                    counts = classes.setdefault(version, np.zeros(len(CLASSES), np.int64))
                    counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(CLASSES))
                    conf.append(np.asarray(c, dtype=np.float64))
                    mean_px.append(np.asarray(px, dtype=np.float64))
                elif kind == "dropped":
                    reason, where, method, route = rest
                    dropped[(reason, where)] += 1
                    if reason != "client_gone":  # answered: 504 for a deadline, else 503
                        requests[(method, route, "504" if reason == "deadline" else "503")] += 1
                elif kind == "pictures":
                    where, timings = rest
                    for pixels, decode_s, convert_s, ext_s, found in timings:
                        if ext_s is not None:
                            extract_s.append(ext_s)
                            extracted["found" if found else "none"] += 1
                        size = picture_size(pixels)
                        pictures[(size, where)] += 1
                        stage_times[size][0].append(decode_s)
                        stage_times[size][1].append(convert_s)
                else:
                    sizes.append(rest[0])
                    seconds.append(rest[1])
            for (method, route, status), n in requests.items():
                self.http_requests.labels(method, route, status).inc(n)
            for (method, route), values in durations.items():
                _observe_many(self.http_duration.labels(method, route), values)
            for version, counts in classes.items():
                for cid in np.flatnonzero(counts):
                    self.predictions.labels(model_version=version, **{"class": CLASSES[cid]}).inc(float(counts[cid]))
            for (version, flag), n in flagged.items():
                self.flagged.labels(model_version=version, flag=flag).inc(n)
            for outcome, n in extracted.items():
                self.foreground.labels(outcome).inc(n)
            _observe_many(self.foreground_seconds, extract_s)
            if conf:
                _observe_many(self.ood_score, np.concatenate(oods))
                _observe_many(self.confidence, np.concatenate(conf))
                _observe_many(self.mean_pixel, np.concatenate(mean_px))
            _observe_many(self.batch_size, sizes)
            _observe_many(self.inference_duration, seconds)
            for (key_id, status), n in by_key.items():
                self.key_requests.labels(key_id, status).inc(n)
            for (reason, where), n in dropped.items():
                if reason == "deadline":
                    self.deadline_expired.labels(where).inc(n)
                else:
                    self.shed.labels(reason).inc(n)
            for (size, where), n in pictures.items():
                self.pictures.labels(size, where).inc(n)
            for size, (decode_s, convert_s) in stage_times.items():
                _observe_many(self.picture_decode.labels(size), decode_s)
                _observe_many(self.picture_convert.labels(size), convert_s)

    # ------------------------------------------------------------------ reading
    def registry(self, extra_collectors=()) -> CollectorRegistry:
        """What /metrics exposes: every worker's metrics (multiprocess) or this process's, plus extras."""
        reg = CollectorRegistry()
        if multiprocess_dir():
            multiprocess.MultiProcessCollector(reg)
        else:  # one process (tests, `flask run`): this object's own metrics
            for collector in self._collectors():
                reg.register(collector)
        for c in extra_collectors:
            reg.register(c)
        return reg

    def exposition(self, extra_collectors=()) -> bytes:
        self.flush()
        return generate_latest(self.registry(extra_collectors))

    def exposition_bounded(self, extra_collectors=lambda: (), reuse: float = -1.0) -> bytes:
        """What /metrics sends, at a bounded cost however often it is asked. With several workers the text
        merges every worker's files (~5-20 ms); it is rendered again only once the last one is older than
        `reuse` seconds (-1: RENDER_REUSE times its own render time, at least 50 ms, at most 1 s; 0: never
        reused), and by one thread at a time: scrapes in between get the same text, so a flood of scrapes
        costs at most ~1/RENDER_REUSE of one thread. Prometheus (every 5-15 s) always gets a fresh render.
        One process: rendered every time (no merge to save)."""
        if not multiprocess_dir() or reuse == 0:
            return self.exposition(extra_collectors())
        with self._render_lock:
            text, at, took = self._rendered
            now = time.monotonic()
            if text is None or now - at > (reuse if reuse > 0 else min(1.0, max(0.05, RENDER_REUSE * took))):
                text = self.exposition(extra_collectors())
                self._rendered = (text, now, time.monotonic() - now)
                self.metrics_renders.inc()  # seen in the next render
            return text

    def snapshot(self) -> dict:
        """Totals the dashboard turns into rates: requests by status class, latency buckets, batches."""
        self.flush()
        out = {"requests": {"total": 0.0, "2xx": 0.0, "4xx": 0.0, "5xx": 0.0}, "predict_latency_buckets": {},
               "predictions": {}, "batches": {"count": 0.0, "images": 0.0}, "feedback": {}}
        for family in self.registry().collect():
            for s in family.samples:
                if s.name == "fmnist_http_requests_total":
                    out["requests"]["total"] += s.value
                    cls = s.labels["status"][0] + "xx"
                    if cls in out["requests"]:
                        out["requests"][cls] += s.value
                elif s.name == "fmnist_http_request_duration_seconds_bucket" and s.labels.get("route") == "/predict":
                    le = s.labels["le"]
                    out["predict_latency_buckets"][le] = out["predict_latency_buckets"].get(le, 0.0) + s.value
                elif s.name == "fmnist_predictions_total":
                    c = s.labels["class"]
                    out["predictions"][c] = out["predictions"].get(c, 0.0) + s.value
                elif s.name == "fmnist_inference_batch_size_count":
                    out["batches"]["count"] += s.value
                elif s.name == "fmnist_inference_batch_size_sum":
                    out["batches"]["images"] += s.value
                elif s.name == "fmnist_feedback_total":
                    o = s.labels["outcome"]
                    out["feedback"][o] = out["feedback"].get(o, 0.0) + s.value
        buckets = sorted((float(le), v) for le, v in out["predict_latency_buckets"].items())
        # JSON has no Infinity: finite buckets as [le, cumulative count], the +Inf bucket as the total
        out["predict_latency_count"] = buckets[-1][1] if buckets else 0.0
        out["predict_latency_buckets"] = [[le, v] for le, v in buckets if le != float("inf")]
        return out


class ReferenceCollector:
    """The artifact's held-out reference as gauges, so PromQL can compare live traffic with it."""

    def __init__(self, manifest: dict):
        self.version = str(manifest["version"])
        self.ref = manifest.get("reference") or {}
        self.test_accuracy = manifest.get("metrics", {}).get("test", {}).get("accuracy")

    def collect(self):
        if self.test_accuracy is not None:
            acc = GaugeMetricFamily("fmnist_model_test_accuracy", "Test-set accuracy recorded in the manifest",
                                    labels=["model_version"])
            acc.add_metric([self.version], float(self.test_accuracy))
            yield acc
        if not self.ref:
            return
        share = GaugeMetricFamily("fmnist_reference_class_share", "Held-out predicted-class share",
                                  labels=["model_version", "class"])
        for c, v in zip(CLASSES, self.ref["class_distribution"]):
            share.add_metric([self.version, c], float(v))
        yield share
        for name, key, help_ in (
            ("fmnist_reference_confidence_cdf", "confidence_histogram", "Held-out max-softmax CDF at bound"),
            ("fmnist_reference_mean_pixel_cdf", "mean_pixel_histogram", "Held-out mean-pixel CDF at bound"),
        ):
            hist = self.ref[key]
            counts = np.asarray(hist["counts"], dtype=float)
            cdf = np.cumsum(counts) / max(counts.sum(), 1)
            # "bound", not "le" (reserved for histograms); PromQL joins with label_replace(le -> bound)
            fam = GaugeMetricFamily(name, help_, labels=["model_version", "bound"])
            for edge, v in zip(hist["edges"][1:], cdf):
                fam.add_metric([self.version, _le(edge)], float(v))
            yield fam


def _le(edge: float) -> str:
    """A bucket bound written as prometheus_client writes `le` (so PromQL can join the two)."""
    from prometheus_client.utils import floatToGoString

    return floatToGoString(round(float(edge), 4))
