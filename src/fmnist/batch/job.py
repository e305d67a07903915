"""`fmnist batch` on one machine: a source's items classified in chunks, resumable, with exactly the server's
preprocessing and model.

One worker process per CPU (processes: decoding and encoding the answers are Python and would serialise on
the GIL) takes whole chunks: decodes and converts them with `inference.pipeline` (the stages `/predict` runs),
classifies them with ONNX Runtime in batches of 64, encodes the answers (`inference.answer`'s columns) and
writes the chunk as one part of the output (`<out>.parts/part-NNNNNN.*`: its errors and statistics first, then
its results, each renamed into place). Parts already there are skipped on a rerun, so a run stopped by Ctrl-C
or kill -9 resumes where it stopped, with no answer lost or repeated; when every part is there they are merged
into `<out>` (and `<out>.errors.jsonl`, `<out>.summary.json`, `<out>.summary.png`). At most `2 x workers`
chunks are in flight and array inputs are memory-mapped: pixels in memory do not grow with the input (its
index of ids does).
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmnist.batch import sources, writers
from fmnist.batch.sources import Source
from fmnist.config import Settings
from fmnist.errors import InvalidValue
from fmnist.fileio import atomic_write

CHUNK = {"array": 1024, "files": 128}  # items per part by default: arrays are fast (per-part costs amortised,
# measured 512 / 1024 / 2048), files are slow to decode (parts small enough to keep every process busy)
INFER_BATCH = Settings.max_batch_size
MAX_FILE_BYTES = Settings.max_content_length  # a file the server would refuse as a body is refused here too


@dataclass
class Options:
    model: str = Settings.model
    registry: "str | None" = None
    out: str = "results.jsonl"
    preprocess: str = "auto"  # as /predict's ?preprocess
    top_k: int = 3
    workers: int = 0  # decoding processes; 0: one per CPU
    chunk: int = 0  # items per part; 0: CHUNK for the source's kind
    shard: "tuple[int, int] | None" = None
    max_image_pixels: int = Settings.max_image_pixels
    flagged_label: bool = Settings.flagged_label  # as the server's setting: a flagged answer still names its class (off: null)
    progress: bool = True


@dataclass
class Report:
    total: int = 0
    done: int = 0  # classified in this run
    skipped: int = 0  # already in parts from an earlier run
    errors: int = 0
    seconds: float = 0.0
    loop_seconds: float = 0.0  # producing the parts (without the start, the merge and the summary)
    outputs: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.errors == 0


# --------------------------------------------------------------------------- decoding (in worker processes)

def decode_items(items: list, mode: str, max_image_pixels: int) -> tuple[np.ndarray, list, list]:
    """Files -> (uint8 (m, 28, 28) of those that decoded, their positions in `items`, [(position, reason)])."""
    from fmnist.errors import Refused
    from fmnist.inference import Limits, pipeline

    limits = Limits(max_images=1, max_image_pixels=max_image_pixels)
    pixels, ok, errors = [], [], []
    for k, it in enumerate(items):
        try:
            with open(it.path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise InvalidValue(f"the file is over {MAX_FILE_BYTES:,} bytes, the server's body limit")
            pixels.append(pipeline.preprocess(pipeline.decode([(it.id, data)], limits), mode)[0])
            ok.append(k)
        except (Refused, InvalidValue, OSError) as e:
            errors.append((k, getattr(e, "message", None) or str(e)))
    return (np.stack(pixels) if pixels else np.zeros((0, 28, 28), np.uint8)), ok, errors


_WORKER: dict = {}  # in each worker process: the model (loaded once by _init_worker or on first use)


def _init_worker(model_path: str, threads: int) -> None:
    _die_with_parent()
    _WORKER["model"] = load_model(model_path, None, threads)


def _die_with_parent() -> None:
    """Linux: this worker is killed when the run's process dies (kill -9 included), not left writing parts."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def process_chunk(model_path: str, items: list, pixels: "np.ndarray | None", preprocess: str, top_k: int,
                  max_image_pixels: int, fmt: str, model: dict, threads: int = 1, flagged_label: bool = True) -> tuple:
    """One chunk, whole, where it runs (a worker process of the local pool, or a Dask worker): files decoded
    and converted (or array rows taken as given), classified, and the part encoded ->
    (part bytes, error rows, statistics)."""
    served = _WORKER.get("model")
    if served is None or str(served.predictor.artifact.path) != model_path:
        served = _WORKER["model"] = load_model(model_path, None, threads)
    if pixels is None:
        pixels, ok, errors = decode_items(items, preprocess, max_image_pixels)
    else:
        ok, errors = list(range(len(items))), []
    answers, err_rows, stats = classify_chunk(served, items, pixels, ok, errors)
    return writers.rows_bytes(answers, fmt, model, top_k, flagged_label), err_rows, stats


