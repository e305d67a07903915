"""What the prediction log's interface (store.py) and its backends (store_sqlite.py, store_postgres.py)
share: the row fields, the one error, and rows turned into the arrays drift and accuracy need."""

from __future__ import annotations

import numpy as np

from fmnist.errors import FmnistError

ROW_FIELDS = ("request_id", "idx", "ts", "replica", "model_name", "model_version", "class_id", "confidence",
              "mean_pixel", "input_sha256", "image")
READ_FIELDS = ("request_id", "index", "ts", "replica", "model_name", "model_version", "class_id", "confidence",
               "mean_pixel", "input_sha256", "true_label")


class StoreUnavailable(FmnistError):
    """The prediction store cannot be reached now (the message says which and why)."""


def window(rows: list) -> dict:
    """(class_id, confidence, mean_pixel, replica) rows -> the arrays drift needs, and the replica count."""
    arr = np.asarray([r[:3] for r in rows], dtype=np.float64).reshape(-1, 3)
    return {"class_id": arr[:, 0].astype(int), "confidence": arr[:, 1], "mean_pixel": arr[:, 2],
            "replicas": len({r[3] for r in rows})}


def labelled(rows: list) -> dict:
    """(class_id, true_label) rows -> the arrays live accuracy needs."""
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return {"predicted": arr[:, 0], "true": arr[:, 1]}


LOW_FIELDS = ("request_id", "index", "ts", "replica", "model_version", "class_id", "confidence", "image")
LOW_COLUMNS = ("request_id", "idx", "ts", "replica", "model_version", "class_id", "confidence", "image")  # LOW_FIELDS' columns


def low_confidence_sql(ph: str) -> str:
    """The low-confidence query of both backends, with their placeholder (`?` or `%s`): (window, below, n)."""
    return (f"SELECT * FROM (SELECT {', '.join(LOW_COLUMNS)} FROM predictions ORDER BY ts DESC LIMIT {ph}) AS latest "
            f"WHERE confidence < {ph} AND image IS NOT NULL ORDER BY ts DESC LIMIT {ph}")


def low_rows(rows: list) -> list:
    """Low-confidence rows (LOW_FIELDS order) -> dicts; the image as bytes (uint8 28x28, row-major)."""
    return [dict(zip(LOW_FIELDS, r[:-1] + (bytes(r[-1]),))) for r in rows]
