from openapi_spec_validator import validate

from fmnist.serving.openapi import build_spec


def test_openapi_document_is_valid_3_1(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on an invalid document


def test_every_route_is_documented(app):
    spec = build_spec()
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} is not in /openapi.json"


def _validator(spec: dict, component: str):
    from jsonschema import Draft202012Validator

    # the components, resolvable as "#/components/schemas/..." from a document of their own
    doc = {"components": spec["components"], "$ref": f"#/components/schemas/{component}"}
    return Draft202012Validator(doc)


def _png(value: int, size: int = 28) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    a = np.zeros((size, size), np.uint8)
    a[4:24, 6:22] = value
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def test_real_answers_are_what_the_document_says(make_app):
    """Answers of the real app (one image, several, a flagged one; flagged_label on and off; /explain; /v2) are
    valid against the served document's exact schemas, and the document refuses an answer with a field more."""
    import base64

    for flagged_label in (True, False):
        client = make_app(flagged_label=flagged_label).test_client()
        spec = client.get("/openapi.json").get_json()
        predict = _validator(spec, "PredictResponse")
        blank, shirt = _png(0), _png(200)
        answers = [client.post("/predict", data={"image": (io_file(shirt), "a.png")}),
                   client.post("/predict", data={"images": [(io_file(shirt), "a.png"), (io_file(blank), "b.png")]}),
                   client.post("/predict", json={"image": base64.b64encode(blank).decode()}),
                   client.post("/predict?top_k=10", json={"pixels": [[[0] * 28] * 28] * 3})]
        flagged = 0
        for r in answers:
            assert r.status_code == 200, r.get_data(as_text=True)
            body = r.get_json()
            predict.validate(body)
            items = body.get("predictions", [body])
            flagged += sum(item["flag"] is not None for item in items)
            assert all((item["label"] is None) == (item["flag"] is not None and not flagged_label) for item in items)
        assert flagged >= 5  # the blank pages are flagged not_a_garment
        one = answers[0].get_json()
        try:
            predict.validate({**one, "extra": 1})
        except Exception:
            pass
        else:
            raise AssertionError("the document allows a field the server never sends")
        explain = client.post("/explain", json={"image": base64.b64encode(shirt).decode()})
        assert explain.status_code == 200
        _validator(spec, "ExplainResponse").validate(explain.get_json())
        v2 = client.post("/v2/models/smallcnn/infer", json={
            "inputs": [{"name": "input", "datatype": "UINT8", "shape": [2, 28, 28], "data": [0] * 1568}],
            "outputs": [{"name": n} for n in ("probabilities", "labels", "ood_score", "flags")]})
        assert v2.status_code == 200, v2.get_data(as_text=True)
        _validator(spec, "V2InferResponse").validate(v2.get_json())
        _validator(spec, "V2InferRequest").validate({"inputs": [{"name": "input", "datatype": "UINT8",
                                                                  "shape": [1, 28, 28], "data": [0] * 784}]})
        labels = next(o for o in v2.get_json()["outputs"] if o["name"] == "labels")["data"]
        assert labels == (["T-shirt/top"] * 2 if flagged_label else ["", ""])


def io_file(data: bytes):
    import io

    return io.BytesIO(data)
