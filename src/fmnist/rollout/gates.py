"""A rollout's evidence and verdict, from the shared prediction log (every replica's rows since the start).

Per version: predictions, predicted-class shares, mean confidence, labelled feedback with its accuracy and
a 95 % Wilson interval, the p99 of the answers' time in the server (canary; the log's latency_ms). Shadow
rows are the candidate's answers to the same images, logged under
`<request id>@shadow`: agreement is measured on those pairs, and the candidate's accuracy on feedback given
for production's answer (the same image). Canary rows are the candidate's own answers to its share of
traffic. Gates (plan.Gates): each `pass`, `fail` or `pending` (not enough evidence yet); the verdict is
`rollback` when one fails on at least min_requests, `promote` (or `ready`, waiting for a person) when none
fails and none is pending after min_requests and min_seconds, else `wait`.
"""

from __future__ import annotations

import math

import numpy as np

from fmnist.labels import CLASSES
from fmnist.monitoring.drift import psi
from fmnist.rollout.plan import Plan

SHADOW = "@shadow"
ERROR = "@error"  # a request the model failed to answer (serving/state.py: record_failure)


def wilson(correct: int, n: int, z: float = 1.96) -> "tuple[float, float]":
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _p99(latencies: list) -> "float | None":
    values = [v for v in latencies if v is not None]
    return float(np.percentile(values, 99)) if values else None


def ks_two_sample(a: list, b: list) -> float:
    """Kolmogorov-Smirnov statistic: the largest distance between the two samples' CDFs."""
    x, y = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([x, y])
    return float(np.max(np.abs(np.searchsorted(x, grid, "right") / len(x) - np.searchsorted(y, grid, "right") / len(y))))


def _stats(classes: list, confidences: list, labelled: list, latencies: list) -> dict:
    n = len(classes)
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=len(CLASSES)) if n else np.zeros(len(CLASSES))
    right = sum(1 for c, t in labelled if c == t)
    lo, hi = wilson(right, len(labelled))
    return {"predictions": n, "class_counts": counts.tolist(), "mean_confidence": float(np.mean(confidences)) if n else None,
            "labelled": len(labelled), "accuracy": right / len(labelled) if labelled else None, "accuracy_ci": [lo, hi],
            "p99_ms": _p99(latencies)}


def evaluate(plan: Plan, rows: list, now: float) -> dict:
    """rows: (request_id, idx, model_version, class_id, confidence, true_label, latency_ms) since plan.started."""
    g = plan.gate_values()
    failed = {v: sum(1 for r in rows if r[2] == v and r[0].endswith(ERROR)) for v in (plan.production, plan.candidate)}
    rows = [r for r in rows if not r[0].endswith(ERROR)]
    prod = [r for r in rows if r[2] == plan.production and not r[0].endswith(SHADOW)]
    cand = [r for r in rows if r[2] == plan.candidate and (plan.mode != "shadow" or r[0].endswith(SHADOW))]
    p_conf = [r[4] for r in prod]
    p_stats = _stats([r[3] for r in prod], p_conf, [(r[3], r[5]) for r in prod if r[5] is not None],
                     [r[6] for r in prod])
    pairs = agreement = None
    if plan.mode == "shadow":
        by_key = {(r[0], r[1]): r for r in prod}
        matched = [(c, by_key[(c[0][: -len(SHADOW)], c[1])]) for c in cand if (c[0][: -len(SHADOW)], c[1]) in by_key]
        pairs = len(matched)
        agreement = sum(1 for c, p in matched if c[3] == p[3]) / pairs if pairs else None
        labelled = [(c[3], p[5]) for c, p in matched if p[5] is not None]  # feedback on the same image
        c_conf = [c[4] for c, _ in matched]
        c_stats = _stats([c[3] for c, _ in matched], c_conf, labelled, [])  # no client waited
        evidence = pairs
    else:
        c_conf = [r[4] for r in cand]
        c_stats = _stats([r[3] for r in cand], c_conf, [(r[3], r[5]) for r in cand if r[5] is not None],
                         [r[6] for r in cand])
        evidence = c_stats["predictions"] + failed[plan.candidate]
    enough = evidence >= g.min_requests
    gates = []

    def gate(name, value, limit, failed, note=""):
        status = "pending" if value is None or not enough else ("fail" if failed else "pass")
        gates.append({"gate": name, "value": value, "limit": limit, "status": status, "note": note})

    if plan.mode == "shadow":
        dis = None if agreement is None else 1 - agreement
        gate("disagreement", dis, g.max_disagreement, dis is not None and dis > g.max_disagreement)
    both = p_stats["predictions"] and c_stats["predictions"]
    shift = psi(c_stats["class_counts"], p_stats["class_counts"]) if both else None
    gate("class_psi", shift, g.max_psi, shift is not None and shift > g.max_psi)
    drop = p_stats["mean_confidence"] - c_stats["mean_confidence"] if both else None
    gate("confidence_drop", drop, g.max_confidence_drop, drop is not None and drop > g.max_confidence_drop)
    ks = ks_two_sample(c_conf, p_conf) if both else None
    gate("confidence_ks", ks, g.max_confidence_ks, ks is not None and ks > g.max_confidence_ks)
    for version, stats in ((plan.production, p_stats), (plan.candidate, c_stats)):
        stats["failed"] = failed[version]
        total = failed[version] + stats["predictions"]
        stats["error_rate"] = failed[version] / total if total else None
    if plan.mode == "canary":  # a shadow's answers reach nobody: its latency and failures are not a client's
        rise = (c_stats["error_rate"] - (p_stats["error_rate"] or 0.0)) if c_stats["error_rate"] is not None else None
        gate("error_rate_increase", rise, g.max_error_increase, rise is not None and rise > g.max_error_increase)
        ratio = (c_stats["p99_ms"] / p_stats["p99_ms"] if c_stats["p99_ms"] is not None and p_stats["p99_ms"]
                 else None)
        gate("p99_latency_ratio", ratio, g.max_p99_ratio, ratio is not None and ratio > g.max_p99_ratio)
    if c_stats["labelled"] >= g.min_labels and p_stats["labelled"] >= g.min_labels:
        worse = c_stats["accuracy_ci"][1] < p_stats["accuracy"] - g.max_accuracy_drop
        gate("feedback_accuracy", c_stats["accuracy"], p_stats["accuracy"] - g.max_accuracy_drop, worse,
             f"{c_stats['labelled']} labels; 95 % interval {c_stats['accuracy_ci'][0]:.3f}-{c_stats['accuracy_ci'][1]:.3f}")
    else:
        gates.append({"gate": "feedback_accuracy", "value": c_stats["accuracy"], "limit": None, "status": "n/a",
                      "note": f"{c_stats['labelled']} labels for the candidate, {p_stats['labelled']} for production: "
                              f"fewer than {g.min_labels}, not counted either way"})
    elapsed = now - plan.started
    statuses = [x["status"] for x in gates]
    if enough and "fail" in statuses:
        verdict = "rollback"
    elif enough and "pending" not in statuses and elapsed >= g.min_seconds:
        verdict = "promote" if g.auto_promote else "ready"
    else:
        verdict = "wait"
    return {"mode": plan.mode, "elapsed_s": elapsed, "evidence": evidence, "needed": g.min_requests,
            "pairs": pairs, "agreement": agreement,
            "versions": {plan.production: {"role": "production", **p_stats},
                         plan.candidate: {"role": "candidate", **c_stats}},
            "gates": gates, "verdict": verdict}
