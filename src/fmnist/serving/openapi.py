"""GET /openapi.json: an OpenAPI 3.1 description of every route this server has."""

from __future__ import annotations

import re

from flask import Blueprint

from fmnist import __version__
from fmnist.config import Settings
from fmnist.inference import answer
from fmnist.labels import CLASSES
from fmnist.serving import contract

bp = Blueprint("openapi", __name__)


def _json(schema_ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _err(description: str) -> dict:
    return _json("#/components/schemas/Error", description)


def _v2err(description: str) -> dict:
    return _json("#/components/schemas/V2Error", description)


ERRORS = {
    "400": _err("Bad input: missing field, undecodable or empty image, bad parameter, bad JSON, wrong pixel shape or range"),
    "413": _err("Body over the size limit, or an image over the pixel limit"),
    "415": _err("Unsupported Content-Type"),
    "503": _err("Model not loaded yet (see /ready)"),
}

KEY_ERRORS = {  # with a key file (serving/auth.py), on every route that needs a key, in the one error shape
    "401": _err("No API key, or a malformed, unknown or revoked one"),
    "403": _err("The key lacks the scope this route needs"),
    "429": _err("The key is over its requests (or images) a second; see Retry-After"),
}

MODEL_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION_PARAM = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
PIXELS_28 = {"type": "array", "minItems": 28, "maxItems": 28,
             "items": {"type": "array", "minItems": 28, "maxItems": 28,
                       "items": {"type": "integer", "minimum": 0, "maximum": 255}}}

def _shape(max_images: int) -> dict:
    """[N,1,28,28] or [N,28,28], N 1-max_images: exactly what the server reads (serving/v2.py)."""
    n = {"type": "integer", "minimum": 1, "maximum": max_images}
    return {"oneOf": [{"type": "array", "prefixItems": [n, {"const": 1}, {"const": 28}, {"const": 28}], "minItems": 4,
                       "maxItems": 4},
                      {"type": "array", "prefixItems": [n, {"const": 28}, {"const": 28}], "minItems": 3, "maxItems": 3}]}
_PARAMS = {"type": ["object", "null"]}
EXPLANATION = {  # /explain's addition to the answer (serving/explain.py)
    "type": "object", "additionalProperties": False,
    "required": ["method", "model_calls", "seen_pixels", "saliency", "original_png", "seen_png", "overlay_png"],
    "properties": {"method": {"type": "string"}, "model_calls": {"type": "integer", "minimum": 1},
                   "seen_pixels": PIXELS_28,
                   "saliency": {"type": "array", "minItems": 28, "maxItems": 28, "items": {
                       "type": "array", "minItems": 28, "maxItems": 28,
                       "items": {"type": "number", "minimum": 0, "maximum": 1}}},
                   **{k: {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}
                      for k in ("original_png", "seen_png", "overlay_png")}},
}
_TENSOR_OUT = {  # a tensor of an inference response: FP32 numbers or BYTES strings, in JSON or as binary data
    "type": "object", "required": ["name", "datatype", "shape"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "enum": list(answer.V2_OUTPUTS)},
                   "datatype": {"type": "string", "enum": ["FP32", "BYTES"]},
                   "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                   "data": {"type": "array", "items": {"type": ["number", "string"]}},
                   "parameters": {"type": "object", "required": ["binary_data_size"],
                                  "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}},
}

def _schemas(max_images: int) -> dict:
    return {
        "Error": {
            "type": "object", "required": ["error", "request_id"], "additionalProperties": False,
            "properties": {
                "error": {"type": "object", "required": ["code", "message"], "additionalProperties": False,
                          "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                "request_id": {"type": ["string", "null"]},
            },
        },
        "V2Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                    "properties": {"error": {"type": "string"}}},
        **answer.openapi_schemas(EXPLANATION),  # ClassProbability, ModelRef, Prediction, PredictResponse, ExplainResponse
        "PredictJSON": _json_body(max_images),
        "ExplainJSON": _json_body(1),
        "V2Tensor": {  # the one input tensor of a JSON request: FP32 already normalised, or UINT8 raw pixels
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {"name": {"type": "string"}, "shape": _shape(max_images),
                           "datatype": {"type": "string", "enum": ["FP32", "UINT8"]},
                           "parameters": {"type": ["object", "null"], "properties": {"binary_data_size": False},
                                          "description": "binary_data_size only with binary data after the JSON "
                                                         "(application/octet-stream)"},
                           "data": {"type": "array", "description": "N x 784 numbers (flat or nested): FP32 "
                                                                    "normalised pixels within +-1000, UINT8 0-255"}},
        },
        "V2InferRequest": {
            "type": "object", "required": ["inputs"],
            "properties": {"id": {"type": ["string", "null"]},
                           "parameters": {"type": ["object", "null"], "properties": {
                               "binary_data_output": {"type": "boolean"}}},
                           "inputs": {"type": "array", "minItems": 1, "maxItems": 1,
                                      "items": {"$ref": "#/components/schemas/V2Tensor"}},
                           "outputs": {"type": ["array", "null"], "items": {
                               "type": "object", "required": ["name"],
                               "properties": {"name": {"type": "string", "enum": list(answer.V2_OUTPUTS)},
                                              "parameters": {"type": ["object", "null"], "properties": {
                                                  "binary_data": {"type": "boolean"}}}}}}},
        },
        "V2InferResponse": {
            "type": "object", "required": ["model_name", "model_version", "id", "outputs"], "additionalProperties": False,
            "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                           "outputs": {"type": "array", "minItems": 1, "items": _TENSOR_OUT}},
        },
        "V2ModelMetadata": {
            "type": "object", "required": ["name", "platform", "inputs", "outputs"],
            "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                           "platform": {"type": "string"}, "parameters": {"type": "object"},
                           "inputs": {"type": "array", "items": {"type": "object"}},
                           "outputs": {"type": "array", "items": {"type": "object"}}},
        },
    }


def _get(summary: str, ok: dict, extra: "dict | None" = None, params=None) -> dict:
    op = {"summary": summary, "responses": {"200": ok, **(extra or {})}}
    if params:
        op["parameters"] = params
    return {"get": op}


def _obj(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def _json_body(max_images: int) -> dict:
    """A JSON body: one base64 picture, a list of them, or 28x28 pixels (one image or a list), max_images at most."""
    b64 = {"type": "string", "contentEncoding": "base64",
           "description": "a picture (PNG, JPEG, GIF, BMP, WebP or TIFF), or a data: URL of one"}
    return {"oneOf": [  # the server reads the first of image, images, pixels that the object has
        {"type": "object", "required": ["image"], "properties": {"image": b64}},
        {"type": "object", "required": ["images"], "not": {"required": ["image"]},
         "properties": {"images": {"type": "array", "minItems": 1, "maxItems": max_images, "items": b64}}},
        {"type": "object", "required": ["pixels"], "not": {"anyOf": [{"required": ["image"]}, {"required": ["images"]}]},
         "properties": {"pixels": {
             "oneOf": [PIXELS_28, {"type": "array", "minItems": 1, "maxItems": max_images, "items": PIXELS_28}]}}},
    ]}


def _form(max_images: int) -> dict:
    """A multipart body: its picture(s) as files in `image` (first) and `images` (in order), at most max_images
    in all (/explain: exactly one); other fields are ignored, a text part named image or images refused."""
    files = {"type": "array", "minItems": 1, "maxItems": max_images, "items": _FILE}
    return {"type": "object", "properties": {"image": _FILE, "images": files},
            "anyOf": [{"required": ["image"], "properties": {"images": {"maxItems": max_images - 1}}},
                      {"required": ["images"], "properties": {"image": False}}]}


_FILE = {"type": "string", "format": "binary", "contentMediaType": "image/*",
         "description": "PNG, JPEG, GIF, BMP, WebP or TIFF; with ?preprocess=raw exactly 28x28"}


def _label_pattern() -> str:
    """A class name in any case, or an id 0-9 as a string, with spaces around: what /feedback accepts."""
    names = "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in name)
                     for name in CLASSES)
    return rf"^\s*({names}|[0-9])\s*$"


def build_spec(max_images: int = Settings.max_images, default_top_k: int = Settings.default_top_k,
               model: "dict | None" = None) -> dict:
    """The document for a server's settings (its images per request, its default top_k) and the model it serves
    (`model`: {"name", "version"}, given as the examples of the /v2 path parameters)."""
    v2_infer = {
        "summary": "Open Inference Protocol inference",
        "description": "JSON as below; or, with the binary tensor data extension, a body of the JSON request (its "
                       "input's parameters.binary_data_size in place of data) followed by the tensor's bytes "
                       "(little-endian), its JSON's length in the Inference-Header-Content-Length header",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}, "example": {
                "inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}]}}}},
        "responses": {
            "200": {"description": "probabilities [N,10] FP32, labels [N] BYTES when asked", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/V2InferResponse"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "400": _v2err("Bad tensor"), "404": _v2err("Unknown model or version"), "503": _v2err("Not ready"),
        },
    }
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "fmnist", "version": __version__,
                 "description": "Fashion-MNIST classifier: predict, health, model card and Open Inference Protocol v2."},
        "paths": {
            "/predict": {"post": {
                "summary": "Classify one or several images",
                "parameters": contract.openapi_parameters(default_top_k),
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": _form(max_images)},
                    "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}}}},
                "responses": {"200": _json("#/components/schemas/PredictResponse", "Prediction(s)"), **ERRORS},
            }},
            "/explain": {"post": {
                "summary": "Explain one image's prediction: what the model saw and an occlusion saliency map "
                           "(145 images in 4 model calls per request; at most explain_concurrency at once per worker)",
                "parameters": contract.openapi_parameters(default_top_k),
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": _form(1)},
                    "application/json": {"schema": {"$ref": "#/components/schemas/ExplainJSON"}}}},
                "responses": {"200": {"description": "the prediction with `explanation` (base64 PNGs, 28x28 "
                                                     "pixels and saliency), or with Accept: image/png one PNG "
                                                     "(the picture | what the model saw | saliency overlay)",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/ExplainResponse"}},
                                                  "image/png": {"schema": {"type": "string",
                                                                           "contentMediaType": "image/png"}}}},
                              **ERRORS, "503": _err("Model not loaded yet, or this worker is computing "
                                                    "explain_concurrency explanations already (Retry-After)")},
            }},
            "/": _get("Where to go: a browser (Accept: text/html) is redirected to /dashboard; others get the "
                      "routes", _obj("name, dashboard, openapi, routes"), {"302": {"description": "to /dashboard"}}),
            "/health": _get("Liveness: the process is up", _obj("alive")),
            "/ready": _get("Readiness: the model is loaded and warmed up", _obj("ready"), {"503": _obj("not ready")}),
            "/model": _get("Model card: name, version, architecture, classes, input spec, test metrics",
                           _obj("model card"), {"503": ERRORS["503"]}),
            "/openapi.json": _get("This document", _obj("OpenAPI 3.1 document")),
            "/metrics": _get("Prometheus metrics of all workers (text exposition format)", {
                "description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}),
            "/monitoring": _get("Drift against the training reference, live accuracy from feedback, traffic "
                                "totals and processes, aggregated over all workers",
                                _obj("monitoring report with status ok|warn|alert"), {"503": ERRORS["503"]}),
            "/monitoring/rollout": _get(
                "The model's rollout (fmnist rollout): plan, each version's evidence from the shared prediction "
                "log, the gates and the verdict; rollout null when none was started",
                _obj("rollout (name, production, candidate, mode, share, started, state, decision) and report "
                     "(versions, gates, verdict)"), {"503": ERRORS["503"]}),
            "/monitoring/low-confidence": _get(
                "The latest inputs under a confidence threshold among the last drift_window predictions of every "
                "replica, as the 28x28 images the model saw (base64 PNG); needs store_images on (else an empty "
                "list and a note)",
                _obj("store_images, below, window, items: request_id, index, ts, replica, model_version, "
                     "predicted, confidence, image_png"),
                {"400": _err("limit or below out of range"), "503": ERRORS["503"]},
                [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 48,
                                                              "default": 12}},
                 {"name": "below", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1},
                  "description": "confidence threshold (default: the low_confidence setting, 0.6)"}]),
            "/dashboard": _get("Self-contained monitoring page (refreshes itself)", {
                "description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}),
            "/feedback": {"post": {
                "summary": "Record the true label of an earlier prediction",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["request_id", "label"],
                    "properties": {"request_id": {"type": "string", "minLength": 1},
                                   "label": {"oneOf": [{"type": "string", "pattern": _label_pattern(),
                                                        "description": "a class name (any case) or its id"},
                                                       {"type": "integer", "minimum": 0, "maximum": 9}]},
                                   "index": {"type": "integer", "minimum": 0, "maximum": max_images - 1, "default": 0,
                                             "description": "which image of a multi-image request "
                                                            "(below the server's max_images, 64 by default)"}}}}}},
                "responses": {"200": _obj("recorded: predicted, label, correct"),
                              "400": _err("Bad JSON, missing request_id, bad label"),
                              "404": _err("No prediction with that request_id"), "503": ERRORS["503"]},
            }},
            "/v2": _get("OIP server metadata", _obj("server metadata")),
            "/v2/health/live": _get("OIP liveness", _obj("live")),
            "/v2/health/ready": _get("OIP readiness", _obj("ready"), {"503": _obj("not ready")}),
            "/v2/models/{name}": _get("OIP model metadata", _json("#/components/schemas/V2ModelMetadata", "metadata"),
                                      {"404": _v2err("Unknown model")}, [MODEL_PARAM]),
            "/v2/models/{name}/versions/{version}": _get(
                "OIP model metadata for a version", _json("#/components/schemas/V2ModelMetadata", "metadata"),
                {"404": _v2err("Unknown model or version")}, [MODEL_PARAM, VERSION_PARAM]),
            "/v2/models/{name}/ready": _get("OIP model readiness", _obj("ready"), {"404": _v2err("Unknown model")},
                                            [MODEL_PARAM]),
            "/v2/models/{name}/versions/{version}/ready": _get(
                "OIP model version readiness", _obj("ready"), {"404": _v2err("Unknown model")},
                [MODEL_PARAM, VERSION_PARAM]),
            "/v2/models/{name}/infer": {"post": {**v2_infer, "parameters": [MODEL_PARAM]}},
            "/v2/models/{name}/versions/{version}/infer": {"post": {**v2_infer, "parameters": [MODEL_PARAM, VERSION_PARAM]}},
        },
        "components": {"schemas": _schemas(max_images), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "fmk_<id>_<secret>",
                       "description": "An API key (fmnist keys create), when the server has a key file"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    }
    if model is not None:
        for param, key in ((MODEL_PARAM, "name"), (VERSION_PARAM, "version")):
            param_copy = {**param, "schema": {**param["schema"], "examples": [model[key]]}}
            for ops in spec["paths"].values():
                for op in ops.values():
                    op["parameters"] = [param_copy if p is param else p for p in op.get("parameters", [])]
    _secure(spec)
    return spec


