"""Dynamic micro-batching: concurrent requests of one worker share one model call.

A request thread calls `predict(x)`; a single batching thread takes the first waiting item and
everything else already queued (up to max_batch_size images). It waits up to max_wait for more
only while other requests are known to be in flight (entered but not yet queued), so a busy
server runs full batches. A request that finds nobody else in flight and nothing queued runs in
its own thread: an idle server pays neither a wait nor a thread hand-off.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

from fmnist.config import Settings


class MicroBatcher:
    def __init__(self, run_batch, max_batch_size: int = Settings.max_batch_size,
                 max_wait_ms: float = Settings.max_batch_wait_ms, on_batch=None):
        self._run = run_batch  # float32 (N,1,28,28) -> (N,10)
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self._on_batch = on_batch  # callback(batch_size, seconds) for metrics
        self._queue: "queue.SimpleQueue[tuple[np.ndarray, Future] | None]" = queue.SimpleQueue()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="fmnist-batcher", daemon=True)
        self._thread.start()

    # A request calls enter() before its decode step and leave() just before predict(), so the
    # batcher knows how many more items are about to arrive.
    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def predict(self, x: np.ndarray, timeout: float = 30.0) -> np.ndarray:
        with self._lock:
            alone = self._in_flight == 0 and self._queue.empty()
        if alone:  # nobody else is coming: run in this thread, no hand-off to the batching thread
            t0 = time.perf_counter()
            out = self._run(x)
            if self._on_batch is not None:
                self._on_batch(len(x), time.perf_counter() - t0)
            return out
        fut: Future = Future()
        self._queue.put((x, fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            size = len(item[0])
            deadline = time.perf_counter() + self.max_wait
            while size < self.max_batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    with self._lock:
                        others = self._in_flight  # requests decoding now, about to queue
                    remaining = deadline - time.perf_counter()
                    if others <= 0 or remaining <= 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=min(remaining, 0.0005))
                    except queue.Empty:
                        continue
                if nxt is None:
                    self._queue.put(None)
                    break
                items.append(nxt)
                size += len(nxt[0])
            self._execute(items)

    def _execute(self, items) -> None:
        t0 = time.perf_counter()
        try:
            x = items[0][0] if len(items) == 1 else np.concatenate([it[0] for it in items])
            out = self._run(x)
        except Exception as e:  # the model failed: every waiting request gets the error, the loop lives on
            for _, fut in items:
                fut.set_exception(e)
            return
        if self._on_batch is not None:
            self._on_batch(len(x), time.perf_counter() - t0)
        start = 0
        for xi, fut in items:
            fut.set_result(out[start : start + len(xi)])
            start += len(xi)
