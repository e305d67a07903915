"""Rolling a version out on live evidence (fmnist.rollout): the plan, sticky canary routing, the gates, and a
fleet of real Gunicorn workers under wrk load that routes, shadows, promotes a good candidate and rolls back
a bad one with no failed request."""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from fmnist.errors import InvalidValue
from fmnist.rollout import gates as rollout_gates
from fmnist.rollout import plan as rollout_plan
from tests.conftest import REPO, SHIPPED, needs, program, running_server
from tests.wrk import COUNT_NON200

CLASSES_SWAPPED = "Trouser,T-shirt/top,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"


def test_canary_routing_is_sticky_and_holds_its_share():
    clients = [f"client-{i}" for i in range(20_000)]
    chosen = [rollout_plan.routes_to_candidate(c, 0.1) for c in clients]
    assert 0.09 < sum(chosen) / len(chosen) < 0.11
    assert chosen == [rollout_plan.routes_to_candidate(c, 0.1) for c in clients]  # the same side every time
    assert rollout_plan.client_of("0000abcd", "browser-7", "rid") == "0000abcd"
    assert rollout_plan.client_of(None, "browser-7", "rid") == "browser-7"
    assert rollout_plan.client_of(None, "", "rid") == "rid"


def test_gates_parse_and_refuse_unknown_names():
    g = rollout_plan.Gates.parse(["min_requests=50", "auto-promote=false", "max_psi=0.5"])
    assert g.min_requests == 50 and g.auto_promote is False and g.max_psi == 0.5
    for bad in (["nope=1"], ["min_requests"], ["min_requests=many"]):
        with pytest.raises(InvalidValue):
            rollout_plan.Gates.parse(bad)


def _plan(mode, **gates):
    return rollout_plan.Plan("m", "1", "2", mode, 0.1 if mode == "canary" else 0.0, 1000.0,
                             gates={**rollout_plan.asdict(rollout_plan.Gates()), **gates})


