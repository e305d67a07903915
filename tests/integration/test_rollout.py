"""Zero-downtime model rollout: promote, refuse a broken model, roll back, all under wrk load."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from fmnist.artifact import ArtifactError
from fmnist.registry import production_version, promote, read_aliases, resolve, rollback
from tests.conftest import SHIPPED, needs, program, running_server
from tests.wrk import pixels_script

pytestmark = pytest.mark.integration  # starts real processes

WRK = program("wrk")


def make_registry(tmp_path):
    """smallcnn:1 and :2 (same weights, two versions) and :3 whose ONNX graph is garbage but whose
    manifest sha256 matches it: it passes `promote`'s checksum check and fails to load."""
    root = tmp_path / "models"
    for v in ("1", "2", "3"):
        dst = root / "smallcnn" / v
        shutil.copytree(SHIPPED, dst)
        m = json.loads((dst / "manifest.json").read_text())
        m["version"] = v
        if v == "3":
            (dst / "model.onnx").write_bytes(b"not an onnx graph")
            m["files"]["model.onnx"] = {"sha256": hashlib.sha256(b"not an onnx graph").hexdigest(), "bytes": 17}
        (dst / "manifest.json").write_text(json.dumps(m))
    return root


def test_promote_and_rollback_move_the_alias(tmp_path):
    root = make_registry(tmp_path)
    assert resolve("smallcnn", root).version == "3"  # no alias yet: latest
    promote("smallcnn", "1", root)
    assert resolve("smallcnn", root).version == "1" and production_version(root, "smallcnn") == "1"
    promote("smallcnn", "2", root)
    assert resolve("smallcnn", root).version == "2"
    assert rollback("smallcnn", root)["production"] == "1"
    # the production before the first promotion was implicit (the latest, 3): rollback goes back to it (issue 31)
    assert rollback("smallcnn", root)["production"] == "3"
    with pytest.raises(ArtifactError, match="nothing to roll back to"):
        rollback("smallcnn", root)
    promote("smallcnn", "1", root)
    # a tampered artifact cannot be promoted
    w = root / "smallcnn" / "2" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        promote("smallcnn", "2", root)
    assert read_aliases(root, "smallcnn")["production"] == "1"
    with pytest.raises(ArtifactError, match="has no version '9'"):
        promote("smallcnn", "9", root)


def _cli(*args, root):
    proc = subprocess.run([sys.executable, "-m", "fmnist.cli", *args, "--registry", str(root)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _served_versions(url: str, n: int = 20) -> set:
    seen = set()
    for _ in range(n):
        with urllib.request.urlopen(url + "/ready", timeout=5) as r:
            seen.add(json.loads(r.read())["model"]["version"])
    return seen


def _wait_for(url: str, version: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _served_versions(url) == {version}:
            return
        time.sleep(0.2)
    raise AssertionError(f"servers did not all switch to version {version}: {_served_versions(url)}")


COUNT_VERSIONS = r"""
function init(args) counts = {} end
function response(status, headers, body)
  local key = "status" .. status
  if status == 200 then key = "v" .. (string.match(body, '"version":"([^"]*)"') or "?") end
  counts[key] = (counts[key] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write("COUNT " .. k .. " " .. v .. "\n") end
  io.write("ERRORS " .. (summary.errors.connect + summary.errors.read + summary.errors.write
                        + summary.errors.status + summary.errors.timeout) .. "\n")
end
"""


@needs("wrk")
def test_rollout_under_load_has_zero_failures(tmp_path):
    root = make_registry(tmp_path)
    _cli("promote", "smallcnn", "1", "--force", root=root)  # the garment gate is test_garments'
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:24, 8:20] = 200
    script = pixels_script(tmp_path / "load.lua", pixels, COUNT_VERSIONS)
    env_model = "--model=smallcnn"
    with running_server(tmp_path, env_model, "--registry", str(root), workers=2,
                        extra_env={"FMNIST_RELOAD_INTERVAL": "0.5"}) as srv:
        url = srv["url"]
        assert _served_versions(url) == {"1"}
        out = {}
        load = threading.Thread(target=lambda: out.update(proc=subprocess.run(
            [WRK, "-t", "2", "-c", "16", "-d", "14s", "-s", str(script), "--timeout", "5s", url + "/predict"],
            capture_output=True, text=True)))
        load.start()
        time.sleep(2)
        _cli("promote", "smallcnn", "2", "--force", root=root)  # verified, then picked up by every worker
        _wait_for(url, "2")
        time.sleep(1)
        _cli("promote", "smallcnn", "3", "--force", root=root)  # passes the checksum, fails to load: refused
        time.sleep(2.5)
        assert _served_versions(url) == {"2"}
        _cli("rollback", "smallcnn", root=root)  # 3 -> 2: nothing to do for the servers
        _cli("rollback", "smallcnn", root=root)  # 2 -> 1
        _wait_for(url, "1")
        load.join(timeout=60)
        text = urllib.request.urlopen(url + "/metrics").read().decode()
        log = srv["log"].read_text()
    stdout = out["proc"].stdout
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"COUNT (\S+) (\d+)", stdout)}
    errors = int(re.search(r"ERRORS (\d+)", stdout).group(1))
    assert errors == 0, stdout
    assert set(counts) == {"v1", "v2"}, counts  # only 200s, each naming the old or the new version
    assert counts["v1"] > 100 and counts["v2"] > 100, counts
    failures = sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("fmnist_model_reload_failures_total"))
    assert failures >= 2  # both workers refused version 3
    assert "refusing model smallcnn:3" in log
