"""Commands that judge trained models: evaluate, compare, explain (first-layer filters)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path


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
        from fmnist.evaluation.picture_benchmark import format_picture_report, load_benchmark, picture_report

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


def cmd_compare(args) -> int:
    from fmnist.evaluation.report import write_report

    path = write_report(args.models, Path(args.out), registry=args.registry, data_dir=args.data_dir,
                        command="fmnist " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    print(f"wrote {path}")
    return 0


def cmd_explain(args) -> int:
    from fmnist.evaluation.filters import explain

    written = explain(args.model, args.image, Path(args.out), registry=args.registry, data_dir=args.data_dir)
    for p in written:
        print(p)
    return 0
