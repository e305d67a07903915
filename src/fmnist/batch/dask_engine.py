"""`fmnist batch --engine dask`: the same job on a Dask cluster, Dask doing the scheduling, retries and data
movement (pip install 'fmnist[batch]', which brings dask[distributed]).

Each chunk is one task that decodes, converts and classifies on a worker (each worker process loads the
model once); the client writes each chunk's part as its task completes, exactly once per chunk, so a worker
lost mid-run costs only the tasks Dask runs again elsewhere: no answer is lost or written twice. The parts,
the resume, the merge and the summary are the single-machine job's (`job.plan`, `job.finish`). Without
`--scheduler`, a local cluster of worker processes is started for the run.
"""

from __future__ import annotations

import itertools
import time

from fmnist.batch import job, writers
from fmnist.batch.sources import Source
from fmnist.errors import InvalidValue


def run(source: Source, opts: job.Options, scheduler: "str | None" = None, local_workers: int = 0,
        client=None) -> job.Report:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InvalidValue("--engine dask needs dask[distributed]: pip install 'fmnist[batch]'") from None
    from fmnist.config import cpu_count

    t0 = time.perf_counter()
    ident = job.Identity(opts.model, opts.registry)
    p = job.plan(source, opts, ident)
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
        model_path = str(ident.artifact.path)
        in_flight = max(2, 4 * len(client.scheduler_info()["workers"]))
        progress = job.Progress(p.report.total, p.report.skipped, opts.progress)

        def submit(k):
            fut = client.submit(job.process_chunk, *job.task_args(source, p, opts, k, model_path),
                                key=f"fmnist-batch-{p.meta['fingerprint']}-{k}", retries=3, pure=False)
            fut.chunk_index = k
            return fut

        queue = iter(p.todo)
        futures = as_completed([submit(k) for k in itertools.islice(queue, in_flight)])
        for fut in futures:
            k = fut.chunk_index
            data, err_rows, stats = fut.result()
            writers.write_part(p.parts, k, p.fmt, data, err_rows, stats)
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
    return job.finish(p, opts, ident, t0)

