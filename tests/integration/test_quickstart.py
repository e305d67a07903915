"""The README's quick start, as a newcomer runs it after `make run`: predict the shipped sample pictures with
`fmnist predict` and curl's form, open the dashboard from `/`, send feedback for an answer, and see the live
accuracy count it (issue 31)."""

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import REPO, SHIPPED, running_server

pytestmark = pytest.mark.integration
SAMPLES = REPO / "samples"


def _json(url: str, data: "bytes | None" = None, headers: "dict | None" = None) -> dict:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_the_quick_start_works_on_the_shipped_samples(tmp_path):
    with running_server(tmp_path, workers=1) as srv:
        url = srv["url"]
        out = subprocess.run([sys.executable, "-m", "fmnist.cli", "predict", "--url", url,
                              *sorted(str(p) for p in SAMPLES.glob("*.*") if p.suffix != ".md")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        said = {line.split(": ", 1)[0].rsplit("/", 1)[-1]: line.split(": ", 1)[1] for line in out.stdout.splitlines()}
        print(out.stdout)
        for name, label in (("shirt.png", "Shirt"), ("dress.png", "Dress"), ("ankle-boot.jpg", "Ankle boot"),
                            ("bag.png", "Bag")):
            assert said[name].startswith(label + " (") and said[name].endswith(f"[smallcnn:{SHIPPED.name}]"), said[name]
        assert said["blank-page.png"].startswith("not a garment"), said["blank-page.png"]

        body = (b'--b\r\nContent-Disposition: form-data; name="image"; filename="shirt.png"\r\n\r\n'
                + (SAMPLES / "shirt.png").read_bytes() + b"\r\n--b--\r\n")  # what curl -F image=@... sends
        answer = _json(url + "/predict", body, {"Content-Type": "multipart/form-data; boundary=b"})
        assert answer["label"] == "Shirt"

        index = _json(url + "/")
        assert index["dashboard"] == "/dashboard" and "POST /feedback" in index["routes"]
        req = urllib.request.Request(url + "/", headers={"Accept": "text/html"})
        with urllib.request.urlopen(req, timeout=10) as r:  # a browser is sent on to the dashboard
            assert r.url.endswith("/dashboard") and b"<html" in r.read().lower()

        fed = _json(url + "/feedback", json.dumps({"request_id": answer["request_id"], "label": "Shirt"}).encode(),
                    {"Content-Type": "application/json"})
        assert fed["correct"] is True
        accuracy = _json(url + "/monitoring")["accuracy"]
        assert accuracy["n"] == 1 and accuracy["accuracy"] == 1.0, accuracy
