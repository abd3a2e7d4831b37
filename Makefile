# Two commands matter: `make demo` and `make test`. Both create .venv when missing
# and install what they need into it (the demo skips the llama.cpp build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles from source; the default native build crashes on some CPUs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: demo test lint fmt install install-demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch==2.13.0 (CPU) is pinned by the `embed` extra; install it alone first so no
# resolver picks a CUDA build.
$(VENV)/.stamp-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[inspect,embed,serve]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-demo
	$(BIN)/python -m pip install --quiet -e '.[dev,inspect,embed,local,ray,serve]'
	touch $@

install-demo: $(VENV)/.stamp-demo
install: $(VENV)/.stamp-test

demo: $(VENV)/.stamp-demo
	$(BIN)/forensics demo

test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.stamp-test
	$(BIN)/python -m benchmarks.sandbox_throughput
	$(BIN)/python -m benchmarks.sequential
	$(BIN)/python -m benchmarks.batch
	$(BIN)/python -m benchmarks.replay_fixtures
	$(BIN)/python -m benchmarks.parsing

fmt: $(VENV)/.stamp-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
