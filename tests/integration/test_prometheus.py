"""The shipped Prometheus/Grafana configuration: promtool checks, alert unit tests, and a real
Prometheus scraping a real server and answering queries, recording rules included."""

import json
import subprocess
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from fmnist.client import predict_bytes as _predict
from tests.conftest import REPO, SHIPPED, free_port, needs, program, running_server
from tests.images import png

pytestmark = pytest.mark.integration  # starts real processes

PROM = REPO / "deploy" / "prometheus"
PROMTOOL, PROMETHEUS = program("promtool"), program("prometheus")
needs_promtool = needs("promtool")


@needs_promtool
def test_promtool_check_config_and_rules():
    for args in (["check", "config", str(PROM / "prometheus.yml")],
                 ["check", "rules", *map(str, sorted((PROM / "rules").glob("*.yml")))]):
        proc = subprocess.run([PROMTOOL, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_alert_unit_tests():
    proc = subprocess.run([PROMTOOL, "test", "rules", str(PROM / "tests" / "fmnist.test.yml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_grafana_dashboard_covers_the_panels():
    dash = json.loads((REPO / "deploy" / "grafana" / "fmnist-dashboard.json").read_text())
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for word in ("requests/s", "p99", "5xx", "class share", "confidence", "drift", "accuracy", "cpu", "memory",
                 "gpu", "model in service", "flagged", "not a garment"):
        assert word in titles, word


def _query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@needs("prometheus")
def test_real_prometheus_scrapes_the_server(tmp_path):
    """A server with API keys, scraped with a `monitor` key the way prometheus.yml's comment says."""
    from fmnist.serving import auth

    keys = tmp_path / "keys.json"
    monitor_key = auth.create(keys, "prometheus", ["monitor"])
    (tmp_path / "monitor-key").write_text(monitor_key + "\n")
    with running_server(tmp_path, "--api-keys", str(keys)) as srv:
        key = auth.create(keys, "app", ["predict"])
        time.sleep(1.1)  # the server rereads the key file at most once a second

        def predict_bytes(content, url):
            out = _predict(content, url, api_key=key)
            assert "error" not in out, out
            return out

        for i in range(30):
            predict_bytes(png(np.full((28, 28), i * 8, np.uint8)), srv["url"])
        config = (PROM / "prometheus.yml").read_text()
        config = config.replace("scrape_interval: 5s", "scrape_interval: 1s")
        config = config.replace("evaluation_interval: 5s", "evaluation_interval: 1s")
        config = config.replace('"localhost:5000"', f'"127.0.0.1:{srv["port"]}"')
        config = config.replace("rules/", str(PROM / "rules") + "/")
        config = config.replace("    # authorization:\n    #   type: Bearer\n    #   credentials_file: "
                                "/etc/prometheus/fmnist-monitor-key", "    authorization:\n      type: Bearer\n"
                                f"      credentials_file: {tmp_path / 'monitor-key'}")
        assert str(tmp_path / "monitor-key") in config
        (tmp_path / "prometheus.yml").write_text(config)
        port = free_port()
        prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prom.log", "wb"))
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            info = []
            while time.monotonic() < deadline and not info:
                time.sleep(1)
                predict_bytes(png(np.zeros((28, 28), np.uint8)), srv["url"])
                try:
                    info = _query(base, "fmnist_model_info")["data"]["result"]
                except OSError:
                    continue
            assert info, (tmp_path / "prom.log").read_text()[-2000:]
            assert info[0]["metric"]["name"] == "smallcnn" and info[0]["metric"]["version"] == SHIPPED.name
            # recording rules evaluate once two scrapes give rates; until a prediction has fallen between two
            # scrapes the rates (and so every share) are 0
            share = []
            while time.monotonic() < deadline and not sum(float(s["value"][1]) for s in share):
                time.sleep(1)
                for _ in range(3):
                    predict_bytes(png(np.zeros((28, 28), np.uint8)), srv["url"])
                share = _query(base, "fmnist:class_share:ratio_rate5m")["data"]["result"]
            assert len(share) == 10
            assert abs(sum(float(s["value"][1]) for s in share) - 1) < 1e-6
            psi = _query(base, "fmnist:class_psi:5m")["data"]["result"]
            assert psi and float(psi[0]["value"][1]) >= 0
            # every Grafana panel's query is valid PromQL against this server's series
            dash = json.loads((REPO / "deploy" / "grafana" / "fmnist-dashboard.json").read_text())
            for panel in dash["panels"]:
                for target in panel["targets"]:
                    assert _query(base, target["expr"])["status"] == "success", target["expr"]
        finally:
            prom.terminate()
            prom.wait(timeout=20)
