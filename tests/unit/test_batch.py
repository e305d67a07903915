"""fmnist batch: the same answers as /predict, hostile files reported not fatal, resume after kill -9 and
Ctrl-C with no gap or duplicate, shards, the output formats, the summary, and the Dask engine on a real
local cluster (a worker killed mid-run)."""
import json

import numpy as np
import pytest

from tests.conftest import REPO

N_KILLED, CHUNK = 10_000, 10  # 1,000 parts: the run is still going (~2 s) when the test has seen 5 and stops it


def test_kubernetes_indexed_job_renders_and_validates():
    yaml = pytest.importorskip("yaml")
    kv = pytest.importorskip("kubernetes_validate")
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "k8s-batch" / "job.yaml").read_text()) if d]
    job = next(d for d in docs if d["kind"] == "Job")
    for d in docs:
        kv.validate(d, "1.30", strict=True)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    args = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert f"--shard $(JOB_COMPLETION_INDEX)/{spec['completions']}" in args


def test_jsonl_columns_are_json_dumps_of_the_answer_rows():
    """The column-wise JSONL writer gives byte for byte json.dumps of each answer row (ties, odd ids)."""
    import csv
    import io

    from fmnist.batch import writers
    from fmnist.batch.job import Answers
    from fmnist.inference import answer

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), 50).astype(np.float32)
    probs[3] = np.float32(0.1)  # a ten-way tie: the first class wins, as argmax and the server say
    ids = [f"img-{i}" for i in range(48)] + ['quote"and\\backslash', "ünïcode/щ"]
    flags = [None, "unsure", "not_a_garment"] * 16 + [None, None]
    answers = Answers(ids, [None if i % 2 else f"dir/{i}.png" for i in range(50)], [i % 10 if i % 3 else None
                                                                                  for i in range(50)], probs,
                      rng.random(50), flags)
    model = {"name": "m", "version": "7", "model_onnx_sha256": "x", "path": "/p"}
    for flagged_label in (True, False):  # off: a flagged answer's label and class_id are null, as the server says
        got = writers.rows_bytes(answers, "jsonl", model, 3, flagged_label)
        rows = answers.rows(3, model, flagged_label)
        want = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
        assert got == want
        assert sum(r["label"] is None for r in rows) == (0 if flagged_label else 32)
        assert list(rows[0]) == list(answer.batch_columns(flat_model=False))
        csv_rows = list(csv.reader(io.StringIO(writers.rows_bytes(answers, "csv", model, 3, flagged_label).decode())))
        assert [r[2] for r in csv_rows] == [r["label"] or "" for r in rows]
