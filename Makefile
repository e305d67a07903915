# Two commands on a fresh Debian/Ubuntu machine:
#   make run    set everything up, then serve the shipped model at http://localhost:5000
#   make test   set everything up and run the test suite
# Everything goes into ./.venv; torch is pinned to the CPU build 2.13.0.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)
REPORT_MODELS ?= mlp mlp-deep lenet alexnet vgg smallcnn

.PHONY: run test test-container setup data test-deps report bench clean

run: setup
	$(BIN)/fmnist serve --model smallcnn --port 5000

# Everything, the podman image and compose tests included (they skip where podman cannot be set up).
test: setup data test-deps
	FMNIST_CONTAINER_TESTS=1 $(BIN)/python -m pytest -ra

setup: $(VENV)/.installed

# torch first and pinned: an unpinned torch requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[train,serve,dev]"
	touch $@

# The Debian/Ubuntu package puts the real dataset in /usr/share/datasets/fashion-mnist;
# elsewhere `fmnist data` downloads it from the official mirror and checks it.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && command -v apt-get >/dev/null; then \
	  echo "installing dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist \
	    || echo "could not apt-get install dataset-fashion-mnist; fmnist will try the official mirror"; \
	fi

# Only the container image and compose tests (minutes the first time: debootstrap + pip in the builds).
test-container: setup test-deps
	FMNIST_CONTAINER_TESTS=1 $(BIN)/python -m pytest -ra -s tests/test_container.py

# What the integration tests run for real: Prometheus (promtool), headless Chromium + driver,
# nginx and wrk (cluster and rollout under load), kubectl (kustomize rendering), iptables (podman's
# network helper needs it; shared/tools/podman-env.sh installs the rest of podman).
TEST_DEBS := prometheus chromium chromium-driver nginx wrk kubernetes-client iptables
test-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Regenerate the committed comparison report in docs/report from the artifacts in ./models.
report: setup data
	$(BIN)/fmnist compare $(REPORT_MODELS) --out docs/report

# Serving benchmark against the seed-style baseline (needs wrk: apt-get install wrk).
bench: setup data
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y -qq wrk
	$(BIN)/python bench/serve_bench.py --matrix --replicas --ceiling --out docs/benchmarks-run.md

clean:
	rm -rf $(VENV) report explain runs
