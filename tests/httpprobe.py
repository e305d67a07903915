"""Raw-socket helpers for the conformance and abuse suite: send bytes, count and parse the answers,
and read a Gunicorn worker's PID, RSS and open files from /proc."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import httptools


class _Responses:
    def __init__(self):
        self.items: list = []
        self.parser = httptools.HttpResponseParser(self)
        self.cur: "dict | None" = None

    def on_message_begin(self):
        self.cur = {"headers": {}, "body": b""}

    def on_header(self, name, value):
        self.cur["headers"][name.decode().lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        self.cur["status"] = self.parser.get_status_code()

    def on_body(self, body):
        self.cur["body"] += body

    def on_message_complete(self):
        self.items.append(self.cur)


def exchange(port: int, raw: "bytes | list[bytes]", timeout: float = 3.0, pause: float = 0.0) -> dict:
    """Send `raw` (or its pieces, `pause` seconds apart), read until the server closes or goes quiet
    for `timeout` s -> {"responses": [{status, headers, body}], "closed": bool, "first": first bytes}."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    data = b""
    closed = False
    try:
        for piece in ([raw] if isinstance(raw, bytes) else raw):
            try:
                s.sendall(piece)
            except OSError:
                break
            time.sleep(pause)
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        s.close()
    parsed = _Responses()
    if data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        first = data[:25]
    else:
        first = data[:40]
    try:
        parsed.parser.feed_data(data.replace(b"HTTP/1.1 100 Continue\r\n\r\n", b""))
    except httptools.HttpParserError:
        pass
    return {"responses": parsed.items, "closed": closed, "first": first, "raw": data}


def read_answers(sock: socket.socket, n: int) -> list:
    """Exactly n responses from a connection (pipelined answers included) -> [{status, headers, body}]."""
    parsed = _Responses()
    while len(parsed.items) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(parsed.items)} of {n} responses")
        parsed.parser.feed_data(chunk)
    return parsed.items


def workers(master_pid: int) -> list:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master_pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def fd_targets(pid: int) -> dict:
    """{fd: what it points at} of a process (sockets, pipes, files; a spooled body shows as '(deleted)')."""
    out = {}
    for f in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out[f.name] = str(f.readlink())
        except OSError:
            pass
    return out


def metric(url: str, name: str, **labels) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
            if got == want:
                total += float(line.rsplit(" ", 1)[1])
    return total


def predict_request(port: int, body_parts: list, request_id: str) -> bytes:
    boundary = "b0undary"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{n}\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
                    for n, data in body_parts) + f"--{boundary}--\r\n".encode()
    return (f"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: {request_id}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def read_responses(sock: socket.socket, n: int) -> list:
    f = sock.makefile("rb")
    out = []
    for _ in range(n):
        status = int(f.readline().split()[1])
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        out.append((status, headers, json.loads(f.read(int(headers["content-length"])))))
    return out
