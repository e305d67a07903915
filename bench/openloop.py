"""An open-loop HTTP/1.1 load generator: requests start at a fixed arrival rate, whether or not the
server keeps up (wrk and hey are closed-loop: a slow server slows them down, and its queue never shows).

    python bench/openloop.py --port 5000 --rate 4000 --duration 10 [--timeout 1] [--cpu 1]

Each request is sent at its scheduled time on an idle keep-alive connection, or on a new one when every
open connection is waiting (up to --max-conns; beyond, the arrival is counted as `unsent`). Latency is
measured from the scheduled time (no coordinated omission). A request without an answer after --timeout
seconds is counted as `timeout` and its connection closed (as a client that gives up). Prints, as JSON:
sent, answered by status, timeouts, errors (reset, refused), p50/p99 of each status class, goodput (2xx
per second) and how late the generator itself started requests (it must keep up for the figures to mean
anything). Reads only the status line, Content-Length and Connection of each answer: it is a benchmark's
client for our own server's answers, not a general HTTP client.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import time
from collections import deque

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Conn:
    __slots__ = ("sock", "buf", "out", "started", "connected", "seq")

    def __init__(self, sock):
        self.sock, self.buf, self.out, self.started, self.connected, self.seq = sock, b"", b"", 0.0, False, -1


def predict_request(body: bytes, boundary: str, host: str, extra: "dict | None" = None) -> bytes:
    head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n")
    for name, value in (extra or {}).items():
        head += f"{name}: {value}\r\n"
    return head.encode() + b"\r\n" + body


def multipart_png(png: bytes, boundary: str = "openloopboundary") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()


def _parse(buf: bytes) -> "tuple[int, int, bool] | None":
    """(status, bytes of the whole response, close) once complete; None while it is not."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    total = end + 4 + length
    return (status, total, close) if len(buf) >= total else None


def run(host: str, port: int, request: bytes, rate: float, duration: float, timeout: float = 1.0,
        max_conns: int = 4096) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max_conns + 256) if hard != resource.RLIM_INFINITY else max_conns + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sel = selectors.DefaultSelector()
    idle: list = []
    busy: dict = {}  # fd -> conn (a request outstanding)
    statuses: dict = {}
    latencies: dict = {}  # status class -> [seconds]
    counts = {"sent": 0, "unsent": 0, "timeout": 0, "error": 0, "opened": 0}
    late = []
    outstanding: deque = deque()  # (seq, conn) in the order sent: the oldest times out first
    interval = 1.0 / rate
    t0 = time.monotonic() + 0.05
    n_total = int(rate * duration)
    i = 0

    def close(conn):
        busy.pop(conn.sock.fileno(), None)
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def done(conn, status, now):
        statuses[status] = statuses.get(status, 0) + 1
        latencies.setdefault(f"{status // 100}xx", []).append(now - conn.started)

    while i < n_total or busy:
        now = time.monotonic()
        while i < n_total and t0 + i * interval <= now:
            scheduled = t0 + i * interval
            i += 1
            if idle:
                conn = idle.pop()
            elif len(busy) < max_conns:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = s.connect_ex((host, port))
                if err not in (0, errno.EINPROGRESS):
                    s.close()
                    counts["error"] += 1
                    continue
                conn = _Conn(s)
                counts["opened"] += 1
                sel.register(s, _READ | _WRITE, conn)
            else:
                counts["unsent"] += 1
                continue
            conn.started, conn.buf, conn.out, conn.seq = scheduled, b"", request, i
            busy[conn.sock.fileno()] = conn
            outstanding.append((i, conn))
            counts["sent"] += 1
            late.append(now - scheduled)
            if conn.connected:
                _send(conn, sel)
        wait = max(0.0, min(t0 + i * interval - now, 0.01)) if i < n_total else 0.01
        for key, mask in sel.select(wait):
            conn = key.data
            if mask & _WRITE:
                conn.connected = True
                _send(conn, sel)
            if mask & _READ:
                try:
                    data = conn.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = None
                now = time.monotonic()
                if not data:
                    if conn.sock.fileno() in busy:
                        counts["error"] += 1
                        conn.seq = -1
                    close(conn)
                    if conn in idle:
                        idle.remove(conn)
                    continue
                conn.buf += data
                parsed = _parse(conn.buf)
                if parsed is None:
                    continue
                status, _, closing = parsed
                done(conn, status, now)
                busy.pop(conn.sock.fileno(), None)
                conn.seq = -1
                if closing:
                    close(conn)
                else:
                    idle.append(conn)
        now = time.monotonic()
        while outstanding and (outstanding[0][1].seq != outstanding[0][0] or now - outstanding[0][1].started > timeout):
            seq, conn = outstanding.popleft()
            if conn.seq == seq:  # still waiting for its answer: the client gives up
                counts["timeout"] += 1
                conn.seq = -1
                close(conn)
    for conn in idle:
        conn.sock.close()
    return summary(statuses, latencies, counts, late, duration, rate)


def _send(conn, sel) -> None:
    if not conn.out:
        sel.modify(conn.sock, _READ, conn)
        return
    try:
        n = conn.sock.send(conn.out)
    except (BlockingIOError, InterruptedError):
        n = 0
    except OSError:
        return  # the read side sees the error
    conn.out = conn.out[n:]
    sel.modify(conn.sock, _READ | (_WRITE if conn.out else 0), conn)


def _pct(values: list, q: float) -> float:
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def summary(statuses, latencies, counts, late, duration, rate) -> dict:
    answered = sum(statuses.values())
    ok = statuses.get(200, 0)
    shed = sum(n for s, n in statuses.items() if s in (429, 503))
    offered = counts["sent"] + counts["unsent"]
    return {
        "rate": rate, "duration_s": duration, "offered": offered, **counts, "answered": answered,
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "goodput_rps": ok / duration, "ok_share": ok / offered if offered else 0.0,
        "shed_share": shed / offered if offered else 0.0,
        "failed_share": (offered - ok - shed) / offered if offered else 0.0,
        "latency_ms": {cls: {"p50": _pct(v, 0.5), "p99": _pct(v, 0.99), "n": len(v)} for cls, v in latencies.items()},
        "generator_late_ms": {"p50": _pct(late, 0.5), "p99": _pct(late, 0.99)},
    }


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import serve_bench as sb

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second, arriving at a fixed rate")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--timeout", type=float, default=1.0, help="seconds a client waits before it gives up")
    p.add_argument("--max-conns", type=int, default=4096)
    p.add_argument("--cpu", type=int, default=None, help="run on this CPU only (keep the generator off the server's)")
    p.add_argument("--header", action="append", default=[], help="NAME:VALUE added to every request")
    a = p.parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    boundary = "openloopboundary"
    extra = dict(h.split(":", 1) for h in a.header)
    req = predict_request(multipart_png(sb.test_png(), boundary), boundary, f"{a.host}:{a.port}", extra)
    print(json.dumps(run(a.host, a.port, req, a.rate, a.duration, a.timeout, a.max_conns), indent=1))


if __name__ == "__main__":
    main()
