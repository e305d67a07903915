"""GET /openapi.json: an OpenAPI 3.1 description of every route this server has."""

from __future__ import annotations

from flask import Blueprint

from fmnist import __version__
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

MODEL_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION_PARAM = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
PIXELS_28 = {"type": "array", "minItems": 28, "maxItems": 28,
             "items": {"type": "array", "minItems": 28, "maxItems": 28,
                       "items": {"type": "integer", "minimum": 0, "maximum": 255}}}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "object", "required": ["code", "message"],
                      "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
            "request_id": {"type": ["string", "null"]},
        },
    },
    "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "ModelRef": {"type": "object", "required": ["name", "version"],
                 "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
    "ClassProbability": {
        "type": "object", "required": ["label", "class_id", "probability"],
        "properties": {"label": {"type": "string", "enum": list(CLASSES)},
                       "class_id": {"type": "integer", "minimum": 0, "maximum": 9},
                       "probability": {"type": "number", "minimum": 0, "maximum": 1}},
    },
    "Prediction": {
        "type": "object", "required": ["label", "class_id", "confidence", "top_k"],
        "properties": {
            "label": {"type": "string", "enum": list(CLASSES)},
            "class_id": {"type": "integer", "minimum": 0, "maximum": 9},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "top_k": {"type": "array", "items": {"$ref": "#/components/schemas/ClassProbability"}},
        },
    },
    "PredictResponse": {
        "oneOf": [
            {"allOf": [{"$ref": "#/components/schemas/Prediction"},
                       {"type": "object", "required": ["model", "request_id", "latency_ms"],
                        "properties": {"model": {"$ref": "#/components/schemas/ModelRef"},
                                       "request_id": {"type": "string"}, "latency_ms": {"type": "number"}}}]},
            {"type": "object", "required": ["predictions", "model", "request_id"],
             "properties": {"predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                            "model": {"$ref": "#/components/schemas/ModelRef"},
                            "request_id": {"type": "string"}, "latency_ms": {"type": "number"}}},
        ],
    },
    "PredictJSON": {
        "oneOf": [
            {"type": "object", "required": ["image"], "properties": {"image": {"type": "string", "contentEncoding": "base64"}}},
            {"type": "object", "required": ["images"],
             "properties": {"images": {"type": "array", "minItems": 1,
                                       "items": {"type": "string", "contentEncoding": "base64"}}}},
            {"type": "object", "required": ["pixels"],
             "properties": {"pixels": {"oneOf": [PIXELS_28, {"type": "array", "minItems": 1, "items": PIXELS_28}]}}},
        ],
    },
    "V2Tensor": {
        "type": "object", "required": ["name", "shape", "datatype"],
        "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                       "datatype": {"type": "string"}, "parameters": {"type": "object"},
                       "data": {"type": "array"}},
    },
    "V2InferRequest": {
        "type": "object", "required": ["inputs"],
        "properties": {"id": {"type": "string"}, "parameters": {"type": "object"},
                       "inputs": {"type": "array", "minItems": 1, "maxItems": 1,
                                  "items": {"$ref": "#/components/schemas/V2Tensor"}},
                       "outputs": {"type": "array", "items": {
                           "type": "object", "required": ["name"],
                           "properties": {"name": {"type": "string", "enum": ["probabilities", "labels"]},
                                          "parameters": {"type": "object"}}}}},
    },
    "V2InferResponse": {
        "type": "object", "required": ["model_name", "outputs"],
        "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                       "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}},
    },
    "V2ModelMetadata": {
        "type": "object", "required": ["name", "platform", "inputs", "outputs"],
        "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                       "platform": {"type": "string"}, "parameters": {"type": "object"},
                       "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}},
                       "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}},
    },
}


def _get(summary: str, ok: dict, extra: "dict | None" = None, params=None) -> dict:
    op = {"summary": summary, "responses": {"200": ok, **(extra or {})}}
    if params:
        op["parameters"] = params
    return {"get": op}


def _obj(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def build_spec() -> dict:
    v2_infer = {
        "summary": "Open Inference Protocol inference (JSON, or binary tensor data with Inference-Header-Content-Length)",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
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
                "parameters": contract.openapi_parameters(),
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}}}},
                "responses": {"200": _json("#/components/schemas/PredictResponse", "Prediction(s)"), **ERRORS},
            }},
            "/explain": {"post": {
                "summary": "Explain one image's prediction: what the model saw and an occlusion saliency map "
                           "(145 images in 4 model calls per request; at most explain_concurrency at once per worker)",
                "parameters": contract.openapi_parameters(),
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "image": {"type": "string", "format": "binary"}}}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}}}},
                "responses": {"200": {"description": "the prediction with `explanation` (base64 PNGs, 28x28 "
                                                     "pixels and saliency), or with Accept: image/png one PNG "
                                                     "(the picture | what the model saw | saliency overlay)",
                                      "content": {"application/json": {"schema": {"type": "object"}},
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
                    "properties": {"request_id": {"type": "string"},
                                   "label": {"oneOf": [{"type": "string", "enum": list(CLASSES)},
                                                       {"type": "integer", "minimum": 0, "maximum": 9}]},
                                   "index": {"type": "integer", "minimum": 0, "maximum": 63, "default": 0,
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
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "fmk_<id>_<secret>",
                       "description": "An API key (fmnist keys create), when the server has a key file"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    }
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
                op["description"] = (op.get("description", "") + f" Needs an API key with the '{scope}' scope when "
                                     "the server has a key file.").strip()


@bp.get("/openapi.json")
def openapi():
    return build_spec()


@bp.get("/")
def index():
    """Where to go: a browser is sent to the dashboard; anyone else gets the routes, in JSON."""
    from flask import current_app, redirect, request

    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect("/dashboard", 302)
    routes = sorted({f"{m} {r.rule}" for r in current_app.url_map.iter_rules()
                     for m in r.methods - {"HEAD", "OPTIONS"} if r.rule != "/"})
    return {"name": "fmnist", "dashboard": "/dashboard", "openapi": "/openapi.json", "routes": routes}
