"""The parts a batch run writes, and the files they are merged into: JSONL, CSV, or Parquet (pyarrow, when
installed). Every file is written to a temporary name and renamed into place: a part is there whole or
not at all, whatever stops the run."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from fmnist.errors import InvalidValue
from fmnist.fileio import atomic_path, atomic_write
from fmnist.inference import answer
from fmnist.labels import CLASSES

FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
CSV_COLUMNS = answer.batch_columns(flat_model=True)  # JSONL: answer.batch_columns(flat_model=False)
_encode_str = json.encoder.encode_basestring_ascii  # json.dumps' own string encoder (C)
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


def done_parts(parts: Path) -> set:
    return {int(m.group(1)) for p in parts.iterdir() if (m := _PART.match(p.name))}


def remove_parts(parts: Path) -> None:
    """The part files of a merged run (job.json and complete.json stay: a rerun knows it is done)."""
    for p in parts.iterdir():
        if p.name.startswith("part-") or p.name.startswith(".part-"):
            p.unlink()


_LABELS = tuple(json.dumps(c) for c in CLASSES)


def rows_bytes(answers, fmt: str, model: dict, top_k: int, flagged_label: bool = True) -> bytes:
    """One part's answers (job.Answers) in the output format, columns as inference.answer.batch_columns says.
    JSONL lines are byte for byte what json.dumps(row, separators=(",", ":")) gives for the row dicts of
    Answers.rows(), written column-wise: per-row dicts and the JSON encoder cost more than the model does.
    A flagged answer's label and class_id are null when flagged_label is off, as the server answers."""
    probs = answers.probs
    n = len(probs)
    order, top_p = answer.top_k(probs, top_k) if n else ([], [])
    conf = [p[0] for p in top_p]  # the argmax comes first (stable sort: the first maximum, as argmax)
    flags = answers.flags
    cls = [o[0] if flagged_label or f is None else None for o, f in zip(order, flags)]
    true = ["null" if t is None else str(t) for t in answers.true_labels]
    ood = [round(v, 4) for v in answers.ood.tolist()]
    if fmt == "jsonl":
        enc = _encode_str
        model_json = json.dumps({"name": model["name"], "version": model["version"]}, separators=(",", ":"))
        lines = []
        for i in range(n):
            tk = ",".join(f'{{"label":{_LABELS[c]},"class_id":{c},"probability":{p!r}}}' for c, p in zip(order[i], top_p[i]))
            path = "null" if answers.paths[i] is None else enc(answers.paths[i])
            c = cls[i]
            lines.append(f'{{"id":{enc(answers.ids[i])},"path":{path},"label":{"null" if c is None else _LABELS[c]},'
                         f'"class_id":{"null" if c is None else c},"confidence":{conf[i]!r},"top_k":[{tk}],'
                         f'"ood_score":{ood[i]!r},"flag":{"null" if flags[i] is None else enc(flags[i])},'
                         f'"true_label":{true[i]},"model":{model_json}}}\n')
        return "".join(lines).encode()
    top_json = [json.dumps([{"label": CLASSES[c], "class_id": c, "probability": p} for c, p in zip(o, tp)],
                           separators=(",", ":")) for o, tp in zip(order, top_p)]
    labels = [None if c is None else CLASSES[c] for c in cls]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for i in range(n):  # CSV_COLUMNS' order; an empty field for null
            w.writerow([answers.ids[i], answers.paths[i] or "", labels[i] or "", "" if cls[i] is None else cls[i],
                        repr(conf[i]), top_json[i], repr(ood[i]), flags[i] or "",
                        "" if answers.true_labels[i] is None else answers.true_labels[i], model["name"],
                        model["version"]])
        return buf.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": answers.ids, "path": answers.paths, "label": pa.array(labels, pa.string()),
        "class_id": pa.array(cls, pa.int8()), "confidence": pa.array(conf, pa.float64()), "top_k": top_json,
        "ood_score": pa.array(ood, pa.float64()), "flag": pa.array(flags, pa.string()),
        "true_label": pa.array(answers.true_labels, pa.int8()),
        "model_name": [model["name"]] * n, "model_version": [model["version"]] * n,
    }).replace_schema_metadata({"fmnist_model": json.dumps(model)})
    assert tuple(table.column_names) == CSV_COLUMNS
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def write_part(parts: Path, k: int, fmt: str, data: bytes, errors: list, stats: dict) -> None:
    """One chunk's errors (a file only when there are any: most chunks have none) and statistics, then its
    results (rows_bytes; their presence marks the chunk done)."""
    errors_file = parts / f"part-{k:06d}.errors.jsonl"
    if errors:
        atomic_write(errors_file, "".join(json.dumps(e) + "\n" for e in errors).encode())
    else:
        errors_file.unlink(missing_ok=True)  # one left by an earlier try of this chunk is not this try's
    atomic_write(parts / f"part-{k:06d}.stats.json", json.dumps(stats).encode())
    atomic_write(parts / f"part-{k:06d}.{fmt}", data)


def merge(parts: Path, out: Path, fmt: str, n_parts: int, meta: dict, manifest: dict) -> dict:
    """Every part into `out`, the errors into `<out>.errors.jsonl`, the statistics into the summary
    (`<out>.summary.json`, `<out>.summary.png`); -> their paths and counts."""
    from fmnist.batch.figure import write_figure
    from fmnist.batch.summary import summarise

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
    with atomic_path(out) as tmp:
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


def _concat_errors(parts: Path, path: Path, n_parts: int) -> None:
    files = (parts / f"part-{k:06d}.errors.jsonl" for k in range(n_parts))
    data = b"".join(f.read_bytes() for f in files if f.is_file())
    atomic_write(path, data)
