"""One worker's part in a rollout (rollout/plan.py): the candidate held beside production, canary routing,
shadow runs, and the gates' decision.

- `follow()` (the model watcher, every reload_interval s, and at start: a restarted replica rejoins) reads the
  plan; while one runs it loads the candidate (verified, warmed up) beside production, and drops it after.
- `pick()`: with a canary plan, a client whose identity hashes into the share gets the candidate
  (sticky: the same key, X-Client-ID or request always lands on the same side); everyone else production.
- `shadow()`: with a shadow plan, production's images of every answered request are queued (bounded,
  SHADOW_QUEUE batches) for a low-priority thread that runs the candidate on them and logs its answers under
  `<request id>@shadow`, everything waiting in one model call. While the worker is busy (its process uses
  over BUSY of a core) the thread rests after each run long enough that its work stays SHADOW_BUDGET of the
  time; meanwhile (and when the queue is full) the request path drops the images at the cost of one
  comparison (counted) — shadow work yields first under load: a saturated worker shadows a sample of its
  traffic, a quiet one all of it.
- every GATE_EVERY s a worker evaluates the gates on the shared log (rollout/gates.py) and, on a verdict of
  rollback or promote, ends the rollout (under the plan's lock: one worker writes, the others find it
  decided). A promotion moves the production alias, which every worker then follows as for `fmnist promote`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

import numpy as np

from fmnist.inference import pipeline
from fmnist.rollout import gates as rollout_gates
from fmnist.rollout import plan as rollout_plan
from fmnist.rollout.gates import SHADOW

log = logging.getLogger("fmnist.serving")
SHADOW_QUEUE = 64  # batches of images waiting for the candidate, per worker
SHADOW_BUDGET = 0.05  # share of wall time a busy worker's shadow thread may spend (its candidate runs, logging)
BUSY = 0.75  # a worker using this much of a core (its process CPU time over wall time) is busy
GATE_EVERY = 5.0  # seconds between a worker's looks at the gates


class WorkerRollout:
    def __init__(self, state):
        self.state = state
        self.plan: "rollout_plan.Plan | None" = None
        self.candidate = None  # a ServedModel while a plan runs
        self._shadow: "queue.Queue" = queue.Queue(SHADOW_QUEUE)
        self._shadow_thread: "threading.Thread | None" = None
        self._judged = 0.0
        self._resting_until = 0.0  # the shadow thread is over its time budget until then
        self.dropped = 0  # images the candidate did not see (written to the metric by the shadow thread)

    # ------------------------------------------------------------------ following the plan
    def follow(self) -> None:
        served = self.state.current
        if served is None or not self.state.settings.model.split(":")[0] == served.name:
            return  # serving an artifact path or a pinned version: no rollout applies
        try:
            plan = rollout_plan.read_plan(served.name, self.state.settings.models or None)
        except Exception as e:
            log.error("rollout: %s", e)
            return
        if plan is None or not plan.running:
            if self.candidate is not None:
                log.info("rollout of %s:%s ended (%s); candidate dropped", plan.name if plan else served.name,
                         self.candidate.version, plan.state if plan else "plan removed")
                self._drop(self.candidate)
            self.plan, self.candidate = plan, None
            return
        if self.candidate is None or self.candidate.version != plan.candidate:
            old = self.candidate
            try:
                self.candidate = self.state.open_version(plan.name, plan.candidate)
            except Exception as e:
                log.error("rollout: cannot load candidate %s:%s: %s", plan.name, plan.candidate, e)
                return
            if old is not None:
                self._drop(old)
            self.state.metrics.init_model(self.candidate.name, self.candidate.version)
            log.info("rollout: %s %s:%s beside production %s", plan.mode, plan.name, plan.candidate, plan.production)
        self.plan = plan
        if plan.mode == "shadow" and self._shadow_thread is None:
            self._shadow_thread = threading.Thread(target=self._shadow_loop, name="fmnist-shadow", daemon=True)
            self._shadow_thread.start()
        now = time.time()
        if now - self._judged >= GATE_EVERY:
            self._judged = now
            self.judge(plan, now)

    def _drop(self, cand) -> None:
        """A candidate no longer in a rollout: its batcher stops once the requests already in it are answered."""
        if cand.version != getattr(self.state.current, "version", None):
            self.state.metrics.retire_model(cand.name, cand.version)
        if cand.batcher is not None:
            threading.Timer(5.0, cand.batcher.close).start()

    def judge(self, plan, now: float) -> "dict | None":
        """Evaluate the gates; end the rollout on a verdict of rollback or promote. -> the report."""
        try:
            report = rollout_gates.evaluate(plan, self.state.store.since(plan.name, plan.started), now)
        except Exception as e:
            log.error("rollout: cannot read the evidence: %s", e)
            return None
        outcome = {"rollback": "rolled_back", "promote": "promoted"}.get(report["verdict"])
        if outcome:
            done = rollout_plan.decide(plan.name, outcome, report, f"gates ({self.state.replica})",
                                       self.state.settings.models or None)
            if done is not None:
                log.warning("rollout of %s:%s %s by the gates: %s", plan.name, plan.candidate, outcome,
                            [(g["gate"], g["status"], g["value"]) for g in report["gates"]])
        return report

    # ------------------------------------------------------------------ per request
    def pick(self, key_id: "str | None", client_header: str, request_id: str):
        """The model that answers this request: the candidate for a canary's share of clients, else production."""
        plan, cand = self.plan, self.candidate
        if cand is not None and plan is not None and plan.mode == "canary" and plan.running:
            if rollout_plan.routes_to_candidate(rollout_plan.client_of(key_id, client_header, request_id), plan.share):
                return cand
        return self.state.current

    def shadow(self, served, keys: list, pixels: np.ndarray) -> None:
        """Production answered these images: queue them for the candidate, unless its thread is resting (over
        its time budget) or its queue is full: then they are dropped, counted, at the cost of one comparison."""
        plan, cand = self.plan, self.candidate
        if cand is None or plan is None or plan.mode != "shadow" or served is cand:
            return
        if time.monotonic() < self._resting_until:
            self.dropped += len(pixels)
            return
        try:
            self._shadow.put_nowait((keys, pixels))
        except queue.Full:
            self.dropped += len(pixels)

    def _shadow_loop(self) -> None:
        try:  # the candidate's copy of the traffic yields the cores to the answers (Linux: per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        counted = 0
        wall, cpu, busy = time.monotonic(), time.process_time(), False
        while True:
            items = [self._shadow.get()]
            while len(items) < SHADOW_QUEUE:  # everything waiting, in one model call
                try:
                    items.append(self._shadow.get_nowait())
                except queue.Empty:
                    break
            cand = self.candidate
            if cand is None:
                continue
            keys = [(rid + SHADOW, idx, kid, None) for batch, _ in items for rid, idx, kid, _ in batch]
            pixels = np.concatenate([px for _, px in items])
            t0 = time.perf_counter()
            try:
                probs = cand.run_now(cand.predictor.normalize(pixels))
                self.state.record(cand, keys, pipeline.assess(cand, probs, pixels))
            except Exception:
                log.exception("shadow run of %s failed", cand.version)
            took = time.perf_counter() - t0
            now = time.monotonic()
            if now - wall >= 0.5:  # is this worker busy? (its CPU time in the last half second or more)
                busy = (time.process_time() - cpu) / (now - wall) > BUSY
                wall, cpu = now, time.process_time()
            # busy: rest long enough that this work is SHADOW_BUDGET of the time; the request path drops meanwhile
            self._resting_until = now + took * (1 / SHADOW_BUDGET - 1) if busy else 0.0
            if self.dropped != counted:
                self.state.metrics.shadow_dropped.inc(self.dropped - counted)
                counted = self.dropped
