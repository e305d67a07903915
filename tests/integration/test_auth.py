"""API keys with scopes (serving/auth.py): the key file, and every route x request path x key kind, in-process
(the fast path and Flask) and through a real Gunicorn loop worker: no bypass."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from fmnist.errors import InvalidValue
from fmnist.serving import auth
from tests.conftest import REPO, running_server
from tests.httpprobe import read_answers
from tests.images import png

PIXELS = np.zeros((28, 28), np.uint8)


@pytest.fixture
def keyfile(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_EVERY", 0.0)  # reread at once (the server: at most once a second)
    path = tmp_path / "keys.json"
    keys = {"predict": auth.create(path, "app", ["predict"]), "monitor": auth.create(path, "prometheus", ["monitor"]),
            "feedback": auth.create(path, "labeller", ["feedback"]),
            "all": auth.create(path, "admin", ["predict", "feedback", "monitor"])}
    revoked = auth.create(path, "old", ["predict", "feedback", "monitor"])
    auth.revoke(path, revoked.split("_")[1])
    keys["revoked"] = revoked
    keys["unknown"] = "fmk_0badc0de_" + "x" * 32
    return path, keys


def test_key_file_and_checks(keyfile):
    path, keys = keyfile
    text = path.read_text()
    assert keys["all"].split("_", 2)[2] not in text  # only hashes at rest
    store = auth.KeyStore(path)
    assert store.check(f"Bearer {keys['predict']}", "", "predict").name == "app"
    assert store.check("", keys["predict"], "predict").name == "app"  # X-API-Key
    assert store.check(f"Bearer {keys['predict']}", "", "monitor").status == 403
    for header, code in ((f"Bearer {keys['revoked']}", "revoked"), (f"Bearer {keys['unknown']}", "unknown"),
                         ("Bearer nonsense", "malformed"), ("Basic dXNlcjpwYXNz", "malformed"), ("", "missing"),
                         ("Bearer " + keys["predict"][:-1] + "!", "malformed")):
        d = store.check(header, "", "predict")
        assert isinstance(d, auth.Denied) and d.status == 401 and d.code == code, header
        assert d.headers["WWW-Authenticate"].startswith("Bearer")
    # revoked and rotated without a restart: the file is reread when it changes
    kid = keys["predict"].split("_")[1]
    auth.revoke(path, kid)
    assert store.check(f"Bearer {keys['predict']}", "", "predict").code == "revoked"
    newer = auth.create(path, "app v2", ["predict"])
    assert store.check(f"Bearer {newer}", "", "predict").name == "app v2"
    # a file that turns bad keeps the last good keys; one that is bad at start refuses to start
    path.write_text("{not json")
    assert store.check(f"Bearer {newer}", "", "predict").name == "app v2" and "not a JSON key file" in store.problem
    with pytest.raises(InvalidValue, match="not a JSON key file"):
        auth.KeyStore(path)
    path.write_text(json.dumps({"keys": [{"id": "zz", "sha256": "0", "scopes": ["root"]}]}))
    with pytest.raises(InvalidValue, match="key #0 is malformed"):
        auth.KeyStore(path)


def test_a_key_file_mounted_late(tmp_path, monkeypatch):
    """No file yet (a Secret not mounted): every keyed request is refused, saying why, until it appears."""
    monkeypatch.setattr(auth, "RELOAD_EVERY", 0.0)
    path = tmp_path / "later" / "keys.json"
    store = auth.KeyStore(path)
    d = store.check("", "", "predict")
    assert d.status == 401 and d.code == "unavailable" and "no API key file" in d.message
    key = auth.create(path, "late", ["predict"])
    assert store.check(f"Bearer {key}", "", "predict").name == "late"


def _routes():
    """(method, path, body kind, scope); body kinds are built by the callers."""
    return [
        ("GET", "/health", None, None), ("GET", "/ready", None, None), ("GET", "/v2/health/live", None, None),
        ("GET", "/v2/health/ready", None, None),
        ("POST", "/predict", "multipart", "predict"), ("POST", "/predict", "json", "predict"),
        ("POST", "/explain", "json", "predict"), ("GET", "/model", None, "predict"),
        ("GET", "/openapi.json", None, "predict"), ("GET", "/v2", None, "predict"),
        ("GET", "/v2/models/smallcnn", None, "predict"), ("POST", "/v2/models/smallcnn/infer", "v2", "predict"),
        ("POST", "/feedback", "feedback", "feedback"), ("GET", "/metrics", None, "monitor"),
        ("GET", "/monitoring", None, "monitor"), ("GET", "/monitoring/low-confidence", None, "monitor"),
        ("GET", "/monitoring/rollout", None, "monitor"),
        ("GET", "/dashboard", None, None), ("GET", "/no-such-route", None, "predict"),
    ]


WRONG_SCOPE = {"predict": "monitor", "monitor": "feedback", "feedback": "predict"}


def _body(kind):
    if kind == "multipart":
        b = "authboundary"
        data = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + png(PIXELS) + f"\r\n--{b}--\r\n".encode()
        return data, f"multipart/form-data; boundary={b}"
    if kind == "json":
        return json.dumps({"pixels": PIXELS.tolist()}).encode(), "application/json"
    if kind == "v2":
        return json.dumps({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 28, 28],
                                       "data": PIXELS.ravel().tolist()}]}).encode(), "application/json"
    if kind == "feedback":
        return json.dumps({"request_id": "nobody", "label": 1}).encode(), "application/json"
    return None, None


def _matrix(send, keys) -> list:
    """Every route x key kind: -> the cases that got through without the right key (must be none)."""
    bypasses, checked = [], 0
    for method, path, kind, scope in _routes():
        for who in ("none", "unknown", "revoked", "wrong scope", "right"):
            headers = {}
            if who != "none":
                key = keys[{"unknown": "unknown", "revoked": "revoked", "right": scope or "all",
                            "wrong scope": WRONG_SCOPE.get(scope, "predict")}[who]]
                headers["Authorization"] = f"Bearer {key}"
            data, ctype = _body(kind)
            if ctype:
                headers["Content-Type"] = ctype
            status, body = send(method, path, data, headers)
            checked += 1
            if scope is None or who == "right":
                assert status not in (401, 403), (method, path, who, status, body[:200])
                continue
            expected = 403 if who == "wrong scope" else 401
            if status != expected:
                bypasses.append((method, path, who, status))
            elif not path.startswith("/v2"):
                assert json.loads(body)["error"]["code"] == ("forbidden" if expected == 403 else "unauthorized")
    assert checked == len(_routes()) * 5
    return bypasses


def test_every_route_and_key_in_process(keyfile, make_app):
    """Flask's test client goes through app.wsgi_app, the fast path first: both request paths are covered."""
    path, keys = keyfile
    app = make_app(api_keys=str(path))
    client = app.test_client()

    def send(method, route, data, headers):
        r = client.open(route, method=method, data=data, headers=headers)
        return r.status_code, r.get_data()

    assert _matrix(send, keys) == []
    text = client.get("/metrics", headers={"Authorization": f"Bearer {keys['monitor']}"}).get_data(as_text=True)
    assert 'fmnist_auth_failures_total{reason="scope"}' in text and 'fmnist_auth_failures_total{reason="missing"}' in text


