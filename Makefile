# make serve: the demo on http://127.0.0.1:8080   make test: lint + the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/imgproxy serve --config config/imgproxy.toml

lint: $(STAMP)
	$(BIN)/ruff check imgproxy tests benchmarks examples
	$(BIN)/ruff format --check imgproxy tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# make bench BENCH_ARGS="--only thumbor --rounds 3": see python -m benchmarks --help
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" -eq 0 ] && apt-get install -y -qq wrk; } \
		|| { echo "make bench needs wrk: apt-get install wrk"; exit 2; }
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
