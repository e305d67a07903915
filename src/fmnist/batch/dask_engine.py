"""`fmnist batch --engine dask`: the same job on a Dask cluster, Dask doing the scheduling, retries and data
movement (pip install 'fmnist[batch]', which brings dask[distributed]).

Each chunk is one task that decodes, converts and classifies on a worker (each worker process loads the
model once); the client writes each chunk's part as its task completes, exactly once per chunk, so a worker
lost mid-run costs only the tasks Dask runs again elsewhere: no answer is lost or written twice. The parts,
the resume, the merge and the summary are the single-machine job's (`job.plan`, `job.finish`). Without
`--scheduler`, a local cluster of worker processes is started for the run.
"""

from __future__ import annotations

import time

import numpy as np

from fmnist.batch import job, writers
from fmnist.batch.sources import Source
from fmnist.errors import InvalidValue

_MODELS: dict = {}  # per worker process: model path -> job.Classifier


def classify_task(model_path: str, items: list, pixels: "np.ndarray | None", preprocess: str, top_k: int,
                  max_image_pixels: int):
    """On a worker: one chunk decoded (files) or taken as given (array rows), then classified."""
    clf = _MODELS.get(model_path)
    if clf is None:
        clf = _MODELS[model_path] = job.Classifier(model_path, None, 1)  # one thread: a worker per core
    if pixels is None:
        pixels, ok, errors = job.decode_items(items, preprocess, max_image_pixels)
    else:
        ok, errors = list(range(len(items))), []
    return job.classify_chunk(clf, items, pixels, ok, errors, top_k)


def run(source: Source, opts: job.Options, scheduler: "str | None" = None, local_workers: int = 0,
        client=None) -> job.Report:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InvalidValue("--engine dask needs dask[distributed]: pip install 'fmnist[batch]'") from None
    from fmnist.config import cpu_count

    t0 = time.perf_counter()
    clf = job.Classifier(opts.model, opts.registry, 1)
    p = job.plan(source, opts, clf)
    if p.finished:
        return p.report
    cluster = None
    if client is None:
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=local_workers or cpu_count(), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
    own_client = cluster is not None or scheduler is not None
    try:
        model_path = str(clf.artifact.path)
        in_flight = max(2, 4 * len(client.scheduler_info()["workers"]))
        progress = job.Progress(p.report.total, p.report.skipped, opts.progress)

        def submit(k):
            chunk = p.chunks[k]
            pixels = None
            if source.kind == "array":
                pixels = np.asarray(source.array[[it.row for it in chunk]])
            fut = client.submit(classify_task, model_path, chunk, pixels, opts.preprocess, opts.top_k,
                                opts.max_image_pixels, key=f"fmnist-batch-{p.meta['fingerprint']}-{k}", retries=3,
                                pure=False)
            fut.chunk_index = k
            return fut

        queue = iter(p.todo)
        futures = as_completed([submit(k) for k in _take(queue, in_flight)])
        for fut in futures:
            k = fut.chunk_index
            rows, err_rows, stats = fut.result()
            writers.write_part(p.parts, k, p.fmt, rows, err_rows, stats, p.meta["model"])
            p.report.done += len(p.chunks[k])
            progress.update(len(p.chunks[k]), len(err_rows))
            fut.release()
            nxt = next(queue, None)
            if nxt is not None:
                futures.add(submit(nxt))
        progress.close()
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    return job.finish(p, opts, clf, t0)


def _take(it, n: int) -> list:
    out = []
    for _ in range(n):
        v = next(it, None)
        if v is None:
            break
        out.append(v)
    return out