def _loaded(_) -> bool:
    return "model" in _WORKER


def _chunk_task(k: int) -> int:
    """In a local worker: chunk k processed and its part written here, from the source and the plan this
    process inherited at fork (nothing but k passes through the pipe). -> its number of errors."""
    source, p, opts, model_path = _WORKER["job"]
    args = task_args(source, p, opts, k, model_path)
    data, err_rows, stats = process_chunk(*args)
    writers.write_part(p.parts, k, p.fmt, data, err_rows, stats)
    return len(err_rows)


# --------------------------------------------------------------------------- classifying

def load_model(model: str, registry: "str | None", threads: int):
    """The artifact's model as the server runs it (inference.ServedModel: ONNX Runtime), on `threads` cores."""
    from fmnist.inference import ServedModel
    from fmnist.registry import resolve

    return ServedModel.offline(resolve(model, registry), threads, INFER_BATCH)


def identity(artifact) -> dict:
    """What names a run's model: name, version, the sha256 of its model.onnx, its path."""
    m = artifact.manifest
    onnx_sha = m.get("files", {}).get("model.onnx", {}).get("sha256")
    return {"name": m["name"], "version": str(m["version"]), "model_onnx_sha256": onnx_sha, "path": str(artifact.path)}


class Identity:
    """The artifact and what identifies it, without loading the model (the driver of a run)."""

    def __init__(self, model: str, registry: "str | None"):
        from fmnist.registry import resolve

        self.artifact = resolve(model, registry)

    def identity(self) -> dict:
        return identity(self.artifact)


@dataclass
class Answers:
    """One chunk's answers, by column: what the writers encode (the rows of /predict's answer, plus id,
    path and true_label)."""

    ids: list
    paths: list
    true_labels: list  # int or None each
    probs: np.ndarray  # (n, 10) float32
    ood: "np.ndarray | None" = None  # (n,) the answers' ood_score (Predictor.assess)
    flags: "list | None" = None  # None, "unsure" or "not_a_garment" each

    def rows(self, top_k: int, model: dict, flagged_label: bool = True) -> list:
        """As dicts, the columns of inference.answer (the answer of POST /predict, with id, path, true_label and
        the model): what the writers encode, for tests and small runs."""
        from fmnist.inference import Result, answer

        ref = {"name": model["name"], "version": model["version"]}
        items = answer.items(Result(self.probs, np.asarray(self.ood), self.flags, ref), top_k, flagged_label)
        return [{"id": rid, "path": path, **item, "true_label": true, "model": ref}
                for rid, path, item, true in zip(self.ids, self.paths, items, self.true_labels)]


def classify_chunk(served, items: list, pixels: np.ndarray, ok: list, errors: list) -> tuple:
    """-> (Answers, error rows, statistics) of one chunk (pixels[i] is items[ok[i]]) by a ServedModel."""
    from fmnist.monitoring.drift import window_histograms

    probs = served.classify(pixels)
    ood, flags = served.predictor.assess(probs)
    answers = Answers(*sources.columns(items, ok), probs, ood, flags)
    err_rows = [{"id": items[k].id, "path": items[k].path, "error": reason} for k, reason in errors]
    ref = served.predictor.artifact.manifest.get("reference") or {}
    mean_px = pixels.reshape(len(pixels), -1).mean(axis=1) / 255.0 if len(pixels) else np.zeros(0)
    predicted = probs.argmax(1)
    window = {"class_id": predicted, "confidence": probs.max(1) if len(probs) else np.zeros(0), "mean_pixel": mean_px,
              "flag": flags}
    stats = window_histograms(window, ref) if ref else {"n": len(probs)}
    confusion = np.zeros((10, 10), np.int64)
    for true, pred in zip(answers.true_labels, predicted.tolist()):
        if true is not None:
            confusion[true, pred] += 1
    stats["confusion"] = confusion.tolist()
    stats["errors"] = len(err_rows)
    return answers, err_rows, stats


