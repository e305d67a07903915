"""Model artifacts: one verified directory of weights, ONNX graph and manifest.

Layout: <registry>/<name>/<version>/{model.safetensors, model.onnx, manifest.json}.
Reading a manifest and verifying files needs only the standard library, so the serving path
imports this module without torch; building or loading a torch model imports torch lazily.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from fmnist.checksum import file_digest
from fmnist.errors import FmnistError
from fmnist.images.preprocess import Preprocessing
from fmnist.labels import CLASSES

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
REQUIRED_KEYS = ("schema_version", "name", "version", "architecture", "preprocessing", "classes", "files")
ONNX_TOLERANCE = 1e-4  # max |logit difference| accepted between torch and ONNX Runtime
ONNX_OPSET = 17


class ArtifactError(FmnistError):
    """An artifact is missing, incomplete, tampered with or not one fmnist can use."""





@dataclass(frozen=True)
class Artifact:
    """A verified artifact on disk: its directory and parsed manifest."""

    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def arch(self) -> str:
        return self.manifest["architecture"]["name"]

    @property
    def model_kwargs(self) -> dict:
        return dict(self.manifest["architecture"].get("kwargs", {}))

    @property
    def external(self) -> bool:
        """Imported from elsewhere (Keras, ONNX): ONNX only, no torch weights."""
        return bool(self.manifest["architecture"].get("external"))

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.manifest["preprocessing"])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def read_artifact(path: "str | Path", verify: bool = True) -> Artifact:
    """Read `path`/manifest.json and (by default) check every listed file's sha256."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{path}: not a model artifact (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath}: manifest must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{mpath}: incomplete manifest, missing {', '.join(missing)}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ArtifactError(
            f"{mpath}: schema version {manifest['schema_version']} is not supported (this fmnist reads {SCHEMA_VERSION})"
        )
    if list(manifest["classes"]) != list(CLASSES):
        raise ArtifactError(f"{mpath}: class names differ from Fashion-MNIST's ten classes")
    files = manifest["files"]
    external = bool(manifest["architecture"].get("external"))  # imported: ONNX only, no torch weights
    for required in ((ONNX,) if external else (WEIGHTS, ONNX)):
        if required not in files:
            raise ArtifactError(f"{mpath}: incomplete artifact, {required} is not listed in files")
    if verify:
        for fname, meta in files.items():
            fpath = path / fname
            if not fpath.is_file():
                raise ArtifactError(f"{path}: incomplete artifact, {fname} is missing")
            digest = file_digest(fpath)
            if digest != meta["sha256"]:
                raise ArtifactError(
                    f"{fpath}: sha256 mismatch (file {digest[:12]}..., manifest {meta['sha256'][:12]}...): "
                    "the file was changed after the artifact was written; re-export or re-train it"
                )
    return Artifact(path=path, manifest=manifest)


