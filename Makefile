# Two commands do everything: `make repro` (set up, then the pipeline) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
BENCH_NAME ?= cpu
# DVC runs each stage's `python` from PATH: make it the project's virtual environment.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup lock repro reproduce fashion-mnist time-to-accuracy check test bench counts valgrind gpu-check ui postgresql server server-stop push pull

# Exactly the packages of requirements.lock, checked by their hashes, then the project itself; then a check
# that nothing else is installed (mnistbench/lockfile.py).
$(BIN)/dvc: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m mnistbench.lockfile check
	touch $@

# Rewrite requirements.lock from pyproject.toml's pins (pip-compile, in a venv of its own so that the project's
# stays exactly the lock); then `make setup` installs it.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip-tools==7.6.2
	.venv-lock/bin/pip-compile --quiet --generate-hashes --extra test --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

# Fashion-MNIST's local source: Debian's package, installed when missing (needs root and apt-get; elsewhere,
# set data.local_dir to a folder with its four .gz files).
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
$(FASHION_MNIST_DIR):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; \
	else echo "note: $@ missing and not installable here (apt-get dataset-fashion-mnist needs root)"; fi

# The page `dvc plots show` writes, with vega inlined so that it renders offline (mnistbench/plots_page.py).
.dvc/plots/index.html: .dvc/plots/page.html $(BIN)/dvc
	$(BIN)/python -m mnistbench.plots_page

setup: $(BIN)/dvc $(FASHION_MNIST_DIR) .dvc/plots/index.html

repro: setup  ## the whole pipeline with the defaults of params.yaml
	$(BIN)/dvc repro

# Variants: the pipeline of dvc.yaml with some sections of params.yaml replaced by <variant>/params.yaml, run
# in a workspace of their own (.variants/, kept between runs); the record lands in <variant>/ (mnistbench/variant.py).
reproduce: setup  ## the write-up reproduction: 10 seeds of every model, vit_writeup -> reproduce/reports/ (only what the record lacks; all of it: about 2.3 h on 2 cores)
	$(BIN)/python -m mnistbench.variant reproduce

fashion-mnist: setup  ## the default pipeline on Fashion-MNIST -> fashion-mnist/reports/
	$(BIN)/python -m mnistbench.variant fashion-mnist

time-to-accuracy: setup  ## re-measure the time_to_accuracy stage (quiet machine!), then refresh the report
	$(BIN)/dvc repro --force --single-item time_to_accuracy
	$(BIN)/dvc repro report

check: setup  ## the fast tier, after every change: unit tests only (no dvc repro, Ray, server or training)
	$(BIN)/python -m mnistbench.lockfile check
	$(BIN)/pytest tests --ignore=tests/benchmarks -m "not slow"

# Two pytest-xdist workers, each taking whole modules: most of a slow test's time is waiting on the processes it
# started (stages importing torch, clusters and servers starting), and two such tests overlap well even on two
# cores; each test's bounds hold on a busy machine. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: setup  ## the whole suite (what CI runs): the fast tier, then real dvc repro, Ray, server and trainings
	$(BIN)/python -m mnistbench.lockfile check
	$(BIN)/pytest tests --ignore=tests/benchmarks --durations=15 -n $(TEST_WORKERS) --dist loadfile

bench: setup  ## kernel and training-step benchmarks on this machine -> reports/benchmarks.md
	mkdir -p reports/benchmarks
	$(BIN)/pytest tests/benchmarks --benchmark-json=reports/benchmarks/$(BENCH_NAME).json
	$(BIN)/python -m mnistbench.benchreport reports/benchmarks/*.json --out reports/benchmarks.md

# Valgrind for the instruction counts: Debian's package, installed when missing (needs root and apt-get).
valgrind:
	@command -v valgrind >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq valgrind >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq valgrind >/dev/null; }; \
	else echo "note: valgrind missing and not installable here (apt-get install valgrind needs root)"; fi

COMMIT = $(shell git rev-parse --short=12 HEAD)
counts: setup valgrind  ## instruction counts of the kernels and training steps (valgrind, a few minutes), gated against gates.yaml
	$(BIN)/python -m mnistbench.instructions count --out reports/benchmarks/counts/$(COMMIT).json >/dev/null
	$(BIN)/python -m mnistbench.instructions gate --counts reports/benchmarks/counts/$(COMMIT).json --gates gates.yaml

gpu-check: setup  ## on a machine with a CUDA GPU: its benchmarks and the default pipeline on it (a few minutes)
	$(BIN)/python -m mnistbench.gpu_check

ui: setup  ## browse and compare the runs, on this machine only; prints the links to the training runs
	$(BIN)/python -m mnistbench.ui

# PostgreSQL for `make server` and its tests: Debian's package, installed when missing (needs root and apt-get).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq postgresql >/dev/null; }; \
	else echo "note: PostgreSQL missing and not installable here (apt-get install postgresql needs root)"; fi

server: setup postgresql  ## an MLflow server for a team: PostgreSQL + `mlflow server --serve-artifacts` on 127.0.0.1:5001
	$(BIN)/python -m mnistbench.server start $(if $(PORT),--port $(PORT)) $(if $(PG_PORT),--pg-port $(PG_PORT))

server-stop:
	$(BIN)/python -m mnistbench.server stop $(if $(PORT),--port $(PORT)) $(if $(PG_PORT),--pg-port $(PG_PORT))

push: setup  ## send data and models to the DVC remote (.dvc/config; default ../mnistbench-dvc-storage)
	$(BIN)/dvc push

pull: setup  ## fetch what dvc.lock names from the DVC remote: `dvc repro` then retrains nothing
	$(BIN)/python -m mnistbench.remote pull
