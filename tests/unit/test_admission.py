"""Overload and deadlines on the loop worker (serving/http/admission.py): refused when a request could no longer be
answered within its deadline (its client's, else the default), never before, never started late."""
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
    assert Admission(0, 256).verdict(req, req.ready_at + 100) is None  # 0: no default deadline
    assert adm.verdict(req, req.ready_at + 100, backlog=False) is None  # late, but nothing waits behind it
    # a client's own deadline replaces the default one, longer or shorter
    patient = _ready(b"POST /predict HTTP/1.1\r\nHost: t\r\nX-Request-Timeout-Ms: 2000\r\nContent-Length: 0\r\n\r\n")
    assert adm.verdict(patient.ready[0], patient.ready[0].ready_at + 1.5) is None
    # the default deadline refuses what could no longer be answered in time: one request's cost before it
    assert adm.verdict(req, req.ready_at + 0.0496)[0].startswith("503")
    assert adm.verdict(req, req.ready_at + 0.045) is None
    # a health probe is never refused by the default deadline
    probes = Admission(0.05, 256, probes=frozenset({"/live"}))
    live = _ready(b"GET /live HTTP/1.1\r\nHost: t\r\n\r\n").ready[0]
    assert probes.verdict(live, live.ready_at + 10) is None
    assert probes.verdict(req, req.ready_at + 10)[0].startswith("503")
