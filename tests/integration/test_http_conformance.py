"""HTTP/1.1 conformance and abuse, against a real `fmnist serve` on the loop worker and on gthread.

Cases written from RFC 9112/9110 and from reading public parser corpora (Gunicorn's
tests/requests/{valid,invalid}, llhttp's test suite); none copied. A refused request gets a 4xx and
the connection closes after it; a smuggling probe is caught by counting the answers on the
connection (one request must give one answer). The abuse cases check the worker's PID (not killed
by Gunicorn's timeout), RSS and open files before and after. One worker per server, loopback only.
"""

import json
import socket

import pytest

from tests.httpprobe import exchange

pytestmark = pytest.mark.integration  # starts real processes

PIXELS = json.dumps({"pixels": [[0] * 28] * 28}).encode()


@pytest.fixture(scope="module")
def server(kind_server):
    return kind_server


def _post(path: str, body: bytes, headers: str = "", version: str = "1.1") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# --- well-formed requests that must be served (status from the app, not a parser refusal)
VALID = {
    "origin-form": (b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    "absolute-form": (b"GET http://t/health HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    "host with port": (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", 200),
    "IPv6 host": (b"GET /health HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200),
    "HTTP/1.0 without Host": (b"GET /health HTTP/1.0\r\n\r\n", 200),
    "percent-encoded path": (b"GET /he%61lth HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    "empty header value": (b"GET /health HTTP/1.1\r\nHost: t\r\nX-Empty:\r\n\r\n", 200),
    "spaces around a value": (b"GET /health HTTP/1.1\r\nHost: t\r\nX-A:   b   \r\n\r\n", 200),
    "header names any case": (b"GET /health HTTP/1.1\r\nhOsT: t\r\n\r\n", 200),
    "query string": (b"GET /health?x=1&y HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    "JSON predict": (_post("/predict", PIXELS), 200),
    "chunked body": (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(PIXELS) + PIXELS + b"\r\n0\r\n\r\n", 200),
    "chunk extension": (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + b"%x;name=val\r\n" % len(PIXELS) + PIXELS
                        + b"\r\n0\r\n\r\n", 200),
    "unknown route": (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    "unknown method": (b"PATCH /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 405),
}

# --- requests a server MUST (or, for safety, should) refuse: (raw, allowed statuses)
INVALID = {
    "two Host fields": (b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    "no Host in HTTP/1.1": (b"GET /health HTTP/1.1\r\n\r\n", {400}),
    "Host with a space": (b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", {400}),
    "Host with a slash": (b"GET /health HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}),
    "target s://]ufd/:": (b"GET s://]ufd/: HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "target with no slash": (b"GET health HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "asterisk-form on GET": (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "space in the target": (b"GET /he alth HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "bad version": (b"GET /health HTTP/1.x\r\nHost: t\r\n\r\n", {400}),
    "lower-case protocol": (b"GET /health http/1.1\r\nHost: t\r\n\r\n", {400}),
    "bad method token": (b"G(T /health HTTP/1.1\r\nHost: t\r\n\r\n", {400}),
    "space before colon": (b"GET /health HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n", {400}),
    "space in a field name": (b"GET /health HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n", {400}),
    "field with no colon": (b"GET /health HTTP/1.1\r\nHost: t\r\nXA\r\n\r\n", {400}),
    "obs-fold": (b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n", {400}),
    "NUL in a value": (b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: b\x00c\r\n\r\n", {400}),
    "bare CR in a value": (b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: b\rc\r\n\r\n", {400}),
    "bare LF line ends": (b"GET /health HTTP/1.1\nHost: t\n\n", {400}),
    "two Content-Lengths": (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                            {400}),
    "signed Content-Length": (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: +2\r\n\r\nab", {400}),
    "negative Content-Length": (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: -2\r\n\r\nab", {400}),
    "Content-Length list": (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\nab", {400}),
    "CL.TE": (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nG", {400}),
    "TE.CL": (b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
              b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n", {400}),
    "TE.TE obfuscated": (b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
                         {400, 501}),
    "TE not ending in chunked": (b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                                 b"0\r\n\r\n", {400, 501}),
    "TE in HTTP/1.0": (b"POST /predict HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    "bad chunk size": (b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
                       {400}),
    "chunk size overflow": (b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"fffffffffffffffff0\r\n", {400, 413}),
    "request line over the limit": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", {400, 414}),
    "a field over the limit": (b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", {400, 431}),
    "too many fields": (b"GET /health HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120))
                        + b"\r\n", {400, 431}),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_request_is_served(server, name):
    raw, status = VALID[name]
    out = exchange(server["port"], raw, timeout=2)
    assert [r["status"] for r in out["responses"]] == [status], out["raw"][:300]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_request_is_refused_and_closed(server, name):
    raw, allowed = INVALID[name]
    if server["kind"] == "gthread" and name in GTHREAD_DIFFERS:
        pytest.xfail(GTHREAD_DIFFERS[name])
    out = exchange(server["port"], raw + b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n", timeout=3)
    statuses = [r["status"] for r in out["responses"]]
    assert statuses and statuses[0] in allowed, out["raw"][:300]
    assert len(statuses) == 1 and out["closed"], f"desync: {statuses} from one refused request + one GET"


# Gunicorn's own parser (gthread) where it is more lenient than RFC 9112 requires; the loop worker is not.
GTHREAD_DIFFERS = {
    "no Host in HTTP/1.1": "Gunicorn serves an HTTP/1.1 request without Host",
    "Host with a space": "Gunicorn does not check the Host value",
    "Host with a slash": "Gunicorn does not check the Host value",
    "bad chunk size": "Gunicorn answers 400 but keeps reading: the bytes after the bad chunk become a request",
    "chunk size overflow": "Gunicorn answers 400 but keeps the connection open",
}


def test_pipelined_requests_are_answered_in_order(server):
    raw = b"".join(b"GET /health?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(3)) + _post("/predict", PIXELS)
    out = exchange(server["port"], raw, timeout=2)
    assert [r["status"] for r in out["responses"]] == [200, 200, 200, 200]
    assert "label" in json.loads(out["responses"][3]["body"])


def test_trailer_fields_are_not_merged_into_the_headers(server):
    raw = (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"%x\r\n" % len(PIXELS) + PIXELS + b"\r\n0\r\nX-Request-ID: smuggled-from-trailer\r\n\r\n")
    out = exchange(server["port"], raw, timeout=2)
    assert [r["status"] for r in out["responses"]] == [200]
    assert json.loads(out["responses"][0]["body"])["request_id"] != "smuggled-from-trailer"


def test_100_continue_waits_for_the_answers_before_it(server):
    """A pipelined request with Expect: 100-continue behind one not answered yet: the first bytes out are
    the first request's answer, never a 100 that would belong to the second."""
    s = socket.create_connection(("127.0.0.1", server["port"]), timeout=5)
    try:
        s.sendall(_post("/feedback", b'{"request_id": "nope-100", "label": 1}') +
                  f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                  f"Content-Length: {len(PIXELS)}\r\n\r\n".encode())
        first = s.recv(12)
        assert first.startswith(b"HTTP/1.1 404"), first
        s.settimeout(5)
        rest = b""
        while b"100 Continue" not in rest:
            rest += s.recv(65536)
        s.sendall(PIXELS)
        while rest.count(b"HTTP/1.1 200") < 1:
            rest += s.recv(65536)
    finally:
        s.close()


def test_other_expectations_get_417(server):
    if server["kind"] == "gthread":
        pytest.xfail("Gunicorn ignores an Expect value it does not know")
    out = exchange(server["port"], _post("/predict", PIXELS, "Expect: teapot\r\n"), timeout=2)
    assert [r["status"] for r in out["responses"]] == [417]
