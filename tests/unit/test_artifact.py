import json
import pickle

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fmnist.artifact import ArtifactError, ArtifactInfo, import_state_dict, load_model, read_artifact, save_artifact
from fmnist.images.preprocess import Preprocessing
from fmnist.models import create_model
from fmnist.registry import resolve


def test_manifest_round_trip(tiny_artifact):
    m = tiny_artifact.manifest
    assert m["schema_version"] == 1 and m["name"] == "tiny" and m["version"] == "1"
    assert m["architecture"] == {"name": "smallcnn", "kwargs": {"width": 8, "hidden": 16},
                                 "params": m["architecture"]["params"], "flops_per_image": m["architecture"]["flops_per_image"]}
    assert m["preprocessing"]["mean"] == pytest.approx(0.2860) and m["preprocessing"]["input_size"] == [28, 28]
    assert m["classes"][9] == "Ankle boot"
    assert set(m["files"]) == {"model.safetensors", "model.onnx"}
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    again = read_artifact(tiny_artifact.path)
    assert again.manifest == m and again.preprocessing == Preprocessing.from_dict(m["preprocessing"])


def test_reload_gives_same_outputs_in_eval_mode(tiny_artifact):
    torch.manual_seed(0)
    original = create_model("smallcnn", width=8, hidden=16).eval()
    model = load_model(tiny_artifact)
    assert not model.training
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x))


def test_onnx_parity_and_dynamic_batch(tiny_artifact):
    assert tiny_artifact.manifest["onnx"]["max_abs_diff_vs_torch"] < 1e-4
    model = load_model(tiny_artifact)
    sess = ort.InferenceSession(str(tiny_artifact.onnx_path), providers=["CPUExecutionProvider"])
    for n in (1, 7, 64):
        x = np.random.default_rng(n).standard_normal((n, 1, 28, 28)).astype(np.float32)
        got = sess.run(["logits"], {"input": x})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_tampered_weights_are_refused(tiny_artifact):
    w = tiny_artifact.weights_path
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.safetensors: sha256 mismatch"):
        read_artifact(tiny_artifact.path)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        resolve("tiny")


def test_missing_file_is_refused(tiny_artifact):
    tiny_artifact.onnx_path.unlink()
    with pytest.raises(ArtifactError, match="incomplete artifact, model.onnx is missing"):
        read_artifact(tiny_artifact.path)


def test_incomplete_manifest_is_refused(tiny_artifact):
    mpath = tiny_artifact.path / "manifest.json"
    m = json.loads(mpath.read_text())
    del m["preprocessing"]
    mpath.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="missing preprocessing"):
        read_artifact(tiny_artifact.path)
    mpath.write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        read_artifact(tiny_artifact.path)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="not a model artifact"):
        read_artifact(tmp_path)


def test_versions_and_references(tiny_artifact, registry):
    model = load_model(tiny_artifact)
    second = save_artifact(model, ArtifactInfo(registry, "tiny", Preprocessing()), arch="smallcnn",
                           model_kwargs={"width": 8, "hidden": 16})
    assert second.version == "2"
    assert resolve("tiny").version == "2"  # latest by default
    assert resolve("tiny:1").version == "1"
    assert resolve(str(tiny_artifact.path)).version == "1"
    with pytest.raises(ArtifactError, match="has no version '7'; versions: 1, 2"):
        resolve("tiny:7")
    with pytest.raises(ArtifactError, match="no model named 'nope'; models in .*: tiny"):
        resolve("nope")
    with pytest.raises(ArtifactError, match="already exists"):
        save_artifact(model, ArtifactInfo(registry, "tiny", Preprocessing(), version="1"), arch="smallcnn",
                      model_kwargs={"width": 8, "hidden": 16})
    with pytest.raises(ArtifactError, match="bad model name"):
        save_artifact(model, ArtifactInfo(registry, "../evil", Preprocessing()), arch="smallcnn", model_kwargs={})


def test_pth_round_trip(tiny_artifact, tmp_path):
    from fmnist.artifact import export_state_dict

    pth = export_state_dict(tiny_artifact, tmp_path / "w.pth")
    model = import_state_dict(pth, "smallcnn", {"width": 8, "hidden": 16})
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), load_model(tiny_artifact)(x))
    with pytest.raises(ArtifactError, match="does not fit --arch lenet"):
        import_state_dict(pth, "lenet")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path):
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(ArtifactError, match="not a loadable state dict"):
        import_state_dict(p, "smallcnn")
