"""Commands over the data and training: data, train."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from fmnist.cli.errors import CLIError


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


def cmd_train(args) -> int:
    from fmnist.artifact import ArtifactInfo, save_artifact
    from fmnist.models import list_models
    from fmnist.registry import registry_root
    from fmnist.training.config import TrainConfig, config_for
    from fmnist.training.trainer import provenance, train

    if args.arch not in list_models():
        raise CLIError(f"unknown --arch {args.arch!r}: known models are {', '.join(list_models())}")
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "arch" and hasattr(args, f.name)}
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
    init_state = None
    if cfg.init:  # fine-tuning: the named artifact's weights are the starting point
        from fmnist.artifact import load_model
        from fmnist.registry import resolve

        init_state = load_model(resolve(cfg.init, args.registry)).state_dict()
    result = train(cfg, checkpoint=checkpoint, resume=args.resume, quiet=args.quiet, teacher=teacher,
                   init_state=init_state)
    training = provenance(cfg, result, "fmnist " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    info = ArtifactInfo(root, cfg.name, result.preprocessing, metrics={"test": result.test_report},
                        training=training, reference=result.reference, version=args.version)
    art = save_artifact(result.model, info, arch=cfg.arch, model_kwargs=cfg.model_kwargs)
    print(f"saved {art.ref} to {art.path}: test accuracy {result.test_report['accuracy']:.4f}, "
          f"{result.train_seconds:.0f}s of training, ONNX parity {art.manifest['onnx']['max_abs_diff_vs_torch']:.1e}")
    from fmnist import data
    from fmnist.cli.evaluate import print_calibration
    from fmnist.evaluation.calibrate import calibrate_artifact

    print_calibration(calibrate_artifact(art, data.load(cfg.data_dir or None), cfg.eval_limit or None))
    return 0
