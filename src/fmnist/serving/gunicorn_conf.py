"""Gunicorn settings for `fmnist serve` (read from FMNIST_* variables that the command sets)."""

import multiprocessing
import os

bind = os.environ.get("FMNIST_BIND", "0.0.0.0:5000")
workers = int(os.environ.get("FMNIST_WORKERS") or multiprocessing.cpu_count())
# loop (default): worker.LoopWorker, one event loop per process, requests that arrive together are
# batched; gthread: Gunicorn's thread-pool worker (FMNIST_THREADS each); sync: one request at a time
WORKER_CLASSES = {"loop": "fmnist.serving.worker.LoopWorker", "gthread": "gthread", "sync": "sync"}
_kind = os.environ.get("FMNIST_WORKER") or "loop"
if _kind not in WORKER_CLASSES:
    raise SystemExit(f"FMNIST_WORKER={_kind!r}: expected one of {', '.join(WORKER_CLASSES)}")
worker_class = WORKER_CLASSES[_kind]
threads = int(os.environ.get("FMNIST_THREADS") or 2) if _kind == "gthread" else 1
backlog = 2048
reuse_port = True  # a restarted replica can bind while an orphaned worker of the old one still holds the port
timeout = 30  # a worker silent this long is killed and replaced
graceful_timeout = 20  # on SIGTERM, in-flight requests get this long to finish
keepalive = 5
max_requests = int(os.environ.get("FMNIST_MAX_REQUESTS") or 0)  # recycle workers (0: never)
max_requests_jitter = max_requests // 10
accesslog = None  # the app writes one JSON line per request itself
errorlog = "-"
loglevel = os.environ.get("FMNIST_LOG_LEVEL", "info")
proc_name = "fmnist"


def on_starting(server):
    """Prometheus multiprocess mode: start from an empty metrics directory."""
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if d:
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if name.endswith(".db"):
                os.unlink(os.path.join(d, name))


def child_exit(server, worker):
    """A worker died or was recycled: drop its live gauges (its counters stay counted)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Headers and body leave in one write: a worker killed mid-response never half-answers
    (the loop worker always writes a response at once; Gunicorn's own workers need the patch)."""
    if _kind != "loop":
        from fmnist.serving.single_write import install

        install()


def worker_exit(server, worker):
    """A worker stopping (SIGTERM, recycling): write the metrics it still has queued (metrics.flush)."""
    from fmnist.monitoring import metrics

    metrics.flush()
