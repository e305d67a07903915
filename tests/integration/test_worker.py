"""serving/http/worker.py, the default Gunicorn worker, in a real Gunicorn process, over raw sockets.

The HTTP handling is checked with a small app that tells what reached it (tests/worker_app.py);
batching with the real fmnist app. The rest of the suite (e2e, cluster, rollout) runs on it too.
"""

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import REPO, free_port, running_server
from tests.images import png

pytestmark = pytest.mark.integration  # starts real processes

WORKER = "fmnist.serving.http.worker.LoopWorker"


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("worker") / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", WORKER, "-w", "1", "-b", f"127.0.0.1:{port}",
             "--keep-alive", "2", "--max-requests", "0", "tests.worker_app:app"],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    yield {"port": port, "proc": proc, "log": log}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def read_response(f) -> "tuple[int, dict, bytes]":
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 "), status
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers["content-length"])) if "content-length" in headers else b""
    return int(status.split()[1]), headers, body


def request(path: str, body: bytes = b"", method: str = "POST", headers: str = "", version: str = "1.1") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
    return f"{method} {path} HTTP/{version}\r\nHost: t\r\n{headers}{length}\r\n".encode() + body


def test_keep_alive_and_pipelining_answer_in_order(echo):
    s = connect(echo["port"])
    f = s.makefile("rb")
    s.sendall(request("/a?x=1", b"one"))
    code, headers, body = read_response(f)
    seen = json.loads(body)
    assert code == 200 and seen["path"] == "/a" and seen["query"] == "x=1" and seen["body_len"] == 3
    assert "date" in headers and headers.get("connection") != "close"
    # 30 requests in one write: every one answered, in order, on the same connection
    s.sendall(b"".join(request(f"/p{i}", b"x" * i, headers=f"X-N: {i}\r\n") for i in range(30)))
    for i in range(30):
        code, _, body = read_response(f)
        seen = json.loads(body)
        assert (code, seen["path"], seen["body_len"], seen["headers"]["HTTP_X_N"]) == (200, f"/p{i}", i, str(i))
    s.close()


def test_request_details_reach_the_app(echo):
    s = connect(echo["port"])
    f = s.makefile("rb")
    s.sendall(request("/a%20b/c?q=%20&r", b"", method="GET",
                      headers="X-Twice: 1\r\nX-Twice: 2\r\nX_Under: dropped\r\nContent-Type: text/x\r\n"))
    seen = json.loads(read_response(f)[2])
    assert seen["path"] == "/a b/c" and seen["query"] == "q=%20&r" and seen["raw_uri"] == "/a%20b/c?q=%20&r"
    assert seen["headers"]["HTTP_X_TWICE"] == "1,2" and "HTTP_X_UNDER" not in seen["headers"]
    assert seen["protocol"] == "HTTP/1.1" and seen["remote"] == "127.0.0.1"


def test_chunked_body_is_decoded(echo):
    s = connect(echo["port"])
    data = os.urandom(5000)
    chunks = b"".join(b"%x\r\n" % len(data[i:i + 1000]) + data[i:i + 1000] + b"\r\n" for i in range(0, 5000, 1000))
    s.sendall(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    seen = json.loads(read_response(s.makefile("rb"))[2])
    assert seen["body_len"] == 5000 and seen["body_sha"] == hashlib.sha256(data).hexdigest()
    assert seen["content_length"] == "5000"


def test_expect_100_continue(echo):
    s = connect(echo["port"])
    f = s.makefile("rb")
    s.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
    s.sendall(b"body")
    code, _, body = read_response(f)
    assert code == 200 and json.loads(body)["body_len"] == 4


def test_body_over_the_limit_is_never_buffered(echo):
    # declared: the app gets the request without its body (Flask answers 413 from Content-Length)
    s = connect(echo["port"])
    s.sendall(b"POST /l HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" + b"x" * 1000)
    f = s.makefile("rb")
    code, headers, body = read_response(f)
    assert code == 200 and json.loads(body)["body_len"] == 0 and headers["connection"] == "close"
    assert f.read() == b""  # closed: the rest of that body is not read as a next request
    # chunked: refused by the worker itself, with the API's JSON error
    s = connect(echo["port"])
    s.sendall(b"POST /l HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"".join(b"4000\r\n" + b"y" * 0x4000 + b"\r\n" for _ in range(8)))
    code, headers, body = read_response(s.makefile("rb"))
    assert code == 413 and json.loads(body)["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("raw, code, error", [
    (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431, "headers_too_large"),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "bad_request"),
])
def test_bad_requests_get_a_json_error_and_a_close(echo, raw, code, error):
    s = connect(echo["port"])
    s.sendall(raw)
    f = s.makefile("rb")
    got, headers, body = read_response(f)
    assert (got, json.loads(body)["error"]["code"], headers["connection"]) == (code, error, "close")
    assert f.read() == b""


