"""The `fmnist` command: thin sub-commands over the library (heavy imports happen inside each one)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from fmnist.config import WORKER_KINDS


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}); example: '{{\"hidden\": [512, 256]}}'")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"cfg\": \"M\"}'")
    return value


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
    from fmnist.training.trainer import config_for, train

    if args.arch not in list_models():
        raise CLIError(f"unknown --arch {args.arch!r}: known models are {', '.join(list_models())}")
    overrides = {k: getattr(args, k) for k in (
        "name", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "label_smoothing",
        "crop_padding", "hflip", "erasing", "patience", "min_epochs", "seed", "device", "threads", "precision",
        "train_limit", "eval_limit", "data_dir", "channels_last",
    )}
    overrides["model_kwargs"] = args.kwargs
    cfg = config_for(args.arch, **overrides)
    root = registry_root(args.registry)
    checkpoint = Path(args.checkpoint) if args.checkpoint else root / ".checkpoints" / f"{cfg.name}.pt"
    result = train(cfg, checkpoint=checkpoint, resume=args.resume, quiet=args.quiet)
    from dataclasses import asdict

    import torch

    from fmnist.data import SPLIT_SEED, VAL_SIZE

    training = {
        "command": "fmnist " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "config": asdict(cfg),
        "seed": cfg.seed,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "duration_seconds": round(result.train_seconds, 1),
        "threads": torch.get_num_threads(),
        "dataset": {"name": "Fashion-MNIST", "checksums_sha256": result.dataset_checksums},
        "split": {"train": cfg.train_limit or 60000 - VAL_SIZE, "val": cfg.eval_limit or VAL_SIZE,
                  "seed": SPLIT_SEED},
    }
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
    report = evaluate_artifact(art, x, y, backend=args.backend)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
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
    from fmnist import data
    from fmnist.artifact import import_state_dict, save_artifact
    from fmnist.evaluation.metrics import classification_report, reference_statistics, softmax
    from fmnist.preprocess import Preprocessing
    from fmnist.registry import registry_root

    model = import_state_dict(args.file, args.arch, args.kwargs)
    pre = Preprocessing(mean=args.mean, std=args.std)
    metrics, reference = {}, {}
    if not args.no_eval:
        import torch

        ds = data.load(args.data_dir, allow_download=False)
        (_, _), (va_x, _) = ds.split()
        with torch.no_grad():
            test_logits = model(torch.from_numpy(pre.normalize(ds.test_images))).numpy()
            val_logits = model(torch.from_numpy(pre.normalize(va_x))).numpy()
        metrics = {"test": classification_report(ds.test_labels, test_logits.argmax(1))}
        reference = reference_statistics(softmax(val_logits), va_x)
        reference["source"] = f"validation split ({len(va_x)} images)"
    art = save_artifact(
        model, registry=registry_root(args.registry), name=args.name or args.arch, arch=args.arch,
        model_kwargs=args.kwargs, preprocessing=pre, metrics=metrics, reference=reference,
        training={"imported_from": str(args.file)},
    )
    acc = metrics.get("test", {}).get("accuracy")
    print(f"imported {args.file} as {art.ref} at {art.path}" + (f": test accuracy {acc:.4f}" if acc else ""))
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


# --------------------------------------------------------------------------- serve / predict


def _worker_kind(worker: "str | None", threads: "int | None", env) -> str:
    """--worker (else FMNIST_WORKER, else loop), checked, and checked against --threads."""
    kind = worker or env.get("FMNIST_WORKER") or "loop"
    if kind not in WORKER_KINDS:
        raise CLIError(f"FMNIST_WORKER={kind!r}: expected loop, gthread or sync")
    if threads and kind != "gthread":
        raise CLIError("--threads is for --worker gthread (the default loop worker runs one thread per process)")
    return kind


def cmd_serve(args) -> int:
    """Exec Gunicorn over `fmnist.serving:create_app()`; settings travel as FMNIST_* variables."""
    import os

    env = dict(os.environ)
    env["FMNIST_BIND"] = f"{args.host}:{args.port}"
    for key, value in (("MODEL", args.model), ("MODELS", args.registry), ("WORKERS", args.workers),
                       ("WORKER", args.worker), ("THREADS", args.threads), ("BACKEND", args.backend),
                       ("MAX_BATCH_SIZE", args.max_batch_size), ("MAX_BATCH_WAIT_MS", args.max_batch_wait_ms)):
        if value is not None:
            env[f"FMNIST_{key}"] = str(value)
    if args.no_batching:
        env["FMNIST_BATCHING"] = "false"
    if args.quiet:
        env["FMNIST_LOG_REQUESTS"] = "false"
    kind = _worker_kind(args.worker, args.threads, env)
    env.setdefault("OMP_NUM_THREADS", "1")  # no library may spawn a thread per core in every worker
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):  # metrics of all workers, merged at scrape time
        import tempfile

        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fmnist-metrics-")
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    # fail here, with a clear message, rather than in every worker
    from fmnist.config import Settings
    from fmnist.registry import resolve

    try:
        settings = Settings.load(environ=env)
    except ValueError as e:
        raise CLIError(str(e)) from None
    art = resolve(settings.model, settings.models or None)
    if kind == "gthread":
        kind += f" x {settings.threads} threads"
    print(f"fmnist: serving {art.ref} on http://{args.host}:{args.port} (workers="
          f"{settings.worker_count} {kind}, batching={'on' if settings.batching else 'off'})",
          file=sys.stderr, flush=True)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:fmnist.serving.gunicorn_conf", "fmnist.serving:create_app()"]
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def cmd_predict(args) -> int:
    from fmnist.client import predict_files

    failures = 0
    for path, result in predict_files(args.images, args.url, top_k=args.top_k, preprocess=args.preprocess):
        if args.json:
            print(json.dumps({"file": path, **result}))
        elif "error" in result:
            print(f"{path}: error: {result['error'].get('message', result['error'])}")
        else:
            print(f"{path}: {result['label']} ({result['confidence']:.1%})"
                  + "".join(f"  {t['label']} {t['probability']:.1%}" for t in result["top_k"][1:]))
        failures += "error" in result
    return 1 if failures else 0


def cmd_cluster(args) -> int:
    import os

    from fmnist import cluster

    state = Path(args.state_dir)
    if args.action == "status":
        st = cluster.status(state)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            print(f"load balancer :{st['port']} {'ready' if st['load_balancer_ready'] else 'NOT ready'}; "
                  f"replica restarts: {st['restarts']}")
            for r in st["replicas"]:
                print(f"  replica :{r['port']} pid {r['pid']} {'ready' if r['ready'] else 'NOT ready'} {r['model'] or ''}")
        return 0
    if args.action == "down":
        cluster.down(state)
        print("fmnist cluster: stopped")
        return 0
    _worker_kind(args.worker, args.threads, os.environ)  # the replicas' `fmnist serve` would refuse it
    serve_args = []
    if args.model:
        serve_args += ["--model", args.model]
    if args.registry:
        serve_args += ["--registry", args.registry]
    if args.worker:
        serve_args += ["--worker", args.worker]
    if args.threads:
        serve_args += ["--threads", str(args.threads)]
    state.mkdir(parents=True, exist_ok=True)
    if (state / "state.json").exists():
        raise CLIError(f"a cluster already runs from {state}; `fmnist cluster down` first")
    if args.detach:
        argv = [a for a in sys.argv[1:] if a != "--detach"]
        pid = cluster.start_detached(state, [sys.executable, "-m", "fmnist.cli", *argv])
        print(f"fmnist cluster: {args.replicas} replicas behind nginx on http://{args.host}:{args.port}, all ready "
              f"(supervisor pid {pid}; `fmnist cluster status`, `fmnist cluster down`)")
        return 0
    c = cluster.Cluster(state, args.replicas, port=args.port, host=args.host, workers=args.workers,
                        serve_args=serve_args)
    try:
        c.start()
    except BaseException:
        c.stop()
        raise
    print(f"fmnist cluster: {args.replicas} replicas x {c.workers} workers behind nginx on "
          f"http://{args.host}:{args.port}", flush=True)
    c.supervise()
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fmnist", description="Fashion-MNIST CNN classifier: train, evaluate, compare, export.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__import__('fmnist').__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_opts(sp):
        sp.add_argument("--data-dir", help="directory with the four Fashion-MNIST .gz files")
        sp.add_argument("--no-download", action="store_true", help="never try the official mirror")

    def registry_opt(sp):
        sp.add_argument("--registry", help="model registry directory (default: $FMNIST_MODELS or ./models)")

    sp = sub.add_parser("data", help="find, verify and summarise the dataset")
    data_opts(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_data)

    sp = sub.add_parser("archs", help="list the model architectures")
    sp.set_defaults(func=cmd_archs)

    sp = sub.add_parser("models", help="list trained model artifacts in the registry")
    registry_opt(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_models)

    sp = sub.add_parser("promote", help="point a model's production alias at a version (verified first)")
    sp.add_argument("name")
    sp.add_argument("version")
    registry_opt(sp)
    sp.set_defaults(func=cmd_promote)

    sp = sub.add_parser("rollback", help="move the production alias back to the previously promoted version")
    sp.add_argument("name")
    registry_opt(sp)
    sp.set_defaults(func=cmd_rollback)

    sp = sub.add_parser("train", help="train an architecture and save it as a verified artifact")
    sp.add_argument("--arch", required=True, help="architecture name (see `fmnist archs`)")
    sp.add_argument("--name", help="artifact name (default: the arch)")
    sp.add_argument("--version", help="artifact version (default: next integer)")
    sp.add_argument("--kwargs", type=_json_arg, default={}, help="model constructor arguments as JSON")
    sp.add_argument("--epochs", type=int)
    sp.add_argument("--batch-size", type=int)
    sp.add_argument("--optimizer", choices=["adamw", "sgd"])
    sp.add_argument("--lr", type=float, help="peak learning rate")
    sp.add_argument("--weight-decay", type=float)
    sp.add_argument("--schedule", choices=["onecycle", "cosine", "constant"])
    sp.add_argument("--label-smoothing", type=float)
    sp.add_argument("--crop-padding", type=int, help="random-crop padding in pixels (0: off)")
    sp.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flip")
    sp.add_argument("--erasing", type=float, help="random-erasing probability (0: off)")
    sp.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    sp.add_argument("--min-epochs", type=int, help="no early stop before this epoch (default: half the epochs under one-cycle)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--device", choices=["cpu", "cuda"])
    sp.add_argument("--threads", type=int, help="intra-op CPU threads (default: all cores)")
    sp.add_argument("--precision", choices=["fp32", "bf16"])
    sp.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    sp.add_argument("--train-limit", type=int, help="train on the first N images only (quick runs)")
    sp.add_argument("--eval-limit", type=int, help="validate/test on the first N images only")
    sp.add_argument("--checkpoint", help="checkpoint file (default: <registry>/.checkpoints/<name>.pt)")
    sp.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
    sp.set_defaults(func=cmd_train)
    data_opts(sp)
    registry_opt(sp)

    sp = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class metrics and confusion matrix on the test set")
    sp.add_argument("model", nargs="?", default=None, help="artifact path or name[:version] (default: smallcnn)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    sp.add_argument("--limit", type=int, help="first N test images only")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("compare", help="write the comparison report (Markdown + PNG figures)")
    sp.add_argument("models", nargs="+", help="artifact paths or name[:version]")
    sp.add_argument("--out", required=True, help="folder for report.md and figures")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("explain", help="PNGs of first-layer filters and feature maps for one image")
    sp.add_argument("model")
    sp.add_argument("image", help="an image file, or test:N for test-set image N")
    sp.add_argument("--out", default="explain", help="output folder (default: ./explain)")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_explain)

    sp = sub.add_parser("export", help="write the model as a plain .pth state dict or a copy of its ONNX graph")
    sp.add_argument("model")
    sp.add_argument("--format", choices=["pth", "onnx"], default="pth")
    sp.add_argument("--output", "-o")
    registry_opt(sp)
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("serve", help="serve a model over HTTP with Gunicorn (POST /predict, /v2, /ready ...)")
    sp.add_argument("--model", help="artifact path or name[:version] (default: smallcnn)")
    sp.add_argument("--host", default="0.0.0.0")
    sp.add_argument("--port", type=int, default=5000)
    sp.add_argument("--workers", type=int, help="Gunicorn worker processes (default: CPU count)")
    sp.add_argument("--worker", choices=WORKER_KINDS,
                    help="worker type (default loop: one event loop per process, batches requests that "
                         "arrive together; gthread: Gunicorn's thread pool; sync: one request at a time)")
    sp.add_argument("--threads", type=int, help="threads per worker, for --worker gthread (default 2)")
    sp.add_argument("--backend", choices=["onnx", "torch"], help="default onnx (no torch needed)")
    sp.add_argument("--no-batching", action="store_true", help="run every request on its own")
    sp.add_argument("--max-batch-size", type=int)
    sp.add_argument("--max-batch-wait-ms", type=float)
    sp.add_argument("--quiet", action="store_true", help="no per-request log lines")
    registry_opt(sp)
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("cluster", help="N replicas behind nginx on this machine: up, down, status")
    sp.add_argument("action", choices=["up", "down", "status"])
    sp.add_argument("--replicas", type=int, default=2)
    sp.add_argument("--port", type=int, default=5000, help="load balancer port (replicas use the next ones)")
    sp.add_argument("--host", default="127.0.0.1", help="load balancer address")
    sp.add_argument("--workers", type=int, help="workers per replica (default: cores / replicas)")
    sp.add_argument("--worker", choices=WORKER_KINDS)
    sp.add_argument("--threads", type=int, help="for --worker gthread")
    sp.add_argument("--model")
    sp.add_argument("--state-dir", default=".fmnist/cluster")
    sp.add_argument("--detach", action="store_true", help="run the supervisor in the background")
    sp.add_argument("--json", action="store_true")
    registry_opt(sp)
    sp.set_defaults(func=cmd_cluster)

    sp = sub.add_parser("predict", help="classify image files with a running server")
    sp.add_argument("images", nargs="+")
    sp.add_argument("--url", default="http://localhost:5000", help="server base URL (default http://localhost:5000)")
    sp.add_argument("--top-k", type=int, default=3)
    sp.add_argument("--preprocess", choices=["auto", "raw", "photo"], default="auto")
    sp.add_argument("--json", action="store_true", help="one JSON object per file")
    sp.set_defaults(func=cmd_predict)

    sp = sub.add_parser("import", help="turn a .pth state dict into a verified artifact")
    sp.add_argument("file")
    sp.add_argument("--arch", required=True)
    sp.add_argument("--kwargs", type=_json_arg, default={})
    sp.add_argument("--name")
    sp.add_argument("--mean", type=float, default=0.2860, help="normalisation mean the weights were trained with")
    sp.add_argument("--std", type=float, default=0.3530, help="normalisation std the weights were trained with")
    sp.add_argument("--no-eval", action="store_true", help="skip test metrics and reference statistics")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_import)
    return p


def main(argv=None) -> int:
    from fmnist.artifact import ArtifactError
    from fmnist.cluster import ClusterError
    from fmnist.data import DatasetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ArtifactError, ClusterError, DatasetError, KeyError, ValueError, OSError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"fmnist {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `fmnist evaluate | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"fmnist {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
