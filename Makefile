# The two commands: `make demo` and `make test`. Each creates .venv and installs the
# project (pip install -e .[dev]) the first time, or when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## the default test suite (fast; slow and GPU tests are marked and skipped)
test: $(STAMP)
	$(BIN)/python -m pytest

## everything, slow tests included
test-all: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu"

## the main job on the embedded default: ResNet-8 dense and at 25% with three methods, 3 epochs each
## (until `smhsearch run spaces/quick.yaml` exists); results in runs/demo/*/result.json
DEMO = $(BIN)/smhsearch train resnet8 --dataset fashion-mnist-small --epochs 3
demo: $(STAMP)
	$(DEMO) --out runs/demo/dense
	$(DEMO) --method smh --budget 25% --scale learnable --variable-lr-mult 10 --out runs/demo/smh
	$(DEMO) --method hashednets --budget 25% --out runs/demo/hashednets
	$(DEMO) --method width --budget 25% --out runs/demo/width

lint: $(STAMP)
	$(BIN)/ruff check smhsearch tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/smh_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
