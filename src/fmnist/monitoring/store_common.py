"""What the prediction log's interface (store.py) and its backends (store_sqlite.py, store_postgres.py)
share: the row fields, the one error, and rows turned into the arrays drift and accuracy need."""

from __future__ import annotations

import numpy as np

from fmnist.errors import FmnistError

ROW_FIELDS = ("request_id", "idx", "ts", "replica", "model_name", "model_version", "class_id", "confidence",
              "mean_pixel", "input_sha256", "image", "key_id", "latency_ms", "flag")
READ_FIELDS = ("request_id", "index", "ts", "replica", "model_name", "model_version", "class_id", "confidence",
               "mean_pixel", "input_sha256", "true_label", "key_id")


class StoreUnavailable(FmnistError):
    """The prediction store cannot be reached now (the message says which and why)."""


def window(rows: list) -> dict:
    """(class_id, confidence, mean_pixel, replica, flag) rows -> the arrays drift needs (flag: "" for none, or
    NULL in rows logged before the flag existed), and the replica count."""
    arr = np.asarray([r[:3] for r in rows], dtype=np.float64).reshape(-1, 3)
    return {"class_id": arr[:, 0].astype(int), "confidence": arr[:, 1], "mean_pixel": arr[:, 2],
            "flag": [r[4] for r in rows], "replicas": len({r[3] for r in rows})}


def labelled(rows: list) -> dict:
    """(class_id, true_label) rows -> the arrays live accuracy needs."""
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return {"predicted": arr[:, 0], "true": arr[:, 1]}


LOW_FIELDS = ("request_id", "index", "ts", "replica", "model_version", "class_id", "confidence", "image")
LOW_COLUMNS = ("request_id", "idx", "ts", "replica", "model_version", "class_id", "confidence", "image")  # LOW_FIELDS' columns


class Queries:
    """The read and feedback statements both backends run, written once with the backend's placeholder
    (`?` for SQLite, `%s` for psycopg)."""

    def __init__(self, ph: str):
        self.get = ("SELECT request_id, idx, ts, replica, model_name, model_version, class_id, confidence, "
                    f"mean_pixel, input_sha256, true_label, key_id FROM predictions WHERE request_id = {ph} AND idx = {ph}")
        self.set_feedback = (f"UPDATE predictions SET true_label = {ph}, feedback_ts = {ph} "
                             f"WHERE request_id = {ph} AND idx = {ph}")
        # what clients were answered: not a rollout's shadow runs (<id>@shadow) or failed requests (<id>@error);
        # a client's request id never holds "@" (reqlog). psycopg reads "%" as a placeholder: "%%" there
        answered = "request_id NOT LIKE '{0}@{0}'".format("%%" if ph == "%s" else "%")
        recent = ("SELECT class_id, confidence, mean_pixel, replica, flag FROM predictions WHERE " + answered + " "
                  "{}ORDER BY ts DESC LIMIT " + ph)
        self.recent = recent.format("")  # (n,)
        self.recent_version = recent.format(f"AND model_version = {ph} ")  # (version, n)
        self.recent_feedback = ("SELECT class_id, true_label FROM predictions WHERE feedback_ts IS NOT NULL "
                                f"ORDER BY feedback_ts DESC LIMIT {ph}")
        # (window, below, n): the latest `window` predictions, those under `below` with an image, newest n
        self.low_confidence = (f"SELECT * FROM (SELECT {', '.join(LOW_COLUMNS)} FROM predictions "
                               f"WHERE {answered} ORDER BY ts DESC "
                               f"LIMIT {ph}) AS latest WHERE confidence < {ph} AND image IS NOT NULL "
                               f"ORDER BY ts DESC LIMIT {ph}")
        self.count = "SELECT COUNT(*) FROM predictions"
        # (name, since, n): one model's latest predictions since a time, every version (a rollout's window)
        self.since = ("SELECT request_id, idx, model_version, class_id, confidence, true_label, latency_ms FROM predictions "
                      f"WHERE model_name = {ph} AND ts >= {ph} ORDER BY ts DESC LIMIT {ph}")

    def recent_args(self, n: int, model_version: "str | None") -> "tuple[str, tuple]":
        return (self.recent_version, (model_version, n)) if model_version else (self.recent, (n,))


def low_rows(rows: list) -> list:
    """Low-confidence rows (LOW_FIELDS order) -> dicts; the image as bytes (uint8 28x28, row-major)."""
    return [dict(zip(LOW_FIELDS, r[:-1] + (bytes(r[-1]),))) for r in rows]
