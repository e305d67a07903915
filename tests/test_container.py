"""Build the serving image with podman (FROM a locally made Debian bookworm), run it, predict, health-check.

Slow (a few minutes the first time: debootstrap + pip inside the build), so it runs only with
FMNIST_CONTAINER_TESTS=1 (`make test` and `make test-container` set it).
"""

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fmnist.client import predict_bytes
from tests.conftest import REPO, free_port, wait_ready
from tests.images import png

pytestmark = pytest.mark.skipif(os.environ.get("FMNIST_CONTAINER_TESTS") != "1",
                                reason="set FMNIST_CONTAINER_TESTS=1 (needs podman; minutes)")
IMAGE = "localhost/fmnist:serve-test"


@pytest.fixture(scope="session")
def podman_env() -> dict:
    """podman set up by shared/tools/podman-env.sh, then proved by running one container (once per
    session). Where podman is present but cannot run a container here (no /dev/fuse for
    fuse-overlayfs, no user namespaces, ...), the tests skip with what podman said."""
    script = REPO.parent / "shared" / "tools" / "podman-env.sh"
    if not script.exists():
        pytest.skip(f"{script} not found (the container tests set podman up with it)")
    try:
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("podman set-up (podman-env.sh) took over 15 minutes")
    if out.returncode != 0:
        pytest.skip(f"podman cannot be set up on this machine: {_tail(out.stderr)}")
    env = dict(os.environ)
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = v.strip('"')
    probe = subprocess.run(["podman", "run", "--rm", "--network", "none", "localhost/debian:bookworm", "true"],
                           capture_output=True, text=True, env=env, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"podman is installed but cannot run a container here: {_tail(probe.stderr)}")
    return env


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no message)"


