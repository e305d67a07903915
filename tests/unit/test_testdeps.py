"""tools/testdeps.py, the set-up step that finds or installs the programs the integration tests run: run for
real (as `make test-deps` does, with --dry-run) against fake PATHs and file-system roots."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools import testdeps

SCRIPT = REPO / "tools" / "testdeps.py"
ALL_PACKAGES = {"kubernetes-client", "prometheus", "chromium", "chromium-driver", "nginx", "wrk", "postgresql",
                "iptables"}


def fake_program(d: Path, name: str, prints: str, to_stderr: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    exe = d / name
    exe.write_text(f"#!/bin/sh\necho '{prints}' {'>&2' if to_stderr else ''}\n")
    exe.chmod(0o755)
    return exe


def run_plan(path: Path, root: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--json", "--path", str(path), "--root",
                          str(root), *extra], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {d["key"]: d for d in json.loads(out.stdout)}


def test_a_newer_kubectl_from_another_package_is_kept(tmp_path):
    """The issue's machine: kubectl v1.32 from the Kubernetes apt repository, no Debian kubernetes-client.
    It is used as it is; kubernetes-client is not installed on top of it."""
    bin_ = tmp_path / "bin"
    fake_program(bin_, "kubectl", "Client Version: v1.32.4\nKustomize Version: v5.5.0")
    fake_program(bin_, "nginx", "nginx version: nginx/1.27.3", to_stderr=True)  # nginx -v talks on stderr
    plan = run_plan(bin_, tmp_path)
    assert plan["kubectl"]["action"] == "use" and plan["kubectl"]["found"]["version"] == [1, 32, 4]
    assert plan["nginx"]["action"] == "use"
    installing = {d["package"] for d in plan.values() if d["action"] == "install"}
    assert "kubernetes-client" not in installing and "nginx" not in installing
    assert installing == ALL_PACKAGES - {"kubernetes-client", "nginx"}


def test_nothing_there_installs_every_package(tmp_path):
    (tmp_path / "empty").mkdir()
    plan = run_plan(tmp_path / "empty", tmp_path)
    assert {d["action"] for d in plan.values()} == {"install"}
    assert {d["package"] for d in plan.values()} == ALL_PACKAGES
    # without apt-get it says so instead, and still does not fail
    plan = run_plan(tmp_path / "empty", tmp_path, "--no-apt")
    assert {d["action"] for d in plan.values()} == {"unavailable"}
    assert "install kubectl yourself" in plan["kubectl"]["reason"]


def test_too_old_program_in_debians_place_is_not_overwritten(tmp_path):
    """A kubectl too old for the tests where Debian's package would put its own, from no package: the
    Debian package is not forced over it; the decision says what is in the way and which tests skip."""
    usr_bin = tmp_path / "usr" / "bin"
    fake_program(usr_bin, "kubectl", "Client Version: version.Info{Major:\"1\", GitVersion:\"v1.12.0\"}")
    plan = run_plan(usr_bin, tmp_path)
    k = plan["kubectl"]
    assert k["action"] == "blocked" and k["found"]["version"] == [1, 12, 0]
    assert "1.20 or newer" in k["reason"] and "belongs to no package" in k["reason"] and "test_k8s" in k["reason"]


def test_version_unreadable_or_companion_missing(tmp_path):
    bin_ = tmp_path / "bin"
    fake_program(bin_, "wrk", "usage: wrk <options> <url>")  # no version at all
    fake_program(bin_, "initdb", "initdb (PostgreSQL) 16.4")  # pg_ctl missing beside it
    plan = run_plan(bin_, tmp_path)
    assert plan["wrk"]["action"] == "install" and "printed no version" in plan["wrk"]["reason"]
    assert plan["postgresql"]["action"] == "install" and "pg_ctl not beside" in plan["postgresql"]["reason"]
    fake_program(bin_, "pg_ctl", "pg_ctl (PostgreSQL) 16.4")
    assert run_plan(bin_, tmp_path)["postgresql"]["action"] == "use"


def test_postgres_found_outside_path_where_pgdg_puts_it(tmp_path):
    """PGDG's postgresql-16 (no Debian `postgresql` package): initdb under /usr/lib/postgresql/16/bin."""
    pg = tmp_path / "usr" / "lib" / "postgresql" / "16" / "bin"
    fake_program(pg, "initdb", "initdb (PostgreSQL) 16.4")
    fake_program(pg, "pg_ctl", "pg_ctl (PostgreSQL) 16.4")
    (tmp_path / "empty").mkdir()
    found = testdeps.find("postgresql", path=str(tmp_path / "empty"), root=str(tmp_path))
    assert found.ok and found.path == str(pg / "initdb") and found.version == (16, 4)


def test_chromium_from_elsewhere_and_driver_mismatch_noted(tmp_path):
    bin_ = tmp_path / "bin"
    fake_program(bin_, "chromium-browser", "Chromium 131.0.6778.85 snap")
    fake_program(bin_, "chromium.chromedriver", "ChromeDriver 130.0.6723.58")
    plan = run_plan(bin_, tmp_path)
    assert plan["chromium"]["action"] == plan["chromedriver"]["action"] == "use"
    assert any("does not match" in n for n in plan["chromedriver"]["notes"])


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg (a Debian machine)")
def test_a_file_of_another_package_is_in_the_way():
    """dpkg's own answer about a real file: /usr/bin/dpkg belongs to dpkg, so a package that would install
    there is reported as blocked by it."""
    need = testdeps.Need("x", ("x",), ("--version",), (1,), "kubernetes-client", ("/usr/bin/dpkg",), "a test")
    assert testdeps.in_the_way(need, "/") == "/usr/bin/dpkg belongs to the package 'dpkg'"
