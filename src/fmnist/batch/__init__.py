"""`fmnist batch`: classify a whole catalogue offline, with the server's preprocessing and model.

`sources` (what is read: directories, globs, manifests, IDX/.npy arrays; shards), `job` (one machine:
decoding processes, ONNX Runtime, resumable parts), `writers` (JSONL, CSV, Parquet; atomic parts and
merge), `summary` (JSON and PNG), `dask_engine` (the same job on a Dask cluster; optional extra).
"""
