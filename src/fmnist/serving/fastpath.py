"""POST /predict without Flask's request machinery, for the request almost every client sends.

A WSGI middleware in front of the Flask app (`app.wsgi_app`, as Flask's docs wrap middleware).
It answers a multipart /predict whose files all decode and whose query is valid, using the same
contract (`contract.PredictQuery`, `image_files`) and stages as the Flask view (`inference.pipeline`:
decode, preprocess, infer, assess; then record, and `inference.answer` for the body) and the same request
id, metrics and access log (`reqlog`).
Anything else - another route, JSON, an unusual body, a bad parameter, an image that does not decode,
an unexpected failure, a model not loaded yet - goes to the Flask app unchanged (with the body it
already read), which then answers or refuses it exactly as before. On the loop worker's event loop it
decodes only pictures up to `loop_max_pixels` (read from their headers); larger ones it leaves to the
worker's heavy pool, where this same layer answers them in a thread. `wsgi_batch` does the same for
several requests at once (the loop worker's batch, serving/http/worker.py), with one model call for all
of their images.
Flask's request context, routing, hooks and Response object cost ~100 µs per request, about a
fifth of a whole request on gthread and more than that on the loop worker.
"""

from __future__ import annotations

import io
import json
import logging
import time

import numpy as np

from fmnist.errors import Refused
from fmnist.inference import answer, pipeline
from fmnist.serving import multipart, reqlog
from fmnist.serving.apierror import APIError, error_json
from fmnist.serving.auth import Denied
from fmnist.serving.contract import PredictQuery, image_files, json_inputs
from fmnist.serving.health import PROBES, probe
from fmnist.serving.http import exchange

log = logging.getLogger("fmnist.serving")
LOOP_JSON_BYTES = 16 * 1024  # a JSON /predict body up to this size is parsed on the loop; a larger one in the heavy pool
_FORMS = ("multipart/form-data", "application/json")
# the status lines the fast path writes itself: probes (200, 503) and refused keys (401, 403, 429)
_STATUS = {200: "200 OK", 401: "401 Unauthorized", 403: "403 Forbidden", 429: "429 Too Many Requests",
           503: "503 Service Unavailable"}
_JSON = json.JSONEncoder(separators=(",", ":"))


