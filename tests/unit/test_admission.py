"""Overload and deadlines on the loop worker (serving/http/admission.py): refused at once, never started late."""
from fmnist.serving.http import http11
from fmnist.serving.http.admission import Admission


def _ready(raw: bytes) -> "http11.RequestReader":
    reader = http11.RequestReader(http11.Limits())
    reader.feed(raw)
    return reader


def test_timeout_field_is_read_and_bad_values_are_refused_with_a_reason():
    reader = _ready(b"GET /model HTTP/1.1\r\nHost: t\r\nX-Request-Timeout-Ms: 250\r\n\r\n")
    assert reader.ready[0].timeout == 0.25 and reader.ready[0].ready_at >= reader.ready[0].started
    assert _ready(b"GET / HTTP/1.1\r\nHost: t\r\nX-Envoy-Expected-Rq-Timeout-Ms: 1500\r\n\r\n").ready[0].timeout == 1.5
    for bad in (b"0", b"-5", b"1.5", b"soon", b"99999999999", b""):
        reader = _ready(b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-Timeout-Ms: " + bad + b"\r\n\r\n")
        assert not reader.ready and reader.error is not None
        assert reader.error.status == 400 and reader.error.code == "bad_timeout"
        assert "whole number of milliseconds" in reader.error.message


def test_admission_refuses_late_and_expired_requests_and_sizes_turns():
    counted = []
    adm = Admission(0.05, 256, lambda *a: counted.append(a))
    req = _ready(b"POST /predict?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").ready[0]
    assert adm.verdict(req, req.ready_at + 0.01) is None
    status, headers, body = adm.verdict(req, req.ready_at + 0.06)
    assert status.startswith("503") and ("Retry-After", "1") in headers and b"server_busy" in body
    assert counted == [("queue", "loop", "POST", "/predict")]
    timed = _ready(b"POST /predict HTTP/1.1\r\nHost: t\r\nX-Request-Timeout-Ms: 100\r\nContent-Length: 0\r\n\r\n").ready[0]
    status, _, body = adm.verdict(timed, timed.started + 0.101)
    assert status.startswith("504") and b"deadline_exceeded" in body and b"100 ms" in body
    assert counted[-1] == ("deadline", "loop", "POST", "/predict")
    # a turn starts what fits in its time budget at the measured cost; a deadline closer than one request's cost is
    # refused before it is started
    assert adm.turn_requests() == 256
    adm.measured(100, 0.05)  # 0.5 ms a request
    assert adm.turn_requests() == 50
    assert adm.verdict(timed, timed.started + 0.0996)[0].startswith("504")
    assert adm.verdict(timed, timed.started + 0.04) is None
    assert adm.verdict(timed, timed.started + 0.04, batch=150)[0].startswith("504")  # 75 ms of work: too late
    assert Admission(0, 256).verdict(req, req.ready_at + 100) is None  # 0: never shed by waiting
    assert adm.verdict(req, req.ready_at + 100, backlog=False) is None  # late, but nothing waits behind it
