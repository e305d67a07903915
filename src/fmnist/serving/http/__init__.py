"""fmnist's HTTP/1.1 server for Gunicorn: no Flask and nothing of the app here (tests/unit/test_layers.py).

- `worker.LoopWorker`: the Gunicorn worker class, one event loop per process; it batches the app's fast
  path (the app's `batch` hook, serving/http/exchange.py) and sends everything else to a thread pool.
- `http11`: the request reader over httptools (llhttp), every buffer bounded; environ and response bytes.
- `connection`: one client connection's state, and start_response for one request.
- `pool.AppPool`: the worker's thread pools (the app pool, and the heavy pool for big pictures).
- `single_write`: one write per response for Gunicorn's own workers (gthread, sync).
- `gunicorn_conf`: Gunicorn's settings, read from `fmnist.config.Settings`.

The one thing shared with the app is the JSON error shape, `fmnist.serving.apierror`.
"""
