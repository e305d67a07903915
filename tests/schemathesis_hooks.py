"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks) for the rules of the API that JSON Schema
cannot state, each also said in the OpenAPI document's descriptions:

- a picture (a multipart file, a base64 string) must be a picture, and with ?preprocess=raw exactly 28x28
  (a schema cannot look inside a PNG): each picture of a generated /predict or /explain request becomes a
  28x28 PNG (the fuzz campaign, fuzz/, sends the server every other kind of bytes);
- an OIP v2 tensor's `data` holds N x 784 values for its shape [N, ...] (a schema cannot relate two fields'
  sizes): generated data becomes N x 784 zeros (valid for FP32 and UINT8 alike).

Everything else (every other field, parameter, header and body) is generated from the document as it is."""

from __future__ import annotations

import base64
import io

import schemathesis
from PIL import Image


def _png28() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buf, "PNG")
    return buf.getvalue()


PNG28 = _png28()
PNG28_B64 = base64.b64encode(PNG28).decode()


def _picture(value, text: bool):
    """A generated picture made a real one; a value of the wrong type (a negative case) is left as it is."""
    if isinstance(value, list):
        return [_picture(v, text) for v in value]
    if text:
        return PNG28_B64 if isinstance(value, str) else value
    return PNG28


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
            if isinstance(t, dict) and "data" in t and isinstance(shape, list) and shape and isinstance(shape[0], int):
                t["data"] = [0] * (shape[0] * 784)
    return case
