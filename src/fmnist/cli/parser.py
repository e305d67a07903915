"""The argument parser of `fmnist`: every sub-command, its options and its function."""

from __future__ import annotations

import argparse
import json

from fmnist.cli.batch import cmd_batch
from fmnist.cli.evaluate import cmd_calibrate, cmd_compare, cmd_evaluate, cmd_filters
from fmnist.cli.keys import cmd_keys
from fmnist.cli.registry import cmd_archs, cmd_export, cmd_import, cmd_models, cmd_promote, cmd_rollback
from fmnist.cli.rollout import cmd_rollout
from fmnist.cli.serve import cmd_cluster, cmd_predict, cmd_serve
from fmnist.cli.train import cmd_data, cmd_train
from fmnist.config import WORKER_KINDS, Settings


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}); example: '{{\"hidden\": [512, 256]}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"cfg\": \"M\"}'")
    return value


def train_config_options(sp) -> None:
    """One option per TrainConfig field, its help and choices from the field: stated once, in trainer.py.
    Defaults are None: the architecture's recipe decides what is not given."""
    from dataclasses import fields

    from fmnist.training.config import TrainConfig

    types = {"int": int, "float": float, "str": str}
    for f in fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata["help"]
        if f.type == "bool":
            sp.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            sp.add_argument(flag, type=types[f.type], choices=f.metadata.get("choices"), help=help_)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fmnist", description="A Fashion-MNIST classifier from training to production: "
                                "data, train, evaluate, calibrate, compare, filters, export, import, the registry "
                                "(models, promote, rollback), serve, predict, keys, cluster, rollout, batch. "
                                "Quick start: README.md; samples/ holds pictures to try.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__import__('fmnist').__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_opts(sp):
        sp.add_argument("--data-dir", help="directory with the four Fashion-MNIST .gz files")
        sp.add_argument("--no-download", action="store_true", help="never try the official mirror")

    def prediction_log_opt(sp):
        sp.add_argument("--prediction-log", help="SQLite path (default .fmnist/predictions.sqlite) or a "
                        "postgresql://user:password@host:port/dbname URL shared by every replica")

    def registry_opt(sp):
        sp.add_argument("--registry", help="model registry directory (default: $FMNIST_MODELS or ./models)")

    sp = sub.add_parser("data", help="find, verify and summarise the dataset")
    data_opts(sp)
    sp.add_argument("--json", action="store_true", help="the summary as JSON")
    sp.set_defaults(func=cmd_data)

    sp = sub.add_parser("archs", help="list the model architectures")
    sp.set_defaults(func=cmd_archs)

    sp = sub.add_parser("models", help="list trained model artifacts in the registry")
    registry_opt(sp)
    sp.add_argument("--json", action="store_true", help="the list as JSON")
    sp.set_defaults(func=cmd_models)

    sp = sub.add_parser("promote", help="point a model's production alias at a version (verified first)")
    sp.add_argument("name", help="the model's name (e.g. smallcnn)")
    sp.add_argument("version", help="the version to serve (fmnist models lists them)")
    sp.add_argument("--force", action="store_true", help="promote even if the garment gate finds it worse than today's "
                    "production on a held-out garment family")
    registry_opt(sp)
    sp.set_defaults(func=cmd_promote)

    sp = sub.add_parser("rollback", help="move the production alias back to the previously promoted version")
    sp.add_argument("name", help="the model's name (e.g. smallcnn)")
    registry_opt(sp)
    sp.set_defaults(func=cmd_rollback)

    sp = sub.add_parser("train", help="train an architecture and save it as a verified artifact")
    sp.add_argument("--arch", required=True, help="architecture name (see `fmnist archs`)")
    sp.add_argument("--version", help="artifact version (default: next integer)")
    sp.add_argument("--kwargs", type=_json_arg, help="model constructor arguments as JSON (default: the recipe's)")
    train_config_options(sp)
    sp.add_argument("--checkpoint", help="checkpoint file (default: <registry>/.checkpoints/<name>.pt)")
    sp.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
    sp.set_defaults(func=cmd_train)
    data_opts(sp)
    registry_opt(sp)

    sp = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class metrics and confusion matrix on the test set")
    sp.add_argument("model", nargs="?", default=None, help="artifact path or name[:version] (default: smallcnn)")
    sp.add_argument("--json", action="store_true", help="the metrics as JSON")
    sp.add_argument("--backend", choices=["onnx", "torch"], default="onnx",
                    help="run the ONNX graph (default) or the torch module")
    sp.add_argument("--limit", type=int, help="first N test images only")
    sp.add_argument("--pictures", action="store_true",
                    help="also the picture benchmark: the first 1,000 test images drawn as pictures in each of the 10 "
                         "styles (fmnist.pictures.styles), accuracy per style and class")
    sp.add_argument("--garments", action="store_true",
                    help="also the garment benchmark: parametric garments in families held out from training "
                         "(fmnist.pictures.garments), accuracy per family and class, and non-garment objects flagged")
    sp.add_argument("--tta", action="store_true", help="test-time augmentation: average with the mirror image (2x compute)")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("calibrate", help="fit a model's confidence calibration (temperature), its out-of-distribution "
                                          "reference and flag thresholds on the validation split, into its manifest")
    sp.add_argument("model", nargs="?", default=None, help="artifact path or name[:version] (default: smallcnn)")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_calibrate)

    sp = sub.add_parser("compare", help="write the comparison report (Markdown + PNG figures)")
    sp.add_argument("models", nargs="+", help="artifact paths or name[:version]")
    sp.add_argument("--out", required=True, help="folder for report.md and figures")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("filters", help="PNGs of first-layer filters and feature maps for one image "
                        "(what the first layer learned; POST /explain is the occlusion map of one answer)")
    sp.add_argument("model", help="artifact path or name[:version]")
    sp.add_argument("image", help="an image file, or test:N for test-set image N")
    sp.add_argument("--out", default="filters", help="output folder (default: ./filters)")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_filters)

    sp = sub.add_parser("export", help="write the model as a plain .pth state dict or a copy of its ONNX graph")
    sp.add_argument("model", help="artifact path or name[:version]")
    sp.add_argument("--format", choices=["pth", "onnx"], default="pth",
                    help="pth: a state dict for torch (needs the train set-up); onnx: a copy of the graph")
    sp.add_argument("--output", "-o", help="where to write (default: NAME-VERSION.FORMAT here)")
    registry_opt(sp)
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("serve", help="serve a model over HTTP with Gunicorn (POST /predict, /v2, /ready ...)")
    sp.add_argument("--model", help="artifact path or name[:version] (default: smallcnn)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                    "another address needs --api-keys or --open)")
    sp.add_argument("--port", type=int, default=5000, help="default 5000")
    sp.add_argument("--open", action="store_true", help="serve without API keys on an address beyond loopback, "
                    "on purpose (e.g. behind a gateway that authenticates)")
    sp.add_argument("--workers", type=int, help="Gunicorn worker processes (default: CPU count)")
    sp.add_argument("--worker", choices=WORKER_KINDS,
                    help="worker type (default loop: one event loop per process, batches requests that "
                         "arrive together; gthread: Gunicorn's thread pool; sync: one request at a time)")
    sp.add_argument("--threads", type=int, help="threads per worker, for --worker gthread (default 2)")
    sp.add_argument("--backend", choices=["onnx", "torch"], help="default onnx (no torch needed)")
    sp.add_argument("--no-batching", action="store_true", help="run every request on its own")
    sp.add_argument("--max-batch-size", type=int, help="images per model call at most (default 64)")
    sp.add_argument("--max-batch-wait-ms", type=float, help="how long a batch may wait for more requests (default 2; gthread)")
    sp.add_argument("--quiet", action="store_true", help="no per-request log lines")
    sp.add_argument("--api-keys", help="key file (fmnist keys create): every route but /health and /ready then "
                    "needs an API key of the right scope")
    prediction_log_opt(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("keys", help="API keys: create (shown once), list, revoke; the server rereads the file")
    keyfile = argparse.ArgumentParser(add_help=False)
    keyfile.add_argument("--file", help="the key file (default: $FMNIST_API_KEYS)")
    actions = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    kp = actions.add_parser("create", parents=[keyfile], help="a new key, printed once")
    kp.add_argument("--name", default="", help="who or what the key is for")
    kp.add_argument("--scopes", default="predict", help="comma-separated, among predict, feedback, monitor "
                    "(default predict)")
    kp.add_argument("--rate", type=float, default=0.0, help="requests per second of one server (shared out over "
                    "its workers; 0: no limit)")
    kp.add_argument("--burst", type=int, default=0, help="requests at once above the rate (default: one second's "
                    "worth)")
    kp.add_argument("--image-rate", type=float, default=0.0, help="images per second of one server (a request "
                    "holds up to max_images; 0: no limit)")
    kp.add_argument("--image-burst", type=int, default=0, help="images at once above the image rate (default: one "
                    "second's worth)")
    actions.add_parser("list", parents=[keyfile], help="every key: id, state, scopes, rate, created, name")
    kp = actions.add_parser("revoke", parents=[keyfile], help="refuse a key from now on (servers: within a second)")
    kp.add_argument("id", help="the key's id (fmnist keys list)")
    sp.set_defaults(func=cmd_keys)

    sp = sub.add_parser("cluster", help="N replicas behind nginx on this machine: up, down, status")
    sp.add_argument("action", choices=["up", "down", "status"], help="start the replicas and nginx, stop them, or show them")
    sp.add_argument("--replicas", type=int, default=2, help="how many fmnist serve behind nginx (default 2)")
    sp.add_argument("--port", type=int, default=5000, help="load balancer port (replicas use the next ones)")
    sp.add_argument("--host", default="127.0.0.1", help="load balancer address")
    sp.add_argument("--workers", type=int, help="workers per replica (default: cores / replicas)")
    sp.add_argument("--worker", choices=WORKER_KINDS, help="each replica's worker kind (default loop)")
    sp.add_argument("--threads", type=int, help="for --worker gthread")
    sp.add_argument("--model", help="artifact path or name[:version] (default: smallcnn)")
    sp.add_argument("--state-dir", default=".fmnist/cluster", help="where the cluster keeps its pids, logs and nginx config")
    sp.add_argument("--detach", action="store_true", help="run the supervisor in the background")
    sp.add_argument("--json", action="store_true", help="status as JSON")
    prediction_log_opt(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_cluster)

    sp = sub.add_parser("rollout", help="roll a new version out on live evidence: shadow or canary, gates, decision")
    sp.add_argument("action", choices=["start", "status", "promote", "abort"],
                    help="start a rollout, show its evidence, or decide it now")
    sp.add_argument("name", help="the model's name (e.g. smallcnn)")
    sp.add_argument("version", nargs="?", help="for start: the candidate version")
    sp.add_argument("--shadow", action="store_true", help="for start: the candidate sees a copy of all traffic; "
                    "clients get production's answers")
    sp.add_argument("--canary", type=float, metavar="PCT", help="for start: this percentage of clients (by API "
                    "key, X-Client-ID or request) get the candidate's answers")
    sp.add_argument("--gate", action="append", metavar="NAME=VALUE", help="for start: a gate other than its default "
                    "(min_requests=200, min_seconds=30, max_disagreement=0.1, max_psi=0.25, max_confidence_drop=0.1, "
                    "min_labels=50, max_accuracy_drop=0.02, auto_promote=true)")
    sp.add_argument("--force", action="store_true", help="for start: even if the garment gate finds the candidate worse "
                    "than production on a held-out garment family")
    sp.add_argument("--json", action="store_true", help="status as JSON")
    prediction_log_opt(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_rollout)

    sp = sub.add_parser("predict", help="classify image files with a running server")
    sp.add_argument("images", nargs="+", help="picture files (samples/ holds some to try)")
    sp.add_argument("--url", default="http://localhost:5000", help="server base URL (default http://localhost:5000)")
    sp.add_argument("--top-k", type=int, default=3, help="classes listed per answer (default 3)")
    sp.add_argument("--preprocess", choices=["auto", "raw", "photo"], default="auto",
                    help="raw: 28x28 as the dataset gives it; photo: converted; auto (default): raw for 28x28")
    sp.add_argument("--json", action="store_true", help="one JSON object per file")
    sp.add_argument("--api-key", help="an API key with the predict scope (default: $FMNIST_API_KEY)")
    sp.set_defaults(func=cmd_predict)

    sp = sub.add_parser("batch", help="classify a whole catalogue offline (directory, glob, manifest, IDX or .npy), "
                                      "resumable, with the server's preprocessing and model")
    sp.add_argument("input", help="a directory tree, a glob, a manifest (.csv/.jsonl with path[,id][,label]) or an "
                                  "array file (IDX, .gz or not, or .npy) of 28x28 images")
    sp.add_argument("--model", default=Settings.model, help=f"artifact path or name[:version] (default: {Settings.model})")
    sp.add_argument("--out", required=True, help="results file: .jsonl, .csv or .parquet (pyarrow); beside it "
                                                 ".errors.jsonl, .summary.json, .summary.png")
    sp.add_argument("--labels", help="an IDX labels file for an IDX/.npy input: accuracy and confusion matrix")
    sp.add_argument("--preprocess", choices=["auto", "raw", "photo"], default="auto",
                    help="as /predict: raw, photo, or auto (default)")
    sp.add_argument("--top-k", type=int, default=3, choices=range(1, 11), metavar="1-10",
                    help="classes kept per answer (default 3)")
    sp.add_argument("--flagged-label", choices=["true", "false"],
                    help="does a flagged answer (unsure, not_a_garment) name its class? false: label and class_id "
                         "are null, as a server with FMNIST_FLAGGED_LABEL=false answers (default: that setting, true)")
    sp.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per CPU)")
    sp.add_argument("--chunk", type=int, default=0, help="inputs per part, the unit of resume (default: 1024 for "
                    "arrays, 128 for files)")
    sp.add_argument("--shard", help="i/N: only the inputs at positions i, i+N, ... (for N copies of the job)")
    sp.add_argument("--engine", choices=["local", "dask"], default="local",
                    help="local: this machine; dask: a Dask cluster (pip install 'fmnist[batch]')")
    sp.add_argument("--scheduler", help="for --engine dask: the scheduler's address (default: a local cluster)")
    sp.add_argument("--dask-workers", type=int, default=0, help="for a local Dask cluster: worker processes")
    sp.add_argument("--restart", action="store_true", help="forget an unfinished run's parts and start over")
    sp.add_argument("--json", action="store_true", help="also print the output paths as JSON")
    sp.add_argument("--quiet", action="store_true", help="no progress line")
    registry_opt(sp)
    sp.set_defaults(func=cmd_batch)

    sp = sub.add_parser("import", help="turn a Keras .keras/.h5, an ONNX model or a .pth state dict into a "
                                       "verified artifact (the format is read from the file)")
    sp.add_argument("file", help="a .pth, .keras, .h5 or .onnx file")
    sp.add_argument("--arch", help="for a .pth state dict: which fmnist architecture it fits")
    sp.add_argument("--kwargs", type=_json_arg, default={}, help="for --arch: the architecture's options")
    sp.add_argument("--name", help="artifact name (default: the file name, or the arch)")
    sp.add_argument("--scale", type=float, choices=[1.0, 255.0],
                    help="the model's pixel range: 1 (pixels / 255, the lesson's and the default for Keras/ONNX) "
                         "or 255 (raw 0-255 pixels)")
    sp.add_argument("--mean", type=float, help="normalisation mean on the 0-1 scale (default: 0 for Keras/ONNX, "
                                               "0.2860 for .pth)")
    sp.add_argument("--std", type=float, help="normalisation std on the 0-1 scale (default: 1 for Keras/ONNX, "
                                              "0.3530 for .pth)")
    sp.add_argument("--classes", help="the model's ten output classes in its order, comma-separated "
                                      "(default: Fashion-MNIST's order)")
    sp.add_argument("--no-eval", action="store_true", help="skip test metrics and reference statistics")
    data_opts(sp)
    registry_opt(sp)
    sp.set_defaults(func=cmd_import)
    return p
