"""The programs the integration tests run, found wherever they came from; Debian's package only where one
is missing or too old, and never on top of another package's files.

    python3 tools/testdeps.py            # check, then install what is missing (make test-deps)
    python3 tools/testdeps.py --dry-run  # only say what it would do (--json for a machine)

Decided per program, by what the tests run (`kubectl kustomize`, `promtool`, `chromium` + `chromedriver`,
`nginx`, `wrk`, `initdb`/`pg_ctl`, `iptables` for podman): a program found on PATH (or where its packages
put it outside PATH) at a version new enough is used as it is, whatever installed it (the Kubernetes apt
repository's `kubectl`, PGDG's `postgresql-16`, a snap's `chromium-browser`, upstream nginx). Otherwise the
Debian package is installed, unless a file it would install already belongs to another package or was put
there by hand (dpkg would refuse, or overwrite someone's program), or apt would remove a package to make
room: then it says what is in the way and leaves it. It never fails the build: a program that cannot be had
makes only the tests that need it skip, saying why (the tests call `find` too).

Standard library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Need:
    """A program some tests run, how to read its version, and the Debian package that provides it."""

    key: str
    programs: tuple[str, ...]  # names tried in order (the first found wins)
    version_args: tuple[str, ...]
    minimum: tuple[int, ...]
    package: str  # Debian's package
    installs: tuple[str, ...]  # the paths that package puts the program at (checked for other owners)
    used_by: str
    extra_dirs: tuple[str, ...] = ()  # globs searched after PATH (Debian keeps some programs out of it)
    companions: tuple[str, ...] = ()  # programs that must sit in the same directory (pg_ctl beside initdb)


SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
NEEDS: tuple[Need, ...] = (
    Need("kubectl", ("kubectl",), ("version", "--client"), (1, 20), "kubernetes-client", ("/usr/bin/kubectl",),
         "tests/integration/test_k8s.py (kubectl kustomize of deploy/k8s and deploy/k8s-dev-postgres)"),
    Need("promtool", ("promtool",), ("--version",), (2, 0), "prometheus", ("/usr/bin/promtool",),
         "tests/integration/test_prometheus.py, tests/integration/test_monitoring.py (promtool check/test rules)"),
    Need("prometheus", ("prometheus",), ("--version",), (2, 0), "prometheus", ("/usr/bin/prometheus",),
         "tests/integration/test_prometheus.py (a real Prometheus scraping the server)"),
    Need("chromium", ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome"), ("--version",),
         (100,), "chromium", ("/usr/bin/chromium",), "tests/integration/test_dashboard.py (the dashboard in a real browser)"),
    Need("chromedriver", ("chromedriver", "chromium.chromedriver"), ("--version",), (100,), "chromium-driver",
         ("/usr/bin/chromedriver",), "tests/integration/test_dashboard.py (Selenium drives Chromium through it)"),
    Need("nginx", ("nginx",), ("-v",), (1, 18), "nginx", ("/usr/sbin/nginx",),
         "tests/integration/test_cluster.py (nginx over replicas)", extra_dirs=SBIN),
    Need("wrk", ("wrk",), ("--version",), (4, 0), "wrk", ("/usr/bin/wrk",),
         "tests/integration/test_cluster.py, test_rollout.py, test_store_postgres.py (load during rollouts)"),
    Need("postgresql", ("initdb",), ("--version",), (12,), "postgresql", (),
         "tests/integration/test_store_postgres.py, test_k8s.py (a throwaway PostgreSQL server)",
         extra_dirs=("/usr/lib/postgresql/*/bin",), companions=("pg_ctl",)),
    Need("iptables", ("iptables",), ("--version",), (1, 4), "iptables", (),
         "tests/integration/test_container.py (podman's network helper)", extra_dirs=SBIN),
)
VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass
class Found:
    path: "str | None" = None
    version: "tuple[int, ...] | None" = None
    problem: str = ""  # why what was found does not do (too old, version unreadable, companion missing)

    @property
    def ok(self) -> bool:
        return self.path is not None and not self.problem


@dataclass
class Decision:
    key: str
    found: Found
    action: str  # "use" | "install" | "blocked" | "unavailable"
    reason: str = ""
    package: str = ""
    notes: list[str] = field(default_factory=list)


def read_version(program: str, args: tuple[str, ...]) -> "tuple[int, ...] | None":
    """The first dotted version the program prints about itself (stdout or stderr: nginx -v uses stderr;
    wrk --version exits 1), or None."""
    try:
        out = subprocess.run([program, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = VERSION.search(out.stdout + "\n" + out.stderr)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def search_dirs(need: Need, path: str, root: str) -> list[str]:
    dirs = [d for d in path.split(os.pathsep) if d]
    for pattern in need.extra_dirs:
        dirs += sorted(glob.glob(os.path.join(root, pattern.lstrip("/"))), reverse=True)  # newest PG first
    return list(dict.fromkeys(dirs))


def find(key: str, path: "str | None" = None, root: str = "/") -> Found:
    """Where the program for `key` is and whether it will do: the first usable candidate, else the first
    candidate with its problem, else nothing found."""
    need = next(n for n in NEEDS if n.key == key)
    first: "Found | None" = None
    for d in search_dirs(need, os.environ.get("PATH", "") if path is None else path, root):
        for name in need.programs:
            exe = os.path.join(d, name)
            if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
                continue
            found = Found(exe, read_version(exe, need.version_args))
            missing = [c for c in need.companions if not os.access(os.path.join(d, c), os.X_OK)]
            if missing:
                found.problem = f"{', '.join(missing)} not beside {exe}"
            elif found.version is None:
                found.problem = f"{exe} {' '.join(need.version_args)} printed no version"
            elif found.version < need.minimum:
                found.problem = (f"{exe} is version {'.'.join(map(str, found.version))}; the tests need "
                                 f"{'.'.join(map(str, need.minimum))} or newer")
            if found.ok:
                return found
            first = first or found
    return first or Found()


def owner(path: str) -> "str | None":
    """The Debian package a file belongs to, None when none does (or dpkg is not there)."""
    if not shutil.which("dpkg-query"):
        return None
    out = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        pkgs, sep, p = line.partition(": ")
        if sep and p.strip() == path and not pkgs.startswith("diversion"):
            return pkgs
    return None


def in_the_way(need: Need, root: str) -> "str | None":
    """What would stop Debian's package from installing the program cleanly: one of its files already
    there, from another package or from no package at all."""
    for p in need.installs:
        full = os.path.join(root, p.lstrip("/"))
        if not os.path.lexists(full):
            continue
        who = owner(full)
        if who is None:
            return f"{full} is already there and belongs to no package (installed by hand?)"
        if need.package not in [w.strip() for w in who.split(",")]:
            return f"{full} belongs to the package '{who}'"
    return None


def plan(path: "str | None" = None, root: str = "/", have_apt: "bool | None" = None) -> list[Decision]:
    have_apt = shutil.which("apt-get") is not None if have_apt is None else have_apt
    decisions = []
    for need in NEEDS:
        found = find(need.key, path, root)
        if found.ok:
            d = Decision(need.key, found, "use", f"{found.path} {'.'.join(map(str, found.version or ()))}")
        elif (blocker := in_the_way(need, root)):
            d = Decision(need.key, found, "blocked", f"{found.problem or 'not found'}; Debian's {need.package} "
                         f"cannot go in: {blocker}. Upgrade or remove it; until then these tests skip: "
                         f"{need.used_by}", need.package)
        elif not have_apt:
            d = Decision(need.key, found, "unavailable", f"{found.problem or 'not found'} and no apt-get here: "
                         f"install {need.programs[0]} yourself for {need.used_by}", need.package)
        else:
            d = Decision(need.key, found, "install", found.problem or "not found", need.package)
            if found.path and need.installs and os.path.dirname(found.path) != os.path.dirname(need.installs[0]):
                d.notes.append(f"{found.path} may still come first on PATH")
        decisions.append(d)
    chromium, driver = (next(d for d in decisions if d.key == k) for k in ("chromium", "chromedriver"))
    if chromium.action == driver.action == "use" and chromium.found.version[:1] != driver.found.version[:1]:
        driver.notes.append(f"chromedriver {driver.found.version[0]} does not match chromium "
                            f"{chromium.found.version[0]}: the browser tests will skip")
    return decisions


def apt(*args: str) -> subprocess.CompletedProcess:
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run([*sudo, "apt-get", *args], capture_output=True, text=True, env=env)


def install(packages: list[str]) -> dict[str, str]:
    """Install each package unless apt would remove another package for it; {package: what went wrong}."""
    failed: dict[str, str] = {}
    if apt("update", "-qq").returncode != 0:
        print("testdeps: apt-get update failed; trying with the package lists there are", file=sys.stderr)
    together = apt("install", "-s", "-y", "-qq", *packages)
    if together.returncode == 0 and not any(line.startswith("Remv ") for line in together.stdout.splitlines()):
        if apt("install", "-y", "-qq", *packages).returncode == 0:
            return failed
    for pkg in packages:  # one at a time: one package that cannot go in does not keep the others out
        sim = apt("install", "-s", "-y", "-qq", pkg)
        removes = [line.split()[1] for line in sim.stdout.splitlines() if line.startswith("Remv ")]
        if sim.returncode != 0:
            failed[pkg] = (sim.stderr.strip().splitlines() or ["apt-get cannot install it"])[-1]
        elif removes:
            failed[pkg] = f"apt would remove {', '.join(removes)} to install it; left alone"
        else:
            out = apt("install", "-y", "-qq", pkg)
            if out.returncode != 0:
                failed[pkg] = (out.stderr.strip().splitlines() or ["apt-get failed"])[-1]
    return failed


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    p.add_argument("--json", action="store_true", help="the decisions as JSON on stdout")
    p.add_argument("--path", help="search these directories instead of $PATH (the set-up's own tests)")
    p.add_argument("--root", default="/", help="the file-system root the package paths are checked under")
    p.add_argument("--no-apt", action="store_true", help="as on a machine without apt-get")
    a = p.parse_args(argv)
    decisions = plan(a.path, a.root, have_apt=False if a.no_apt else None)
    packages = list(dict.fromkeys(d.package for d in decisions if d.action == "install"))
    if packages and not a.dry_run:
        print(f"testdeps: installing {' '.join(packages)}", file=sys.stderr)
        failed = install(packages)
        for d in decisions:
            if d.action == "install" and d.package in failed:
                d.action, d.reason = "unavailable", f"{d.reason}; apt-get: {failed[d.package]}"
            elif d.action == "install":
                d.found = find(d.key, a.path, a.root)
                d.action, d.reason = ("use", f"installed {d.package}") if d.found.ok else \
                    ("unavailable", f"installed {d.package}, still: {d.found.problem or 'not found'}")
    if a.json:
        print(json.dumps([asdict(d) for d in decisions], indent=1))
    else:
        for d in decisions:
            extra = "".join(f"\n{'':14}note: {n}" for n in d.notes)
            print(f"testdeps: {d.key:12} {d.action:11} {d.reason}{extra}", file=sys.stderr)
    return 0  # never fails the set-up: the tests that need a missing program skip, saying why


if __name__ == "__main__":
    sys.exit(main())
