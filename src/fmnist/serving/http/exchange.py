"""The contract between the HTTP server (serving/http) and the app it serves, typed, in two objects.

`AppHooks` is what the server needs from an app, once: the app's `fmnist_hooks` attribute (create_app sets
it; a plain WSGI app has none and gets the defaults). `Exchange` is what they tell each other about one
request: `environ[ENVIRON_KEY]`, made by whoever touches it first (`of(environ)`).

Every default is a `Settings` default: the limits are stated once (fmnist.config).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fmnist.config import Settings

ENVIRON_KEY = "fmnist.exchange"
_D = Settings()


@dataclass(frozen=True)
class AppHooks:
    max_body: int = _D.max_content_length  # bytes a request body may have: 413 beyond, before the app sees it
    # s: the deadline of a request whose client states none (0: none; such requests are never shed for lateness)
    default_deadline: float = _D.default_deadline_ms / 1000.0
    heavy_pool: tuple = (_D.heavy_threads, _D.heavy_queue, _D.heavy_nice)  # threads, queue, nice for heavy requests
    pool: tuple = (_D.pool_threads, _D.pool_queue)  # threads and queue for every other request the app answers
    probe_paths: frozenset = frozenset()  # never shed for waiting (a liveness probe refused restarts a healthy pod)
    # batch(environs, start_responses) -> [app_iter or None]: requests that arrived together, answered at once
    # (None: the pool calls the app for it)
    batch: "Callable[[list, list], list] | None" = None
    dropped: "Callable[[str, str, str, str], None] | None" = None  # dropped(reason, where, method, path): counted

    @classmethod
    def of(cls, app) -> "AppHooks":
        hooks = getattr(app, "fmnist_hooks", None)
        return hooks if isinstance(hooks, AppHooks) else cls()


@dataclass
class Exchange:
    """One request, as the server and the app see it."""

    pool: str = "thread"  # where the app runs it: app_pool, heavy_pool (the loop worker's), thread (Gunicorn's)
    heavy: bool = False  # set by the app on the loop: run it in the heavy pool (a big picture, /explain)
    job: Any = None  # the app's request as it parsed it on the loop, for the pool thread (not parsed twice)
    key: Any = None  # the API key check's answer (auth.KeyStore.check_environ): a Key, a Denied, or None
    checked: bool = False  # key holds the check's answer (a request is checked and counted once)
    images_paid: bool = False  # the key paid for this request's images (once, whichever path charged it)


def of(environ: dict) -> Exchange:
    """The request's Exchange, made on first use."""
    ex = environ.get(ENVIRON_KEY)
    if ex is None:
        ex = environ[ENVIRON_KEY] = Exchange()
    return ex