def test_upgrade_is_answered_as_plain_http_then_closed(echo):
    s = connect(echo["port"])
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85frame")
    f = s.makefile("rb")
    code, headers, body = read_response(f)
    assert code == 200 and json.loads(body)["path"] == "/ws" and headers["connection"] == "close"
    assert f.read() == b""


def test_head_204_streamed_and_app_errors(echo):
    s = connect(echo["port"])
    f = s.makefile("rb")
    s.sendall(request("/big?1024", method="HEAD"))
    status = f.readline()
    headers = {}
    while (line := f.readline()) != b"\r\n":
        k, _, v = line.decode().partition(":")
        headers[k.lower()] = v.strip()
    assert status.startswith(b"HTTP/1.1 200") and headers["content-length"] == "1024"  # and no body:
    s.sendall(request("/empty", method="GET"))
    code, headers, body = read_response(f)
    assert code == 204 and body == b"" and "content-length" not in headers
    s.sendall(request("/stream", method="GET"))
    assert read_response(f)[2] == b"part0;part1;part2;part3;part4;"
    s.sendall(request("/boom", method="GET"))
    code, _, body = read_response(f)
    assert code == 500 and json.loads(body)["error"]["code"] == "internal_error"
    s.sendall(request("/after", method="GET"))  # the worker lives on, the connection too
    assert read_response(f)[0] == 200
    assert "RuntimeError: the app failed" in echo["log"].read_text()


def test_http_1_0_and_connection_close(echo):
    s = connect(echo["port"])
    s.sendall(request("/old", method="GET", version="1.0"))
    f = s.makefile("rb")
    code, headers, body = read_response(f)
    assert json.loads(body)["protocol"] == "HTTP/1.0" and headers["connection"] == "close" and f.read() == b""
    s = connect(echo["port"])
    s.sendall(request("/close", method="GET") + request("/never", method="GET"))
    f = s.makefile("rb")
    assert read_response(f)[2] == b"bye" and f.read() == b""


