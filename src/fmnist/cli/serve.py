"""Commands over serving: serve (exec Gunicorn), predict (HTTP client), cluster (nginx + replicas)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fmnist.cli.errors import CLIError
from fmnist.config import WORKER_KINDS

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
    for key, value in (("MODEL", args.model), ("MODELS", args.registry), ("PREDICTION_LOG", args.prediction_log),
                       ("WORKERS", args.workers), ("WORKER", args.worker), ("THREADS", args.threads), ("BACKEND", args.backend),
                       ("MAX_BATCH_SIZE", args.max_batch_size), ("MAX_BATCH_WAIT_MS", args.max_batch_wait_ms),
                       ("API_KEYS", args.api_keys)):
        if value is not None:
            env[f"FMNIST_{key}"] = str(value)
    if args.no_batching:
        env["FMNIST_BATCHING"] = "false"
    if args.open:
        env["FMNIST_OPEN"] = "true"
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
    if settings.exposure_problem():
        raise CLIError(settings.exposure_problem())
    art = resolve(settings.model, settings.models or None)
    if kind == "gthread":
        kind += f" x {settings.threads} threads"
    url = f"http://{args.host}:{args.port}"
    print(f"fmnist: serving {art.ref} on {url} (workers={settings.worker_count} {kind}, batching="
          f"{'on' if settings.batching else 'off'}); dashboard {url}/dashboard, API {url}/openapi.json",
          file=sys.stderr, flush=True)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:fmnist.serving.http.gunicorn_conf", "fmnist.serving:create_app()"]
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def _said(result: dict) -> str:
    """One answer in a line: the flag first when there is one (then the label is only a guess), the other
    classes of top_k, and the model that answered (it matters during a canary)."""
    flag, best = result.get("flag"), result["top_k"][0]
    model = result.get("model") or {}
    ref = f"  [{model.get('name')}:{model.get('version')}]" if model else ""
    others = "".join(f"  {t['label']} {t['probability']:.1%}" for t in result["top_k"][1:])
    if flag == "not_a_garment":
        return (f"not a garment (ood_score {result.get('ood_score', 0):.2f}; best guess {best['label']} "
                f"{best['probability']:.1%}){ref}")
    if flag == "unsure":
        return f"unsure, maybe {best['label']} ({best['probability']:.1%}){others}{ref}"
    return f"{result['label']} ({result['confidence']:.1%}){others}{ref}"


def cmd_predict(args) -> int:
    from fmnist.client import predict_files

    failures = 0
    for path, result in predict_files(args.images, args.url, top_k=args.top_k, preprocess=args.preprocess,
                                      api_key=args.api_key):
        if args.json:
            print(json.dumps({"file": path, **result}))
        elif "error" in result:
            error = result["error"]
            hint = "; give the key with --api-key KEY (or FMNIST_API_KEY)" if error.get("code") == "unauthorized" else ""
            print(f"{path}: error: {error.get('message', error)}{hint}")
        else:
            print(f"{path}: {_said(result)}")
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
    if args.prediction_log:
        serve_args += ["--prediction-log", args.prediction_log]
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
