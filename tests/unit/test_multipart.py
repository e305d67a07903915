"""The fast multipart reader: same parts as Werkzeug's parser where it answers, None where it must not."""

import io

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.formparser import parse_form_data
from werkzeug.test import encode_multipart

from fmnist.serving import multipart
from tests.images import png
from tests.unit.test_serving import GARMENT, assert_error, assert_prediction

CT = "multipart/form-data; boundary={}"


def werkzeug_parts(body: bytes, boundary: str) -> list[tuple[str, "str | None", bytes]]:
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": CT.format(boundary), "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    _, form, files = parse_form_data(environ)
    out = [(k, f.filename, f.read()) for k, f in files.items(multi=True)]
    return out + [(k, None, v.encode()) for k, v in form.items(multi=True)]


def curl_body(boundary: str, parts: list[tuple[str, "str | None", bytes]]) -> bytes:
    """What `curl -F` sends: CRLF lines, a Content-Type per file part."""
    out = b""
    for name, filename, content in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: image/png\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


PNG = png(GARMENT)
CASES = {
    "one file": [("image", "x.png", PNG)],
    "several files and a field": [("images", "a.png", PNG), ("images", "b.png", b"\r\n--not-the-boundary\r\n"),
                                  ("note", None, b"hello")],
    "spaces, semicolons and unicode in the filename": [("image", "my shirt; v2 \u00e9t\u00e9.png", PNG)],
    "empty file and empty filename": [("image", "", b"")],
}


@pytest.mark.parametrize("case", CASES)
def test_same_parts_as_werkzeug_for_curl_bodies(case):
    boundary = "------------------------d74496d66958873e"
    body = curl_body(boundary, CASES[case])
    parts = multipart.parse(body, CT.format(boundary))
    assert sorted(parts) == sorted(werkzeug_parts(body, boundary))
    assert parts == [(n, f, c) for n, f, c in CASES[case]]  # in the order sent


def test_same_parts_as_werkzeug_for_werkzeug_bodies():
    boundary, body = encode_multipart({"image": FileStorage(io.BytesIO(PNG), 'shirt v2.png'), "top": "3"})
    body = bytes(body)
    assert sorted(multipart.parse(body, CT.format(boundary))) == sorted(werkzeug_parts(body, boundary))


def test_preamble_epilogue_padding_and_quoted_boundary():
    core = curl_body("b1", [("image", "x.png", PNG)])
    body = b"this is a preamble\r\n" + core.replace(b"--b1\r\n", b"--b1  \r\n", 1) + b"epilogue"
    assert multipart.parse(body, 'multipart/form-data; boundary="b1"') == [("image", "x.png", PNG)]


@pytest.mark.parametrize("why, body, ctype", [
    ("no boundary parameter", curl_body("b1", [("image", "x.png", PNG)]), "multipart/form-data"),
    ("truncated: no close delimiter", curl_body("b1", [("image", "x.png", PNG)])[:-12], CT.format("b1")),
    ("RFC 5987 filename*", b'--b1\r\nContent-Disposition: form-data; name="image"; filename*=UTF-8\'\'x.png\r\n\r\n'
     b"data\r\n--b1--\r\n", CT.format("b1")),
    ("folded header", b'--b1\r\nContent-Disposition: form-data;\r\n name="image"; filename="x.png"\r\n\r\n'
     b"data\r\n--b1--\r\n", CT.format("b1")),
    ("base64 transfer encoding", b'--b1\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
     b"Content-Transfer-Encoding: base64\r\n\r\nZGF0YQ==\r\n--b1--\r\n", CT.format("b1")),
    ("no Content-Disposition", b"--b1\r\nContent-Type: image/png\r\n\r\ndata\r\n--b1--\r\n", CT.format("b1")),
    ("too many parts", curl_body("b1", [("f", None, b"x")] * (multipart.MAX_PARTS + 1)), CT.format("b1")),
])
def test_unusual_bodies_are_left_to_werkzeug(why, body, ctype):
    assert multipart.parse(body, ctype) is None, why


@pytest.fixture(scope="module")
def client(make_app):
    return make_app().test_client()


def test_predict_through_the_fallback_parser(client):
    """A body only Werkzeug understands (filename*=) is still answered, the same as the fast path."""
    body = (b'--b1\r\nContent-Disposition: form-data; name="image"; filename*=UTF-8\'\'shirt%20\xc3\xa9.png\r\n'
            b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n--b1--\r\n")
    slow = client.post("/predict", data=body, content_type=CT.format("b1")).get_json()
    fast = client.post("/predict", data=curl_body("b1", [("image", "x.png", PNG)]), content_type=CT.format("b1"))
    assert_prediction(slow)
    assert slow["top_k"] == fast.get_json()["top_k"]


def test_broken_multipart_is_a_400_not_a_500(client):
    truncated = curl_body("b1", [("image", "x.png", PNG)])[:-40]
    r = client.post("/predict", data=truncated, content_type=CT.format("b1"))
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.get_json()["error"]["code"] in ("missing_image", "bad_request", "bad_image")
    r = client.post("/predict", data=curl_body("b1", [("note", None, b"x")]), content_type=CT.format("b1"))
    assert_error(r, 400, "missing_image", "got fields note")


def test_a_boundary_over_70_characters_is_left_to_werkzeug():
    """RFC 2046 allows 1-70 characters; a longer one is not cut short but left to the fallback."""
    from fmnist.serving.multipart import boundary_of

    assert boundary_of("multipart/form-data; boundary=" + "b" * 70) == b"b" * 70
    assert boundary_of("multipart/form-data; boundary=" + "b" * 71) is None
    assert boundary_of('multipart/form-data; boundary="' + "b" * 71 + '"') is None