def library_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("fmnist", "numpy", "torch", "onnx", "onnxruntime", "safetensors", "pillow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------- writing (needs torch)


def build_model(arch: str, kwargs: dict):
    """The torch module for an architecture name + kwargs (eval mode, random weights)."""
    from fmnist.models import create_model

    return create_model(arch, **kwargs).eval()


def load_model(artifact: "Artifact | str | Path"):
    """Rebuild the torch model from an artifact, weights from safetensors (no pickle), eval mode."""
    from safetensors.torch import load_file

    art = artifact if isinstance(artifact, Artifact) else read_artifact(artifact)
    if art.external:
        raise ArtifactError(f"{art.ref} was imported from {art.arch} and has no torch weights: use the onnx backend")
    model = build_model(art.arch, art.model_kwargs)
    state = load_file(str(art.weights_path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{art.weights_path}: weights do not fit {art.arch}{art.model_kwargs}: {e}") from None
    return model.eval()


def export_onnx(model, path: Path, check_inputs=None) -> float:
    """Export with a dynamic batch axis and return max |torch - ONNX Runtime| logits on check inputs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    model = model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    with warnings.catch_warnings():
        # the TorchScript exporter is the one that needs no onnxscript; it warns that it is old
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (dummy,), str(path), input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=ONNX_OPSET, dynamo=False,
        )
    if check_inputs is None:
        check_inputs = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    check_inputs = torch.as_tensor(check_inputs, dtype=torch.float32)
    with torch.no_grad():
        expected = model(check_inputs).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": check_inputs.numpy()})[0]
    diff = float(np.abs(expected - got).max())
    if diff > ONNX_TOLERANCE:
        raise ArtifactError(f"ONNX export of {path} differs from torch by {diff:.2e} (> {ONNX_TOLERANCE})")
    return diff


# Names and versions of the registry layout <registry>/<name>/<version>/ (registry.py builds on them)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name or ""))


def validate_name(name: str) -> str:
    if not is_valid_name(name):
        raise ArtifactError(
            f"bad model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def versions(root: Path, name: str) -> list[str]:
    """Versions of `name` that hold a manifest, oldest first (numeric versions sort numerically)."""
    d = root / name
    if not d.is_dir():
        return []
    found = [p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


def next_version(root: "str | Path", name: str) -> str:
    numeric = [int(v) for v in versions(Path(root), name) if v.isdigit()]
    return str(max(numeric, default=0) + 1)


def _commit(registry: "str | Path", name: str, version: "str | None", build) -> Artifact:
    """Write an artifact atomically: build(tmp_dir) writes its files and returns the manifest; every file
    is then listed with its sha256, and the directory renamed into <registry>/<name>/<version>/."""
    validate_name(name)
    registry = Path(registry)
    version = str(version or next_version(registry, name))
    final = registry / name / version
    if final.exists():
        raise ArtifactError(f"{final} already exists: versions are immutable, choose another version")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    try:
        manifest = {"schema_version": SCHEMA_VERSION, "name": name, "version": version, **build(tmp)}
        manifest["files"] = {f.name: {"sha256": file_digest(f), "bytes": f.stat().st_size}
                             for f in sorted(tmp.iterdir()) if f.name != MANIFEST}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_artifact(final)


@dataclass(frozen=True)
class ArtifactInfo:
    """Where an artifact goes and what its manifest records, however its model was made (trained here,
    imported from a .pth, a Keras file or an ONNX file)."""

    registry: "str | Path"
    name: str
    preprocessing: Preprocessing
    metrics: "dict | None" = None
    training: "dict | None" = None  # how it was made: provenance, or the imported file and its sha256
    reference: "dict | None" = None  # held-out statistics drift is measured against
    extra: "dict | None" = None  # more top-level manifest keys
    version: "str | None" = None  # default: the next integer

    def manifest(self) -> dict:
        return {
            "preprocessing": self.preprocessing.to_dict(),
            "classes": list(CLASSES),
            "input": {"name": "input", "shape": ["N", 1, 28, 28], "dtype": "float32", "normalised": True},
            "output": {"name": "logits", "shape": ["N", 10], "dtype": "float32"},
            "metrics": self.metrics or {},
            "training": self.training or {},
            "reference": self.reference or {},
            "libraries": library_versions(),
            **(self.extra or {}),
        }


def save_artifact(model, info: ArtifactInfo, *, arch: str, model_kwargs: dict, check_inputs=None) -> Artifact:
    """Write weights + ONNX + manifest of one of fmnist's architectures; return it verified."""
    from safetensors.torch import save_file

    from fmnist.models import count_flops, count_parameters

    model = model.cpu().eval()

    def build(tmp: Path) -> dict:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"arch": arch, "format": "pt"})
        onnx_diff = export_onnx(model, tmp / ONNX, check_inputs)
        return {
            "architecture": {"name": arch, "kwargs": model_kwargs, "params": count_parameters(model),
                             "flops_per_image": count_flops(model)},
            "onnx": {"opset": ONNX_OPSET, "max_abs_diff_vs_torch": onnx_diff},
            **info.manifest(),
        }

    return _commit(info.registry, info.name, info.version, build)


def save_external_artifact(onnx_file: Path, info: ArtifactInfo, *, source: Path, architecture: dict,
                           onnx_info: dict) -> Artifact:
    """An artifact of a model made elsewhere (Keras, ONNX): its standard-contract ONNX graph (already
    checked by the importer) and the source file kept beside it as `source<suffix>`. It has no
    torch weights: it is served with ONNX Runtime. architecture: {"name": "keras" | "onnx", ...}."""
    def build(tmp: Path) -> dict:
        shutil.copyfile(onnx_file, tmp / ONNX)
        shutil.copyfile(source, tmp / f"source{source.suffix or '.bin'}")
        return {"architecture": {"kwargs": {}, "external": True, **architecture}, "onnx": onnx_info,
                **info.manifest()}

    return _commit(info.registry, info.name, info.version, build)


def export_state_dict(artifact: Artifact, out: Path) -> Path:
    """The seed's `torch.save(model.state_dict(), path)` file."""
    import torch

    model = load_model(artifact)
    torch.save(model.state_dict(), out)
    return out


def import_state_dict(path: "str | Path", arch: str, model_kwargs: "dict | None" = None):
    """Load a plain .pth state dict into `arch` (weights_only=True: no arbitrary pickle)."""
    import torch

    model = build_model(arch, model_kwargs or {})
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a bad or unsafe file
        raise ArtifactError(f"{path}: not a loadable state dict ({e.__class__.__name__}: {str(e)[:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ArtifactError(f"{path}: expected a state dict (mapping of tensor names), got {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{path}: does not fit --arch {arch}: {str(e)[:400]}") from None
    return model.eval()