def test_large_response_to_a_slow_reader(echo):
    """32 MB does not fit the socket buffers: the rest leaves as the client reads, and other
    clients are served meanwhile."""
    size = 32 * 1024 * 1024
    s = connect(echo["port"])
    s.sendall(request(f"/big?{size}", method="GET"))
    time.sleep(0.3)
    other = connect(echo["port"])
    other.sendall(request("/meanwhile", method="GET"))
    assert read_response(other.makefile("rb"))[0] == 200
    code, _, body = read_response(s.makefile("rb"))
    assert code == 200 and body == bytes(range(256)) * (size // 256)


def test_client_resetting_while_its_answer_is_leaving(echo):
    """A client that resets its connection while 32 MB are still queued for it: the connection is
    dropped, the same worker serves on."""
    log_before = len(echo["log"].read_text())
    pids = set()
    for _ in range(3):
        s = connect(echo["port"])
        s.sendall(request("/big?33554432", method="GET"))
        time.sleep(0.2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
        s.close()
        time.sleep(0.2)
        other = connect(echo["port"])
        other.sendall(request("/after-reset", method="GET"))
        pids.add(json.loads(read_response(other.makefile("rb"))[2])["pid"])
    assert len(pids) == 1, "the worker should have survived the resets"
    assert "Traceback" not in echo["log"].read_text()[log_before:]


def test_idle_keep_alive_connection_is_closed(echo):
    s = connect(echo["port"])
    s.sendall(request("/x", method="GET"))
    f = s.makefile("rb")
    read_response(f)
    t0 = time.monotonic()
    assert f.read() == b""  # --keep-alive 2: closed by the server after ~2 s idle
    assert 1.5 < time.monotonic() - t0 < 5


def start_echo(*args: str) -> "tuple[subprocess.Popen, int]":
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-k", WORKER, "-w", "1", "-b", f"127.0.0.1:{port}",
                             *args, "tests.worker_app:app"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            connect(port).close()
            return proc, port
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)


def test_max_requests_recycles_the_worker_without_losing_requests():
    proc, port = start_echo("--max-requests", "5")
    try:
        pids = set()
        for i in range(12):
            s = connect(port)
            s.sendall(request(f"/r{i}", method="GET"))
            code, _, body = read_response(s.makefile("rb"))
            assert code == 200
            pids.add(json.loads(body)["pid"])
        assert len(pids) >= 2, "the worker should have been replaced after 5 requests"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_sigterm_lets_the_request_in_flight_finish():
    proc, port = start_echo()
    try:
        s = connect(port)
        s.sendall(request("/slow?1", method="GET"))
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGTERM)
        code, headers, _ = read_response(s.makefile("rb"))
        assert code == 200 and headers["connection"] == "close"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- with the fmnist app: batching


def multipart(blob: "bytes | list[bytes]", field: str = "image") -> "tuple[str, bytes]":
    b = "wb"
    body = b"".join((f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="x.png"\r\n'
                     "Content-Type: image/png\r\n\r\n").encode() + one + b"\r\n"
                    for one in (blob if isinstance(blob, list) else [blob]))
    return f"multipart/form-data; boundary={b}", body + f"--{b}--\r\n".encode()


def predict_request(blob: "bytes | list[bytes]", rid: str, query: str = "", field: str = "image") -> bytes:
    ctype, body = multipart(blob, field)
    return request(f"/predict{query}", body, headers=f"Content-Type: {ctype}\r\nX-Request-ID: {rid}\r\n")


