# epspp: EPS++ as a PyTorch Lightning pipeline.  `make help` lists targets and variables.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EPSPP := $(BIN)/epspp
export WANDB_MODE ?= offline

# Reproduction targets (variables: make voc-wsss DATA_ROOT=... RUN_DIR=... GPUS=...)
DATA_ROOT ?= data/voc
METHOD ?= eps++
METHODS := cam eps eps++
RUN_DIR ?= runs/$(firstword $(subst -, ,$@))/$(METHOD)
GPUS ?= 1
NODES ?= 1
STRATEGY ?= $(if $(and $(filter 1,$(GPUS)),$(filter 1,$(NODES))),auto,ddp)
FIT_ARGS ?=
PREDICT_ARGS ?=
TEST_ARGS ?=
TEST_WORKERS ?= 2
PRINT ?=
REGIME ?= pretrained
STUDY_ARGS ?=

.PHONY: help install test test-quick lint docs demo study bench gpu-wheels clean voc-wsss voc-ssss coco-wsss

help: ## list targets and variables
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'
	@echo "variables: DATA_ROOT (dataset root, VOC layout), RUN_DIR (default runs/voc or runs/coco), GPUS (per node),"
	@echo "           NODES, STRATEGY (auto for 1 GPU, else ddp), FIT_ARGS / PREDICT_ARGS / TEST_ARGS (extra epspp"
	@echo "           overrides of the fits, the pseudo-mask prediction and the final test-split prediction),"
	@echo "           METHOD (stage 1: cam, eps or eps++, default eps++; default RUN_DIR runs/voc/METHOD: give"
	@echo "           each METHOD its own RUN_DIR, a fit resumes the last.ckpt it finds there),"
	@echo "           PRINT=1 (voc-wsss etc.: print the stages' commands instead of running them),"
	@echo "           TEST_WORKERS (pytest processes of make test, default 2), REGIME (make demo: pretrained, the"
	@echo "           papers' regime with stage 0, or scratch; the scratch demo writes runs/demo_scratch)"

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e '.[dev,crf,saliency,docs]'
	touch $(STAMP)

install: $(STAMP) ## create .venv/ and install epspp with the dev, crf, saliency and docs extras (no-op when up to date)

test: $(STAMP) ## run the test suite (TEST_WORKERS processes, default 2; tests of one module stay in one)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope

test-quick: $(STAMP) ## the test suite without the slow multi-process launches
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope -m 'not slow'

LINT_PATHS := src tests benchmarks scripts

lint: $(STAMP) ## ruff check, ruff format --check and mypy (the checks of .pre-commit-config.yaml)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

docs: $(STAMP) ## build the documentation site (mkdocs, strict) into site/
	$(BIN)/mkdocs build --strict -d site

demo: $(STAMP) ## whole pipeline on the synthetic dataset, CPU (REGIME=pretrained: stage 0 first); runs/demo/report.md
	$(EPSPP) demo --regime $(REGIME) --root data/synthetic --configs configs/demo

study: $(STAMP) ## both studies, their default grids, on synthetic data (CPU, <= 120 min; STUDY_ARGS=--full-grid: about 7 h); runs/study/
	$(EPSPP) study saliency-errors --out runs/study --configs configs/demo $(STUDY_ARGS)
	$(EPSPP) study labeled-fraction --out runs/study --configs configs/demo $(STUDY_ARGS)

bench: $(STAMP) ## run benchmarks/ and write BENCHMARKS.md (its hand-timed sections kept)
	$(BIN)/python benchmarks/run_all.py --out BENCHMARKS.md

# wheels/: what benchmarks/gpu/check.sh installs on the lent GPU machine (no package index there), for its Python
GPU_PYTHON ?= 3.12
GPU_PLATFORMS := $(foreach n,manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1,--platform $(n)_x86_64)

gpu-wheels: ## download benchmarks/gpu/wheels.txt into wheels/ (GPU_PYTHON, default 3.12; --no-deps, x86_64)
	rm -rf wheels.partial && mkdir wheels.partial
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	  $(GPU_PLATFORMS) -d wheels.partial -r benchmarks/gpu/wheels.txt
	rm -rf wheels && mv wheels.partial wheels
	@du -sh wheels

# stage chains (`epspp chain`, epspp/chain.py: the stages, their commands and run folders in one place):
# $(1) dataset (configs/$(1)/), $(2) segmentation (wsss or ssss). Stage 1 (configs/$(1)/localization_$(METHOD).yaml)
# -> pseudo-masks -> stage 3 (segmentation_$(2).yaml) -> the test split with configs/$(1)/segmentation_test.yaml (dense
# CRF; VOC: the evaluation server's layout under RUN_DIR/segmentation_*/test/results, COCO: val with its mIoU).
# Rerunning a chain resumes: a finished stage (its stage.json) is skipped, an interrupted fit continues from its
# last.ckpt, an interrupted prediction skips the masks it wrote; a stage whose command changed (other FIT_ARGS, ...)
# or whose input stage ran again runs again, its old folder kept as <folder>.previous.
# The fits split the configs' total batch over GPUS x NODES processes (`epspp batch-args`, the rule of
# docs/multi_gpu.md, also used by scripts/slurm/); FIT_ARGS come last and override. PRINT=1 prints the commands.
quote = '$(subst ','\'',$(1))'
define chain
	@$(if $(and $(filter 1,$(words $(METHOD))),$(filter $(METHOD),$(METHODS))),true,\
	  echo "make: METHOD=$(METHOD) is not one of: $(METHODS)" >&2; exit 2)
	$(EPSPP) chain --dataset $(1) --segmentation $(2) --method $(METHOD) --root $(DATA_ROOT) --out $(RUN_DIR) \
	  --devices $(GPUS) --num-nodes $(NODES) --strategy $(STRATEGY) --epspp $(EPSPP) \
	  --fit-args=$(call quote,$(FIT_ARGS)) --predict-args=$(call quote,$(PREDICT_ARGS)) \
	  --test-args=$(call quote,$(TEST_ARGS))$(if $(PRINT), --print)
endef

voc-wsss: $(STAMP) ## VOC 2012: METHOD localization (default EPS++) -> pseudo-masks -> DeepLab-v2 (WSSS)
	$(call chain,voc,wsss)

voc-ssss: $(STAMP) ## VOC 2012: as voc-wsss (shared stages 1-2), DeepLab-v2 on 1,464 labelled + pseudo-masks
	$(call chain,voc,ssss)

coco-wsss: $(STAMP) ## COCO 2014: METHOD localization (default EPS++) -> pseudo-masks -> DeepLab-v2 (WSSS)
	$(call chain,coco,wsss)

clean: ## remove caches (keeps .venv, data and runs)
	rm -rf .pytest_cache .ruff_cache build site src/*.egg-info
