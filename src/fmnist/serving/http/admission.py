"""Which complete requests the loop worker still starts, and how much it starts in one turn.

Overload is answered, not queued. Every complete request has a time it became ready (`ready_at`) and,
if its client said so, a deadline (`X-Request-Timeout-Ms`, or Envoy's `X-Envoy-Expected-Rq-Timeout-Ms`,
counted from its first byte). Just before the worker would start it (decode, batch, run), it is:

- answered **504** if its deadline has passed or would pass before this turn's work is done (its work is
  never started: nothing decoded, nothing batched, no model time);
- answered **503** with `Retry-After` if it waited longer than `max_wait` for this worker while more
  requests wait than one turn starts (the worker is behind: starting it would only make it and everything
  behind it late; without such a backlog it is started: lateness alone may be the machine's, not load);
- dropped without an answer if its client has closed the connection (done by the worker: a closed
  connection's waiting requests are discarded, and a pool thread skips one whose client is gone);
- else started.

A turn starts at most as many requests as fit in `TURN_BUDGET` seconds at the measured cost per request
(an average over recent turns), so the requests read during one turn wait at most about one turn: with
`max_wait` that bounds how late an admitted request can be. Refusing costs the parse and one small
write, a few percent of a served request, so goodput holds while the excess is refused.

Counted through the app's `FMNIST_DROPPED` hook (`fmnist_shed_total{reason}`,
`fmnist_deadline_expired_total{where}`): this module knows no app and no metrics library.
"""

from __future__ import annotations

from fmnist.serving.apierror import error_json
from fmnist.serving.http import http11

TURN_BUDGET = 0.025  # seconds of work one turn of the loop starts (then it reads, accepts, sheds again)
MIN_TURN_REQUESTS = 8
COST_WEIGHT = 0.2  # of the newest turn in the running cost per request

_JSON = ("Content-Type", "application/json")


class Admission:
    def __init__(self, max_wait: float, max_requests: int, dropped=None, probes: frozenset = frozenset()):
        """max_wait: seconds a ready request may wait (0: never shed by waiting); max_requests: per turn at
        most; dropped(reason, where, method, path): the app's counter (or None); probes: the paths of the
        app's health probes, whose GET is never shed for waiting (a liveness probe refused under load would
        have a healthy server restarted)."""
        self.probes = frozenset(p.encode("latin-1") for p in probes)
        self.max_wait = max_wait
        self.max_requests = max_requests
        self.cost = 0.0  # seconds per started request, running average over turns
        self._dropped = dropped
        ms = round(max_wait * 1000)
        self.busy = ("503 Service Unavailable", [_JSON, ("Retry-After", "1")],
                     error_json("server_busy", f"the server is at capacity: this request waited over {ms} ms for a "
                                "worker and was not started; retry after Retry-After seconds"))
        self.busy_bytes = http11.response_bytes(*self.busy, keep_alive=True)  # 5xx: no Date needed (RFC 9110 §6.6.1)

    def turn_requests(self) -> int:
        """How many requests this turn may start."""
        if self.cost <= 0:
            return self.max_requests
        return max(MIN_TURN_REQUESTS, min(self.max_requests, int(TURN_BUDGET / self.cost)))

    def measured(self, started: int, seconds: float) -> None:
        """A turn started `started` requests (not counting refusals) in `seconds`."""
        if started > 0:  # one turn of a few big bodies (read on the loop) moves the average only so far
            per = min(seconds / started, TURN_BUDGET / MIN_TURN_REQUESTS)
            self.cost = per if self.cost <= 0 else self.cost + COST_WEIGHT * (per - self.cost)

    def verdict(self, req, now: float, backlog: bool = True, batch: int = 1) -> "tuple | None":
        """None: start it. Else the answer to send instead, (status, headers, body), already counted.
        `backlog`: more requests wait than this turn starts. Without one a late request is still started:
        it was late because the process was not running (a busy machine), and refusing it frees nothing.
        `batch`: requests started together with it (their answers leave when all are done)."""
        if req.timeout:
            left = req.started + req.timeout - now
            if left <= self.cost * batch:
                self.count("deadline", "loop", req.method, path_of(req))
                return too_late(req, now)
        if backlog and self.max_wait and now - req.ready_at > self.max_wait and not (
                req.method in ("GET", "HEAD") and req.url.partition(b"?")[0] in self.probes):
            self.count("queue", "loop", req.method, path_of(req))
            return self.busy
        return None

    def count(self, reason: str, where: str, method: str, path: str) -> None:
        if self._dropped is not None:
            self._dropped(reason, where, method, path)


def path_of(req) -> str:
    return req.url.partition(b"?")[0].decode("latin-1")


def too_late(req, now: float) -> tuple:
    """The 504 for a request whose deadline passed (or would pass) before its work started."""
    waited = round((now - req.started) * 1000)
    return ("504 Gateway Timeout", [_JSON],
            error_json("deadline_exceeded", f"the request's timeout ({round(req.timeout * 1000)} ms) would pass before "
                       f"its work could finish ({waited} ms since it arrived): it was not started"))
