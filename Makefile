# Two commands on a fresh Debian/Ubuntu machine (first: apt-get install make python3 python3-venv):
#   make run    set up what serving needs, then serve the shipped model at http://localhost:5000
#   make test   set up everything (training, serving, dev tools, dataset, test programs) and run the tests
# Everything Python goes into ./.venv. Serving needs no torch; where torch is installed it is the
# CPU build unless TORCH=cuda is given (make TORCH=cuda test, or make TORCH=cuda setup-train).

SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH  ?= cpu
# PyPI's torch wheels for Linux x86_64 are CUDA builds (~3 GB with their nvidia-* wheels); PyTorch's
# own CPU index has the CPU build (~200 MB). TORCH=cuda takes PyPI's.
ifeq ($(TORCH),cuda)
TORCH_INDEX ?= https://pypi.org/simple
else
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
endif
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)
REPORT_MODELS ?= mlp mlp-deep lenet alexnet vgg:1 vgg smallcnn:1 smallcnn:4 smallcnn

.PHONY: run test test-unit test-container setup setup-serve setup-train data test-deps report bench fuzz clean

run: setup-serve
	$(BIN)/fmnist serve --model smallcnn --port 5000

# Everything, the podman image and compose tests included (they skip, saying why, where podman
# cannot run a container).
test: setup-train data test-deps
	$(BIN)/ruff check src tests bench tools fuzz
	FMNIST_CONTAINER_TESTS=1 $(BIN)/python -m pytest -ra

# The quick loop while working: the unit tests (no server, no process of their own), the slow ones left out.
test-unit: setup-train data
	$(BIN)/python -m pytest -q tests/unit -m "not slow"

setup: setup-train
setup-serve: $(VENV)/.serve-installed
setup-train: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Serving only: Flask, Gunicorn, httptools, ONNX Runtime, prometheus-client, numpy, Pillow (no torch).
$(VENV)/.serve-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e ".[serve]"
	touch $@

# torch first, on its own: a torch wheel this machine's pip configuration already holds (a local
# CPU wheel, for offline machines) is taken as it is; otherwise the CPU build from PyTorch's index
# (or PyPI's CUDA build with TORCH=cuda). Then the package, whose torch>=2.2 is then satisfied.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	@if [ "$(TORCH)" != cuda ] && $(BIN)/pip install --quiet --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null; then \
	  echo "torch $(TORCH_VERSION): the wheel this machine's pip configuration provides"; \
	else \
	  echo "torch $(TORCH_VERSION) ($(TORCH)) from $(TORCH_INDEX)"; \
	  $(BIN)/pip install --quiet --index-url "$(TORCH_INDEX)" "torch==$(TORCH_VERSION)"; \
	fi
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[train,serve,postgres,keras,batch,dev]"
	@$(BIN)/python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda or 'none')"
	touch $@ $(VENV)/.serve-installed

# The Debian/Ubuntu package puts the real dataset in /usr/share/datasets/fashion-mnist;
# elsewhere `fmnist data` downloads it from the official mirror and checks it.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && command -v apt-get >/dev/null; then \
	  echo "installing dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist \
	    || echo "could not apt-get install dataset-fashion-mnist; fmnist will try the official mirror"; \
	fi

# Only the container image and compose tests (minutes the first time: debootstrap + pip in the builds).
test-container: setup-train test-deps
	FMNIST_CONTAINER_TESTS=1 $(BIN)/python -m pytest -ra -s tests/test_container.py

# What the integration tests run for real: Prometheus (promtool), headless Chromium + driver, nginx and
# wrk (cluster and rollout under load), kubectl (kustomize rendering), PostgreSQL (initdb and pg_ctl for a
# throwaway server: the shared prediction log's tests), iptables (podman's network helper needs it;
# shared/tools/podman-env.sh installs the rest of podman). tools/testdeps.py decides per program: one found
# wherever it came from (a newer kubectl from the Kubernetes apt repository, PGDG's PostgreSQL, ...) at a
# version the tests can use is kept; Debian's package goes in only where the program is missing or too old
# and nothing else owns its files. It never fails: the tests that need a program it could not get skip.
test-deps:
	@$(PYTHON) tools/testdeps.py

# Regenerate the committed comparison report in docs/report from the artifacts in ./models.
report: setup-train data
	$(BIN)/fmnist compare $(REPORT_MODELS) --out docs/report

# Serving benchmark against the seed-style baseline (needs wrk: apt-get install wrk).
bench: setup-train data
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y -qq wrk
	$(BIN)/python bench/serve_bench.py --matrix --side-traffic --replicas --ceiling --out docs/benchmarks-run.md

# The fuzz campaign for when there is time (fuzz/README.md): each target FUZZ_SECONDS (300) with atheris, new
# coverage kept in .fuzz/, a crash written to fuzz/crashes/TARGET/ (then fix it and commit it: a regression case).
FUZZ_SECONDS ?= 300
fuzz: setup-train
	@for t in multipart image json v2; do echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  $(BIN)/python fuzz/run.py $$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 2>&1 | grep -E "^(Done|#[0-9]+ +DONE)|Uncaught|Error|crash-" ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; done

clean:
	rm -rf $(VENV) report explain runs
