"""Versions of named models on disk: resolve `name[:version]` or a path to a verified artifact."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fmnist.artifact import MANIFEST, Artifact, ArtifactError, read_artifact

DEFAULT_MODEL = "smallcnn"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def registry_root(root: "str | Path | None" = None) -> Path:
    """--registry, else FMNIST_MODELS, else ./models."""
    return Path(root or os.environ.get("FMNIST_MODELS") or "models")


def validate_name(name: str) -> str:
    if not _NAME.match(name or ""):
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


def list_artifacts(root: "str | Path | None" = None) -> list[tuple[str, str]]:
    root = registry_root(root)
    if not root.is_dir():
        return []
    return [(d.name, v) for d in sorted(root.iterdir()) if d.is_dir() for v in versions(root, d.name)]


def resolve(ref: "str | Path | None" = None, root: "str | Path | None" = None, verify: bool = True) -> Artifact:
    """A path to an artifact directory, or `name[:version]` in the registry (latest version by default)."""
    ref = str(ref or DEFAULT_MODEL)
    p = Path(ref)
    if (p / MANIFEST).is_file():
        return read_artifact(p, verify=verify)
    root = registry_root(root)
    name, _, version = ref.partition(":")
    if not _NAME.match(name):
        raise ArtifactError(f"{ref!r} is neither an artifact directory nor a model name[:version]")
    known = versions(root, name)
    if not known:
        names = sorted({n for n, _ in list_artifacts(root)})
        hint = f"models in {root}: {', '.join(names)}" if names else f"no models in {root} (set FMNIST_MODELS or --registry)"
        raise ArtifactError(f"no model named {name!r}; {hint}")
    if not version:
        version = known[-1]
    elif version not in known:
        raise ArtifactError(f"model {name!r} has no version {version!r}; versions: {', '.join(known)}")
    return read_artifact(root / name / version, verify=verify)
