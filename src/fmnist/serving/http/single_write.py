"""Make Gunicorn send a response's status line + headers and its body in one write.

Gunicorn writes the headers, then the body, in two `sendall` calls. A worker killed between the
two (kill -9, OOM) leaves nginx holding a response header with a truncated body: too late to
retry the request on another replica, so the client sees a failed request. With both in one
write, a dying worker either sent nothing (nginx retries elsewhere) or sent everything.
Installed by the `post_worker_init` hook in gunicorn_conf.py; covered by the cluster kill tests.
"""

from __future__ import annotations


class HeadBuffer:
    """Wraps the client socket: holds the first sendall (the header block) until the next one."""

    def __init__(self, sock):
        self._sock = sock
        self._head: "bytes | None" = b""

    def sendall(self, data):
        if self._head is None:
            return self._sock.sendall(data)
        if not self._head:
            self._head = bytes(data)  # the header block
            return None
        data, self._head = self._head + bytes(data), None
        return self._sock.sendall(data)

    def flush(self) -> None:
        if self._head:
            self._sock.sendall(self._head)
        self._head = None

    def __getattr__(self, name):
        return getattr(self._sock, name)


def install() -> None:
    from gunicorn.http import wsgi

    resp = wsgi.Response
    if getattr(resp, "_fmnist_single_write", False):
        return
    orig_init, orig_close, orig_sendfile = resp.__init__, resp.close, resp.sendfile

    def __init__(self, req, sock, cfg, *args, **kwargs):
        orig_init(self, req, HeadBuffer(sock), cfg, *args, **kwargs)

    def close(self):
        try:
            orig_close(self)
        finally:
            self.sock.flush()  # a response without body bytes still sends its headers

    def sendfile_flushed(self, respiter):
        # os.sendfile bypasses sendall: headers must be on the wire before the file bytes
        if self.cfg.is_ssl or not self.can_sendfile():
            return orig_sendfile(self, respiter)
        self.send_headers()
        self.sock.flush()
        return orig_sendfile(self, respiter)

    resp.__init__ = __init__
    resp.close = close
    resp.sendfile = sendfile_flushed
    resp._fmnist_single_write = True
