"""fmnist batch: the same answers as /predict, hostile files reported not fatal, resume after kill -9 and
Ctrl-C with no gap or duplicate, shards, the output formats, the summary, and the Dask engine on a real
local cluster (a worker killed mid-run)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.pictures import styles
from tests.conftest import REPO, SHIPPED
from tests.images import encode, photo, png

N_KILLED, CHUNK = 10_000, 10  # 1,000 parts: the run is still going (~2 s) when the test has seen 5 and stops it


def _batch(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "fmnist.cli", "batch", *map(str, args), "--quiet"],
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check:
        assert out.returncode == 0, out.stderr[-2000:]
    return out


def _rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, real_data):
    """Real pictures in a tree: test-set PNGs, pictures rendered in several styles (JPEG and PNG), phone
    photos; and a manifest with their labels."""
    d = tmp_path_factory.mktemp("catalogue")
    labels = {}
    for i in range(12):
        x, y = real_data.test_images[i], int(real_data.test_labels[i])
        (d / "raw").mkdir(exist_ok=True)
        (d / "raw" / f"{i:03d}.png").write_bytes(png(x))
        labels[f"raw/{i:03d}.png"] = y
        style = styles.TRAIN_STYLES[i % len(styles.TRAIN_STYLES)]
        pic = styles.render(x, y, style, styles.image_rng(5, i, style)).convert("RGB")
        (d / "pictures").mkdir(exist_ok=True)
        name = f"pictures/{i:03d}.{'jpg' if i % 2 else 'png'}"
        (d / name).write_bytes(encode(pic, "JPEG" if i % 2 else "PNG"))
        labels[name] = y
    (d / "photos").mkdir()
    (d / "photos" / "shirt.jpg").write_bytes(photo(real_data.test_images[20], (2400, 1800)))
    labels["photos/shirt.jpg"] = int(real_data.test_labels[20])
    manifest = d / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{y}\n" for p, y in labels.items()))
    return d, manifest, labels


def _killed_run(tmp_path: Path, sig: int, extra=()) -> tuple:
    npy = tmp_path / "x.npy"
    out = tmp_path / f"r-{sig}.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "fmnist.cli", "batch", str(npy), "--model", str(SHIPPED), "--out",
                             str(out), "--chunk", str(CHUNK), "--quiet", *extra], cwd=REPO, stderr=subprocess.PIPE,
                            # a run started in the background by a shell (CI's `make test &`) inherits SIGINT
                            # ignored, and Python then never raises KeyboardInterrupt: as a user's terminal would
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    parts = out.with_name(out.name + ".parts")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.exists() and len(list(parts.glob("part-??????.jsonl"))) >= 5:
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    return out, parts, rc


@pytest.mark.integration
@pytest.mark.realdata
def test_answers_are_predicts_answers(catalogue, make_app, tmp_path):
    """Every file's answer is what POST /predict answers for the same bytes (label, top-k, confidence, ood_score,
    flag)."""
    d, _, labels = catalogue
    _batch(d, "--model", SHIPPED, "--out", tmp_path / "r.jsonl", "--workers", "2", "--chunk", "7")
    rows = {r["id"]: r for r in _rows(tmp_path / "r.jsonl")}
    assert sorted(rows) == sorted(labels)
    client = make_app().test_client()
    for rid, row in rows.items():
        data = (d / rid).read_bytes()
        ans = client.post("/predict", data={"image": (__import__("io").BytesIO(data), rid)}).get_json()
        assert row["label"] == ans["label"] and row["class_id"] == ans["class_id"], rid
        assert row["confidence"] == pytest.approx(ans["confidence"], abs=1e-6)
        assert [t["label"] for t in row["top_k"]] == [t["label"] for t in ans["top_k"]]
        assert row["ood_score"] == pytest.approx(ans["ood_score"], abs=1e-4) and row["flag"] == ans["flag"], rid
        assert row["model"] == ans["model"]


@pytest.mark.integration
@pytest.mark.realdata
def test_hostile_files_are_reported_and_never_stop_the_run(catalogue, tmp_path):
    d, _, _ = catalogue
    bad = tmp_path / "in"
    bad.mkdir()
    good = (d / "raw" / "000.png").read_bytes()
    (bad / "good.png").write_bytes(good)
    (bad / "truncated.png").write_bytes(good[:-40])
    (bad / "text.jpg").write_bytes(b"this is not a picture at all")
    (bad / "empty.png").write_bytes(b"")
    (bad / "bomb.png").write_bytes(encode(Image.new("L", (8000, 8000))))  # 64 MP in a few kB
    (bad / "big.jpg").write_bytes(encode(Image.new("RGB", (5472, 3648), (200, 190, 180)), "JPEG", quality=70))  # 20 MP
    out = _batch(bad, "--model", SHIPPED, "--out", tmp_path / "r.csv", check=False)
    assert out.returncode == 1 and "4 inputs could not be classified" in out.stderr
    assert "6 inputs" in out.stdout and "2 classified now" in out.stdout and "4 unreadable" in out.stdout, out.stdout
    errors = {e["id"]: e["error"] for e in _rows(tmp_path / "r.csv.errors.jsonl")}
    assert sorted(errors) == ["bomb.png", "empty.png", "text.jpg", "truncated.png"]
    assert "limit is 25,000,000" in errors["bomb.png"] and "empty" in errors["empty.png"]
    assert "truncated or corrupt" in errors["truncated.png"] and "could not be decoded" in errors["text.jpg"]
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("id,path,label,class_id,confidence") and len(lines) == 3  # header + good + big


@pytest.mark.integration
@pytest.mark.realdata
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_and_rerun_does_only_what_is_left(real_data, tmp_path, sig):
    np.save(tmp_path / "x.npy", real_data.test_images[:N_KILLED])
    out, parts, rc = _killed_run(tmp_path, sig)
    time.sleep(0.3)  # the run's workers die with it (a part they were writing is renamed whole or not at all)
    done_before = len(list(parts.glob("part-??????.jsonl")))
    assert rc == (-9 if sig == signal.SIGKILL else 130), rc  # stopped mid-run, not finished first
    assert 5 <= done_before < N_KILLED // CHUNK, done_before
    again = _batch(tmp_path / "x.npy", "--model", SHIPPED, "--out", out, "--chunk", str(CHUNK))
    assert f"{done_before * CHUNK:,} done before" in again.stdout
    rows = _rows(out)
    ids = [r["id"] for r in rows]
    assert ids == [f"x.npy#{i}" for i in range(N_KILLED)]  # no gap, no duplicate, in order
    whole = _batch(tmp_path / "x.npy", "--model", SHIPPED, "--out", tmp_path / "whole.jsonl", "--chunk", "50")
    assert f"{N_KILLED:,} classified now" in whole.stdout
    whole_rows = _rows(tmp_path / "whole.jsonl")
    assert [(r["label"], r["confidence"]) for r in rows] == [(r["label"], r["confidence"]) for r in whole_rows]
    third = _batch(tmp_path / "x.npy", "--model", SHIPPED, "--out", out, "--chunk", str(CHUNK))
    assert f"0 classified now, {N_KILLED:,} done before" in third.stdout


@pytest.mark.integration
@pytest.mark.realdata
def test_shards_split_the_input_and_a_changed_input_is_refused(real_data, tmp_path):
    np.save(tmp_path / "x.npy", real_data.test_images[:300])
    for i in range(3):
        _batch(tmp_path / "x.npy", "--model", SHIPPED, "--out", tmp_path / f"s{i}.jsonl", "--shard", f"{i}/3")
    ids = sorted(r["id"] for i in range(3) for r in _rows(tmp_path / f"s{i}.jsonl"))
    assert ids == sorted(f"x.npy#{k}" for k in range(300))
    bad = _batch(tmp_path / "x.npy", "--model", SHIPPED, "--out", tmp_path / "s0.jsonl", "--shard", "5/3", check=False)
    assert bad.returncode == 2 and "index must be 0..N-1" in bad.stderr
    # an unfinished run of another input in the same place is refused, not mixed in
    parts = tmp_path / "s1.jsonl.parts"
    (parts / "complete.json").unlink()
    np.save(tmp_path / "x.npy", real_data.test_images[300:600])
    mixed = _batch(tmp_path / "x.npy", "--model", SHIPPED, "--out", tmp_path / "s1.jsonl", "--shard", "1/3", check=False)
    assert mixed.returncode == 2 and "another input, model or options" in mixed.stderr


@pytest.mark.integration
@pytest.mark.realdata
def test_idx_with_labels_summary_and_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow (the batch extra; make test installs it)")
    d = Path("/usr/share/datasets/fashion-mnist")
    images, labels = d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz"
    if not images.exists():
        from fmnist import data

        images = data.load(allow_download=False).directory / "t10k-images-idx3-ubyte.gz"
        labels = images.with_name("t10k-labels-idx1-ubyte.gz")
    said = _batch(images, "--labels", labels, "--model", SHIPPED, "--out", tmp_path / "r.parquet").stdout
    assert "drift ok" in said and "accuracy " in said and "labelled (test set" in said, said  # the console says it
    table = pa.read_table(tmp_path / "r.parquet")
    assert table.num_rows == 10_000 and json.loads(table.schema.metadata[b"fmnist_model"])["version"] == SHIPPED.name
    summary = json.loads((tmp_path / "r.parquet.summary.json").read_text())
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert summary["accuracy"]["accuracy"] == pytest.approx(manifest["metrics"]["test"]["accuracy"], abs=1e-4)
    assert set(summary["drift"]["checks"]) == {"class_psi", "confidence_ks", "mean_pixel_ks", "dominant_class_share",
                                               "not_a_garment_excess"}
    assert summary["flagged"]["not_a_garment"] <= 0.05 * 10_000 and sum(table.column("flag").is_null().to_pylist()) > 7_000
    assert summary["drift"]["status"] == "ok"  # the test set is what the reference was measured on
    assert (tmp_path / "r.parquet.summary.png").stat().st_size > 10_000


@pytest.mark.integration
@pytest.mark.realdata
def test_dask_engine_same_answers_and_a_worker_killed_mid_run(real_data, tmp_path):
    """A real local Dask cluster (2 worker processes): the same answers as one machine; one worker killed
    while tasks run: no answer lost or written twice."""
    distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (the batch extra)")
    import threading

    from fmnist.batch import dask_engine, job
    from fmnist.batch.sources import open_source

    np.save(tmp_path / "x.npy", real_data.test_images[:3000])
    _batch(tmp_path / "x.npy", "--model", SHIPPED, "--out", tmp_path / "one.jsonl", "--chunk", "100")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        pids = list(client.run(os.getpid).values())
        killed = threading.Event()

        def kill_one():
            time.sleep(0.3)
            os.kill(pids[0], signal.SIGKILL)
            killed.set()

        threading.Thread(target=kill_one, daemon=True).start()
        opts = job.Options(model=str(SHIPPED), out=str(tmp_path / "dask.jsonl"), chunk=100, progress=False)
        report = dask_engine.run(open_source(str(tmp_path / "x.npy")), opts, client=client)
        assert killed.is_set() and report.done == 3000 and report.errors == 0
    finally:
        client.close()
        cluster.close()
    one, dask = _rows(tmp_path / "one.jsonl"), _rows(tmp_path / "dask.jsonl")
    assert [r["id"] for r in dask] == [f"x.npy#{i}" for i in range(3000)]
    assert [(r["label"], round(r["confidence"], 6)) for r in dask] == [(r["label"], round(r["confidence"], 6)) for r in one]