def _secure(spec: dict) -> None:
    """Which key scope each operation needs (serving/auth.py); the probes need none."""
    from fmnist.serving.auth import scope_for

    for path, ops in spec["paths"].items():
        scope = scope_for(path)
        for op in ops.values():
            op["security"] = [] if scope is None else [{"bearer": []}, {"apiKey": []}]
            if scope is not None:
                op["responses"] = {**op["responses"], **KEY_ERRORS}
                op["description"] = (op.get("description", "") + f" Needs an API key with the '{scope}' scope when "
                                     "the server has a key file.").strip()


@bp.get("/openapi.json")
def openapi():
    from fmnist.serving.context import serving_state

    st = serving_state()
    served = st.current
    return build_spec(st.settings.max_images, st.settings.default_top_k, served.ref if served is not None else None)


@bp.get("/")
def index():
    """Where to go: a browser is sent to the dashboard; anyone else gets the routes, in JSON."""
    from flask import current_app, redirect, request

    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect("/dashboard", 302)
    routes = sorted({f"{m} {r.rule}" for r in current_app.url_map.iter_rules()
                     for m in r.methods - {"HEAD", "OPTIONS"} if r.rule != "/"})
    return {"name": "fmnist", "dashboard": "/dashboard", "openapi": "/openapi.json", "routes": routes}
