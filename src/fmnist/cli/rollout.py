"""`fmnist rollout start|status|promote|abort`: a new version on live evidence (fmnist.rollout)."""

from __future__ import annotations

import json
import os
import sys
import time


def _store(args):
    from fmnist.config import Settings
    from fmnist.monitoring.store import open_store

    spec = args.prediction_log or os.environ.get("FMNIST_PREDICTION_LOG") or Settings().prediction_log
    return open_store(spec)


def _fmt(v, pct=False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f} %" if pct else f"{v:.3f}"


def print_status(plan, report) -> None:
    share = f" {plan.share:.0%}" if plan.mode == "canary" else ""
    print(f"{plan.name}: {plan.mode}{share} of version {plan.candidate} against production {plan.production}, "
          f"{plan.state}, started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(plan.started))} "
          f"({report['elapsed_s']:.0f} s ago)")
    print(f"\n{'version':<10}{'role':<12}{'predictions':>12}{'mean conf':>10}{'p99 ms':>9}{'labelled':>10}  "
          "accuracy (95 % interval)")
    for version, v in report["versions"].items():
        acc = (f"{_fmt(v['accuracy'], True)} ({_fmt(v['accuracy_ci'][0], True)}-{_fmt(v['accuracy_ci'][1], True)})"
               if v["accuracy"] is not None else "-")
        p99 = f"{v['p99_ms']:.1f}" if v.get("p99_ms") is not None else "-"
        print(f"{version:<10}{v['role']:<12}{v['predictions']:>12,}{_fmt(v['mean_confidence']):>10}{p99:>9}"
              f"{v['labelled']:>10}  {acc}")
    if report["pairs"] is not None:
        print(f"\nshadow pairs: {report['pairs']:,}, agreement {_fmt(report['agreement'], True)}")
    print(f"\n{'gate':<20}{'value':>10}{'limit':>10}  status")
    for gt in report["gates"]:
        print(f"{gt['gate']:<20}{_fmt(gt['value']):>10}{_fmt(gt['limit']):>10}  {gt['status']}"
              + (f"  ({gt['note']})" if gt["note"] else ""))
    print(f"\nevidence {report['evidence']:,} of {report['needed']:,} needed; verdict: {report['verdict']}")
    if plan.decision:
        d = plan.decision
        print(f"decided: {d['outcome']} by {d['by']} at {time.strftime('%H:%M:%S', time.localtime(d['at']))}")


def _older(version: str, than: str) -> bool:
    try:
        return int(version) < int(than)
    except ValueError:  # named versions: no order to speak of
        return False


def cmd_rollout(args) -> int:
    from fmnist.rollout import gates as rollout_gates
    from fmnist.rollout import plan as rollout_plan

    root = args.registry
    if args.action == "start":
        if not args.version or (args.shadow == (args.canary is not None)):
            from fmnist.errors import InvalidValue

            raise InvalidValue("rollout start NAME VERSION needs exactly one of --shadow or --canary PCT")
        from fmnist.cli.registry import garment_gate

        garment_gate(args.name, args.version, root, args.force)
        mode = "shadow" if args.shadow else "canary"
        plan = rollout_plan.start(args.name, args.version, mode, (args.canary or 0) / 100,
                                  rollout_plan.Gates.parse(args.gate), root)
        what = "a copy of every request" if mode == "shadow" else f"{plan.share:.0%} of clients"
        if _older(plan.candidate, plan.production):
            print(f"note: {plan.name}:{plan.candidate} is older than production {plan.production}; if the gates pass "
                  f"it becomes production (fmnist rollback {plan.name} goes back)", file=sys.stderr)
        print(f"{plan.name}: rollout of version {plan.candidate} started ({mode}: it gets {what}); production stays "
              f"{plan.production} until the gates decide. Servers join within their reload interval.")
        return 0
    plan = rollout_plan.read_plan(args.name, root)
    if plan is None:
        from fmnist.errors import InvalidValue

        raise InvalidValue(f"no rollout of {args.name} has been started (fmnist rollout start {args.name} VERSION ...)")
    if not plan.running and plan.decision:
        report = plan.decision["evidence"]  # what the decision was made on
    else:
        store = _store(args)
        try:
            report = rollout_gates.evaluate(plan, store.since(plan.name, plan.started), time.time())
        finally:
            store.close()
    if args.action in ("promote", "abort"):
        outcome = "promoted" if args.action == "promote" else "aborted"
        done = rollout_plan.decide(plan.name, outcome, report, "a person (fmnist rollout)", root)
        if done is None:
            print(f"{plan.name}: no rollout is running (it ended: {plan.state})")
            return 1
        print(f"{plan.name}: version {plan.candidate} {outcome}"
              + (f"; production is now {plan.candidate}" if outcome == "promoted" else f"; production stays {plan.production}"))
        return 0
    if args.json:
        print(json.dumps({"plan": {k: getattr(plan, k) for k in plan.__dataclass_fields__}, "report": report}, indent=1))
    else:
        print_status(plan, report)
    return 0
