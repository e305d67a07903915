"""Commands over data, training, the registry and evaluation: data, train, evaluate, models, promote,
rollback, archs, export, import, compare, explain."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from fmnist.cli.errors import CLIError


# --------------------------------------------------------------------------- data


def cmd_data(args) -> int:
    from fmnist import data

    ds = data.load(args.data_dir, allow_download=not args.no_download)
    s = data.summary(ds)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"Fashion-MNIST from {s['directory']} ({s['source']}): checksums verified")
    print(f"  train {s['counts']['train']:,} + val {s['counts']['val']:,} (fixed split) / test {s['counts']['test']:,}"
          f"; 28x28 grayscale; pixel mean {s['pixel_mean']:.4f} std {s['pixel_std']:.4f}")
    print(f"  {'class':<13}{'train':>7}{'val':>6}{'test':>6}")
    for i, (name, c) in enumerate(s["per_class"].items()):
        print(f"  {i} {name:<11}{c['train']:>7}{c['val']:>6}{c['test']:>6}")
    return 0


# --------------------------------------------------------------------------- train


def cmd_train(args) -> int:
    from fmnist.artifact import save_artifact
    from fmnist.models import list_models
    from fmnist.registry import registry_root
    from fmnist.training.trainer import config_for, provenance, train

    if args.arch not in list_models():
        raise CLIError(f"unknown --arch {args.arch!r}: known models are {', '.join(list_models())}")
    overrides = {k: getattr(args, k) for k in (
        "name", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "label_smoothing",
        "crop_padding", "hflip", "erasing", "patience", "min_epochs", "seed", "device", "threads", "precision",
        "train_limit", "eval_limit", "data_dir", "channels_last", "elastic", "pictures", "picture_variants",
        "distill", "distill_alpha", "distill_temperature",
    )}
    overrides["model_kwargs"] = args.kwargs
    cfg = config_for(args.arch, **overrides)
    root = registry_root(args.registry)
    checkpoint = Path(args.checkpoint) if args.checkpoint else root / ".checkpoints" / f"{cfg.name}.pt"
    teacher = None
    if cfg.distill:  # the teacher's ONNX graph, as served: uint8 pixels -> logits
        from functools import partial

        from fmnist.evaluation.evaluate import artifact_logits
        from fmnist.registry import resolve

        teacher = partial(artifact_logits, resolve(cfg.distill, args.registry))
    result = train(cfg, checkpoint=checkpoint, resume=args.resume, quiet=args.quiet, teacher=teacher)
    training = provenance(cfg, result, "fmnist " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    art = save_artifact(
        result.model, registry=root, name=cfg.name, arch=cfg.arch, model_kwargs=cfg.model_kwargs,
        preprocessing=result.preprocessing, metrics={"test": result.test_report}, training=training,
        reference=result.reference, version=args.version,
    )
    print(f"saved {art.ref} to {art.path}: test accuracy {result.test_report['accuracy']:.4f}, "
          f"{result.train_seconds:.0f}s of training, ONNX parity {art.manifest['onnx']['max_abs_diff_vs_torch']:.1e}")
    return 0


# --------------------------------------------------------------------------- evaluate / models


def cmd_evaluate(args) -> int:
    from fmnist import data
    from fmnist.evaluation.evaluate import evaluate_artifact, format_report
    from fmnist.registry import resolve

    art = resolve(args.model, args.registry)
    ds = data.load(args.data_dir, allow_download=not args.no_download)
    x, y = ds.test_images, ds.test_labels
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    report = evaluate_artifact(art, x, y, backend=args.backend, tta=args.tta)
    if args.pictures:
        from fmnist.evaluation.evaluate import artifact_logits
        from fmnist.evaluation.pictures import format_picture_report, load_benchmark, picture_report

        bench = load_benchmark(ds, per_style=min(args.limit or 1000, 1000))
        report["pictures"] = picture_report(lambda px: artifact_logits(art, px, args.backend, tta=args.tta), bench)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        if args.pictures:
            print()
            print(format_picture_report(report["pictures"], report["accuracy"]))
    return 0


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


def cmd_promote(args) -> int:
    from fmnist.registry import promote

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


# --------------------------------------------------------------------------- export / import


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
    from fmnist.importer import import_file
    from fmnist.preprocess import DEFAULT_MEAN, DEFAULT_STD, Preprocessing
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
    return 0


# --------------------------------------------------------------------------- compare / explain


def cmd_compare(args) -> int:
    from fmnist.evaluation.report import write_report

    path = write_report(args.models, Path(args.out), registry=args.registry, data_dir=args.data_dir,
                        command="fmnist " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    print(f"wrote {path}")
    return 0


def cmd_explain(args) -> int:
    from fmnist.evaluation.explain import explain

    written = explain(args.model, args.image, Path(args.out), registry=args.registry, data_dir=args.data_dir)
    for p in written:
        print(p)
    return 0
