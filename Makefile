# Two commands do all the set-up on a fresh Debian 12 machine (as root):
#   make demo   install, bring the broken lab up, diagnose it, fix it with remediate, diagnose again
#   make test   install everything the suite needs (Docker engine, compose v2, sshd, lab images) and run it
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup host demo test unit typecheck lab-up lab-reset lab-down bench clean

$(BIN)/remediate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

host:
	bash lab/setup-host.sh

setup: host $(BIN)/remediate

# LAB_OPTS: lab/up's options for the default instance, e.g. make lab-up LAB_OPTS='--versions old --layout cookiecutter'
LAB_OPTS ?=

lab-up: setup
	lab/up $(LAB_OPTS)

lab-reset: setup
	lab/reset $(LAB_OPTS)

lab-down:
	lab/down

# The demo's lab is the write-up's server as it is (every row enabled, Celery's default beat sync), whatever
# options the default instance had before; DEMO_VERSIONS=old runs it on the old version set.
DEMO_VERSIONS ?= current

demo: setup
	lab/reset --versions $(DEMO_VERSIONS) --layout edms --variant baked --sync default --feb31 enabled
	@echo; echo '### 1/3 remediate diagnose lab   (the broken lab: both seed faults)'
	$(BIN)/remediate diagnose lab; rc=$$?; [ $$rc -eq 2 ] || { echo "expected exit 2 (problems), got $$rc"; exit 1; }
	@echo; echo '### 2/3 remediate apply lab --diff   (fix, reload, verify)'
	$(BIN)/remediate apply lab --diff
	@echo; echo '### 3/3 remediate diagnose lab   (clean)'
	$(BIN)/remediate diagnose lab

# The suite brings up its own lab stacks (tests/lab.py); it needs the host prepared, not the default instance.
# Test files run in TEST_WORKERS parallel workers (pytest-xdist; each file in one worker, so a module's
# shared stack is brought up once); the lab tests mostly wait on beat, so more workers than cores pay.
TEST_WORKERS ?= 3

# The package is type-checked first (mypy --strict, configured in pyproject.toml): a type error fails CI.
test: setup typecheck
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

typecheck: $(BIN)/remediate
	$(BIN)/mypy --strict remediate

unit: $(BIN)/remediate
	$(BIN)/python -m pytest -q tests/unit

bench: setup
	bench/run --hosts 1,10,50,200 --cap ansible=50

clean:
	rm -rf $(VENV) .pytest_cache
