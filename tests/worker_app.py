"""A small WSGI app for tests/integration/test_worker.py: it tells what reached it, so the worker's HTTP handling
can be checked without the model. Served by Gunicorn with `-k fmnist.serving.http.worker.LoopWorker`."""

import hashlib
import json
import os
import time

from fmnist.serving.http.exchange import AppHooks


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = environ["wsgi.input"].read()
    if path == "/boom":
        raise RuntimeError("the app failed")
    if path == "/slow":
        time.sleep(float(environ["QUERY_STRING"] or 1))
    if path == "/big":
        out = bytes(range(256)) * (int(environ["QUERY_STRING"]) // 256)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [out]
    if path == "/stream":  # chunks from a generator, no Content-Length: the worker adds one
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"part{i};".encode() for i in range(5))
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"bye"]
    seen = {"method": environ["REQUEST_METHOD"], "path": path, "query": environ["QUERY_STRING"],
            "raw_uri": environ["RAW_URI"], "content_length": environ.get("CONTENT_LENGTH"),
            "body_len": len(body), "body_sha": hashlib.sha256(body).hexdigest(),
            "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
            "protocol": environ["SERVER_PROTOCOL"], "remote": environ["REMOTE_ADDR"], "pid": os.getpid()}
    out = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


app.fmnist_hooks = AppHooks(max_body=100_000)  # the worker's side of the contract: its body limit
