"""ONNX models made elsewhere: the source graph wrapped into fmnist's contract.

The artifact's graph takes `input` float32 `[N,1,28,28]` (normalised by the manifest's
preprocessing) and gives `logits` `[N,10]` in Fashion-MNIST's class order, whatever the source wanted:
a Transpose (NHWC) or Reshape (HW, flat) in front, a Gather for another class order and a
Log(Max(p, 1e-30)) behind a source that outputs probabilities (so the server's softmax gives back
exactly those probabilities: softmax applied once).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fmnist.artifact import Artifact, ArtifactError, ArtifactInfo, save_external_artifact
from fmnist.checksum import file_digest
from fmnist.images.preprocess import Preprocessing
from fmnist.importer import PARITY_TOLERANCE, evaluate_probabilities, parity_inputs

LAYOUTS = {(1, 28, 28): "NCHW", (28, 28, 1): "NHWC", (28, 28): "HW", (784,): "flat"}


def layout_of(shape: tuple, where: str) -> str:
    """The per-image input shape (batch axis removed) -> its layout name, or a clear error."""
    layout = LAYOUTS.get(tuple(int(d) if d not in (None, "") else -1 for d in shape))
    if layout is None:
        raise ArtifactError(f"{where}: the model's input has shape {list(shape)} per image; fmnist serves 28x28 "
                            "grayscale models: expected (28, 28, 1), (28, 28), (784,) or (1, 28, 28)")
    return layout


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """Standard normalised (N,1,28,28) -> the source model's layout."""
    return {"NCHW": x, "NHWC": x.transpose(0, 2, 3, 1), "HW": x[:, 0], "flat": x.reshape(len(x), 784)}[layout]


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _copy_node(node):
    from onnx import NodeProto

    copy = NodeProto()
    copy.CopyFrom(node)
    return copy


