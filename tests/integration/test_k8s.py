"""Kubernetes manifests: every one valid against the Kubernetes schemas (offline), the kustomization renders."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, needs, program

pytestmark = pytest.mark.integration  # starts real processes

K8S = REPO / "deploy" / "k8s"
KUBE_VERSION = "1.30.0"


def _docs(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_manifest_is_valid(path):
    import kubernetes_validate

    for doc in _docs(K8S / path):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_deployment_promises():
    dep = _docs(K8S / "deployment.yaml")[0]
    spec = dep["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    c = spec["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["httpGet"]["path"] == "/ready"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 20
    assert c["envFrom"][0]["configMapRef"]["name"] == "fmnist-config"


@needs("kubectl")
def test_kustomization_renders_and_validates():
    import kubernetes_validate

    out = subprocess.run([program("kubectl"), "kustomize", str(K8S)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace", "PodDisruptionBudget",
                     "Service"]
    for d in docs:
        kubernetes_validate.validate(d, KUBE_VERSION, strict=True)
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "fmnist"
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost/fmnist:serve"


@needs("kubectl")
def test_dev_postgres_overlay_points_every_pod_at_one_database():
    """deploy/k8s-dev-postgres: the base, one PostgreSQL (StatefulSet + PVC), and the Secret the
    Deployment reads FMNIST_PREDICTION_LOG from."""
    import base64

    import kubernetes_validate

    out = subprocess.run([program("kubectl"), "kustomize", str(REPO / "deploy" / "k8s-dev-postgres")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for d in docs:
        kubernetes_validate.validate(d, KUBE_VERSION, strict=True)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    sts = by[("StatefulSet", "fmnist-postgres")]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    env = {e["name"]: e for e in by[("Deployment", "fmnist")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["FMNIST_PREDICTION_LOG"]["valueFrom"]["secretKeyRef"]
    url = base64.b64decode(by[("Secret", ref["name"])]["data"][ref["key"]]).decode()
    assert url.startswith("postgresql://") and "@fmnist-postgres:5432/" in url
    assert env["FMNIST_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@needs("kubectl")
def test_registry_volume_overlay_mounts_one_registry_in_every_pod():
    """deploy/k8s-registry-volume: the base with the registry on a ReadWriteMany claim mounted where
    FMNIST_MODELS points, so a promotion or a rollout plan is a file every pod reads, not an image."""
    import kubernetes_validate

    out = subprocess.run([program("kubectl"), "kustomize", str(REPO / "deploy" / "k8s-registry-volume")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for d in docs:
        kubernetes_validate.validate(d, KUBE_VERSION, strict=True)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by[("PersistentVolumeClaim", "fmnist-models")]["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = by[("Deployment", "fmnist")]["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v.get("persistentVolumeClaim"))
    assert claim["persistentVolumeClaim"]["claimName"] == "fmnist-models"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == claim["name"])
    assert mount["mountPath"] == by[("ConfigMap", "fmnist-config")]["data"]["FMNIST_MODELS"] == "/srv/models"
    assert not mount.get("readOnly")  # the workers write a rollout's decision into the registry
