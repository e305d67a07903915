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
    if args.garments:
        from fmnist.evaluation import garment_benchmark as gb

        rep = gb.artifact_report(art)
        for fam in rep["families"].values():
            fam.pop("right")
        report["garments"] = rep
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        if args.pictures:
            print()
            print(format_picture_report(report["pictures"], report["accuracy"]))
        if args.garments:
            from fmnist.evaluation.garment_benchmark import format_report

            print()
            print(format_report(report["garments"]))
    return 0


def print_calibration(art) -> None:
    c = art.manifest["calibration"]
    print(f"calibrated {art.ref}: temperature {c['temperature']:.3f}, expected calibration error "
          f"{c['ece']['before']:.4f} -> {c['ece']['after']:.4f}; flagged on the validation set: "
          f"{c['expected']['unsure']:.1%} unsure (confidence < {c['unsure_below']:.3f}), "
          f"{c['expected']['not_a_garment']:.1%} not_a_garment (ood_score >= {c['ood_above']})")


def cmd_calibrate(args) -> int:
    from fmnist import data
    from fmnist.evaluation.calibrate import calibrate_artifact
    from fmnist.registry import resolve

    art = resolve(args.model, args.registry)
    print_calibration(calibrate_artifact(art, data.load(args.data_dir, allow_download=not args.no_download)))
    return 0


def cmd_compare(args) -> int:
    import matplotlib  # noqa: F401  the figures need it: missing, say so now, not after minutes of work

    from fmnist.evaluation.report import write_report

    path, reps = write_report(args.models, Path(args.out), registry=args.registry, data_dir=args.data_dir,
                              command="fmnist " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    print(f"wrote {path}")
    from fmnist.evaluation import garment_benchmark as gb

    print()
    print(gb.format_table(reps))
    for ref, rep in reps[1:]:  # the regression gate against the first model named
        print(gb.format_gate(gb.regression(rep, reps[0][1]), ref, reps[0][0]))
    return 0


def cmd_filters(args) -> int:
    from fmnist.evaluation.filters import explain

    written = explain(args.model, args.image, Path(args.out), registry=args.registry, data_dir=args.data_dir)
    for p in written:
        print(p)
    return 0
