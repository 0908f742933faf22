# make serve: the demo on http://127.0.0.1:8080   make test: lint + the whole suite
# Both build .venv from requirements-dev.lock (exact versions and hashes), so a fresh clone
# tests with the toolchain main was tested with; `make lock` updates it, on purpose.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-dev.lock
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.7.0

.PHONY: serve test lint bench lock clean

$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
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

# Resolve the dev extra (and the build backend) again, newest allowed versions, with hashes.
# The project's own line and this machine's index options are dropped: pip.conf gives those.
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)
	$(VENV)-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--extra dev --all-build-deps --no-emit-index-url --no-emit-find-links \
		--output-file $(LOCK) pyproject.toml
	sed -i -e '/^# WARNING/d' -e '/^# Consider using/d' \
		-e '/^imgproxy-server @/,/^[a-z]/{/^imgproxy-server @/d;/^    #/d}' $(LOCK)
	rm -rf $(VENV)-lock

clean:
	rm -rf $(VENV) $(VENV)-lock var .pytest_cache .mypy_cache .ruff_cache