def batch_sizes(url: str) -> "tuple[float, float]":
    """(model calls, images) from the inference batch-size histogram."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("fmnist_inference_batch_size_"))
    return float(values["fmnist_inference_batch_size_count"]), float(values["fmnist_inference_batch_size_sum"])


@pytest.fixture(scope="module")
def fmnist_server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fmnist"), workers=1) as srv:
        yield srv


def test_bodies_over_the_limit_get_the_api_413(fmnist_server):
    port, limit = fmnist_server["port"], 10 * 1024 * 1024
    big = os.urandom(limit + 1)
    ctype = "multipart/form-data; boundary=wb"
    # a client that waits for 100 Continue gets the 413 instead and never sends the body
    s = connect(port)
    s.sendall(request("/predict", b"", headers=f"Content-Type: {ctype}\r\nExpect: 100-continue\r\n")
              .replace(b"Content-Length: 0", f"Content-Length: {len(big)}".encode()))
    code, _, body = read_response(s.makefile("rb"))
    assert code == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    # one that sends it all at once still reads the answer (the server reads and discards the rest)
    s = connect(port)
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(s.sendall, request("/predict", big, headers=f"Content-Type: {ctype}\r\n"))
        code, headers, body = read_response(s.makefile("rb"))
        sending.result(timeout=10)
    assert code == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert headers["connection"] == "close"
    # chunked, so no length to refuse it by: refused by the worker once the limit is passed
    s = connect(port)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Type: "
              + ctype.encode() + b"\r\n\r\n" + b"".join(b"100000\r\n" + big[:0x100000] + b"\r\n" for _ in range(11)))
    code, _, body = read_response(s.makefile("rb"))
    assert code == 413 and json.loads(body)["error"]["message"].startswith("request body is over the 10,485,760-byte")
    # and the server serves on
    s = connect(port)
    s.sendall(predict_request(png(np.zeros((28, 28))), "after"))
    assert read_response(s.makefile("rb"))[0] == 200


@pytest.mark.realdata
def test_requests_that_arrive_together_share_model_calls(fmnist_server, real_data):
    images = [png(a) for a in real_data.test_images[:48]]
    srv = fmnist_server
    singles = []
    for i, blob in enumerate(images):  # one at a time: one model call each
        s = connect(srv["port"])
        s.sendall(predict_request(blob, f"s{i}"))
        singles.append(json.loads(read_response(s.makefile("rb"))[2]))
    calls0, images0 = batch_sizes(srv["url"])
    assert calls0 >= 48 and images0 >= 48
    # pipelined on 4 connections at once, a bad image and other routes in between
    socks = [connect(srv["port"]) for _ in range(4)]
    raw = [b"" for _ in socks]
    for i, blob in enumerate(images):
        raw[i % 4] += predict_request(blob, f"b{i}", "?top_k=2")
        if i == 20:
            raw[i % 4] += predict_request(b"not an image", "bad") + request("/health", method="GET")
            raw[i % 4] += predict_request(images[:3], "three", field="images")
    for s, data in zip(socks, raw):
        s.sendall(data)
    answers = {}
    for k, s in enumerate(socks):
        f = s.makefile("rb")
        for i in range(k, 48, 4):
            code, headers, body = read_response(f)
            answers[i] = (code, headers, json.loads(body))
            if i == 20:
                code, _, body = read_response(f)
                assert code == 400 and json.loads(body)["error"]["code"] == "bad_image"
                assert read_response(f)[0] == 200  # /health
                code, _, body = read_response(f)
                three = json.loads(body)["predictions"]
                assert code == 200 and [p["class_id"] for p in three] == [s["class_id"] for s in singles[:3]]
    calls, images_run = batch_sizes(srv["url"])
    for i, single in enumerate(singles):
        code, headers, got = answers[i]
        assert code == 200 and got["request_id"] == headers["x-request-id"] == f"b{i}"
        assert got["class_id"] == single["class_id"] and len(got["top_k"]) == 2
        assert got["confidence"] == pytest.approx(single["confidence"], abs=1e-5)
    assert images_run - images0 == 48 + 3
    assert calls - calls0 < 48, "requests that arrived together should share model calls"
    # the prediction log has one row per image, under its own request id and index
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(srv["log"].parent / "predictions.sqlite") as db:
            rows = db.execute("SELECT request_id, idx, class_id FROM predictions WHERE request_id LIKE 'b%' "
                              "OR request_id = 'three'").fetchall()
        if len(rows) == 51 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    logged = {(rid, idx): c for rid, idx, c in rows}
    with sqlite3.connect(srv["log"].parent / "predictions.sqlite") as db:  # a client's 4xx is no model failure
        assert db.execute("SELECT COUNT(*) FROM predictions WHERE request_id LIKE '%@error'").fetchone()[0] == 0
    assert logged == {**{(f"b{i}", 0): singles[i]["class_id"] for i in range(48)},
                      **{("three", k): singles[k]["class_id"] for k in range(3)}}
    acc = np.mean([answers[i][2]["class_id"] == t for i, t in enumerate(real_data.test_labels[:48])])
    assert acc >= 0.85


def test_gthread_and_sync_workers_still_serve(tmp_path):
    for extra in (("--worker", "gthread", "--threads", "2"), ("--worker", "sync")):
        with running_server(tmp_path, *extra, workers=1) as srv:
            s = connect(srv["port"])
            s.sendall(predict_request(png(np.zeros((28, 28))), "g"))
            code, _, body = read_response(s.makefile("rb"))
            assert code == 200 and json.loads(body)["request_id"] == "g"
            assert f"1 {extra[1]}" in srv["log"].read_text()


def test_tls_settings_are_refused_not_ignored(tmp_path):
    """The loop worker speaks plain HTTP: with Gunicorn's certfile set it must not start at all."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not read: the worker refuses before any TLS is set up\n")
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "-k", WORKER, "-w", "1", "-b", f"127.0.0.1:{free_port()}",
                           "--certfile", str(cert), "--keyfile", str(cert), "tests.worker_app:app"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "terminate TLS in front of it" in proc.stderr
