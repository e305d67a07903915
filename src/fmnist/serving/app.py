"""The Flask application factory behind `fmnist.serving:create_app()`: settings, blueprints, state, fast path."""

from __future__ import annotations

import logging
import sys

from flask import Flask

from fmnist.config import Settings
from fmnist.errors import InvalidValue
from fmnist.serving.errors import register_error_handlers
from fmnist.serving.http.exchange import AppHooks
from fmnist.serving.reqlog import init_request_logging
from fmnist.serving.state import WorkerState


def _configure_logging() -> None:
    """JSON access lines and server messages to stderr (Gunicorn's error log), once per process."""
    for name in ("fmnist.access", "fmnist.serving"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            fmt = "%(message)s" if name == "fmnist.access" else "%(asctime)s %(levelname)s %(name)s: %(message)s"
            handler.setFormatter(logging.Formatter(fmt))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def _require_keys(app: Flask, state) -> None:
    """Every route but the probes needs an API key of the right scope (serving/auth.py); the fast path asks
    the same KeyStore before it reads a body, and leaves a refused request to this hook."""
    from flask import g, request

    from fmnist.serving.apierror import APIError
    from fmnist.serving.auth import Denied

    @app.before_request
    def _authenticate():
        result = state.auth.check_environ(request.environ)
        if isinstance(result, Denied):
            state.metrics.auth_failures.labels(reason=result.code).inc()
            raise APIError(result.status, result.error_code, result.message, result.headers)
        if result is not None:
            g.key_id = result.id


def _dropped_counter(routes: frozenset, metrics):
    """The loop worker's `dropped` hook: requests it refused or dropped without starting them
    (serving/http/admission.py), counted by reason and in fmnist_http_requests_total by route."""

    def dropped(reason: str, where: str, method: str, path: str) -> None:
        metrics.observe_dropped(reason, where, method, path if path in routes else "<unmatched>")

    return dropped


def create_app(config: "dict | Settings | None" = None) -> Flask:
    """Settings: defaults < $FMNIST_CONFIG file < FMNIST_* variables < `config`. Loads the model once."""
    settings = config if isinstance(config, Settings) else Settings.load(config)
    from fmnist.images.foreground import EXTRACT_MIN_SIDE

    if settings.loop_max_pixels >= EXTRACT_MIN_SIDE ** 2:  # a busy picture's costly path never runs on the loop
        raise InvalidValue(f"loop_max_pixels must be below {EXTRACT_MIN_SIDE ** 2} ({EXTRACT_MIN_SIDE}x{EXTRACT_MIN_SIDE}: "
                           f"pictures from that size may take the foreground extraction, which belongs in the heavy "
                           f"pool), got {settings.loop_max_pixels}")
    app = Flask("fmnist")
    app.config.update(MAX_CONTENT_LENGTH=settings.max_content_length, JSON_SORT_KEYS=False)
    app.json.sort_keys = False
    _configure_logging()
    register_error_handlers(app)

    from fmnist.serving import explain, health, monitoring_routes, openapi, predict, v2

    for bp in (predict.bp, explain.bp, health.bp, v2.bp, openapi.bp, monitoring_routes.bp):
        app.register_blueprint(bp)
    routes = frozenset(rule.rule for rule in app.url_map.iter_rules() if "<" not in rule.rule)  # metrics' labels
    state = WorkerState(settings)
    app.extensions["fmnist"] = state
    init_request_logging(app, settings.log_requests, state.metrics)
    if state.auth is not None:
        _require_keys(app, state)
    state.load()
    batch = None
    if settings.fast_path:
        from fmnist.serving.fastpath import PredictFastPath

        app.wsgi_app = batch = PredictFastPath(app.wsgi_app, state, settings.log_requests, routes)
    # what the loop worker needs from this app, in one typed object (serving/http/exchange.py)
    app.fmnist_hooks = AppHooks(
        max_body=settings.max_content_length, default_deadline=settings.default_deadline_ms / 1000.0,
        heavy_pool=(settings.heavy_threads, settings.heavy_queue, settings.heavy_nice),
        pool=(settings.pool_threads, settings.pool_queue), probe_paths=health.PROBES,
        batch=batch.wsgi_batch if batch is not None else None, dropped=_dropped_counter(routes, state.metrics))
    return app
