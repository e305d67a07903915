"""What the fuzzers feed: the server's readers of hostile bytes, each as `target(data: bytes) -> None`.

A target returns, or raises the refusal the server turns into a 4xx (`APIError`, `ImageError`); any other
exception is a finding (the server would answer 500 for it), and so is a broken promise checked here (a
part that is not a slice of the body, a tensor of the wrong shape, NaN let through). Plain Python:
`fuzz/run.py` drives them with atheris (coverage-guided), tests/integration/test_fuzz.py replays the kept corpus and
every crash ever found through them without atheris.

    multipart   serving.multipart.parse, and differentially against Werkzeug's parser on what it accepts
    image       preprocess.open_image -> load_image -> to_model_pixels, the path of every picture sent
    json        serving.contract.json_inputs, the JSON forms of /predict (and /explain)
    v2          serving.v2.split_body + read_request, an Open Inference Protocol request with binary data
"""

from __future__ import annotations

import numpy as np

from fmnist.images.preprocess import ImageError, load_image, open_image, to_model_pixels
from fmnist.serving import multipart
from fmnist.serving.apierror import APIError
from fmnist.serving.contract import json_inputs
from fmnist.serving.v2 import read_request, split_body

MAX_PIXELS = 4_000_000  # pictures the image target decodes (a fuzzer makes many; the server's limit is 25 MP)
BOUNDARY = "fuzzboundary"


def _werkzeug_parts(body: bytes, content_type: str) -> list:
    """Werkzeug's reading of a multipart body: [(name, filename or None, content)] in order."""
    from werkzeug.formparser import MultiPartParser

    parser = MultiPartParser(max_form_memory_size=None, max_form_parts=multipart.MAX_PARTS + 1)
    boundary = multipart.boundary_of(content_type)
    import io

    form, files = parser.parse(io.BytesIO(body), boundary, len(body))
    out = [(k, None, b"") for k, _ in form.items(multi=True)]
    out += [(k, f.filename, f.read()) for k, f in files.items(multi=True)]
    return out


def target_multipart(data: bytes) -> None:
    """Our reader on a body with a fixed boundary. Where it accepts the body, Werkzeug (a well-kept parser)
    must read the same parts: the same names, filenames and contents (order aside: Werkzeug keeps form
    fields and files apart)."""
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    parts = multipart.parse(data, ctype)
    if parts is None:
        return
    for name, filename, content in parts:
        assert isinstance(name, str) and (filename is None or isinstance(filename, str)), (name, filename)
        assert isinstance(content, bytes) and content in data, "a part's content is not a slice of the body"
    try:
        theirs = _werkzeug_parts(data, ctype)
    except Exception:  # Werkzeug refuses what we accepted: tolerated only for bodies it finds malformed
        theirs = None
    if theirs is not None:  # files byte for byte; form fields by name (Werkzeug decodes their text)
        ours = sorted(((n, f, c if f is not None else b"") for n, f, c in parts), key=repr)
        theirs = sorted(((n, f, c if f is not None else b"") for n, f, c in theirs), key=repr)
        assert ours == theirs, f"our reader and Werkzeug's disagree:\nours   {ours!r:.500}\ntheirs {theirs!r:.500}"


def target_image(data: bytes) -> None:
    try:
        im = open_image(data, MAX_PIXELS, "fuzz")
        load_image(im, "fuzz", 256)
        for mode in ("auto", "photo"):
            pixels = to_model_pixels(im, mode)
            assert pixels.shape == (28, 28) and pixels.dtype == np.uint8, (pixels.shape, pixels.dtype)
    except ImageError:
        pass


def target_json(data: bytes) -> None:
    try:
        blobs, pixels, many = json_inputs(data, 64)
    except APIError as e:
        assert 400 <= e.status < 500, e.status
        return
    assert isinstance(many, bool)
    if pixels is not None:
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[1:] == (28, 28) and len(pixels) <= 64
    else:
        assert 1 <= len(blobs) <= 64 and all(isinstance(b, bytes) for _, b in blobs)


def target_v2(data: bytes) -> None:
    """The first two bytes: the Inference-Header-Content-Length (0: none), then the body."""
    n = int.from_bytes(data[:2], "little") if len(data) >= 2 else 0
    try:
        body, binary = split_body(data[2:], str(n) if n else None)
        pixels, dtype, outputs, request_id = read_request(body, binary, 64)
    except APIError as e:
        assert 400 <= e.status < 500, e.status
        return
    assert pixels.shape[1:] == (28, 28) and 1 <= len(pixels) <= 64
    if dtype == "FP32":
        assert np.all(np.isfinite(pixels)), "a non-finite FP32 input was let through"
    assert all(isinstance(b, bool) for _, b in outputs) and (request_id is None or isinstance(request_id, str))


TARGETS = {"multipart": target_multipart, "image": target_image, "json": target_json, "v2": target_v2}
