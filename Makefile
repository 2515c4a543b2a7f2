# Every target bootstraps .venv itself, so a fresh clone needs only `make serve` or `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install serve test lint openapi bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,postgres]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/mistral-gateway serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/gen_openapi.py --check
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

openapi: $(STAMP)
	$(BIN)/python scripts/gen_openapi.py

# wrk is the load generator (a separate process); installed from apt when missing. BENCH_ARGS="--suite models ..."
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
