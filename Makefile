# Two commands do all the set-up on a fresh Debian 12 machine (as root):
#   make demo   install, bring the broken lab up, diagnose it, fix it with remediate, diagnose again
#   make test   install everything the suite needs (Docker engine, compose v2, sshd, lab images) and run it
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup host demo test unit lab-up lab-reset lab-down bench clean

$(BIN)/remediate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

host:
	bash lab/setup-host.sh

setup: host $(BIN)/remediate

lab-up: setup
	lab/up

lab-reset: setup
	lab/reset

lab-down:
	lab/down

demo: setup
	lab/up
	lab/reset
	@echo; echo '### 1/3 remediate diagnose lab   (the broken lab: both seed faults)'
	$(BIN)/remediate diagnose lab; rc=$$?; [ $$rc -eq 2 ] || { echo "expected exit 2 (problems), got $$rc"; exit 1; }
	@echo; echo '### 2/3 remediate apply lab --diff   (fix, reload, verify)'
	$(BIN)/remediate apply lab --diff
	@echo; echo '### 3/3 remediate diagnose lab   (clean)'
	$(BIN)/remediate diagnose lab

# The suite brings up its own lab stacks (tests/lab.py); it needs the host prepared, not the default instance.
test: setup
	$(BIN)/python -m pytest -q

unit: $(BIN)/remediate
	$(BIN)/python -m pytest -q tests/unit

bench: setup
	bench/run --hosts 1,10,50

clean:
	rm -rf $(VENV) .pytest_cache