@pytest.mark.integration
def test_every_route_and_key_through_gunicorn(keyfile, tmp_path):
    """The loop worker: its batched fast path on the event loop, the pool for the rest; the key id (never
    the secret) in the access log."""
    path, keys = keyfile
    with running_server(tmp_path, "--api-keys", str(path), workers=1) as srv:
        def send(method, route, data, headers):
            req = urllib.request.Request(srv["url"] + route, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        assert _matrix(send, keys) == []
        # keyless requests for a Flask route on 150 connections at once: refused on the loop, none queued for
        # the worker's 4 threads (a queue of 64: beyond it they would be 503s, and other clients would wait)
        socks = [socket.create_connection(("127.0.0.1", srv["port"]), timeout=30) for _ in range(150)]
        for s in socks:
            s.sendall(b"GET /monitoring HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
        for s in socks:
            for answer in read_answers(s, 2):
                assert answer["status"] == 401 and json.loads(answer["body"])["error"]["code"] == "unauthorized"
            s.close()
        log = srv["log"].read_text()
        metrics = send("GET", "/metrics", None, {"Authorization": f"Bearer {keys['monitor']}"})[1].decode()
        db = srv["log"].parent / "predictions.sqlite"
        for _ in range(50):  # the prediction log is written in the background
            with sqlite3.connect(db) as conn:
                key_ids = {k for (k,) in conn.execute("SELECT key_id FROM predictions")}
            if key_ids:
                break
            time.sleep(0.1)
    kid = keys["predict"].split("_")[1]
    assert f'"key_id":"{kid}"' in log and keys["predict"] not in log and keys["predict"].split("_", 2)[2] not in log
    assert key_ids == {kid}  # /predict (both paths) and /v2 infer, with the predict key
    assert f'fmnist_key_requests_total{{key_id="{kid}",status="200"}}' in metrics


def test_keys_command(tmp_path, capsys):
    from fmnist.cli import main

    path = tmp_path / "k.json"
    assert main(["keys", "create", "--file", str(path), "--name", "ci", "--scopes", "predict,monitor"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("fmk_")
    assert main(["keys", "list", "--file", str(path)]) == 0
    assert "monitor,predict" in capsys.readouterr().out
    assert main(["keys", "revoke", "--file", str(path), key.split("_")[1]]) == 0  # options before the id too
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list", "--file", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:3] == ["ID", "STATE", "SCOPES"] and "revoked" in listed[1], listed
    assert main(["keys", "create", "--file", str(path), "--scopes", "root"]) == 2
    assert "scopes must be among" in capsys.readouterr().err


def test_rate_limit_per_key_answers_429_with_retry_after(tmp_path, make_app, monkeypatch):
    """A key of 2 requests a second (burst 2) on a 1-worker server: the third at once is 429 with Retry-After,
    on the fast path and through Flask alike, counted once; after the wait it may go again. Keys without a
    rate are not limited; the limit is shared out over the workers (2 workers: 1 a second each)."""
    monkeypatch.setattr(auth, "RELOAD_EVERY", 0.0)
    path = tmp_path / "keys.json"
    slow = auth.create(path, "slow", ["predict", "monitor"], rate=2, burst=2)
    free = auth.create(path, "free", ["predict"])
    app = make_app(api_keys=str(path), workers=1)
    client = app.test_client()
    body, ctype = _body("multipart")
    headers = {"Authorization": f"Bearer {slow}", "Content-Type": ctype}
    statuses = [client.post("/predict", data=body, headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    r = client.post("/predict", json={"pixels": PIXELS.tolist()}, headers={"Authorization": f"Bearer {slow}"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    err = r.get_json()["error"]
    assert err["code"] == "rate_limited" and "rate of 2 requests a second" in err["message"]
    free_headers = {"Authorization": f"Bearer {free}", "Content-Type": ctype}
    assert all(client.post("/predict", data=body, headers=free_headers).status_code == 200 for _ in range(10))
    import time

    time.sleep(0.6)
    assert client.post("/predict", data=body, headers=headers).status_code == 200
    failures = app.extensions["fmnist"].metrics.auth_failures
    assert failures.labels(reason="rate")._value.get() == 2  # the fast path's refusal is not counted again
    buckets = auth.Buckets(workers=2)
    key = auth.Key("0000abcd", "", "", ("predict",), 0.0, rate=2, burst=2)
    assert [buckets.take(key) == 0 for _ in range(2)] == [True, False]  # burst 2 over 2 workers: 1 each


def test_image_rate_per_key_counts_the_images_of_every_kind_of_request(tmp_path, make_app, monkeypatch):
    """A key of 10 images a second (burst 10): a multipart request of 4 images (fast path), 4 pixel arrays (Flask)
    and a /v2 tensor of 4: the third is refused (429, 2 images left), each request paid once; a request of more
    images than the burst ever holds is told to send fewer."""
    monkeypatch.setattr(auth, "RELOAD_EVERY", 0.0)
    path = tmp_path / "keys.json"
    key = auth.create(path, "batchy", ["predict"], image_rate=10, image_burst=10)
    app = make_app(api_keys=str(path), workers=1)
    client = app.test_client()
    hdr = {"Authorization": f"Bearer {key}"}
    b = "imgboundary"
    part = (f"--{b}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"x.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png(PIXELS) + b"\r\n"
    four = part * 4 + f"--{b}--\r\n".encode()
    r1 = client.post("/predict", data=four, headers={**hdr, "Content-Type": f"multipart/form-data; boundary={b}"})
    r2 = client.post("/predict", json={"pixels": [PIXELS.tolist()] * 4}, headers=hdr)
    tensor = {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [4, 28, 28], "data": [int(v) for v in
                                                                                            PIXELS.ravel()] * 4}]}
    r3 = client.post("/v2/models/smallcnn/infer", json=tensor, headers=hdr)
    assert [r1.status_code, r2.status_code, r3.status_code] == [200, 200, 429], r3.get_data()[:300]
    assert "rate of 10 images a second" in str(r3.get_json()["error"]) and int(r3.headers["Retry-After"]) >= 1
    big = client.post("/predict", json={"pixels": [PIXELS.tolist()] * 11}, headers=hdr)
    assert big.status_code == 429 and "send fewer per request" in big.get_json()["error"]["message"]


def test_serving_beyond_loopback_without_keys_is_refused_unless_said_open(tmp_path):
    from fmnist.config import Settings, is_loopback

    assert all(is_loopback(b) for b in ("127.0.0.1:5000", "localhost:80", "[::1]:5000", "127.9.9.9:1", "unix:/tmp/s"))
    assert not any(is_loopback(b) for b in ("0.0.0.0:5000", ":5000", "[::]:5000", "10.0.0.5:5000", "example.com:80"))
    assert Settings(bind="127.0.0.1:5000").exposure_problem() is None
    assert "refusing to serve 0.0.0.0:5000 without API keys" in Settings(bind="0.0.0.0:5000").exposure_problem()
    assert Settings(bind="0.0.0.0:5000", open=True).exposure_problem() is None
    assert Settings(bind="0.0.0.0:5000", api_keys=str(tmp_path / "k.json")).exposure_problem() is None
    # the command says so before Gunicorn starts; Gunicorn started by hand with our config refuses too
    env = {**os.environ, "FMNIST_MODELS": str(REPO / "models")}
    env.pop("FMNIST_OPEN", None)
    env.pop("FMNIST_API_KEYS", None)
    cli = subprocess.run([sys.executable, "-m", "fmnist.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 2 and "bind 127.0.0.1, or say it is meant to be open (--open" in cli.stderr
    gun = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "python:fmnist.serving.http.gunicorn_conf",
                          "fmnist.serving:create_app()"], capture_output=True, text=True, timeout=60,
                         env={**env, "FMNIST_BIND": "0.0.0.0:1"})
    assert gun.returncode != 0 and "refusing to serve 0.0.0.0:1 without API keys" in gun.stderr