def _rename(nodes: list, old: str, new: str) -> None:
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def standardize(model, layout: str, probabilities: bool, permutation: "list[int] | None"):
    """The source ModelProto wrapped to take `input` [N,1,28,28] and give `logits` [N,10]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    initializers = {i.name for i in g.initializer}
    src_in_name = [i.name for i in g.input if i.name not in initializers][0]
    src_out = g.output[0].name
    source_nodes = [_copy_node(n) for n in g.node]
    # a source whose tensors already carry the wrapper's names (an ONNX file fmnist exported: input -> logits)
    # is renamed inside, so every tensor keeps exactly one producer (ONNX's SSA rule)
    for old in {src_in_name, src_out} & {"input", "logits"}:
        _rename(source_nodes, old, "fmnist_source_" + old)
    renamed = {"input": "fmnist_source_input", "logits": "fmnist_source_logits"}
    src_in_name, src_out = renamed.get(src_in_name, src_in_name), renamed.get(src_out, src_out)
    front, back = [], []
    consts = []
    if layout == "NCHW":
        front.append(helper.make_node("Identity", ["input"], [src_in_name]))
    elif layout == "NHWC":
        front.append(helper.make_node("Transpose", ["input"], [src_in_name], perm=[0, 2, 3, 1]))
    else:
        shape = [-1, 28, 28] if layout == "HW" else [-1, 784]
        consts.append(numpy_helper.from_array(np.array(shape, np.int64), "fmnist_shape"))
        front.append(helper.make_node("Reshape", ["input", "fmnist_shape"], [src_in_name]))
    cur = src_out
    if permutation is not None:
        consts.append(numpy_helper.from_array(np.array(permutation, np.int64), "fmnist_class_order"))
        back.append(helper.make_node("Gather", [cur, "fmnist_class_order"], ["fmnist_ordered"], axis=1))
        cur = "fmnist_ordered"
    if probabilities:  # log p: the server's softmax of it is p again
        consts.append(numpy_helper.from_array(np.array(1e-30, np.float32), "fmnist_floor"))
        back.append(helper.make_node("Max", [cur, "fmnist_floor"], ["fmnist_floored"]))
        back.append(helper.make_node("Log", ["fmnist_floored"], ["logits"]))
    else:
        back.append(helper.make_node("Identity", [cur], ["logits"]))
    nodes = front + source_nodes + back
    graph = helper.make_graph(
        nodes, "fmnist_imported",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=list(g.initializer) + consts, value_info=list(g.value_info))
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="fmnist import")
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def check_source(model, path: Path) -> "tuple[str, bool]":
    """A plain ONNX model: (input layout, ends in Softmax?), or ArtifactError saying what is wrong."""
    from onnx import TensorProto

    g = model.graph
    initializers = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in initializers]
    if len(inputs) != 1 or len(g.output) < 1:
        raise ArtifactError(f"{path}: expected one input and one output, got {len(inputs)} inputs")
    if inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ArtifactError(f"{path}: the input must be float32 (the normalised image)")
    dims = _dims(inputs[0])
    if len(dims) < 2:
        raise ArtifactError(f"{path}: input {inputs[0].name!r} has rank {len(dims)}; expected a batch axis and a "
                            "28x28 grayscale image: [N,1,28,28], [N,28,28,1], [N,28,28] or [N,784]")
    layout = layout_of(tuple(dims[1:]), f"{path}: input {inputs[0].name!r}")
    out_dims = _dims(g.output[0])
    if len(out_dims) != 2 or out_dims[1] != 10:
        raise ArtifactError(f"{path}: the output has shape {out_dims}; expected [N, 10] (the ten classes)")
    producer = next((n for n in g.node if g.output[0].name in n.output), None)
    return layout, producer is not None and producer.op_type == "Softmax"


def save_standardized(source_onnx, source_file: Path, fmt: str, reference, registry: Path, *, name: str,
                      layout: str, probabilities: bool, permutation, preprocessing: Preprocessing,
                      architecture: dict, evaluate: bool, data_dir, libraries: dict) -> Artifact:
    """Wrap, check parity against `reference(images_in_source_layout) -> source outputs`, evaluate, save."""
    import onnx
    import onnxruntime as ort

    from fmnist.evaluation.metrics import softmax

    wrapped = standardize(source_onnx, layout, probabilities, permutation)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "model.onnx"
        onnx.save(wrapped, str(onnx_file))
        sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])

        def predict(x):
            return np.concatenate([sess.run(["logits"], {"input": x[i:i + 500]})[0] for i in range(0, len(x), 500)])

        _, x = parity_inputs(preprocessing, data_dir=data_dir)
        try:
            got = predict(x)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types
            raise ArtifactError(f"{source_file}: the model does not run on a batch of {len(x)} images "
                                f"({str(e)[:300]}); a fixed batch size cannot be served") from None
        want = np.asarray(reference(to_layout(x, layout)), dtype=np.float64)
        if permutation is not None:
            want = want[:, permutation]
        got_cmp = softmax(got.astype(np.float64)) if probabilities else got
        diff = float(np.abs(got_cmp - want).max())
        if not diff <= PARITY_TOLERANCE:
            raise ArtifactError(f"{source_file}: the converted model differs from the source by {diff:.2e} "
                                f"(> {PARITY_TOLERANCE}) on {len(x)} test images")
        metrics, ref_stats = evaluate_probabilities(predict, preprocessing, data_dir) if evaluate else ({}, {})
        onnx_info = {"opset": max(o.version for o in wrapped.opset_import if o.domain in ("", "ai.onnx")),
                     "max_abs_diff_vs_source": diff, "parity_images": len(x),
                     "compared": "probabilities" if probabilities else "logits"}
        info = ArtifactInfo(
            registry, name, preprocessing, metrics=metrics, reference=ref_stats,
            training={"imported_from": str(source_file), "source_sha256": file_digest(source_file), "format": fmt,
                      "source_libraries": libraries},
            extra={"source": {"input_layout": layout, "output": "probabilities" if probabilities else "logits",
                              "class_order": permutation, "softmax_applied_once": True}})
        return save_external_artifact(onnx_file, info, source=source_file, architecture=architecture,
                                      onnx_info=onnx_info)


def import_onnx(path: Path, registry: Path, *, name, preprocessing, permutation, evaluate, data_dir) -> Artifact:
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(f"{path}: not a valid ONNX model ({str(e)[:300]})") from None
    layout, softmax_node = check_source(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def reference(x):
        return sess.run([out_name], {in_name: np.ascontiguousarray(x, np.float32)})[0]

    _, x = parity_inputs(preprocessing, n=200, data_dir=data_dir)
    out = reference(to_layout(x, layout))
    probabilities = softmax_node or bool(np.all(out >= 0) and np.allclose(out.sum(1), 1.0, atol=1e-4))
    params = int(sum(np.prod(i.dims) for i in model.graph.initializer))
    return save_standardized(model, path, "onnx", reference, registry, name=name or path.stem, layout=layout,
                             probabilities=probabilities, permutation=permutation, preprocessing=preprocessing,
                             architecture={"name": "onnx", "params": params, "flops_per_image": None},
                             evaluate=evaluate, data_dir=data_dir,
                             libraries={"producer": f"{model.producer_name} {model.producer_version}".strip()})
