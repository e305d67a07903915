"""Gunicorn settings for `fmnist serve`, from the one `fmnist.config.Settings` (FMNIST_* variables,
which the command sets from its options, or a FMNIST_CONFIG file)."""

import os

from fmnist.config import Settings

try:
    _settings = Settings.load()
except ValueError as e:  # a bad FMNIST_* value: one clear line instead of a traceback per worker
    raise SystemExit(f"fmnist: {e}") from None
if _settings.exposure_problem():  # `gunicorn -c python:fmnist.serving.http.gunicorn_conf` run by hand too
    raise SystemExit(f"fmnist: {_settings.exposure_problem()}")

# loop (default): worker.LoopWorker, one event loop per process, requests that arrive together are
# batched; gthread: Gunicorn's thread-pool worker (threads each); sync: one request at a time
WORKER_CLASSES = {"loop": "fmnist.serving.http.worker.LoopWorker", "gthread": "gthread", "sync": "sync"}
bind = _settings.bind
workers = _settings.worker_count
worker_class = WORKER_CLASSES[_settings.worker]
threads = _settings.threads if _settings.worker == "gthread" else 1
worker_connections = 4096  # per loop worker; each connection's buffers are bounded (serving/http/http11.py)
backlog = _settings.backlog
reuse_port = True  # a restarted replica can bind while an orphaned worker of the old one still holds the port
timeout = _settings.timeout  # a worker silent this long is killed and replaced
graceful_timeout = _settings.graceful_timeout  # on SIGTERM, in-flight requests get this long to finish
keepalive = _settings.keepalive
max_requests = _settings.max_requests  # recycle workers (0: never)
max_requests_jitter = max_requests // 10
accesslog = None  # the app writes one JSON line per request itself
errorlog = "-"
loglevel = _settings.log_level
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
    if _settings.worker != "loop":
        from fmnist.serving.http.single_write import install

        install()


def worker_exit(server, worker):
    """A worker stopping (SIGTERM, recycling): write the metrics it still has queued (Metrics.flush)."""
    state = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("fmnist")
    if state is not None:
        state.metrics.flush()
