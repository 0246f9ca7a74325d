# epspp: EPS++ as a PyTorch Lightning pipeline.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline

.PHONY: help install test test-all demo lint clean

help: ## list targets and variables
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv/ and install epspp with the dev extra (no-op when up to date)

test: $(STAMP) ## run the test suite
	$(BIN)/pytest -q

test-all: $(STAMP) ## run the test suite including slow tests
	$(BIN)/pytest -q -m ''

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check src tests

clean: ## remove caches (keeps .venv and runs)
	rm -rf .pytest_cache .ruff_cache build src/*.egg-info
