"""Typed server settings: defaults, then an optional JSON file, then FMNIST_* environment variables.

One `Settings` for everything a server reads: the app (model, batching, limits, monitoring) and
Gunicorn (bind, workers, worker kind, threads, timeouts; serving/http/gunicorn_conf.py reads them from
here). Each field is one variable, FMNIST_<FIELD>: FMNIST_MODELS names the registry everywhere."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from fmnist.errors import InvalidValue

WORKER_KINDS = ("loop", "gthread", "sync")  # serving/http/gunicorn_conf.py maps them to Gunicorn worker classes


@lru_cache(maxsize=1)
def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, as a container's cpuset sets it), computed once."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# settings that were, and what replaced them: set, they are refused with this (never silently ignored)
RETIRED = {"queue_wait_ms": "a request is now refused when it could no longer be answered within its deadline; "
                            "default_deadline_ms (FMNIST_DEFAULT_DEADLINE_MS, 200) is the deadline of a request "
                            "whose client states none"}


@dataclass
class Settings:
    model: str = "smallcnn"  # artifact path or name[:version]
    models: str = ""  # the registry directory; empty: ./models (FMNIST_MODELS, as every command reads it)
    # Gunicorn (fmnist serve)
    bind: str = "127.0.0.1:5000"
    # serve without API keys on an address beyond loopback: refused unless said explicitly (see exposure_problem)
    open: bool = False
    workers: int = 0  # 0: one per CPU (cpu_count())
    worker: str = "loop"  # loop | gthread | sync
    threads: int = 2  # per worker, gthread only
    timeout: int = 30  # seconds a silent worker lives before Gunicorn replaces it
    graceful_timeout: int = 20  # seconds in-flight requests get on SIGTERM
    keepalive: int = 5  # seconds an idle keep-alive connection stays open
    max_requests: int = 0  # recycle a worker after this many requests (0: never)
    log_level: str = "info"
    # the app
    backend: str = "onnx"  # onnx (no torch needed) | torch
    intra_op_threads: int = 1  # per worker: N workers x 1 thread never oversubscribes the cores
    batching: bool = True  # gather concurrent requests of a worker into one model call
    max_batch_size: int = 64
    max_batch_wait_ms: float = 2.0  # how long a batch may wait for more requests, only while others are in flight
    max_images: int = 64  # images per request
    max_content_length: int = 10 * 1024 * 1024  # bytes per request body
    max_image_pixels: int = 25_000_000  # width x height, checked from the header before decoding
    default_top_k: int = 3
    # a flagged answer (flag "unsure" or "not_a_garment") still names its class; off: its label and class_id are null
    flagged_label: bool = True
    # the loop worker decodes pictures up to this many (header) pixels on its loop (28x28: 784); larger: in heavy_threads
    loop_max_pixels: int = 1_024
    pool_threads: int = 4  # per loop worker: threads for the requests its loop does not answer (other routes)
    pool_queue: int = 64  # such requests waiting for them, per worker; beyond, 503 + Retry-After
    backlog: int = 2048  # connections the kernel queues before the workers accept them (Gunicorn's backlog)
    heavy_threads: int = 1  # per loop worker: threads decoding larger pictures (off the event loop)
    heavy_queue: int = 32  # larger pictures waiting for them, per worker; beyond, 503 + Retry-After
    heavy_nice: int = 10  # their threads' CPU priority, lowered by this much: photos yield to small requests
    # pixels a worker decodes at once, all routes and threads together (inference/memory.py): its memory bound
    decode_pixels: int = 25_000_000
    decode_wait_s: float = 10.0  # how long a big picture may wait for its share of decode_pixels; then 503
    # the deadline of a request whose client states none (X-Request-Timeout-Ms): the loop worker answers 503 +
    # Retry-After, without starting it, a request that could no longer be answered within it (0: never)
    default_deadline_ms: float = 200.0
    explain_concurrency: int = 2  # POST /explain computations at once per worker (145 images each); more: 503
    log_requests: bool = True
    api_keys: str = ""  # a key file (fmnist keys create; a mounted Secret): every route but the probes needs a key
    fast_path: bool = True  # serve the common multipart POST /predict before Flask (serving/fastpath.py)
    reload_interval: float = 2.0  # seconds between checks of the registry for a promotion (0: never)
    # monitoring
    # seconds a /metrics text is reused before it is merged again (-1: 10x its render time, 0.05-1 s; 0: never)
    metrics_reuse: float = -1.0
    # a path: SQLite shared by the workers and replicas of one machine (survives restarts); a
    # postgresql://user:password@host:port/dbname URL: one store for a whole fleet
    prediction_log: str = ".fmnist/predictions.sqlite"
    prediction_log_password_file: str = ""  # PostgreSQL password from a file (a mounted Secret); or PGPASSWORD
    prediction_log_buffer_rows: int = 100_000  # rows waiting for the store, per worker; beyond, dropped and counted
    replica: str = ""  # this server's name in the prediction log; empty: hostname:port (the pod name in Kubernetes)
    store_images: bool = False  # keep the 28x28 input pixels in the log (off: only their sha256)
    low_confidence: float = 0.6  # the dashboard shows the latest inputs below this confidence (with store_images)
    retention_rows: int = 1_000_000
    retention_days: float = 30.0
    drift_window: int = 1000  # most recent predictions compared with the reference
    feedback_window: int = 1000  # most recent labelled predictions for live accuracy
    # drift and live-accuracy thresholds (monitoring.drift.Thresholds reads these)
    min_samples: int = 100  # fewer predictions in the window: scores are reported, status stays ok
    psi_warn: float = 0.1  # the usual PSI reading: < 0.1 stable, 0.1-0.25 some shift, > 0.25 major shift
    psi_alert: float = 0.25
    ks_warn: float = 0.1  # max CDF distance; 1.36/sqrt(n) is the 5 % critical value (0.043 at n=1000)
    ks_alert: float = 0.2
    dominance_warn: float = 0.4  # one class's share of predictions (balanced reference: 0.10)
    dominance_alert: float = 0.6
    accuracy_drop_warn: float = 0.05  # live accuracy below the test accuracy by this much
    accuracy_drop_alert: float = 0.10

    @classmethod
    def load(cls, overrides: "dict | None" = None, environ: "dict | None" = None) -> "Settings":
        """Defaults < file named by FMNIST_CONFIG < FMNIST_<FIELD> variables < explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict = {}
        path = env.get("FMNIST_CONFIG")
        if path:
            try:
                values.update(json.loads(Path(path).read_text()))
            except (OSError, json.JSONDecodeError) as e:
                raise InvalidValue(f"FMNIST_CONFIG={path}: cannot read a JSON object of settings ({e})") from None
        for name in [f.name for f in fields(cls)] + list(RETIRED):
            key = f"FMNIST_{name.upper()}"
            if key in env:
                values[name] = env[key]
        values.update(overrides or {})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        known = {f.name: f for f in fields(cls)}
        retired = sorted(set(values) & set(RETIRED))
        if retired:
            raise InvalidValue("; ".join(f"{name} (FMNIST_{name.upper()}) is no longer a setting: {RETIRED[name]}"
                                         for name in retired))
        unknown = set(values) - set(known)
        if unknown:
            raise InvalidValue(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
        typed = {}
        for name, value in values.items():
            typed[name] = _coerce(name, value, type(getattr(cls, name)) if hasattr(cls, name) else str)
        s = cls(**typed)
        s.validate()
        return s

    def validate(self) -> None:
        if self.backend not in ("onnx", "torch"):
            raise InvalidValue(f"backend must be onnx or torch, got {self.backend!r}")
        if self.worker not in WORKER_KINDS:
            raise InvalidValue(f"worker must be one of {', '.join(WORKER_KINDS)}, got {self.worker!r}")
        for name in ("workers", "max_requests"):
            if getattr(self, name) < 0:
                raise InvalidValue(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("threads", "timeout", "graceful_timeout", "keepalive"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("loop_max_pixels", "heavy_threads", "heavy_queue", "pool_threads", "pool_queue", "backlog",
                     "prediction_log_buffer_rows", "intra_op_threads",
                     "decode_pixels",
                     "max_batch_size", "max_images", "max_content_length", "max_image_pixels",
                     "default_top_k", "retention_rows", "drift_window", "feedback_window", "min_samples"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.metrics_reuse == -1 or 0 <= self.metrics_reuse <= 60):
            raise InvalidValue(f"metrics_reuse must be -1 (automatic) or 0-60 seconds, got {self.metrics_reuse}")
        if not 0 <= self.default_deadline_ms <= 86_400_000:
            raise InvalidValue(f"default_deadline_ms must be 0-86400000 (0: no default deadline), got "
                               f"{self.default_deadline_ms}")
        if not 0 <= self.heavy_nice <= 19:
            raise InvalidValue(f"heavy_nice must be 0-19 (how much lower the heavy threads' priority is), got {self.heavy_nice}")
        if not 0 <= self.decode_wait_s <= 600:
            raise InvalidValue(f"decode_wait_s must be 0-600 seconds, got {self.decode_wait_s}")
        if self.max_batch_wait_ms < 0:
            raise InvalidValue("max_batch_wait_ms must be >= 0")

    def exposure_problem(self) -> "str | None":
        """Why serving these settings would be unsafe (no API keys, on an address others can reach, and not
        said to be meant open), or None."""
        if self.api_keys or self.open or is_loopback(self.bind):
            return None
        return (f"refusing to serve {self.bind} without API keys: anyone who can reach it could use the model, "
                "rewrite the live accuracy with POST /feedback and read /metrics and /monitoring. Give a key file "
                "(--api-keys FILE or FMNIST_API_KEYS; `fmnist keys create` makes one), bind 127.0.0.1, or say it is "
                "meant to be open (--open or FMNIST_OPEN=true)")

    @property
    def worker_count(self) -> int:
        return self.workers or cpu_count()

    @property
    def replica_name(self) -> str:
        import socket

        return self.replica or f"{socket.gethostname()}:{self.bind.rpartition(':')[2]}"


def _coerce(name: str, value, typ):
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    text = str(value).strip()
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise InvalidValue
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        raise InvalidValue(f"setting {name}: {value!r} is not a valid {typ.__name__}") from None
    return text


def is_loopback(bind: str) -> bool:
    """A Gunicorn bind (host:port, [v6]:port, unix:path) that only this machine can reach."""
    if bind.startswith("unix:"):
        return True
    host = bind.rpartition(":")[0] if ":" in bind else bind
    host = host.strip("[]")
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or empty (every interface): reachable from elsewhere
