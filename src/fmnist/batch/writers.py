"""The parts a batch run writes, and the files they are merged into: JSONL, CSV, or Parquet (pyarrow, when
installed). Every file is written to a temporary name and renamed into place: a part is there whole or
not at all, whatever stops the run."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from fmnist.errors import InvalidValue

FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
CSV_COLUMNS = ("id", "path", "label", "class_id", "confidence", "true_label", "model_name", "model_version", "top_k")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_PART = re.compile(r"part-(\d{6})\.(jsonl|csv|parquet)$")


def format_of(out: Path) -> str:
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InvalidValue(f"--out {out}: the name must end in .jsonl, .csv or .parquet (the output format)")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InvalidValue("Parquet output needs pyarrow: pip install pyarrow (or write .jsonl or .csv)") from None
    return fmt


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600: the results are as readable as any file made here
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def done_parts(parts: Path) -> set:
    return {int(m.group(1)) for p in parts.iterdir() if (m := _PART.match(p.name))}


def remove_parts(parts: Path) -> None:
    """The part files of a merged run (job.json and complete.json stay: a rerun knows it is done)."""
    for p in parts.iterdir():
        if p.name.startswith("part-") or p.name.startswith(".part-"):
            p.unlink()


def _rows_bytes(rows: list, fmt: str, model: dict) -> bytes:
    for r in rows:
        r["model"] = {"name": model["name"], "version": model["version"]}
    if fmt == "jsonl":
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in rows:
            w.writerow([r["id"], r["path"] or "", r["label"], r["class_id"], repr(r["confidence"]),
                        "" if r["true_label"] is None else r["true_label"], model["name"], model["version"],
                        json.dumps(r["top_k"], separators=(",", ":"))])
        return buf.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": [r["id"] for r in rows], "path": [r["path"] for r in rows], "label": [r["label"] for r in rows],
        "class_id": pa.array([r["class_id"] for r in rows], pa.int8()),
        "confidence": pa.array([r["confidence"] for r in rows], pa.float64()),
        "true_label": pa.array([r["true_label"] for r in rows], pa.int8()),
        "model_name": [model["name"]] * len(rows), "model_version": [model["version"]] * len(rows),
        "top_k": [json.dumps(r["top_k"], separators=(",", ":")) for r in rows],
    }).replace_schema_metadata({"fmnist_model": json.dumps(model)})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def write_part(parts: Path, k: int, fmt: str, rows: list, errors: list, stats: dict, model: dict) -> None:
    """One chunk's errors and statistics, then its results (whose presence marks the chunk done)."""
    atomic_write(parts / f"part-{k:06d}.errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors).encode())
    atomic_write(parts / f"part-{k:06d}.stats.json", json.dumps(stats).encode())
    atomic_write(parts / f"part-{k:06d}.{fmt}", _rows_bytes(rows, fmt, model))


def merge(parts: Path, out: Path, fmt: str, n_parts: int, meta: dict, manifest: dict) -> dict:
    """Every part into `out`, the errors into `<out>.errors.jsonl`, the statistics into the summary
    (`<out>.summary.json`, `<out>.summary.png`); -> their paths and counts."""
    from fmnist.batch.summary import summarise, write_figure

    missing = [k for k in range(n_parts) if not (parts / f"part-{k:06d}.{fmt}").is_file()]
    if missing:
        raise InvalidValue(f"{parts}: parts {missing[:5]} are missing; run the same command again to finish them")
    errors_path = out.with_name(out.name + ".errors.jsonl")
    stats = [json.loads((parts / f"part-{k:06d}.stats.json").read_text()) for k in range(n_parts)]
    _concat(parts, out, fmt, n_parts, meta["model"])
    _concat_errors(parts, errors_path, n_parts)
    summary = summarise(stats, manifest, meta)
    summary_path = out.with_name(out.name + ".summary.json")
    atomic_write(summary_path, json.dumps(summary, indent=1, default=_json_default).encode())
    figure = write_figure(summary, out.with_name(out.name + ".summary.png"))
    return {"results": str(out), "errors_file": str(errors_path), "summary": str(summary_path),
            "figure": str(figure) if figure else None, "errors": summary["errors"], "classified": summary["n"]}


def _json_default(v):
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return list(v) if isinstance(v, tuple) else str(v)


def _concat(parts: Path, out: Path, fmt: str, n_parts: int, model: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            writer = None
            for k in range(n_parts):
                table = pq.read_table(parts / f"part-{k:06d}.parquet")
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            if writer is not None:
                writer.close()
        else:
            with open(tmp, "wb") as f:
                if fmt == "csv":
                    f.write((",".join(CSV_COLUMNS) + "\n").encode())
                for k in range(n_parts):
                    with open(parts / f"part-{k:06d}.{fmt}", "rb") as src:
                        while block := src.read(1 << 20):
                            f.write(block)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _concat_errors(parts: Path, path: Path, n_parts: int) -> None:
    data = b"".join((parts / f"part-{k:06d}.errors.jsonl").read_bytes() for k in range(n_parts))
    atomic_write(path, data)
