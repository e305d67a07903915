"""One check of the prediction log's interface, run against each backend (SQLite, PostgreSQL)."""

import time


def check_low_confidence(store) -> None:
    """low_confidence(): the newest rows under the threshold that kept an image, within the window."""
    px = bytes(range(256)) * 3 + bytes(16)  # 784 bytes, as a 28x28 image
    t0 = time.time()
    rows = [(f"r{i}", 0, t0 + i * 1e-3, "a", "smallcnn", "1", i % 10, 0.3 if i % 3 == 0 else 0.9, 0.3, "0" * 64,
             px if i % 2 == 0 else None, "0000abcd", 1.5, "") for i in range(60)]
    store.record(rows)
    assert store.flush(5.0)
    expected = [f"r{i}" for i in reversed(range(60)) if i % 6 == 0]  # unsure and with an image
    low = store.low_confidence(0.5, 1000, 100)
    assert [r["request_id"] for r in low] == expected
    assert low[0]["image"] == px and low[0]["class_id"] == 4 and low[0]["confidence"] == 0.3
    assert [r["request_id"] for r in store.low_confidence(0.5, 10, 100)] == ["r54"]  # only the last 10 rows looked at
    assert len(store.low_confidence(0.5, 1000, 3)) == 3
    # a rollout's shadow runs and failed requests are not what clients were answered: out of both windows
    t1 = time.time() + 1
    store.record([(f"r{i}@shadow", 0, t1 + i * 1e-3, "a", "smallcnn", "2", 1, 0.2, 0.3, "0" * 64, px, "", None, "")
                  for i in range(5)] + [("x@error", 0, t1 + 0.01, "a", "smallcnn", "2", -1, 0.0, 0.0, "", None, "", None, "")])
    assert store.flush(5.0)
    assert [r["request_id"] for r in store.low_confidence(0.5, 1000, 100)] == expected
    window = store.recent(100)
    assert len(window["class_id"]) == 60 and window["class_id"].min() >= 0
    assert len(store.since("smallcnn", t0, 1000)) == 66  # a rollout's gates see them all
