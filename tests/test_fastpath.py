"""The WSGI fast path answers the common /predict itself and leaves everything else to Flask, with
the same answers either way."""

import io

import pytest

from fmnist.serving import create_app
from tests.conftest import SHIPPED
from tests.images import png
from tests.test_serving import GARMENT

VOLATILE = ("request_id", "latency_ms")


def _app(fast: bool):
    app = create_app({"model": str(SHIPPED), "log_requests": False, "reload_interval": 0, "fast_path": fast})
    calls = []
    view = app.view_functions["predict.predict"]
    app.view_functions["predict.predict"] = lambda: (calls.append(1), view())[1]
    return app.test_client(), calls


@pytest.fixture(scope="module")
def apps():
    return _app(True), _app(False)


def _post(client, files=None, query="", headers=None, **kw):
    if files is not None:
        kw = {"data": {field: [(io.BytesIO(b), name) for b, name in blobs] for field, blobs in files.items()},
              "content_type": "multipart/form-data"}
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
])
def test_common_requests_skip_flask_and_answer_the_same(apps, files, query):
    (fast, fast_calls), (flask, flask_calls) = apps
    before = len(fast_calls)
    r = _post(fast, files, query, headers={"X-Request-ID": "abc-123"})
    assert len(fast_calls) == before, "the fast path should have answered without the Flask view"
    assert r.headers["X-Request-ID"] == "abc-123" and r.get_json()["request_id"] == "abc-123"
    _same(r, _post(flask, files, query))


@pytest.mark.parametrize("case", ["bad image", "bad parameter", "repeated parameter", "no file", "json", "too many"])
def test_everything_else_goes_to_flask_with_the_same_answer(apps, case):
    (fast, fast_calls), (flask, _) = apps
    args = {
        "bad image": ({"image": [(b"not an image", "x.png")]}, ""),
        "bad parameter": ({"image": [(png(GARMENT), "g.png")]}, "?top_k=0"),
        "repeated parameter": ({"image": [(png(GARMENT), "g.png")]}, "?top_k=2&top_k=5"),
        "no file": ({"note": [(b"x", None)]}, ""),
        "too many": ({"images": [(png(GARMENT), f"{i}.png") for i in range(65)]}, ""),
    }
    before = len(fast_calls)
    if case == "json":
        r, r2 = (_post(c, json={"pixels": GARMENT.tolist()}) for c in (fast, flask))
    else:
        r, r2 = (_post(c, *args[case]) for c in (fast, flask))
    assert len(fast_calls) == before + 1, "Flask should have answered"
    _same(r, r2)
