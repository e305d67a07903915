"""serving/http/http11.py without sockets: the reader's bounds, the RFC checks, environ and response bytes."""

import pytest

from fmnist.serving.http import http11

LIMITS = http11.Limits(body=1000, pipeline=4, spool=100)


def _reader(data: bytes, limits=LIMITS, pieces: int = 1) -> http11.RequestReader:
    r = http11.RequestReader(limits)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        r.feed(data[i:i + step])
    return r


def test_a_request_fed_byte_by_byte_is_the_same_request():
    raw = b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"
    for pieces in (1, 7, len(raw)):
        r = _reader(raw, pieces=pieces)
        assert r.error is None and len(r.ready) == 1
        req = r.ready[0]
        env = http11.environ({}, req, ("1.2.3.4", 5))
        assert (env["REQUEST_METHOD"], env["PATH_INFO"], env["QUERY_STRING"]) == ("POST", "/p", "q=1")
        assert env["HTTP_X_A"] == "b" and env["wsgi.input"].read() == b"hello" and env["REMOTE_ADDR"] == "1.2.3.4"


def test_a_never_ending_field_is_refused_after_a_few_kb():
    r = http11.RequestReader(http11.Limits())
    r.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: ")
    fed = 0
    while r.error is None and fed < 1_000_000:
        r.feed(b"a" * 1000)
        fed += 1000
    assert r.error is not None and r.error.status == 431
    assert fed < 20_000


def test_the_whole_head_is_bounded_even_with_small_fields():
    lim = http11.Limits(fields=10_000, head_bytes=8192)
    r = _reader(b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-A: b\r\n" * 2000, limits=lim)
    assert r.error is not None and "head" in r.error.message


def test_pipelined_requests_pause_the_reader_at_the_limit():
    """The reader stops between slices once `pipeline` requests wait (so at most one slice's worth more:
    httptools cannot stop in the middle of a feed), keeps the rest unparsed, and goes on when asked."""
    one = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    r = _reader(one * 500)
    assert LIMITS.pipeline <= len(r.ready) <= 4096 // len(one) + LIMITS.pipeline and r.paused
    total = 0
    while r.ready or r.paused:
        total += len(r.ready)
        r.ready.clear()
        r.resume()
    assert total == 500 and r.error is None


def test_a_large_body_is_spooled_to_a_file_and_a_too_large_one_refused():
    r = _reader(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 500\r\n\r\n" + b"x" * 500, pieces=9)
    body = r.ready[0].body
    assert body.file is not None and body.stream().read() == b"x" * 500
    r = _reader(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n")
    assert r.ready[0].too_large and r.closing
    chunk = b"100\r\n" + b"x" * 256 + b"\r\n"
    r = _reader(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 5)
    assert r.error is not None and r.error.status == 413


def test_trailers_are_dropped_and_counted():
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
           b"X-Request-ID: evil\r\n\r\n")
    r = _reader(raw)
    req = r.ready[0]
    assert req.trailers == 1 and all(n.lower() != b"x-request-id" for n, _ in req.headers)
    assert "HTTP_X_REQUEST_ID" not in http11.environ({}, req, None)


@pytest.mark.parametrize("raw, message", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host"),
    (b"GET / HTTP/1.1\r\n\r\n", "needs a Host"),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "invalid Host"),
    (b"GET s://]ufd/: HTTP/1.1\r\nHost: a\r\n\r\n", "invalid request-target"),
    (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", "asterisk"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n", "Expect"),
])
def test_rfc_checks_refuse_with_a_reason(raw, message):
    r = _reader(raw)
    assert r.error is not None and message in r.error.message and not r.ready
    assert r.error.response().startswith(("HTTP/1.1 " + r.error.status_line).encode())


def test_expect_100_continue_is_owed_until_the_body_arrives():
    r = _reader(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert r.continue_owed is not None
    r.feed(b"ok")
    assert r.continue_owed is None and len(r.ready) == 1


def test_response_bytes():
    out = http11.response_bytes("200 OK", [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"),
                                           ("Connection", "keep-alive")], b"hi", keep_alive=False, date="D")
    assert out == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nDate: D\r\n"
                   b"Connection: close\r\n\r\nhi")
    head = http11.response_bytes("200 OK", [("Content-Length", "2")], b"hi", keep_alive=True, version="1.0",
                                 head=True)
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    assert http11.response_bytes("204 No Content", [], b"", keep_alive=True) == b"HTTP/1.1 204 No Content\r\n\r\n"
