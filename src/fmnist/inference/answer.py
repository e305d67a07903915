"""The answer, written once: what every door says about an image, as a schema, and everything made from it.

`FIELDS` is the answer for one image (label, class_id, confidence, top_k, ood_score, flag). From it:

- `items` / `body`: the JSON answer of POST /predict and /explain (one object, or `predictions` for several);
- `openapi_schemas`: the OpenAPI components of those answers (and of /explain's), exact: every field
  required, nothing else allowed, `label`/`class_id` null where the server is set not to name a flagged
  answer's class;
- `V2_OUTPUTS`: the Open Inference Protocol outputs (`probabilities` and the fields that have a tensor);
- `batch_columns`: the columns of `fmnist batch` (JSONL, CSV, Parquet): id and path, the fields, true_label,
  the model.

A flagged answer (flag "unsure" or "not_a_garment") keeps its label unless `flagged_label` is off, in every
door alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from fmnist.labels import CLASSES

FLAGS = ("unsure", "not_a_garment")
TOP_K_MAX = len(CLASSES)
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # NaN in a body is not JSON: a 500, never sent


@dataclass(frozen=True)
class Field:
    name: str
    schema: dict  # JSON Schema of the value
    doc: str
    v2: str = ""  # the OIP v2 output that carries it ("": none)


_PROB = {"type": "number", "minimum": 0, "maximum": 1}
CLASS_PROBABILITY = {
    "type": "object", "required": ["label", "class_id", "probability"], "additionalProperties": False,
    "properties": {"label": {"type": "string", "enum": list(CLASSES)},
                   "class_id": {"type": "integer", "minimum": 0, "maximum": TOP_K_MAX - 1},
                   "probability": _PROB},
}
FIELDS = (
    Field("label", {"type": ["string", "null"], "enum": [*CLASSES, None]},
          "the class; null only when flagged and the server's flagged_label is off", "labels"),
    Field("class_id", {"type": ["integer", "null"], "minimum": 0, "maximum": TOP_K_MAX - 1},
          "the class's index 0-9; null with label"),
    Field("confidence", _PROB, "calibrated probability of the class"),
    Field("top_k", {"type": "array", "minItems": 1, "maxItems": TOP_K_MAX,
                    "items": {"$ref": "#/components/schemas/ClassProbability"}},
          "the k most probable classes, most probable first (?top_k=, 1-10)"),
    Field("ood_score", _PROB, "how far the input is from what the model knows (0: like its training data)", "ood_score"),
    Field("flag", {"type": ["string", "null"], "enum": [*FLAGS, None]},
          "null, unsure (the answer may well be wrong) or not_a_garment", "flags"),
)
V2_OUTPUTS = ("probabilities",) + tuple(f.v2 for f in FIELDS if f.v2)  # probabilities: the whole distribution
MODEL_REF = {"type": "object", "required": ["name", "version"], "additionalProperties": False,
             "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}
_REQUEST = {"model": {"$ref": "#/components/schemas/ModelRef"}, "request_id": {"type": "string"},
            "latency_ms": {"type": "number", "minimum": 0}}


def _object(properties: dict) -> dict:
    return {"type": "object", "required": list(properties), "additionalProperties": False, "properties": properties}


def openapi_schemas(explanation: dict) -> dict:
    """The OpenAPI components of the answers: Prediction (one image), PredictResponse (one, or several under
    `predictions`), ExplainResponse (one, with `explanation`: its schema given by /explain)."""
    item = {f.name: {**f.schema, "description": f.doc} for f in FIELDS}
    one = _object({**item, **_REQUEST})
    return {
        "ClassProbability": CLASS_PROBABILITY,
        "ModelRef": MODEL_REF,
        "Prediction": _object(item),
        "PredictResponse": {"oneOf": [one, _object({"predictions": {
            "type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Prediction"}}, **_REQUEST})]},
        "ExplainResponse": _object({**item, **_REQUEST, "explanation": explanation}),
    }


def top_k(probs: np.ndarray, k: int) -> tuple[list, list]:
    """(class ids, their probabilities) of each row's k most probable classes, most probable first (a stable
    sort: among equal probabilities the lower class first, and the first is the argmax)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order.tolist(), np.take_along_axis(probs, order, axis=1).tolist()


def items(result, k: int, flagged_label: bool) -> list[dict]:
    """The answer for each image of a Result (inference.pipeline), as FIELDS says, in its order."""
    order, probs = top_k(result.probabilities, k)
    out = []
    for o, p, ood, flag in zip(order, probs, result.ood.tolist(), result.flags):
        named = flag is None or flagged_label
        out.append({"label": CLASSES[o[0]] if named else None, "class_id": o[0] if named else None,
                    "confidence": p[0],
                    "top_k": [{"label": CLASSES[c], "class_id": c, "probability": q} for c, q in zip(o, p)],
                    "ood_score": round(ood, 4), "flag": flag})
    return out


def body(result, request_id: str, many: bool, k: int, latency_ms: float, flagged_label: bool) -> bytes:
    """The JSON body of /predict: one answer, or several under `predictions`; the model, request id, latency."""
    answers = items(result, k, flagged_label)
    tail = {"model": result.model, "request_id": request_id, "latency_ms": latency_ms}
    return _JSON.encode({"predictions": answers, **tail} if many else {**answers[0], **tail}).encode()


def log_fields(result) -> dict:
    """The access-log line's fields for an answer (its label(s), confidence, count, version, flag(s))."""
    ids = result.probabilities.argmax(axis=1).tolist()
    one = len(ids) == 1
    return {"label": CLASSES[ids[0]] if one else [CLASSES[i] for i in ids],
            "confidence": round(float(result.probabilities[0, ids[0]]), 4) if one else None,
            "n_images": len(ids), "model_version": result.model["version"],
            "flag": result.flags[0] if one else list(result.flags)}


def v2_values(result, flagged_label: bool) -> dict:
    """The OIP v2 outputs (V2_OUTPUTS) of a Result: FP32 arrays, BYTES lists ("" for a null label or flag)."""
    labels = [f["label"] or "" for f in items(result, 1, flagged_label)]
    return {"probabilities": result.probabilities, "labels": labels, "ood_score": result.ood,
            "flags": [f or "" for f in result.flags]}


BATCH_HEAD = ("id", "path")  # before the fields: which input
BATCH_TAIL = ("true_label", "model")  # after them: its label when the source has one, and the model


def batch_columns(flat_model: bool) -> tuple:
    """The columns of a batch output: id, path, FIELDS, true_label, the model (one JSON object in JSONL;
    model_name and model_version in the flat formats, CSV and Parquet)."""
    tail = ("true_label", "model_name", "model_version") if flat_model else BATCH_TAIL
    return BATCH_HEAD + tuple(f.name for f in FIELDS) + tail