def test_gates_decide_on_evidence_and_not_before():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 400)
    conf = rng.uniform(0.5, 1.0, 400)  # confidences as a model's spread, not one value
    prod = [(f"r{i}", 0, "1", int(t), float(conf[i]), int(t) if i < 100 else None, 10.0) for i, t in enumerate(truth)]
    # shadow: a candidate agreeing on 97 % of images, then one with two classes swapped
    good = [(f"r{i}@shadow", 0, "2", int(t) if i % 33 else int((t + 1) % 10), float(conf[i]) - 0.01, None, None)
            for i, t in enumerate(truth)]
    swap = {0: 1, 1: 0}
    bad = [(f"r{i}@shadow", 0, "2", swap.get(int(t), int(t)), float(conf[i]), None, None) for i, t in enumerate(truth)]
    plan = _plan("shadow", min_requests=200, min_seconds=10)
    early = rollout_gates.evaluate(plan, prod[:150] + good[:150], 1005.0)
    assert early["verdict"] == "wait" and {g["status"] for g in early["gates"]} <= {"pending", "n/a"}
    ok = rollout_gates.evaluate(plan, prod + good, 1011.0)
    assert ok["verdict"] == "promote" and ok["pairs"] == 400 and ok["agreement"] > 0.95, ok["gates"]
    assert rollout_gates.evaluate(plan, prod + good, 1005.0)["verdict"] == "wait"  # min_seconds not reached
    no = rollout_gates.evaluate(plan, prod + bad, 1011.0)
    assert no["verdict"] == "rollback"
    assert [g["status"] for g in no["gates"] if g["gate"] == "disagreement"] == ["fail"]
    # the candidate's accuracy on feedback given for production's answer to the same image: 100 labels
    acc = no["versions"]["2"]
    assert acc["labelled"] == 100 and acc["accuracy"] < 0.85 and acc["accuracy_ci"][1] < 0.9
    assert rollout_gates.evaluate(_plan("shadow", min_requests=200, auto_promote=False), prod + good,
                                  2000.0)["verdict"] == "ready"  # passes, waits for a person
    # canary: few labels are not counted either way
    canary = [(f"c{i}", 0, "2", int(t), float(conf[-1 - i]), int(t) if i < 12 else None, 12.0)
              for i, t in enumerate(truth)]
    rep = rollout_gates.evaluate(_plan("canary", min_requests=200), prod + canary, 2000.0)
    fb = next(g for g in rep["gates"] if g["gate"] == "feedback_accuracy")
    assert fb["status"] == "n/a" and "12 labels" in fb["note"] and rep["verdict"] == "promote"
    slow = [r[:6] + (40.0,) for r in canary]  # its answers take 4x production's in the server
    rep = rollout_gates.evaluate(_plan("canary", min_requests=200), prod + slow, 2000.0)
    p99 = next(g for g in rep["gates"] if g["gate"] == "p99_latency_ratio")
    assert p99["status"] == "fail" and p99["value"] == pytest.approx(4.0) and rep["verdict"] == "rollback"
    # a candidate failing 5 % of its requests (logged as <id>@error): rolled back on the error rate
    errors = [(f"e{i}@error", 0, "2", -1, 0.0, None, None) for i in range(20)]
    rep = rollout_gates.evaluate(_plan("canary", min_requests=200), prod + canary + errors, 2000.0)
    err = next(g for g in rep["gates"] if g["gate"] == "error_rate_increase")
    assert err["status"] == "fail" and err["value"] == pytest.approx(20 / 420) and rep["verdict"] == "rollback"
    # its confidences all lower: the two distributions' KS is 1
    unsure = [r[:4] + (0.5,) + r[5:] for r in canary]
    rep = rollout_gates.evaluate(_plan("canary", min_requests=200), prod + unsure, 2000.0)
    assert {g["gate"]: g["status"] for g in rep["gates"]}["confidence_ks"] == "fail"
    assert rollout_gates.ks_two_sample([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 0.0


def test_plan_start_decide_once(tmp_path):
    shutil.copytree(REPO / "models" / "smallcnn", tmp_path / "smallcnn")
    with pytest.raises(InvalidValue, match="already production"):
        rollout_plan.start("smallcnn", SHIPPED.name, "shadow", root=tmp_path)
    with pytest.raises(InvalidValue, match="exclusive"):
        rollout_plan.start("smallcnn", "1", "canary", share=1.0, root=tmp_path)
    plan = rollout_plan.start("smallcnn", "1", "canary", share=0.1, root=tmp_path)
    assert plan.production == SHIPPED.name and plan.running
    with pytest.raises(InvalidValue, match="is running"):
        rollout_plan.start("smallcnn", "1", "shadow", root=tmp_path)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        rollout_plan.decide("smallcnn", "aborted", {}, "test", tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1  # eight deciders at once: one decision
    assert rollout_plan.read_plan("smallcnn", tmp_path).state == "aborted"


CLIENT_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
local n = 0
function request()
  n = n + 1
  wrk.headers["X-Client-ID"] = string.format("c%d-%d", math.random(1, 1000000), n)
  return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])
end
""" + COUNT_NON200


def _many_images_script(path, images):
    """wrk posting one of these images (JSON pixels) per request, each from a new X-Client-ID."""
    bodies = ",\n".join("'" + json.dumps({"pixels": np.asarray(a).astype(int).tolist()}) + "'" for a in images)
    path.write_text("bodies = {\n" + bodies + "\n}\n" + CLIENT_LUA)
    return path


def _cli(*args, registry):
    proc = subprocess.run([sys.executable, "-m", "fmnist.cli", *args, "--registry", str(registry)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _load_without_failures(url, script, seconds) -> None:
    """wrk for `seconds`: not one answer but 200, not one socket error."""
    stdout = subprocess.run([program("wrk"), "-t", "2", "-c", "8", "-d", f"{seconds}s", "-s", str(script),
                             "--timeout", "10s", url + "/predict"], capture_output=True, text=True).stdout
    failures = int(re.search(r"NON200 (\d+)", stdout).group(1)), int(re.search(r"ERRORS (\d+)", stdout).group(1))
    assert failures == (0, 0), stdout


def _wait_state(name, registry, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = rollout_plan.read_plan(name, registry)
        if plan is not None and not plan.running:
            return plan
        time.sleep(0.2)
    return rollout_plan.read_plan(name, registry)


@pytest.mark.integration
@needs("wrk")
def test_canary_then_shadow_under_load_promote_and_roll_back(tmp_path, real_data):
    """Two loop workers under wrk (distinct X-Client-IDs): a canary of 10 % for smallcnn:5 (production: smallcnn:4)
    answers 8-12 % of the traffic and is promoted by the gates; then a shadow of a bad candidate (smallcnn:5 with
    two classes swapped, imported) answers nobody, is logged for every request it saw, and is rolled back by the gates; a worker
    killed mid-rollout comes back into it; not one request fails."""
    registry = tmp_path / "models"
    registry.mkdir()
    shutil.copytree(REPO / "models" / "smallcnn" / "4", registry / "smallcnn" / "4")
    shutil.copytree(REPO / "models" / "smallcnn" / "5", registry / "smallcnn" / "5")
    _cli("promote", "smallcnn", "4", "--force", registry=registry)  # the garment gate is test_garments'
    # 1,000 distinct images: the gates compare two distributions, which 100 repeated images make coarse
    script = _many_images_script(tmp_path / "load.lua", real_data.test_images[:1000])
    env = {"FMNIST_RELOAD_INTERVAL": "0.5"}
    with running_server(tmp_path, "--model", "smallcnn", "--registry", str(registry), "--worker", "loop",
                        workers=2, extra_env=env) as srv:
        db = tmp_path / "predictions.sqlite"
        # 1) canary 10 % of smallcnn:5, gates after 300 requests and 4 s (two calibrated models of one recipe
        # family: smallcnn:1 against smallcnn:4 now fails the confidence KS gate, their temperatures differ)
        _cli("rollout", "start", "smallcnn", "5", "--force", "--canary", "10", "--gate", "min_requests=300",
             "--gate", "min_seconds=4", registry=registry)
        _load_without_failures(srv["url"], script, 8)
        plan = _wait_state("smallcnn", registry, 20)
        assert plan.state == "promoted" and plan.decision["by"].startswith("gates"), (
        plan.state, [g for g in plan.decision["evidence"]["gates"] if g["status"] != "pass"])
        with sqlite3.connect(db) as conn:
            counts = dict(conn.execute("SELECT model_version, COUNT(*) FROM predictions WHERE ts >= ? AND ts <= ? "
                                       "GROUP BY model_version", (plan.started, plan.decision["at"])).fetchall())
        share = counts.get("5", 0) / sum(counts.values())
        ev = plan.decision["evidence"]
        print([(g["gate"], g["value"], g["limit"]) for g in ev["gates"]])
        print(f"canary: {share:.1%} of {sum(counts.values())} answers from version 5; promoted after "
              f"{ev['evidence']} candidate answers and {ev['elapsed_s']:.1f} s")
        assert 0.08 <= share <= 0.12, counts
        status = _cli("rollout", "status", "smallcnn", "--prediction-log", str(db), registry=registry)
        assert "promoted by gates" in status and "verdict: promote" in status
        deadline = time.monotonic() + 10
        while json.loads(subprocess.run(["curl", "-s", srv["url"] + "/model"], capture_output=True,
                                        text=True).stdout)["version"] != "5" and time.monotonic() < deadline:
            time.sleep(0.2)  # every worker follows the production alias to the promoted version
        # 2) shadow of a bad candidate: smallcnn:5 is production now; version 6 swaps T-shirt/top and Trouser
        subprocess.run([sys.executable, "-m", "fmnist.cli", "import", str(registry / "smallcnn" / "5" / "model.onnx"),
                        "--name", "smallcnn", "--mean", "0.2860", "--std", "0.3530", "--classes", CLASSES_SWAPPED,
                        "--no-eval", "--registry", str(registry)], check=True, capture_output=True, timeout=120)
        bad = sorted(os.listdir(registry / "smallcnn"), key=lambda v: int(v) if v.isdigit() else -1)[-1]
        _cli("rollout", "start", "smallcnn", bad, "--force", "--shadow", "--gate", "min_requests=300", "--gate", "min_seconds=3",
             "--gate", "max_disagreement=0.05", registry=registry)
        # a worker dies mid-rollout (between loads: a SIGKILL resets its own connections, which only a proxy in
        # front could retry); Gunicorn's replacement joins the plan as it starts
        time.sleep(1.0)
        workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(srv["proc"].pid)], capture_output=True,
                                 text=True).stdout.split()
        os.kill(int(workers[0]), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while srv["log"].read_text().count(f"rollout: shadow smallcnn:{bad} beside production") < 3:
            assert time.monotonic() < deadline, srv["log"].read_text()[-3000:]
            time.sleep(0.2)
        _load_without_failures(srv["url"], script, 8)
        plan = _wait_state("smallcnn", registry, 20)
        assert plan.state == "rolled_back", plan
        ev = plan.decision["evidence"]
        print(f"shadow: rolled back after {ev['pairs']} pairs (agreement {ev['agreement']:.1%}) and "
              f"{ev['elapsed_s']:.1f} s")
        fail = [g for g in plan.decision["evidence"]["gates"] if g["status"] == "fail"]
        assert [g["gate"] for g in fail][:1] == ["disagreement"], plan.decision["evidence"]["gates"]
        with sqlite3.connect(db) as conn:
            versions = dict(conn.execute("SELECT model_version, COUNT(*) FROM predictions WHERE ts >= ? AND "
                                         "request_id NOT LIKE '%@shadow' GROUP BY model_version",
                                         (plan.started,)).fetchall())
            shadowed = conn.execute("SELECT COUNT(*) FROM predictions WHERE ts >= ? AND request_id LIKE '%@shadow'",
                                    (plan.started,)).fetchone()[0]
        assert bad not in versions  # clients only ever got production's answers
        assert shadowed >= 300
