"""Prometheus metrics, multiprocess-safe under Gunicorn (PROMETHEUS_MULTIPROC_DIR set before start).

Names follow Prometheus conventions: base units, `_total` counters, `_seconds` durations.
The histograms' buckets match the artifact's reference histograms, so drift can be computed in
PromQL across replicas as well as in-process.
"""

from __future__ import annotations

import os

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess
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

HTTP_REQUESTS = Counter("fmnist_http_requests_total", "HTTP requests by method, route and status",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("fmnist_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                          buckets=LATENCY_BUCKETS)
HTTP_IN_PROGRESS = Gauge("fmnist_http_requests_in_progress", "HTTP requests being served",
                         multiprocess_mode="livesum")
INFERENCE_DURATION = Histogram("fmnist_inference_duration_seconds", "Model call latency (one batch)",
                               buckets=INFERENCE_BUCKETS)
BATCH_SIZE = Histogram("fmnist_inference_batch_size", "Images per model call", buckets=BATCH_BUCKETS)
PREDICTIONS = Counter("fmnist_predictions_total", "Predictions by model version and predicted class",
                      ["model_version", "class"])
CONFIDENCE = Histogram("fmnist_prediction_confidence", "Max-softmax probability of each prediction",
                       buckets=CONFIDENCE_BUCKETS)
MEAN_PIXEL = Histogram("fmnist_input_mean_pixel", "Mean pixel (0-1, dataset polarity) of each input image",
                       buckets=MEAN_PIXEL_BUCKETS)
FEEDBACK = Counter("fmnist_feedback_total", "Labelled feedback by model version and outcome",
                   ["model_version", "outcome"])
MODEL_RELOAD_FAILURES = Counter("fmnist_model_reload_failures_total",
                                "Promoted models refused because they failed verification or warm-up")
MODEL_INFO = Gauge("fmnist_model_info", "The model in service (value 1)", ["name", "version"],
                   multiprocess_mode="liveall")


def multiprocess_dir() -> "str | None":
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def init_model(name: str, version: str) -> None:
    """Mark the model in service and create all ten class series at 0, so rates exist from the start."""
    MODEL_INFO.labels(name=name, version=version).set(1)
    for c in CLASSES:
        PREDICTIONS.labels(model_version=version, **{"class": c})
    for outcome in ("correct", "incorrect"):
        FEEDBACK.labels(model_version=version, outcome=outcome)


def observe_predictions(version: str, class_ids, confidences, mean_pixels) -> None:
    for cid, conf, px in zip(class_ids, confidences, mean_pixels):
        PREDICTIONS.labels(model_version=version, **{"class": CLASSES[int(cid)]}).inc()
        CONFIDENCE.observe(float(conf))
        MEAN_PIXEL.observe(float(px))


def observe_batch(size: int, seconds: float) -> None:
    BATCH_SIZE.observe(size)
    INFERENCE_DURATION.observe(seconds)


def registry(extra_collectors=()) -> CollectorRegistry:
    """What /metrics exposes: every worker's metrics (multiprocess) or this process's, plus extras."""
    reg = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(reg)
    else:  # one process (tests, `flask run`): this process's own metric objects
        for collector in (HTTP_REQUESTS, HTTP_DURATION, HTTP_IN_PROGRESS, INFERENCE_DURATION, BATCH_SIZE,
                          PREDICTIONS, CONFIDENCE, MEAN_PIXEL, FEEDBACK, MODEL_INFO, MODEL_RELOAD_FAILURES):
            reg.register(collector)
    for c in extra_collectors:
        reg.register(c)
    return reg


def exposition(extra_collectors=()) -> bytes:
    return generate_latest(registry(extra_collectors))


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


def snapshot() -> dict:
    """Totals the dashboard turns into rates: requests by status class, latency buckets, batches."""
    out = {"requests": {"total": 0.0, "2xx": 0.0, "4xx": 0.0, "5xx": 0.0}, "predict_latency_buckets": {},
           "predictions": {}, "batches": {"count": 0.0, "images": 0.0}, "feedback": {}}
    for family in registry().collect():
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
