"""`fmnist batch`: classify a directory, glob, manifest or array file offline (see fmnist.batch)."""

from __future__ import annotations

import json
import sys


def cmd_batch(args) -> int:
    from fmnist.batch import job
    from fmnist.batch.sources import open_source, parse_shard
    from fmnist.config import Settings

    source = open_source(args.input, labels=args.labels)
    flagged_label = Settings.load().flagged_label if args.flagged_label is None else args.flagged_label == "true"
    opts = job.Options(model=args.model, registry=args.registry, out=args.out, preprocess=args.preprocess,
                       top_k=args.top_k, workers=args.workers, chunk=args.chunk, shard=parse_shard(args.shard),
                       flagged_label=flagged_label, progress=not args.quiet)
    if args.restart:
        job.restart(args.out)
    if args.engine == "dask":
        from fmnist.batch import dask_engine

        report = dask_engine.run(source, opts, scheduler=args.scheduler, local_workers=args.dask_workers)
    else:
        report = job.run(source, opts)
    o = report.outputs
    classified = report.done - report.errors  # `done` counts every input read this run, unreadable ones too
    print(f"{report.total:,} inputs ({source.description}): {classified:,} classified now, {report.skipped:,} "
          f"done before, {report.errors:,} unreadable; {report.seconds:.1f} s"
          + (f" ({report.done / report.seconds:,.0f} images/s)" if report.done and report.seconds else ""))
    print(f"results {o['results']}; errors {o['errors_file']}; summary {o['summary']}; "
          + (f"figure {o['figure']}" if o.get("figure") else "no figure (it needs matplotlib: make setup-train)"))
    print(_findings(json.loads(open(o["summary"]).read())))
    if args.json:
        print(json.dumps(o))
    if report.errors:
        print(f"fmnist batch: {report.errors:,} inputs could not be classified (reasons in {o['errors_file']})",
              file=sys.stderr)
        return 1
    return 0


def _findings(summary: dict) -> str:
    """The summary's headline in a line: class mix, flagged answers, drift, and accuracy when labelled."""
    parts = []
    counts = summary.get("class_counts") or {}
    total = sum(counts.values())
    if total:
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        parts.append("classes " + ", ".join(f"{name} {n / total:.0%}" for name, n in top))
    flagged = summary.get("flagged") or {}
    if flagged:
        parts.append("flagged " + ", ".join(f"{name} {n:,}" for name, n in flagged.items()))
    drift = summary.get("drift") or {}
    if drift.get("status"):
        parts.append(f"drift {drift['status']}")
    acc = summary.get("accuracy")
    if acc:
        parts.append(f"accuracy {acc['accuracy']:.2%} on {acc['n']:,} labelled (test set {acc['test_accuracy']:.2%})"
                     if acc.get("test_accuracy") else f"accuracy {acc['accuracy']:.2%} on {acc['n']:,} labelled")
    return "; ".join(parts) if parts else "nothing classified"
