"""Which complete requests the loop worker still starts, and how much it starts in one turn.

Every request has a deadline: its client's (`X-Request-Timeout-Ms`, or Envoy's
`X-Envoy-Expected-Rq-Timeout-Ms`, counted from its first byte), else the server's default
(`default_deadline_ms`, 200 ms, counted from when the request was complete: the server's bound on its own
queueing, not on a slow client's upload). Requests are started oldest first, and none is refused while it
can still be answered in time. Just before the worker would start one (decode, batch, run), it is:

- answered **504** if its client's deadline has passed or would pass before this turn's work is done (its
  work is never started: nothing decoded, nothing batched, no model time);
- answered **503** with `Retry-After` if the default deadline would pass before this turn's work is done
  while more requests wait than one turn starts (the worker is behind: starting it would only make it and
  everything behind it late; without such a backlog it is started: lateness alone may be the machine's,
  not load). Health probes are never refused so (a liveness probe refused under load would have a healthy
  server restarted);
- dropped without an answer if its client has closed the connection (done by the worker: a closed
  connection's waiting requests are discarded, and a pool thread skips one whose client is gone);
- else started.

So ordinary load (any the server answers within the deadline) is never refused, and a storm is refused
late rather than early: a refusal reaches its client when the request could no longer have been answered
in time, so a client that retries at once (a closed loop) comes back at the pace of the deadline, not at
the pace of refusals, and the refusals cost a few percent of the worker (measured in docs/benchmarks.md).
A turn starts at most as many requests as fit in `TURN_BUDGET` seconds at the measured cost per request
(an average over recent turns), so the requests read during one turn wait at most about one turn.

Counted through the app's `dropped` hook (`fmnist_shed_total{reason}`, `fmnist_deadline_expired_total{where}`):
this module knows no app and no metrics library.
"""

from __future__ import annotations

from fmnist.serving.apierror import error_json
from fmnist.serving.http import http11

TURN_BUDGET = 0.025  # seconds of work one turn of the loop starts (then it reads, accepts, sheds again)
MIN_TURN_REQUESTS = 8
COST_WEIGHT = 0.2  # of the newest turn in the running cost per request

_JSON = ("Content-Type", "application/json")


class Admission:
    def __init__(self, default_deadline: float, max_requests: int, dropped=None, probes: frozenset = frozenset()):
        """default_deadline: seconds, from when it is complete, for a request whose client states none (0: none);
        max_requests: per turn at most; dropped(reason, where, method, path): the app's counter (or None); probes:
        the paths of the app's health probes, whose GET is never refused by the default deadline."""
        self.probes = frozenset(p.encode("latin-1") for p in probes)
        self.default_deadline = default_deadline
        self.max_requests = max_requests
        self.cost = 0.0  # seconds per started request, running average over turns
        self._dropped = dropped
        ms = round(default_deadline * 1000)
        self.busy = ("503 Service Unavailable", [_JSON, ("Retry-After", "1")],
                     error_json("server_busy", f"the server is at capacity: this request could not be started within "
                                f"the default deadline ({ms} ms; X-Request-Timeout-Ms sets your own) and was not "
                                "started; retry after Retry-After seconds"))
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
        `backlog`: more requests wait than this turn starts. Without one a request past the default deadline is
        still started: it was late because the process was not running (a busy machine), and refusing it frees
        nothing. `batch`: requests started together with it (their answers leave when all are done)."""
        work = self.cost * batch
        if req.timeout:
            if req.started + req.timeout - now <= work:
                self.count("deadline", "loop", req.method, path_of(req))
                return too_late(req, now)
        elif backlog and self.default_deadline and req.ready_at + self.default_deadline - now <= work and not (
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
