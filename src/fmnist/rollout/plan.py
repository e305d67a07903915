"""A rollout plan: one file per model name in the registry, `<registry>/<name>/rollout.json`.

Why the registry: every replica of a fleet already reads it (the production alias beside it is how a
promotion reaches every worker), on one machine, under compose and on Kubernetes with a registry volume;
the prediction log may be one SQLite file per replica, so it cannot carry a fleet-wide plan. A replica
that restarts mid-rollout reads the plan at start and rejoins it.

    {"name", "production", "candidate", "mode": "shadow" | "canary", "share", "started",
     "state": "running" | "promoted" | "rolled_back" | "aborted", "gates": {...}, "decision": {...} | null,
     "history": [...]}

Written atomically (readers see the old or the new file), and decided under an exclusive lock with the
state checked again inside it: several workers may reach the same decision, only one writes it.
Canary routing is sticky per client: `routes_to_candidate(client, share)` hashes the client's identity
(its API key id, else its `X-Client-ID`, else the request id) into 10,000 buckets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fmnist.errors import InvalidValue
from fmnist.fileio import atomic_write
from fmnist.registry import promote, registry_root, resolve

PLAN = "rollout.json"
MODES = ("shadow", "canary")


@dataclass(frozen=True)
class Gates:
    """What a candidate must show before it is promoted, and what rolls it back (defaults)."""

    min_requests: int = 200  # candidate predictions (canary) or pairs (shadow) before any decision
    min_seconds: float = 30.0  # and this long since the start
    max_disagreement: float = 0.10  # shadow: share of images where it answers another class than production
    max_psi: float = 0.25  # its predicted-class distribution against production's, same window (PSI)
    max_confidence_drop: float = 0.10  # its mean confidence below production's
    # its confidence distribution against production's (two-sample KS). 0.30, not monitoring's 0.20: two calibrated
    # models of equal accuracy differ by 0.21 (smallcnn:4 and :5 on 1,000 and 5,000 test images) and 0.26-0.27
    # (smallcnn:1 and :4): their temperatures differ; a broken candidate (every confidence lower) scores near 1
    max_confidence_ks: float = 0.30
    min_labels: int = 50  # labelled feedback needed before accuracy counts (both ways)
    max_accuracy_drop: float = 0.02  # rolled back when its accuracy's upper 95 % bound is below production's - this
    max_p99_ratio: float = 1.5  # canary: its answers' p99 time in the server over production's, same window
    max_error_increase: float = 0.01  # canary: its share of failed requests above production's
    auto_promote: bool = True  # False: a candidate that passes waits for `fmnist rollout promote`

    @classmethod
    def parse(cls, items: "list[str] | None") -> "Gates":
        """NAME=VALUE strings (the CLI's --gate) over the defaults; InvalidValue for an unknown name or value."""
        values = {}
        known = {f: type(getattr(cls(), f)) for f in cls.__dataclass_fields__}
        for item in items or []:
            name, sep, raw = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known:
                raise InvalidValue(f"--gate {item!r}: expected NAME=VALUE with NAME among {', '.join(known)}")
            try:
                values[name] = raw.strip().lower() in ("1", "true", "yes") if known[name] is bool else known[name](raw)
            except ValueError:
                raise InvalidValue(f"--gate {item!r}: {raw!r} is not a {known[name].__name__}") from None
        return cls(**values)


@dataclass
class Plan:
    name: str
    production: str
    candidate: str
    mode: str
    share: float
    started: float
    state: str = "running"
    gates: dict = field(default_factory=lambda: asdict(Gates()))
    decision: "dict | None" = None
    history: list = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def gate_values(self) -> Gates:
        return Gates(**{k: v for k, v in self.gates.items() if k in Gates.__dataclass_fields__})


def plan_path(name: str, root: "str | Path | None" = None) -> Path:
    return registry_root(root) / name / PLAN


def read_plan(name: str, root: "str | Path | None" = None) -> "Plan | None":
    path = plan_path(name, root)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidValue(f"{path}: unreadable rollout plan ({e})") from None
    return Plan(**{k: data[k] for k in Plan.__dataclass_fields__ if k in data})


def _write(plan: Plan, root: "str | Path | None") -> None:
    path = plan_path(plan.name, root)
    atomic_write(path, json.dumps(asdict(plan), indent=1) + "\n")


@contextlib.contextmanager
def _locked(name: str, root: "str | Path | None"):
    lock = plan_path(name, root).with_suffix(".lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start(name: str, candidate: str, mode: str, share: float = 0.1, gates: "Gates | None" = None,
          root: "str | Path | None" = None) -> Plan:
    """Begin a rollout of name:candidate against today's production version (verified first)."""
    if mode not in MODES:
        raise InvalidValue(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "canary" and not 0 < share < 1:
        raise InvalidValue(f"--canary takes the share of requests for the candidate, 0-100 % exclusive; got {share:.0%}")
    prod = resolve(name, root, verify=True)
    cand = resolve(f"{name}:{candidate}", root, verify=True)
    if cand.version == prod.version:
        raise InvalidValue(f"{name}:{candidate} is already production")
    with _locked(name, root):
        old = read_plan(name, root)
        if old is not None and old.running:
            raise InvalidValue(f"a rollout of {name}:{old.candidate} is running; `fmnist rollout abort {name}` first")
        now = time.time()
        plan = Plan(name, prod.version, cand.version, mode, share if mode == "canary" else 0.0, now,
                    gates=asdict(gates or Gates()),
                    history=[{"at": now, "event": "start", "mode": mode, "share": share if mode == "canary" else 0.0}])
        _write(plan, root)
    return plan


def decide(name: str, outcome: str, evidence: dict, by: str, root: "str | Path | None" = None) -> "Plan | None":
    """End the running rollout: promoted (the production alias moves to the candidate), rolled_back or
    aborted (production stays). None when no rollout is running (another worker decided first)."""
    if outcome not in ("promoted", "rolled_back", "aborted"):
        raise InvalidValue(f"unknown outcome {outcome!r}")
    with _locked(name, root):
        plan = read_plan(name, root)
        if plan is None or not plan.running:
            return None
        if outcome == "promoted":
            promote(name, plan.candidate, root)
        now = time.time()
        plan.state = outcome
        plan.decision = {"at": now, "outcome": outcome, "by": by, "evidence": evidence}
        plan.history.append({"at": now, "event": outcome, "by": by})
        _write(plan, root)
    return plan


def client_of(key_id: "str | None", client_header: str, request_id: str) -> str:
    """Who a request comes from, for sticky canary routing: its API key, else X-Client-ID, else itself."""
    return key_id or client_header or request_id


def routes_to_candidate(client: str, share: float) -> bool:
    return zlib.crc32(client.encode()) % 10_000 < share * 10_000
