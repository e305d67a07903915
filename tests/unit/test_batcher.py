import threading
import time

import numpy as np
import pytest

from fmnist.inference import MicroBatcher


def make(max_batch=8, wait_ms=20.0):
    calls = []

    def run(x):
        calls.append(len(x))
        time.sleep(0.005)
        return x.reshape(len(x), -1)[:, :10] * 2

    return MicroBatcher(run, max_batch, wait_ms), calls


def test_alone_runs_inline_without_waiting():
    b, calls = make(wait_ms=500)
    x = np.arange(1 * 784, dtype=np.float32).reshape(1, 1, 28, 28)
    t0 = time.perf_counter()
    out = b.predict(x)
    assert time.perf_counter() - t0 < 0.2  # no 500 ms wait when idle
    np.testing.assert_array_equal(out, x.reshape(1, -1)[:, :10] * 2)
    assert calls == [1]
    b.close()


def test_concurrent_requests_share_a_batch_and_get_their_own_rows():
    b, calls = make(max_batch=16, wait_ms=50)
    n = 12
    results = {}
    barrier = threading.Barrier(n)

    def client(i):
        b.enter()  # as the view does: announce, "decode", then leave and queue
        barrier.wait()
        x = np.full((1, 1, 28, 28), i, np.float32)
        b.leave()
        results[i] = b.predict(x)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(n):
        assert np.all(results[i] == 2 * i)
    assert sum(calls) == n and max(calls) > 1  # batched, every image once
    assert all(c <= 16 for c in calls)
    b.close()


def test_max_batch_size_is_respected():
    b, calls = make(max_batch=4, wait_ms=50)
    n = 10
    for _ in range(n):
        b.enter()
    out = []

    def client():
        b.leave()
        out.append(b.predict(np.ones((1, 1, 28, 28), np.float32)))

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == n and sum(calls) == n and max(calls) <= 4
    b.close()


def test_model_error_reaches_every_waiter_and_batcher_survives():
    state = {"fail": True}

    def run(x):
        if state["fail"]:
            raise RuntimeError("boom")
        return np.zeros((len(x), 10))

    b = MicroBatcher(run, 8, 1.0)
    b.enter()  # pretend another request is in flight so this one goes through the batching thread
    with pytest.raises(RuntimeError, match="boom"):
        b.predict(np.zeros((1, 1, 28, 28), np.float32))
    state["fail"] = False
    assert b.predict(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    b.leave()
    b.close()