# --------------------------------------------------------------------------- the job

@dataclass
class JobPlan:
    """One job's chunks, its parts directory, what is left, and the model's identity (shared by the engines)."""

    chunks: list
    parts: Path
    fmt: str
    meta: dict
    todo: list
    report: Report
    finished: bool = False


def plan(source: Source, opts: Options, ident: Identity) -> JobPlan:
    out = Path(opts.out)
    fmt = writers.format_of(out)
    items = source.items(opts.shard)
    opts.chunk = opts.chunk or CHUNK[source.kind]
    chunks = [items[i:i + opts.chunk] for i in range(0, len(items), opts.chunk)]
    parts = out.with_name(out.name + ".parts")
    meta = {"input": source.description, "fingerprint": source.fingerprint(), "shard": opts.shard,
            "chunk": opts.chunk, "preprocess": opts.preprocess, "top_k": opts.top_k, "format": fmt,
            "flagged_label": opts.flagged_label,
            "model": ident.identity()}
    done = _prepare(parts, meta)
    report = Report(total=len(items))
    if (parts / "complete.json").is_file():  # finished before: nothing left to do
        report.skipped = len(items)
        report.outputs = json.loads((parts / "complete.json").read_text())
        report.errors = report.outputs["errors"]
        return JobPlan(chunks, parts, fmt, meta, [], report, finished=True)
    todo = [k for k in range(len(chunks)) if k not in done]
    report.skipped = sum(len(chunks[k]) for k in done)
    return JobPlan(chunks, parts, fmt, meta, todo, report)


def finish(p: JobPlan, opts: Options, ident: Identity, t0: float) -> Report:
    """Merge the parts, write the summary, mark the job complete."""
    p.report.outputs = writers.merge(p.parts, Path(opts.out), p.fmt, len(p.chunks), p.meta, ident.artifact.manifest)
    p.report.errors = p.report.outputs["errors"]
    atomic_write(p.parts / "complete.json", json.dumps(p.report.outputs).encode())
    writers.remove_parts(p.parts)
    p.report.seconds = time.perf_counter() - t0
    return p.report


def run(source: Source, opts: Options) -> Report:
    """Classify what is left of `source` into opts.out on this machine: `workers` processes (one per CPU by
    default) each decode, classify and encode whole chunks (processes, not threads: the decoding and the
    encoding are Python and would serialise on the GIL) and write their parts; this process hands out chunk
    indexes, at most 2 x workers at a time, then merges and summarises once every part is there."""
    from fmnist.config import cpu_count

    t0 = time.perf_counter()
    workers = opts.workers or cpu_count()
    ident = Identity(opts.model, opts.registry)
    p = plan(source, opts, ident)
    if p.finished:
        return p.report
    model_path = str(ident.artifact.path)
    pool = None
    if workers > 1 and len(p.todo) > 1:
        import multiprocessing

        _WORKER["job"] = (source, p, opts, model_path)  # inherited by the forked workers: only chunk indexes
        pool = multiprocessing.get_context("fork").Pool(workers, _init_worker, (model_path, 1))
        source.start()  # a gzipped array inflates now, beside workers already forked (never before: a thread)
        pool.map(_loaded, range(workers), chunksize=1)  # every worker has its model before the clock starts
    try:
        progress = Progress(p.report.total, p.report.skipped, opts.progress)
        threads = 1 if pool is not None else cpu_count()
        t_loop = time.perf_counter()
        for k, n_errors in _results(source, p, opts, pool, workers, model_path, threads):
            p.report.done += len(p.chunks[k])
            progress.update(len(p.chunks[k]), n_errors)
        progress.close()
        p.report.loop_seconds = time.perf_counter() - t_loop
    finally:
        if pool is not None:
            pool.terminate()
    return finish(p, opts, ident, t0)


