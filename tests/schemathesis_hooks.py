"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks) for the rules of the API that JSON Schema
cannot state, each also said in the OpenAPI document's descriptions:

- a picture (a multipart file, a base64 string) must be a picture, and with ?preprocess=raw exactly 28x28
  (a schema cannot look inside a PNG): each picture of a generated /predict or /explain request becomes a
  28x28 PNG (the fuzz campaign, fuzz/, sends the server every other kind of bytes);
- an OIP v2 tensor's `data` holds N x 784 values for its shape [N, ...] (a schema cannot relate two fields'
  sizes): generated data becomes N x 784 zeros (valid for FP32 and UINT8 alike).

Everything else (every other field, parameter, header and body) is generated from the document as it is.

One filter: Schemathesis negates a form's `anyOf` (image, or images) one branch at a time, so a form it generated
as invalid can satisfy the other branch; once its pictures are real such a form is valid by the document, and
is dropped as a negative case (it is a positive one, and those are generated too)."""

from __future__ import annotations

import base64
import io

import schemathesis
from PIL import Image
from schemathesis.core.parameters import ParameterLocation

from fmnist.config import Settings
from fmnist.serving.v2 import _whole  # what the server reads as a whole number (JSON Schema's integer)


def _png28() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buf, "PNG")
    return buf.getvalue()


PNG28 = _png28()
PNG28_B64 = base64.b64encode(PNG28).decode()


def _picture(value, text: bool):
    """A generated picture made a real one. Only a value of the type the document asks for (a file's bytes, a
    base64 string) is replaced: a value of another type is a negative case, left as generated to be refused."""
    if isinstance(value, list):
        return [_picture(v, text) for v in value]
    if text:
        return PNG28_B64 if isinstance(value, str) else value
    return PNG28 if _is_file(value) else value


def _is_file(value) -> bool:
    return isinstance(value, (bytes, bytearray, str)) or type(value).__name__ == "Binary"


def _form_is_valid(body: dict, max_images: int) -> bool:
    """Whether a multipart form, its files made real pictures, is one the document accepts (serving/openapi._form)."""
    image, images = (None if body.get(k) in ([], {}) else body.get(k) for k in ("image", "images"))  # not sent
    if image is not None and not _is_file(image):
        return False
    if images is not None and not (isinstance(images, list) and images and all(_is_file(v) for v in images)):
        return False
    n = (image is not None) + len(images or [])
    return (image is not None or images is not None) and n <= max_images


@schemathesis.hook
def filter_case(ctx, case):
    meta = case.meta
    if (case.operation.path in ("/predict", "/explain") and case.media_type == "multipart/form-data"
            and isinstance(case.body, dict) and meta is not None and meta.is_negative_at(ParameterLocation.BODY)):
        return not _form_is_valid(case.body, 1 if case.operation.path == "/explain" else Settings.max_images)
    return True


@schemathesis.hook
def map_case(ctx, case):
    path, body = case.operation.path, case.body
    if path in ("/predict", "/explain") and isinstance(body, dict):
        text = case.media_type == "application/json"
        for key in ("image", "images"):
            if key in body:
                body[key] = _picture(body[key], text)
    if path.endswith("/infer") and isinstance(body, dict) and isinstance(body.get("inputs"), list):
        for t in body["inputs"]:
            shape = t.get("shape") if isinstance(t, dict) else None
            # only a list of data for a shape whose N is a whole number: anything else is a negative case
            if isinstance(shape, list) and shape and _whole(shape[0]) and 0 < shape[0] <= 1024 \
                    and isinstance(t.get("data"), list):
                t["data"] = [0] * (int(shape[0]) * 784)
    return case
