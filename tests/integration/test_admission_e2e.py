"""Overload and deadlines on the loop worker (serving/http/admission.py): refused when a request could no longer be
answered within its deadline, never started late."""
import socket
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.conftest import running_server
from tests.httpprobe import metric, predict_request, read_answers, read_responses
from tests.images import encode, png


def _total(url: str, name: str) -> float:
    """A metric summed over all its series."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


@pytest.mark.integration
def test_deadlines_and_gone_clients_cost_no_model_time(tmp_path, real_data):
    """Through a real Gunicorn loop worker: a request whose deadline passed while its body arrived is answered
    504 without being decoded or run; one waiting for the heavy pool whose client left is dropped unseen;
    one whose deadline passed while it waited there gets a 504; everything else is answered as usual."""
    # a 3000x2000 PNG gradient: ~22 KB (it arrives in one read) and ~65 ms of the heavy thread (no reduced decode)
    ramp = np.linspace(0, 255, 3000, dtype=np.float32)[None, :] + np.zeros((2000, 1), np.float32)
    shot = encode(Image.fromarray(np.stack([ramp, ramp[:, ::-1], ramp * 0.5], -1).astype(np.uint8)), "PNG")
    small = png(real_data.test_images[1])
    env = {"FMNIST_HEAVY_THREADS": "1", "FMNIST_HEAVY_QUEUE": "16"}
    with running_server(tmp_path, "--worker", "loop", workers=1, extra_env=env) as srv:
        port, url = srv["port"], srv["url"]
        images = lambda: _total(url, "fmnist_predictions_total")  # noqa: E731
        # 1. on the loop: the head says 100 ms, the body comes 300 ms later
        req = predict_request(port, [("x.png", small)], "late")
        head, body = req.split(b"\r\n\r\n", 1)
        before = images()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(head.replace(b"\r\nContent-Type", b"\r\nX-Request-Timeout-Ms: 100\r\nContent-Type") + b"\r\n\r\n")
            time.sleep(0.3)
            s.sendall(body)
            s.sendall(predict_request(port, [("x.png", small)], "on-time"))  # the next one on that connection is served
            (st1, _, late), (st2, _, ok) = read_responses(s, 2)
        assert st1 == 504 and late["error"]["code"] == "deadline_exceeded", late
        assert st2 == 200 and ok["request_id"] == "on-time"
        assert images() == before + 1  # only the second one reached the model
        assert metric(url, "fmnist_deadline_expired_total", where="loop") == 1
        # 2. in the heavy pool: 4 photos keep its one thread busy; behind them one client leaves at once and
        # another says it waits 50 ms
        busy = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(4)]
        for i, s in enumerate(busy):
            s.sendall(predict_request(port, [("p.jpg", shot)], f"photo-{i}"))
        time.sleep(0.05)
        gone = socket.create_connection(("127.0.0.1", port), timeout=10)
        gone.sendall(predict_request(port, [("p.jpg", shot)], "gone"))
        gone.close()
        impatient = socket.create_connection(("127.0.0.1", port), timeout=30)
        impatient.sendall(predict_request(port, [("p.jpg", shot)], "impatient").replace(
            b"\r\nContent-Type", b"\r\nX-Request-Timeout-Ms: 50\r\nContent-Type", 1))
        assert [st for s in busy for st, _, _ in read_responses(s, 1)] == [200] * 4
        st, _, answer = read_responses(impatient, 1)[0]
        assert st == 504 and answer["error"]["code"] == "deadline_exceeded"
        for s in (*busy, impatient):
            s.close()
        assert _total(url, "fmnist_pictures_total") == 5  # the small one on the loop, 4 photos; not the other 2
        assert metric(url, "fmnist_shed_total", reason="client_gone") == 1
        assert metric(url, "fmnist_deadline_expired_total", where="heavy_pool") == 1
        assert metric(url, "fmnist_http_requests_total", method="POST", route="/predict", status="504") == 2


@pytest.mark.integration
def test_a_worker_behind_refuses_what_would_miss_the_default_deadline(tmp_path, real_data):
    """320 requests arrive at once on 10 connections (~100 ms of work); with a default deadline of 20 ms the worker
    starts what it can answer within 20 ms (one turn: 25 ms of work at its measured cost) and answers the rest
    503 + Retry-After without starting them; every request gets an answer, in order."""
    small = png(real_data.test_images[2])
    with running_server(tmp_path, "--worker", "loop", workers=1, extra_env={"FMNIST_DEFAULT_DEADLINE_MS": "20"}) as srv:
        with socket.create_connection(("127.0.0.1", srv["port"]), timeout=30) as warm:  # the worker learns its cost
            for i in range(4):
                warm.sendall(b"".join(predict_request(srv["port"], [("x.png", small)], f"w{i}-{k}") for k in range(16)))
                read_responses(warm, 16)
        shed_before = metric(srv["url"], "fmnist_shed_total", reason="queue")
        payloads = [b"".join(predict_request(srv["port"], [("x.png", small)], f"r{c}-{i}") for i in range(32)) for c in range(10)]
        socks = [socket.create_connection(("127.0.0.1", srv["port"]), timeout=30) for _ in range(10)]
        for s, payload in zip(socks, payloads):  # made beforehand: sent within a millisecond or two
            s.sendall(payload)
        statuses = []
        for c, s in enumerate(socks):
            answers = read_responses(s, 32)
            for i, (st, headers, body) in enumerate(answers):
                statuses.append(st)
                if st == 200:
                    assert body["request_id"] == f"r{c}-{i}"
                else:
                    assert st == 503 and headers["retry-after"] == "1" and body["error"]["code"] == "server_busy"
            s.close()
        assert statuses.count(200) >= 1 and statuses.count(503) >= 1 and len(statuses) == 320, statuses
        assert metric(srv["url"], "fmnist_shed_total", reason="queue") - shed_before == statuses.count(503)


@pytest.mark.integration
def test_a_flood_of_scrapes_costs_a_bounded_number_of_renders(tmp_path):
    """200 GET /metrics pipelined in one write, with the default metrics_reuse: all answered, and the merged
    text rendered about once per reuse window (at least 50 ms), not 200 times."""
    with running_server(tmp_path, "--worker", "loop", workers=2, extra_env={"FMNIST_METRICS_REUSE": "-1"}) as srv:
        before = _total(srv["url"], "fmnist_metrics_renders_total")
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv["port"]), timeout=60) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 200)
            answers = read_answers(s, 200)
        assert all(a["status"] == 200 and b"fmnist_metrics_renders_total" in a["body"] for a in answers)
        took = time.monotonic() - t0
        time.sleep(1.1)  # past the longest reuse window: the next scrape renders again
        renders = _total(srv["url"], "fmnist_metrics_renders_total") - before
        assert 1 <= renders <= 2 + took / 0.05 and renders < 100, (renders, took)
