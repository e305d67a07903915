"""Versions of named models on disk, a `production` alias per name, and resolving references.

`name` means the production version when one is promoted, else the latest; `name:version` and
artifact paths are exact. Promotions are an append-only history in <registry>/<name>/aliases.json,
written atomically, so a rollback goes back to the previous promoted version.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from fmnist.artifact import (  # noqa: F401
    MANIFEST,
    Artifact,
    ArtifactError,
    is_valid_name,
    next_version,
    read_artifact,
    validate_name,
    versions,
)
from fmnist.config import Settings

# the naming rules (validate_name, versions, next_version) live with the artifact writer; used from here too
from fmnist.fileio import atomic_write

DEFAULT_MODEL = Settings.model  # the model a server, a batch job and `fmnist predict` use unless told
ALIASES = "aliases.json"


def registry_root(root: "str | Path | None" = None) -> Path:
    """--registry, else FMNIST_MODELS, else ./models."""
    return Path(root or os.environ.get("FMNIST_MODELS") or "models")


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
    if not is_valid_name(name):
        raise ArtifactError(f"{ref!r} is neither an artifact directory nor a model name[:version]")
    known = versions(root, name)
    if not known:
        names = sorted({n for n, _ in list_artifacts(root)})
        hint = f"models in {root}: {', '.join(names)}" if names else f"no models in {root} (set FMNIST_MODELS or --registry)"
        raise ArtifactError(f"no model named {name!r}; {hint}")
    if not version:
        version = production_version(root, name) or known[-1]
    elif version not in known:
        raise ArtifactError(f"model {name!r} has no version {version!r}; versions: {', '.join(known)}")
    return read_artifact(root / name / version, verify=verify)


# --------------------------------------------------------------------------- the production alias


def _alias_path(root: Path, name: str) -> Path:
    return root / name / ALIASES


def read_aliases(root: "str | Path", name: str) -> dict:
    """{"production": version | None, "stack": [promoted versions, oldest first], "history": [events]}."""
    path = _alias_path(Path(root), name)
    if not path.is_file():
        return {"production": None, "stack": [], "history": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable alias file ({e})") from None
    data.setdefault("stack", [])
    data.setdefault("history", [])
    data["production"] = data["stack"][-1] if data["stack"] else None
    return data


def production_version(root: "str | Path", name: str) -> "str | None":
    return read_aliases(root, name)["production"]


def _write_aliases(root: Path, name: str, data: dict) -> None:
    path = _alias_path(root, name)
    data["production"] = data["stack"][-1] if data["stack"] else None
    atomic_write(path, json.dumps(data, indent=2) + "\n")  # readers see the old or the new file, never half of one


def promote(name: str, version: str, root: "str | Path | None" = None) -> dict:
    """Point `production` at name:version after verifying the artifact (every sha256)."""
    root = registry_root(root)
    art = resolve(f"{name}:{version}", root, verify=True)
    data = read_aliases(root, name)
    if not data["stack"]:  # production was implicit (the latest version): recorded, so that rollback returns to it
        implicit = versions(root, name)[-1]
        if implicit != art.version:
            data["stack"].append(implicit)
    if data["production"] != art.version:
        data["stack"].append(art.version)
    data["history"].append({"action": "promote", "version": art.version, "at": time.time()})
    _write_aliases(root, name, data)
    return data


def rollback(name: str, root: "str | Path | None" = None) -> dict:
    """Undo the last promotion: `production` goes back to the version promoted before it."""
    root = registry_root(root)
    data = read_aliases(root, name)
    if len(data["stack"]) < 2:
        raise ArtifactError(f"nothing to roll back to: {name} has no earlier promoted version "
                            f"(production: {data['production']})")
    previous = data["stack"][-2]
    resolve(f"{name}:{previous}", root, verify=True)  # refuse to roll back onto a broken artifact
    current = data["stack"].pop()
    data["history"].append({"action": "rollback", "from": current, "version": previous, "at": time.time()})
    _write_aliases(root, name, data)
    return data