def task_args(source: Source, p: "JobPlan", opts: Options, k: int, model_path: str, threads: int = 1) -> tuple:
    """process_chunk's arguments for chunk k (with the array rows' pixels)."""
    chunk = p.chunks[k]
    pixels = None
    if source.kind == "array":
        rows = chunk.rows if isinstance(chunk, sources.ArrayItems) else [it.row for it in chunk]
        source.wait_rows(rows[-1] + 1)  # rows only grow: the last one is the farthest
        pixels = np.asarray(source.array[rows[0]:rows[-1] + 1] if _contiguous(rows) else source.array[list(rows)])
    return (model_path, chunk, pixels, opts.preprocess, opts.top_k, opts.max_image_pixels, p.fmt, p.meta["model"],
            threads, opts.flagged_label)


def _results(source: Source, p: "JobPlan", opts: Options, pool, workers: int, model_path: str, threads: int):
    """(chunk index, its number of errors) as each part is written, at most 2 x workers chunks in flight."""
    if pool is None:
        for k in p.todo:
            data, err_rows, stats = process_chunk(*task_args(source, p, opts, k, model_path, threads))
            writers.write_part(p.parts, k, p.fmt, data, err_rows, stats)
            yield k, len(err_rows)
        return

    def submit(k):
        return k, pool.apply_async(_chunk_task, (k,))

    queue = iter(p.todo)
    pending = [submit(k) for k in itertools.islice(queue, 2 * workers)]
    while pending:
        k, res = pending.pop(0)
        nxt = next(queue, None)
        if nxt is not None:
            pending.append(submit(nxt))
        yield k, res.get()


def _prepare(parts: Path, meta: dict) -> set:
    """The parts directory for this job: the chunk indexes already done, or a new one. A directory left
    by another input or other options is refused: mixing them would give wrong answers."""
    job = parts / "job.json"
    if job.is_file():
        before = json.loads(job.read_text())
        same = {k: before.get(k) for k in meta if k != "model"} == {k: v for k, v in meta.items() if k != "model"}
        if not same or before["model"].get("model_onnx_sha256") != meta["model"]["model_onnx_sha256"]:
            raise InvalidValue(f"{parts} holds an unfinished run of another input, model or options; remove it "
                               "(or choose another --out) to start over")
        return writers.done_parts(parts)
    if parts.exists():
        shutil.rmtree(parts)  # no job.json: nothing of value (a run stopped before its first write)
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write(job, json.dumps(meta, indent=1, default=list).encode())
    return set()


def _contiguous(rows) -> bool:
    if isinstance(rows, range):
        return rows.step == 1
    return rows == list(range(rows[0], rows[0] + len(rows)))


class Progress:
    """One line on stderr: images done, images/s, ETA, errors; at most 4 updates a second."""

    def __init__(self, total: int, already: int, on: bool):
        self.total, self.done, self.errors, self.on = total, already, 0, on and total > 0
        self.t0, self.last, self.start_done = time.monotonic(), 0.0, already

    def update(self, n: int, errors: int) -> None:
        self.done += n
        self.errors += errors
        now = time.monotonic()
        if self.on and (now - self.last > 0.25 or self.done == self.total):
            self.last = now
            rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0
            print(f"\rfmnist batch: {self.done:,}/{self.total:,} images  {rate:,.0f} images/s  ETA {eta:,.0f} s"
                  f"  errors {self.errors:,}   ", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.on:
            print(file=sys.stderr)


def restart(out: "str | Path") -> None:
    """Forget an unfinished run's parts (fmnist batch --restart)."""
    parts = Path(out).with_name(Path(out).name + ".parts")
    shutil.rmtree(parts, ignore_errors=True)

