"""What a Flask view reads from its worker: the WorkerState, and the model in service for this request."""

from __future__ import annotations

from flask import current_app

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
