"""Careless and hostile clients against a real `fmnist serve` (one worker; loop and gthread): the worker
survives (same PID), its memory and open files come back near where they were, and /predict from
another client keeps being answered. Bounded in count and time; loopback only."""

import json
import socket
import threading
import time
import urllib.request

import pytest

from tests.httpprobe import exchange, fd_targets, rss_kb, workers

pytestmark = pytest.mark.integration  # starts real processes

PIXELS = json.dumps({"pixels": [[0] * 28] * 28}).encode()


@pytest.fixture(scope="module")
def server(kind_server):
    kind_server["worker"] = workers(kind_server["proc"].pid)[0]
    for _ in range(20):  # warm: first requests allocate what every later one reuses
        _predict_seconds(kind_server["url"])
    return kind_server


def _predict_seconds(url: str, timeout: float = 10) -> float:
    t0 = time.perf_counter()
    req = urllib.request.Request(url + "/predict", data=PIXELS, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.status == 200
        r.read()
    return time.perf_counter() - t0


def _alive(srv) -> None:
    assert workers(srv["proc"].pid) == [srv["worker"]], "the worker was killed and replaced"


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _send_quietly(s: socket.socket, data: bytes) -> bool:
    try:
        s.sendall(data)
        return True
    except OSError:  # the server closed: what a refusing server does
        return False


def test_a_header_that_never_ends_gets_431_after_a_few_kb(server):
    rss0 = rss_kb(server["worker"])
    s = _connect(server["port"])
    sent = len(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Long: ")
    s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Long: ")
    piece = b"a" * 65536  # after its 431 the server reads and discards (lingering close) until we stop
    while sent < 16 * 1024 * 1024 and _send_quietly(s, piece):
        sent += len(piece)
    s.settimeout(5)
    try:
        answer = s.recv(4096)
    except OSError:
        answer = b""
    s.close()
    assert answer[:12] in (b"HTTP/1.1 431", b"HTTP/1.1 400"), answer[:200]
    assert rss_kb(server["worker"]) - rss0 < 4096
    _alive(server)


def _held(pid: int) -> dict:
    """The worker's sockets and spooled (deleted temporary) files: what a client's connection can hold.
    The prediction log's SQLite files are left out: the worker opens them lazily, whenever it first writes."""
    return {fd: target for fd, target in fd_targets(pid).items() if "predictions.sqlite" not in target}


def test_unfinished_large_bodies_are_not_held_in_memory(server):
    if server["kind"] == "gthread":
        pytest.xfail("gthread's threads block reading the unfinished bodies; Flask buffers each in memory")
    rss0, before = rss_kb(server["worker"]), _held(server["worker"])
    socks = []
    for _ in range(20):
        s = _connect(server["port"])
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 9000000\r\n\r\n" + b"x" * 4_000_000)
        socks.append(s)
    time.sleep(1.0)
    grown = rss_kb(server["worker"]) - rss0
    assert _predict_seconds(server["url"]) < 1.0
    for s in socks:
        s.close()
    deadline = time.monotonic() + 10  # the worker closes each connection (and its spooled body) as it sees it go
    while len(_held(server["worker"])) > len(before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert grown < 8192, f"worker RSS grew {grown} kB holding 20 x 4 MB of unfinished bodies"
    after = _held(server["worker"])
    assert len(after) <= len(before), {k: v for k, v in after.items() if before.get(k) != v}
    _alive(server)


def test_a_pipelined_flood_is_answered_and_others_are_served_meanwhile(server):
    flood = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 1000
    done = {}

    def run():
        done["out"] = exchange(server["port"], flood, timeout=20)

    t = threading.Thread(target=run)
    t.start()
    worst = max(_predict_seconds(server["url"]) for _ in range(20))
    t.join(timeout=120)
    statuses = [r["status"] for r in done["out"]["responses"]]
    assert statuses and set(statuses) == {200}
    assert len(statuses) == 1000, len(statuses)
    assert worst < 2.0, f"a /predict took {worst:.2f} s during the flood"
    _alive(server)


def test_slowloris_does_not_starve_predict_and_is_timed_out(server):
    if server["kind"] == "gthread":
        pytest.xfail("each gthread thread blocks on a trickling client: 4 of them starve the worker")
    socks = []
    for _ in range(200):
        s = _connect(server["port"])
        s.sendall(b"GET /health HTTP/1.1\r\n")
        socks.append(s)
    worst = 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 13:  # past the 10 s header deadline
        for s in socks:
            _send_quietly(s, b"X")
        worst = max(worst, _predict_seconds(server["url"]))
        time.sleep(1.0)
    timed_out = 0
    for s in socks:
        s.settimeout(2)
        try:
            timed_out += s.recv(64).startswith(b"HTTP/1.1 408")
        except OSError:
            pass
        s.close()
    assert worst < 1.0, f"a /predict took {worst:.2f} s beside 200 trickling connections"
    assert timed_out == len(socks)
    _alive(server)


def test_disconnects_mid_request_and_mid_response_leak_nothing(server):
    held0 = len(_held(server["worker"]))
    for i in range(200):
        s = _connect(server["port"])
        if i % 2:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 5000\r\n\r\n" + PIXELS[:1000])
        else:  # ask for a large answer and reset at once
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    deadline = time.monotonic() + 10
    while len(_held(server["worker"])) > held0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_held(server["worker"])) <= held0
    assert _predict_seconds(server["url"]) < 1.0
    _alive(server)


def test_slow_side_routes_do_not_stall_predict(server):
    """/feedback for an unknown request id waits up to 1 s for the prediction log: on the loop worker
    it runs in the worker's thread pool, never on the loop."""
    stop = threading.Event()
    body = b'{"request_id": "nope-1", "label": 1}'
    slow = []

    def feedback():
        while not stop.is_set():
            t0 = time.perf_counter()
            out = exchange(server["port"], b"POST /feedback HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body), timeout=5)
            assert [r["status"] for r in out["responses"]] == [404]
            slow.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=feedback) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        times = sorted(_predict_seconds(server["url"]) for _ in range(50))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert slow and min(slow) > 0.5  # the side traffic was really slow
    assert times[-1] < 0.3, f"slowest /predict {times[-1]:.3f} s beside slow /feedback"
    _alive(server)
