# Two commands do everything: `make repro` (set up, then the pipeline) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: setup repro test ui clean

$(BIN)/dvc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/dvc

repro: setup  ## the whole pipeline with the defaults of params.yaml
	$(BIN)/dvc repro

test: setup  ## unit tests and the end-to-end dvc repro test (benchmarks are separate)
	$(BIN)/pytest tests

ui: setup  ## browse and compare the runs, on this machine only
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000
