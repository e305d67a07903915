# syntax=docker/dockerfile:1
# Multi-stage image for fmnist.
#   serve (default): slim serving image, no torch, no compiler, non-root, HEALTHCHECK, default model baked in
#   train:           torch (CPU) for `fmnist train`
# BASE is a build argument so tests can build FROM a locally made Debian bookworm (same distribution).
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*

# ---------------------------------------------------------------- build the serving venv
FROM base AS build-serve
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY src /src/src
# binary wheels only: the serving image never needs a compiler; pip itself stays behind
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: --upgrade pip \
 && /opt/venv/bin/pip install --only-binary=:all: "/src[serve,postgres]" \
 && ! /opt/venv/bin/python -c "import torch" 2>/dev/null \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools

# ---------------------------------------------------------------- serving image
FROM base AS serve
COPY --from=build-serve /opt/venv /opt/venv
RUN useradd --system --uid 10001 --create-home --home-dir /srv fmnist \
 && mkdir -p /srv/state \
 && chown fmnist /srv/state
# the default model; mount another registry on /srv/models (or set FMNIST_MODELS) to serve others
COPY --chown=fmnist models/smallcnn /srv/models/smallcnn
ENV PATH=/opt/venv/bin:$PATH \
    FMNIST_MODELS=/srv/models \
    FMNIST_PREDICTION_LOG=/srv/state/predictions.sqlite
WORKDIR /srv
USER fmnist
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/ready', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
# every interface, so it refuses to start without API keys: mount a key file (fmnist keys create) and set
# FMNIST_API_KEYS to its path, or run with FMNIST_OPEN=true to serve open on purpose
CMD ["fmnist", "serve", "--host", "0.0.0.0", "--port", "5000"]

# ---------------------------------------------------------------- training image
FROM base AS train
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url "${TORCH_INDEX}" torch==2.13.0 \
 && /opt/venv/bin/pip install "/src[train]"
RUN apt-get update \
 && (apt-get install -y --no-install-recommends dataset-fashion-mnist || true) \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH FMNIST_MODELS=/work/models
WORKDIR /work
ENTRYPOINT ["fmnist"]
CMD ["train", "--arch", "smallcnn"]