@pytest.fixture(scope="session")
def serving_image(podman_env) -> str:
    """The serving image, built once for the tests that run it."""
    mounts = podman_env["PODMAN_BUILD_MOUNTS"].split()
    build = subprocess.run(["podman", "build", "--format", "docker", *mounts, "--target", "serve",
                            "--build-arg", "BASE=localhost/debian:bookworm", "-t", IMAGE, str(REPO)],
                           capture_output=True, text=True, env=podman_env, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return IMAGE


def test_serving_image_builds_runs_predicts_and_is_healthy(tmp_path, podman_env, serving_image):
    env = dict(podman_env)
    size = json.loads(subprocess.run(["podman", "image", "inspect", IMAGE], capture_output=True, text=True,
                                     env=env).stdout)[0]["Size"]
    print(f"serving image size: {size / 1e6:.0f} MB")
    (tmp_path / "size.txt").write_text(str(size))
    has_torch = subprocess.run(["podman", "run", "--rm", IMAGE, "python3", "-c", "import torch"], env=env,
                               capture_output=True)
    assert has_torch.returncode != 0  # no torch in the serving image
    whoami = subprocess.run(["podman", "run", "--rm", IMAGE, "id", "-u"], env=env, capture_output=True, text=True)
    assert whoami.stdout.strip() == "10001"  # non-root
    port = free_port()
    name = f"fmnist-test-{port}"
    subprocess.run(["podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000", IMAGE], env=env,
                   check=True, capture_output=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 60, pause=0.5, request_timeout=2,
                   describe=lambda: subprocess.run(["podman", "logs", name], env=env, capture_output=True,
                                                   text=True).stdout[-3000:])
        body = predict_bytes(png(np.zeros((28, 28), np.uint8)), url)
        assert body["model"] == {"name": "smallcnn", "version": "1"}
        health = subprocess.run(["podman", "healthcheck", "run", name], env=env, capture_output=True, text=True)
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        subprocess.run(["podman", "rm", "-f", name], env=env, capture_output=True)


def test_compose_brings_up_nginx_replicas_and_prometheus(tmp_path, podman_env):
    """podman-compose up of compose.yaml (Grafana left out: its image comes from a registry)."""
    env = dict(podman_env)
    env["BASE"] = "localhost/debian:bookworm"
    compose = shutil.which("podman-compose") or str(Path(os.sys.executable).parent / "podman-compose")
    base = [compose, "-f", str(REPO / "compose.yaml"), "-p", "fmnisttest"]
    services = ["fmnist-1", "fmnist-2", "fmnist-3", "nginx", "prometheus"]
    up = subprocess.run([*base, "--podman-build-args=" + env["PODMAN_BUILD_MOUNTS"] + " --format docker", "up", "-d",
                         "--build", *services], capture_output=True, text=True, env=env, timeout=1800, cwd=REPO)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        url = "http://127.0.0.1:8080"
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                body = predict_bytes(png(np.zeros((28, 28), np.uint8)), url, timeout=5)
            except OSError:
                time.sleep(1)
        assert body and body["model"]["name"] == "smallcnn"
        up_targets = []
        while time.monotonic() < deadline and len(up_targets) < 3:
            time.sleep(2)
            try:
                with urllib.request.urlopen("http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22fmnist%22%7D%3D%3D1",
                                            timeout=5) as r:
                    up_targets = json.loads(r.read())["data"]["result"]
            except OSError:
                continue
        assert len(up_targets) == 3  # Prometheus scrapes all three replicas
    finally:
        subprocess.run([*base, "down"], capture_output=True, env=env, timeout=300, cwd=REPO)


def test_the_kubernetes_pod_spec_runs_under_podman_kube_play(tmp_path, podman_env, serving_image):
    """deploy/k8s rendered by kustomize and played by a real engine that reads Kubernetes YAML: the
    image, runAsUser 10001, readOnlyRootFilesystem, the emptyDir volumes, the ConfigMap and the
    optional Secret reference must let the server become ready and answer /predict."""
    import yaml

    env = dict(podman_env)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("needs kubectl (apt-get install kubernetes-client)")
    out = subprocess.run([kubectl, "kustomize", str(REPO / "deploy" / "k8s")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d}
    dep, cm = docs["Deployment"], docs["ConfigMap"]
    port = free_port()
    dep["metadata"].pop("namespace", None)
    dep["spec"]["replicas"] = 1
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["image"] = serving_image
    c["args"] = [a if a != "5000" else str(port) for a in c["args"]]  # host network: a free port
    c["ports"][0]["containerPort"] = port
    cm["metadata"].pop("namespace", None)
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(dep))
    (tmp_path / "configmap.yaml").write_text(yaml.safe_dump(cm))
    play = subprocess.run(["podman", "kube", "play", "--network", "host", "--configmap", str(tmp_path / "configmap.yaml"),
                           str(tmp_path / "deployment.yaml")], capture_output=True, text=True, env=env, timeout=300)
    try:
        assert play.returncode == 0, play.stdout + play.stderr
        lines = play.stdout.split()  # "Pod:\n<id>\nContainer:\n<id>..."
        ctr = lines[lines.index("Container:") + 1:][:1] if "Container:" in lines else []
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 90, pause=0.5, request_timeout=2,
                   describe=lambda: subprocess.run(["podman", "logs", *ctr[-1:]], env=env, capture_output=True,
                                                   text=True).stdout[-3000:] if ctr else "no container")
        body = predict_bytes(png(np.zeros((28, 28), np.uint8)), url)
        assert body["model"]["name"] == "smallcnn"
        whoami = subprocess.run(["podman", "exec", ctr[-1], "id", "-u"], capture_output=True, text=True, env=env)
        assert whoami.stdout.strip() == "10001"
        write = subprocess.run(["podman", "exec", ctr[-1], "touch", "/srv/x"], capture_output=True, text=True, env=env)
        assert write.returncode != 0 and "Read-only" in write.stderr  # readOnlyRootFilesystem is enforced
        with urllib.request.urlopen(url + "/monitoring", timeout=10) as r:
            store = json.loads(r.read())["store"]
        assert store["ok"] and store["where"] == "/srv/state/predictions.sqlite"  # no Secret: the emptyDir's SQLite
    finally:
        subprocess.run(["podman", "kube", "down", str(tmp_path / "deployment.yaml")], capture_output=True, env=env,
                       timeout=120)
