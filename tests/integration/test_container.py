"""Build the serving image with podman (FROM a locally made Debian bookworm), run it, predict, health-check.

Slow (a few minutes the first time: debootstrap + pip inside the build), so it runs only with
FMNIST_CONTAINER_TESTS=1 (`make test` and `make test-container` set it).
"""

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fmnist.client import _multipart, predict_bytes
from tests.conftest import REPO, SHIPPED, free_port, wait_ready
from tests.images import png

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.environ.get("FMNIST_CONTAINER_TESTS") != "1",
                                reason="set FMNIST_CONTAINER_TESTS=1 (needs podman; minutes)")]
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
    # it listens on every interface, so without keys it refuses to start, saying how to go on
    refused = subprocess.run(["podman", "run", "--rm", IMAGE], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "refusing to serve 0.0.0.0:5000 without API keys" in refused.stderr
    port = free_port()
    name = f"fmnist-test-{port}"
    subprocess.run(["podman", "run", "-d", "--name", name, "-e", "FMNIST_OPEN=true", "-p", f"127.0.0.1:{port}:5000",
                    IMAGE], env=env, check=True, capture_output=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 60, pause=0.5, request_timeout=2,
                   describe=lambda: subprocess.run(["podman", "logs", name], env=env, capture_output=True,
                                                   text=True).stdout[-3000:])
        body = predict_bytes(png(np.zeros((28, 28), np.uint8)), url)
        assert body["model"] == {"name": "smallcnn", "version": SHIPPED.name}
        health = subprocess.run(["podman", "healthcheck", "run", name], env=env, capture_output=True, text=True)
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        subprocess.run(["podman", "rm", "-f", name], env=env, capture_output=True)


def test_compose_brings_up_nginx_replicas_and_prometheus(tmp_path, podman_env):
    """podman-compose up of compose.yaml (Grafana left out: its image comes from a registry): nginx over
    three replicas sharing one PostgreSQL prediction log, and Prometheus scraping them."""
    env = dict(podman_env)
    env["BASE"] = "localhost/debian:bookworm"
    compose = shutil.which("podman-compose") or str(Path(os.sys.executable).parent / "podman-compose")
    base = [compose, "-f", str(REPO / "compose.yaml"), "-p", "fmnisttest"]
    services = ["postgres", "fmnist-1", "fmnist-2", "fmnist-3", "nginx", "prometheus"]
    up = subprocess.run([*base, "--podman-build-args=" + env["PODMAN_BUILD_MOUNTS"] + " --format docker", "up", "-d",
                         "--build", *services], capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
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
        # one PostgreSQL prediction log behind the three replicas: a label sent through nginx reaches
        # whichever replica nginx picks, and that one finds the prediction another replica made
        for _ in range(12):
            rid = predict_bytes(png(np.zeros((28, 28), np.uint8)), url, timeout=5)["request_id"]
            req = urllib.request.Request(url + "/feedback", data=json.dumps({"request_id": rid, "label": 0}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200
        with urllib.request.urlopen(url + "/monitoring", timeout=10) as r:
            mon = json.loads(r.read())
        assert mon["store"]["backend"] == "postgresql" and mon["store"]["ok"] and mon["accuracy"]["n"] >= 12
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


def _play(tmp_path, env, image, port, overlay: str = "k8s"):
    """deploy/k8s rendered by the installed kubectl, its Deployment and ConfigMap played by podman on the
    host network, with a new key file where the Secret fmnist-api-keys would be mounted -> (the container's
    name, a key with every scope), or a failed assertion with podman's output. (podman 4.3 does not mount a
    Secret volume: the test puts the same file there by hostPath; a Secret not created yet is the missing
    key file of test_auth.py.)"""
    import yaml

    from fmnist.serving import auth

    secret_dir = tmp_path / "api-keys"
    secret_dir.mkdir()
    key = auth.create(secret_dir / "keys.json", "test", ["predict", "feedback", "monitor"])
    (secret_dir / "keys.json").chmod(0o644)  # as the kubelet mounts a Secret (defaultMode 0644), for user 10001

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("needs kubectl (apt-get install kubernetes-client)")
    out = subprocess.run([kubectl, "kustomize", str(REPO / "deploy" / overlay)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d}
    claims = [docs["PersistentVolumeClaim"]] if "PersistentVolumeClaim" in docs else []  # podman: a named volume
    for d in claims:
        d["metadata"].pop("namespace", None)
    dep, cm = docs["Deployment"], docs["ConfigMap"]
    dep["metadata"].pop("namespace", None)
    cm["metadata"].pop("namespace", None)
    dep["spec"]["replicas"] = 1
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["image"] = image
    # host network (podman refuses port mappings there): a free port, and the probes' named port by number
    c["args"] = [a if a != "5000" else str(port) for a in c["args"]]
    c.pop("ports")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        c[probe]["httpGet"]["port"] = port
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    keys_volume = next(v for v in volumes if v["name"] == "api-keys")
    assert keys_volume["secret"] == {"secretName": "fmnist-api-keys", "optional": True}
    keys_volume.pop("secret")
    keys_volume["hostPath"] = {"path": str(secret_dir), "type": "Directory"}
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump_all([*claims, dep]))
    (tmp_path / "configmap.yaml").write_text(yaml.safe_dump(cm))
    play = subprocess.run(["podman", "kube", "play", "--network", "host", "--configmap", str(tmp_path / "configmap.yaml"),
                           str(tmp_path / "deployment.yaml")], capture_output=True, text=True, env=env, timeout=300)
    assert play.returncode == 0, play.stdout + play.stderr
    lines = play.stdout.split()  # "Pod:\n<id>\nContainer:\n<id>..."
    ctr = lines[lines.index("Container:") + 1] if "Container:" in lines else ""
    wait_ready(f"http://127.0.0.1:{port}", 90, pause=0.5, request_timeout=2,
               describe=lambda: subprocess.run(["podman", "logs", ctr], env=env, capture_output=True,
                                               text=True).stdout[-3000:])
    return ctr, key


def _down(tmp_path, env):
    subprocess.run(["podman", "kube", "down", str(tmp_path / "deployment.yaml")], capture_output=True, env=env,
                   timeout=120)


def test_the_kubernetes_pod_spec_runs_under_podman_kube_play(tmp_path, podman_env, serving_image):
    """deploy/k8s rendered by kustomize and played by a real engine that reads Kubernetes YAML: the
    image, runAsUser 10001, readOnlyRootFilesystem, the emptyDir volumes, the ConfigMap and the
    optional Secret reference must let the server become ready and answer /predict."""
    env = dict(podman_env)
    subprocess.run(["podman", "secret", "rm", "fmnist-prediction-log"], capture_output=True, env=env)  # no Secret
    port = free_port()
    try:
        ctr, key = _play(tmp_path, env, serving_image, port)
        url = f"http://127.0.0.1:{port}"
        refused = predict_bytes(png(np.zeros((28, 28), np.uint8)), url, api_key="")
        assert refused["error"]["code"] == "unauthorized"  # the keys from the Secret are in force
        body = predict_bytes(png(np.zeros((28, 28), np.uint8)), url, api_key=key)
        assert body.get("model", {}).get("name") == "smallcnn", body
        whoami = subprocess.run(["podman", "exec", ctr, "id", "-u"], capture_output=True, text=True, env=env)
        assert whoami.stdout.strip() == "10001"
        write = subprocess.run(["podman", "exec", ctr, "touch", "/srv/x"], capture_output=True, text=True, env=env)
        assert write.returncode != 0 and "Read-only" in write.stderr  # readOnlyRootFilesystem is enforced
        with urllib.request.urlopen(urllib.request.Request(url + "/monitoring", headers={
                "Authorization": f"Bearer {key}"}), timeout=10) as r:
            store = json.loads(r.read())["store"]
        assert store["ok"] and store["where"] == "/srv/state/predictions.sqlite", store  # no Secret: the emptyDir SQLite
    finally:
        _down(tmp_path, env)


def test_the_pod_spec_takes_the_postgresql_url_from_the_secret(tmp_path, podman_env, serving_image):
    """With the Secret fmnist-prediction-log present (podman resolves secretKeyRef from its own secrets,
    holding the Kubernetes Secret's YAML), the pod writes its predictions to that PostgreSQL, under
    its pod name."""
    from tests.pg import PgServer, pg_bin

    if pg_bin() is None:
        pytest.skip("needs PostgreSQL's initdb/pg_ctl (apt-get install postgresql)")
    env = dict(podman_env)
    pg = PgServer(tmp_path / "pg", free_port()).init()
    # podman 4.3 resolves secretKeyRef from a podman secret holding the Secret's `data` map as JSON
    # (key -> base64 value); `kubectl create secret` makes the same map in a cluster
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"url": base64.b64encode(pg.url.encode()).decode()}))
    subprocess.run(["podman", "secret", "rm", "fmnist-prediction-log"], capture_output=True, env=env)
    made = subprocess.run(["podman", "secret", "create", "fmnist-prediction-log", str(secret)], capture_output=True,
                          text=True, env=env)
    assert made.returncode == 0, made.stderr
    port = free_port()
    try:
        _, key = _play(tmp_path, env, serving_image, port)
        url = f"http://127.0.0.1:{port}"
        rid = predict_bytes(png(np.zeros((28, 28), np.uint8)), url, api_key=key)["request_id"]
        with urllib.request.urlopen(urllib.request.Request(url + "/monitoring", headers={
                "Authorization": f"Bearer {key}"}), timeout=10) as r:
            store = json.loads(r.read())["store"]
        assert store["backend"] == "postgresql" and store["ok"], store
        time.sleep(0.5)
        rows = pg.query("SELECT replica FROM predictions WHERE request_id = %s", (rid,))
        assert rows and rows[0][0].startswith("fmnist-"), rows  # the pod's name, from the downward API
    finally:
        _down(tmp_path, env)
        subprocess.run(["podman", "secret", "rm", "fmnist-prediction-log"], capture_output=True, env=env)
        pg.stop("immediate")


def test_the_registry_volume_variant_follows_a_rollout_plan_without_a_new_image(tmp_path, podman_env, serving_image):
    """deploy/k8s-registry-volume under podman kube play: the claim becomes a volume filled from the image's
    registry; a canary started inside the pod (a file in that volume) is followed by the running server:
    about half of the clients (here: API keys) get version 1, the rest production (the shipped one), with no image rebuilt
    or pod restarted."""
    from fmnist.serving import auth

    env = dict(podman_env)
    subprocess.run(["podman", "volume", "rm", "-f", "fmnist-models"], capture_output=True, env=env)
    port = free_port()
    try:
        ctr, key = _play(tmp_path, env, serving_image, port, overlay="k8s-registry-volume")
        start = subprocess.run(["podman", "exec", ctr, "fmnist", "rollout", "start", "smallcnn", "1", "--canary", "50",
                                "--force"],  # an older, worse version on purpose: the gate would refuse it
                               capture_output=True, text=True, env=env)
        assert start.returncode == 0, start.stdout + start.stderr
        url = f"http://127.0.0.1:{port}"
        clients = [auth.create(tmp_path / "api-keys" / "keys.json", f"client-{i}", ["predict"]) for i in range(20)]
        (tmp_path / "api-keys" / "keys.json").chmod(0o644)
        versions = set()
        deadline = time.monotonic() + 30
        i = 0
        while versions != {"1", SHIPPED.name} and time.monotonic() < deadline:
            i += 1
            body, ctype = _multipart("image", "x.png", png(np.zeros((28, 28), np.uint8)))
            req = urllib.request.Request(url + "/predict", data=body, headers={
                "Content-Type": ctype, "Authorization": f"Bearer {clients[i % 20]}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                versions.add(json.loads(r.read())["model"]["version"])
        assert versions == {"1", SHIPPED.name}, versions
        status = subprocess.run(["podman", "exec", ctr, "fmnist", "rollout", "status", "smallcnn"],
                                capture_output=True, text=True, env=env)
        assert status.returncode == 0 and f"canary 50% of version 1 against production {SHIPPED.name}" in status.stdout, status
    finally:
        _down(tmp_path, env)
        subprocess.run(["podman", "volume", "rm", "-f", "fmnist-models"], capture_output=True, env=env)
