# The two commands: `make demo` and `make test`. Each creates .venv and installs the
# project (pip install -e .[dev]) the first time, or when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: docs demo test test-all test-gpu gpu-check test-xla install-xla lint bench install browser postgres clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Debian's chromium, for the report's browser tests (skipped, with the reason, where it cannot be installed)
browser:
	@scripts/ensure_chromium.sh

## Debian's postgresql, for the tests that run a search against a private PostgreSQL server (skipped, with the reason, where it cannot be installed)
postgres:
	@scripts/ensure_postgres.sh

## the default test suite (fast; slow and GPU tests are marked and skipped), on TEST_JOBS processes (pytest-xdist;
## the tests sharing a run or a Ray stay on one process)
TEST_JOBS ?= 2
test: $(STAMP) browser postgres
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup

## everything a CPU machine runs: the default suite and the tests marked slow
## (a -m given here replaces the `-m 'not slow and not gpu'` of pyproject's addopts)
test-all: $(STAMP) browser postgres
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup -m "not gpu"

## the tests marked gpu alone (on a machine with CUDA; elsewhere they skip and say why)
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu

## the GPU checks in one command (under 8 minutes): the gpu tests, smh_overhead.py on the GPU (224 px, bf16) and a short
## ResNet-32 CIFAR-10 run (dense, SMH at 46K); results under benchmarks/results/, named after the GPU. It runs with the
## machine's own Python (no .venv, no registry): the wheels and the CIFAR-10 subset come from scripts/gpu_check_prepare.py,
## run first where a registry is reachable. Without a CUDA device it exits 2 at once, saying so.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py

## PyTorch/XLA pins an older torch than the project's default, so the xla tests get their own environment,
## .venv-xla (Python 3.11, pyproject's [xla] extra: exact torch / torchvision / torch-xla versions), and run on
## XLA's CPU backend (PJRT_DEVICE=CPU), so no TPU is needed
PYTHON_XLA ?= python3.11
XVENV  := .venv-xla
XBIN   := $(XVENV)/bin
XSTAMP := $(XVENV)/.installed

$(XSTAMP): pyproject.toml
	test -x $(XBIN)/python || $(PYTHON_XLA) -m venv $(XVENV)
	$(XBIN)/python -m pip install --upgrade pip
	$(XBIN)/python -m pip install -e '.[dev,xla]'
	touch $(XSTAMP)

install-xla: $(XSTAMP)

test-xla: $(XSTAMP)
	PJRT_DEVICE=CPU $(XBIN)/python -m pytest -m xla

## the main job on the embedded default: the search of spaces/quick.yaml (a few minutes on 2 CPU cores),
## its report (reports/quick.html) and the pick under a budget
demo: $(STAMP)
	$(BIN)/smhsearch check spaces/quick.yaml
	$(BIN)/smhsearch run spaces/quick.yaml
	$(BIN)/smhsearch report runs/quick
	-$(BIN)/smhsearch pick runs/quick --max-params 20K   # exit 1 (ignored) would mean no finished trial fits

## the docs site, built into site/ with warnings as errors (the reference pages are generated from the code)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

lint: $(STAMP)
	$(BIN)/ruff check smhsearch tests benchmarks scripts docs

bench: $(STAMP)
	$(BIN)/python benchmarks/smh_overhead.py

clean:
	rm -rf $(VENV) $(XVENV) .pytest_cache .hypothesis test-artifacts
