"""The WSGI fast path answers the common /predict itself and leaves everything else to Flask, with
the same answers either way."""

import base64
import io
import json

import pytest

from tests.images import png
from tests.unit.test_serving import GARMENT

VOLATILE = ("request_id", "latency_ms")


def _app(make_app, fast: bool):
    app = make_app(fast_path=fast)
    calls = []
    view = app.view_functions["predict.predict"]
    app.view_functions["predict.predict"] = lambda: (calls.append(1), view())[1]
    return app.test_client(), calls


@pytest.fixture(scope="module")
def apps(make_app):
    return _app(make_app, True), _app(make_app, False)


def _multipart(files: dict) -> dict:
    """Body and Content-Type with a fixed boundary: Werkzeug's own is random and, at times, longer than
    the 70 characters RFC 2046 allows, which the fast path rightly leaves to Flask."""
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.test import encode_multipart

    values = MultiDict([(field, FileStorage(io.BytesIO(b), name, content_type="image/png"))
                        for field, blobs in files.items() for b, name in blobs])
    boundary, body = encode_multipart(values, boundary="fmnist-test-boundary")
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def _post(client, files=None, query="", headers=None, **kw):
    if files is not None:
        kw = _multipart(files)
    return client.post(f"/predict{query}", headers=headers or {}, **kw)


def _same(r_fast, r_flask):
    assert r_fast.status_code == r_flask.status_code, (r_fast.get_data(as_text=True), r_flask.get_data(as_text=True))
    a, b = r_fast.get_json(), r_flask.get_json()
    for k in VOLATILE:
        a.pop(k, None), b.pop(k, None)
    assert a == b
    assert r_fast.headers["Content-Type"] == r_flask.headers["Content-Type"]


@pytest.mark.parametrize("files, query", [
    ({"image": [(png(GARMENT), "g.png")]}, ""),
    ({"image": [(png(GARMENT), "g.png")]}, "?top_k=5&preprocess=raw"),
    ({"images": [(png(GARMENT), "a.png"), (png(255 - GARMENT), "b.png")]}, ""),
    ({"image": [(png(GARMENT), "g.png")]}, "?top_k=2&top_k=5"),  # the first counts, as in Flask's request.args
    ({"image": [(png(GARMENT), "g.png")]}, "?unknown=1&top_k=4"),  # ignored, as in the Flask view
])
def test_common_requests_skip_flask_and_answer_the_same(apps, files, query):
    (fast, fast_calls), (flask, flask_calls) = apps
    before = len(fast_calls)
    r = _post(fast, files, query, headers={"X-Request-ID": "abc-123"})
    assert len(fast_calls) == before, "the fast path should have answered without the Flask view"
    assert r.headers["X-Request-ID"] == "abc-123" and r.get_json()["request_id"] == "abc-123"
    _same(r, _post(flask, files, query))


@pytest.mark.parametrize("body", [
    {"pixels": GARMENT.tolist()},
    {"pixels": [GARMENT.tolist(), (255 - GARMENT).tolist()]},
    {"image": base64.b64encode(png(GARMENT)).decode()},
    {"images": [base64.b64encode(png(GARMENT)).decode(),
                "data:image/png;base64," + base64.b64encode(png(255 - GARMENT)).decode()]},
])
def test_small_json_requests_skip_flask_and_answer_the_same(apps, body):
    """JSON bodies (up to fastpath.LOOP_JSON_BYTES on the loop worker) take the same fast path as multipart."""
    (fast, fast_calls), (flask, _) = apps
    before = len(fast_calls)
    r = _post(fast, json=body)
    assert len(fast_calls) == before, "the fast path should have answered without the Flask view"
    _same(r, _post(flask, json=body))


@pytest.mark.parametrize("case", ["bad image", "bad parameter", "bad repeated parameter", "no file", "bad json", "too many"])
def test_everything_else_goes_to_flask_with_the_same_answer(apps, case):
    (fast, fast_calls), (flask, _) = apps
    args = {
        "bad image": ({"image": [(b"not an image", "x.png")]}, ""),
        "bad parameter": ({"image": [(png(GARMENT), "g.png")]}, "?top_k=0"),
        "bad repeated parameter": ({"image": [(png(GARMENT), "g.png")]}, "?top_k=11&top_k=5"),
        "no file": ({"note": [(b"x", None)]}, ""),
        "too many": ({"images": [(png(GARMENT), f"{i}.png") for i in range(65)]}, ""),
    }
    before = len(fast_calls)
    if case == "bad json":
        r, r2 = (_post(c, json={"pixels": GARMENT.tolist()[:27]}) for c in (fast, flask))
    else:
        r, r2 = (_post(c, *args[case]) for c in (fast, flask))
    assert len(fast_calls) == before + 1, "Flask should have answered"
    _same(r, r2)


def test_wsgi_batch_answers_the_fast_path_requests_together_and_leaves_the_rest(apps):
    """The loop worker hands requests that arrived together to wsgi_batch: the fast-path ones are
    answered as they would be one by one, the others are left (None) for the worker to call the app."""
    from werkzeug.test import EnvironBuilder

    (fast, _), _ = apps
    app = fast.application
    blobs = [png(GARMENT), png(255 - GARMENT), b"not a png", png(GARMENT)]

    def environ(i, blob, path="/predict"):
        return EnvironBuilder(path=path, method="POST", headers={"X-Request-ID": f"r{i}"}, query_string="top_k=2",
                              **_multipart({"image": [(blob, "x.png")]})).get_environ()

    environs = [environ(i, b) for i, b in enumerate(blobs)] + [environ(9, blobs[0], "/v2/health/ready")]
    seen = [[] for _ in environs]
    out = app.wsgi_app.wsgi_batch(environs, [lambda s, h, exc=None, i=i: seen[i].append((s, dict(h)))
                                             for i in range(len(environs))])
    assert [o is None for o in out] == [False, False, True, False, True]
    for i in (0, 1, 3):
        one = _post(fast, {"image": [(blobs[i], "x.png")]}, "?top_k=2").get_json()
        got = json.loads(b"".join(out[i]))
        assert seen[i][0][0] == "200 OK" and seen[i][0][1]["X-Request-ID"] == got["request_id"] == f"r{i}"
        assert {k: v for k, v in got.items() if k not in VOLATILE} == {k: v for k, v in one.items() if k not in VOLATILE}
    # what was left still has its body: the app itself answers it as it would have
    status = []
    body = json.loads(b"".join(app(environs[2], lambda s, h, exc=None: status.append(s))))
    assert status == ["400 BAD REQUEST"] and body["error"]["code"] == "bad_image" and body["request_id"] == "r2"
