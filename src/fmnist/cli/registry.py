"""Commands over the model registry: models, archs, promote, rollback, export, import."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_models(args) -> int:
    from fmnist.registry import list_artifacts, production_version, registry_root, resolve

    rows = []
    root = registry_root(args.registry)
    for name, version in list_artifacts(args.registry):
        art = resolve(f"{name}:{version}", args.registry, verify=False)
        m = art.manifest
        acc = m.get("metrics", {}).get("test", {}).get("accuracy")
        rows.append({
            "name": name, "version": version, "arch": art.arch, "params": m["architecture"].get("params"),
            "test_accuracy": acc, "production": production_version(root, name) == version, "path": str(art.path),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no models in {registry_root(args.registry)}")
    else:
        print(f"{'model':<20}{'arch':<10}{'params':>10}{'test acc':>10}  {'alias':<11} path")
        for r in rows:
            acc = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-"
            alias = "production" if r["production"] else ""
            print(f"{r['name'] + ':' + r['version']:<20}{r['arch']:<10}{r['params'] or 0:>10,}{acc:>10}  "
                  f"{alias:<11} {r['path']}")
    return 0


def garment_gate(name: str, version: str, registry, force: bool) -> None:
    """Refuse (CLIError) a version that is worse than today's production on a held-out garment family beyond the
    noise (fmnist.evaluation.garment_benchmark), unless `force`; say what was compared either way."""
    import sys

    from fmnist.cli.errors import CLIError
    from fmnist.evaluation import garment_benchmark as gb
    from fmnist.registry import resolve

    candidate = resolve(f"{name}:{version}", registry)
    current = resolve(name, registry)  # production: the promoted version, else the latest
    if current.version == candidate.version:
        return
    if force:
        print(f"garment gate skipped (--force): {candidate.ref} was not compared with {current.ref}", file=sys.stderr)
        return
    failures, notes = gb.gate(candidate, current)
    for note in notes:
        print(f"garment gate: {note}", file=sys.stderr)
    if failures is None:
        return
    message = gb.format_gate(failures, candidate.ref, current.ref)
    if failures:
        raise CLIError(f"{message}; refused (fmnist compare {current.ref} {candidate.ref} shows the families; "
                       "--force to go ahead anyway)")
    print(message, file=sys.stderr)


def cmd_promote(args) -> int:
    from fmnist.registry import promote

    garment_gate(args.name, args.version, args.registry, args.force)
    data = promote(args.name, args.version, args.registry)
    print(f"{args.name}: production -> {data['production']} (running servers switch within their reload interval)")
    return 0


def cmd_rollback(args) -> int:
    from fmnist.registry import rollback

    data = rollback(args.name, args.registry)
    print(f"{args.name}: production -> {data['production']} (rolled back from {data['history'][-1]['from']})")
    return 0


def cmd_archs(args) -> int:
    from fmnist.models import count_flops, count_parameters, create_model, describe_models

    print(f"{'arch':<10}{'params':>10}{'MFLOPs':>9}  description")
    for name, desc in describe_models().items():
        m = create_model(name)
        print(f"{name:<10}{count_parameters(m):>10,}{count_flops(m) / 1e6:>9.2f}  {desc}")
    return 0


def cmd_export(args) -> int:
    import shutil

    from fmnist.artifact import export_state_dict
    from fmnist.registry import resolve

    art = resolve(args.model, args.registry)
    out = Path(args.output or f"{art.name}-{art.version}.{args.format}")
    if args.format == "pth":
        export_state_dict(art, out)
    else:
        shutil.copyfile(art.onnx_path, out)
    print(f"wrote {out} ({args.format}) from {art.ref}")
    return 0


def cmd_import(args) -> int:
    from fmnist.images.preprocess import DEFAULT_MEAN, DEFAULT_STD, Preprocessing
    from fmnist.importer import import_file
    from fmnist.registry import registry_root

    if args.arch:  # our own architectures are trained on the dataset's mean/std
        mean, std = DEFAULT_MEAN if args.mean is None else args.mean, DEFAULT_STD if args.std is None else args.std
    else:  # the lesson's convention: pixels / 255
        mean, std = args.mean or 0.0, args.std or 1.0
    if args.scale == 255.0:  # the model wants raw 0-255 pixels: (p / 255 - mean) / (std / 255)
        std = std / 255.0
    scale = "pixel / 255" if args.scale != 255.0 else "pixel (0-255): (pixel / 255 - mean) / std with std / 255"
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    art = import_file(args.file, registry_root(args.registry), name=args.name, arch=args.arch,
                      model_kwargs=args.kwargs, preprocessing=Preprocessing(mean=mean, std=std, scale=scale),
                      classes=classes, evaluate=not args.no_eval, data_dir=args.data_dir)
    m = art.manifest
    acc = m.get("metrics", {}).get("test", {}).get("accuracy")
    parity = m["onnx"].get("max_abs_diff_vs_source", m["onnx"].get("max_abs_diff_vs_torch"))
    print(f"imported {args.file} ({m['training'].get('format')}) as {art.ref} at {art.path}"
          + (f": test accuracy {acc:.4f}" if acc is not None else "") + f"; ONNX parity {parity:.1e}"
          + (f"; input {m['source']['input_layout']}, output {m['source']['output']}" if "source" in m else ""))
    if not args.no_eval:  # imported models get calibrated confidence and the flag too
        from fmnist import data
        from fmnist.cli.evaluate import print_calibration
        from fmnist.evaluation.calibrate import calibrate_artifact

        print_calibration(calibrate_artifact(art, data.load(args.data_dir, allow_download=not args.no_download)))
    return 0