class PredictFastPath:
    def __init__(self, wsgi_app, state, log_requests: bool, routes: frozenset = frozenset()):
        self.app = wsgi_app  # Flask's own wsgi_app: everything this class does not answer
        self.state = state
        self.log_requests = log_requests
        self.routes = routes  # the app's fixed routes: the metrics' route label of a refused request

    def _take(self, environ, on_loop: bool = False) -> "_Job | Denied | None":
        """The request, if the fast path answers it (body read, query checked, files found, their headers
        read); else None. `on_loop` (the loop worker's batch): a request with a picture over `loop_max_pixels`
        is left to the worker's heavy pool (its Exchange says heavy, and keeps the job parsed here: the pool
        thread does not read the request again), where this fast path takes it in a thread: decoding and
        converting a photo must not hold the event loop. So is a JSON body over LOOP_JSON_BYTES (not parsed
        on the loop: a few kB of base64 can hold a 25-megapixel picture) and every /explain (146 model
        inputs, and a picture of any size): big pictures take one bounded, low-priority path whichever way
        they come."""
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        ex = exchange.of(environ)
        if path == "/explain" and method == "POST" and on_loop:
            ex.heavy = True
            return None
        if path != "/predict" or method != "POST":
            return None
        key = ex.key if self.state.auth is not None else None  # checked by _refused already
        key_id = key.id if key is not None else None
        ctype = environ.get("CONTENT_TYPE", "")
        request_id = reqlog.request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        served = self.state.rollout.pick(key_id, environ.get("HTTP_X_CLIENT_ID", ""), request_id)
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        try:
            query = PredictQuery.parse(environ.get("QUERY_STRING", ""), self.state.settings.default_top_k)
        except APIError:
            return None  # the Flask view refuses it, with the same contract
        kind = ctype.partition(";")[0].strip().lower()
        if served is None or kind not in _FORMS or not 0 < length <= self.state.settings.max_content_length:
            return None
        if kind == "application/json" and length > LOOP_JSON_BYTES and on_loop:
            ex.heavy = True
            return None
        t0 = time.perf_counter()
        stream = environ["wsgi.input"]
        body = stream.read(length)
        if hasattr(stream, "seek"):  # the loop worker's body: rewound for the Flask app should it answer after all
            stream.seek(0)
        else:
            environ["wsgi.input"] = io.BytesIO(body)
        if len(body) != length:
            return None
        raw_pixels = None
        if kind == "application/json":
            try:
                blobs, raw_pixels, many = json_inputs(body, self.state.settings.max_images)
            except APIError:
                return None  # the Flask app refuses it, with the same contract
        else:
            parts = multipart.parse(body, ctype)
            try:
                selected = image_files(parts) if parts is not None else None
            except APIError:
                return None  # the Flask app refuses it, with the same contract
            if selected is None:
                return None
            blobs, many = selected
        if self.state.auth is not None:  # the key pays for its images (an image rate), once per request
            denied = self.state.auth.charge_images(environ, len(blobs) if raw_pixels is None else len(raw_pixels))
            if denied is not None:
                return denied
        try:
            images = pipeline.decode(blobs, self.state.limits)
        except Refused:
            return None  # the Flask app refuses it, with its error handling
        job = _Job(served, images, many, query.top_k, query.preprocess, request_id, t0)
        job.key_id, job.pixels = key_id, raw_pixels
        if on_loop:
            limit = self.state.settings.loop_max_pixels
            if any(im.size[0] * im.size[1] > limit for _, im in images):
                ex.heavy, ex.job = True, job  # read once: the heavy pool's thread takes it from here
                return None
        return job

    def _probe(self, environ, start_response) -> "list | None":
        """GET/HEAD of a health probe (health.PROBES), answered here: on the loop worker, on its loop, so that
        no pool queue of pictures or slow views can hold a liveness probe up. None: not a probe."""
        path = environ.get("PATH_INFO")
        if path not in PROBES or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        t0 = time.perf_counter()
        body, status, headers = probe(self.state, path)
        out = _JSON.encode(body).encode()
        request_id = reqlog.request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response(_STATUS[status], [("Content-Type", "application/json"), ("Content-Length", str(len(out))),
                                         ("X-Request-ID", request_id), *headers.items()])
        reqlog.finish(self.state.metrics, environ["REQUEST_METHOD"], path, status, time.perf_counter() - t0, request_id,
                      None, self.log_requests)
        return [out]

    def _refused(self, environ, start_response) -> "list | None":
        """With API keys, any request (any route) whose key is refused (401, 403, 429) is answered here, before
        its body is read and without Flask or a pool thread: a flood of bad keys costs the loop a header
        check each, and never the worker's threads other clients need. None: it may go on."""
        if self.state.auth is None:
            return None
        denied = self.state.auth.check_environ(environ)
        if not isinstance(denied, Denied):
            return None
        return self._deny(environ, start_response, denied)

    def _deny(self, environ, start_response, denied: Denied) -> list:
        """The API's 401/403/429 for a refused key, counted and logged as Flask would."""
        self.state.metrics.auth_failures.labels(reason=denied.code).inc()
        request_id = reqlog.request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        out = error_json(denied.error_code, denied.message, request_id)
        status = _STATUS[denied.status]
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(out))),
                                ("X-Request-ID", request_id), *denied.headers.items()])
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        reqlog.finish(self.state.metrics, method, path if path in self.routes else "<unmatched>", denied.status, 0.0,
                      request_id, None, self.log_requests)
        return [out]

    def _answer(self, job: "_Job", result: "pipeline.Result", start_response) -> list:
        out = answer.body(result, job.request_id, job.many, job.top_k, reqlog.ms_since(job.t0), job.served.flagged_label)
        extra = answer.log_fields(result)
        if job.key_id:
            extra["key_id"] = job.key_id
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out))),
                                  ("X-Request-ID", job.request_id)])
        reqlog.finish(self.state.metrics, "POST", "/predict", 200, time.perf_counter() - job.t0, job.request_id,
                      extra, self.log_requests)
        return [out]

    def __call__(self, environ, start_response):
        answered = self._probe(environ, start_response) or self._refused(environ, start_response)
        if answered is not None:
            return answered
        ex = exchange.of(environ)
        job, ex.job = ex.job or self._take(environ), None
        if job is None:
            return self.app(environ, start_response)
        if isinstance(job, Denied):
            return self._deny(environ, start_response, job)
        self.state.metrics.http_in_progress.inc()
        try:
            timings: list = []
            try:
                pixels, probs = pipeline.infer(job.served, lambda: self._pixels(job, timings))
            except Refused:  # a bad image: the Flask app gives the same answer with its error handling
                return self.app(environ, start_response)
            except Exception:
                log.exception("fast path failed on POST /predict; the Flask app answers instead")
                return self.app(environ, start_response)
            self.state.metrics.observe_pictures(ex.pool, timings)
            result = pipeline.assess(job.served, probs, pixels)
            self.state.record(job.served, job.request_id, result, job.key_id or "", reqlog.ms_since(job.t0))
            return self._answer(job, result, start_response)
        finally:
            self.state.metrics.http_in_progress.dec()

    def wsgi_batch(self, environs: list, start_responses: list) -> list:
        """Requests that arrived together (worker.LoopWorker), answered in the calling thread: the
        fast-path ones share model calls of up to max_batch_size images (one call per request with
        batching off); -> an app_iter per request, or None where the caller must call the app itself
        (another route, a bad image, a model not loaded yet)."""
        results: list = [None] * len(environs)
        jobs = []
        timings: list = []
        for i, environ in enumerate(environs):
            answered = self._probe(environ, start_responses[i]) or self._refused(environ, start_responses[i])
            if answered is not None:
                results[i] = answered
                continue
            job = self._take(environ, on_loop=True)
            if job is None:
                continue
            if isinstance(job, Denied):
                results[i] = self._deny(environ, start_responses[i], job)
                continue
            try:
                job.pixels = self._pixels(job, timings)
            except Refused:
                continue  # the Flask app answers it (its body was rewound), with its error handling
            except Exception:
                log.exception("fast path failed on POST /predict; the Flask app answers instead")
                continue
            jobs.append((i, job))
        if timings:
            self.state.metrics.observe_pictures("loop", timings)
        if not jobs:
            return results
        self.state.metrics.http_in_progress.inc(len(jobs))
        others = 0.0  # ms this thread spent on other models' groups of this batch (a rollout's two models)
        try:
            for group in self._groups(jobs):
                started = time.perf_counter()
                served = group[0][1].served
                pixels = np.concatenate([job.pixels for _, job in group])
                try:
                    probs = served.run_now(served.predictor.normalize(pixels))
                except Exception:
                    log.exception("fast path failed on a batch of %d requests; the Flask app answers them", len(group))
                    others += reqlog.ms_since(started)
                    continue
                result = pipeline.assess(served, probs, pixels)
                # the log's latency is the request's own model's: not the wait for the group run before it, which
                # would make a canary (nearly always second) look slower than production to the p99 gate
                self.state.record(served, [(job.request_id, k, job.key_id or "", reqlog.ms_since(job.t0) - others)
                                           for _, job in group for k in range(len(job.pixels))], result)  # once
                at = 0
                for i, job in group:
                    n = len(job.pixels)
                    results[i] = self._answer(job, result.part(at, at + n), start_responses[i])
                    at += n
                others += reqlog.ms_since(started)
        finally:
            self.state.metrics.http_in_progress.dec(len(jobs))
        return results

    def _pixels(self, job: "_Job", timings: list) -> np.ndarray:
        """The job's uint8 (N, 28, 28): sent as pixels, or its pictures decoded and converted."""
        if job.pixels is not None:
            return job.pixels
        return pipeline.preprocess(job.images, job.mode, timings, self.state.pixels)

    @staticmethod
    def _groups(jobs: list) -> list:
        """Jobs sharing a model call: one group per model (two only during a swap); with batching off,
        one group per request."""
        if jobs[0][1].served.batcher is None:
            return [[job] for job in jobs]
        by_model: dict = {}
        for i, job in jobs:
            by_model.setdefault(id(job.served), []).append((i, job))
        return list(by_model.values())


class _Job:
    __slots__ = ("served", "images", "many", "top_k", "mode", "request_id", "t0", "pixels", "key_id")

    def __init__(self, served, images, many, top_k, mode, request_id, t0):
        self.served, self.images, self.many, self.top_k, self.mode = served, images, many, top_k, mode
        self.request_id, self.t0, self.pixels, self.key_id = request_id, t0, None, None
