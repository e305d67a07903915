"""What a Flask view reads from its worker: the WorkerState, and the model in service for this request."""

from __future__ import annotations

from flask import current_app, request

from fmnist.serving.apierror import APIError
from fmnist.serving.state import ServedModel, WorkerState


def serving_state() -> WorkerState:
    """This worker's state (set by create_app)."""
    return current_app.extensions["fmnist"]


def require_model() -> "tuple[WorkerState, ServedModel]":
    """(state, the model in service), or a 503 with the reason: a request uses this one model throughout."""
    st = serving_state()
    served = st.current
    if served is None:
        raise APIError(503, "not_ready", st.error or "the model is still loading; retry shortly",
                       {"Retry-After": "1"})
    return st, served


def charge_images(n: int) -> None:
    """The request's API key pays for its n images (serving/auth.py); a 429 when it is over its image rate."""
    st = serving_state()
    if st.auth is None:
        return
    denied = st.auth.charge_images(request.environ, n)
    if denied is not None:
        st.metrics.auth_failures.labels(reason=denied.code).inc()
        raise APIError(429, denied.error_code, denied.message, denied.headers)
