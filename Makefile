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
TRAINER = --trainer.devices $(GPUS) --trainer.num_nodes $(NODES) --trainer.strategy $(STRATEGY)
PROCESSES = --devices $(GPUS) --num-nodes $(NODES)
FIT_ARGS ?=
PREDICT_ARGS ?=
TEST_ARGS ?=
TEST_WORKERS ?= 2
REGIME ?= pretrained
STUDY_ARGS ?=

.PHONY: help install test test-quick lint demo study bench clean voc-wsss voc-ssss coco-wsss

help: ## list targets and variables
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'
	@echo "variables: DATA_ROOT (dataset root, VOC layout), RUN_DIR (default runs/voc or runs/coco), GPUS (per node),"
	@echo "           NODES, STRATEGY (auto for 1 GPU, else ddp), FIT_ARGS / PREDICT_ARGS / TEST_ARGS (extra epspp"
	@echo "           overrides of the fits, the pseudo-mask prediction and the final test-split prediction),"
	@echo "           METHOD (stage 1: cam, eps or eps++, default eps++; default RUN_DIR runs/voc/METHOD: give"
	@echo "           each METHOD its own RUN_DIR, a fit resumes the last.ckpt it finds there),"
	@echo "           TEST_WORKERS (pytest processes of make test, default 2), REGIME (make demo: pretrained, the"
	@echo "           papers' regime with stage 0, or scratch; the scratch demo writes runs/demo_scratch)"

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e '.[dev,crf,saliency]'
	touch $(STAMP)

install: $(STAMP) ## create .venv/ and install epspp with the dev and crf extras (no-op when up to date)

test: $(STAMP) ## run the test suite (TEST_WORKERS processes, default 2; tests of one module stay in one)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope

test-quick: $(STAMP) ## the test suite without the slow multi-process launches
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope -m 'not slow'

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check src tests benchmarks

demo: $(STAMP) ## whole pipeline on the synthetic dataset, CPU (REGIME=pretrained: stage 0 first); runs/demo/report.md
	$(EPSPP) demo --regime $(REGIME) --root data/synthetic --configs configs/demo

study: $(STAMP) ## both studies, their default grids, on synthetic data (CPU, <= 120 min; STUDY_ARGS=--full-grid: about 7 h); runs/study/
	$(EPSPP) study saliency-errors --out runs/study --configs configs/demo $(STUDY_ARGS)
	$(EPSPP) study labeled-fraction --out runs/study --configs configs/demo $(STUDY_ARGS)

bench: $(STAMP) ## run benchmarks/ and write BENCHMARKS.md
	$(BIN)/python benchmarks/run_all.py --out BENCHMARKS.md

# stage chains: $(1) dataset config folder, $(2) segmentation config, $(3) localization config.
# Rerunning a chain resumes: fits continue from last.ckpt (--ckpt_path last), predict skips written masks.
# The last step predicts the test split with configs/$(1)/segmentation_test.yaml (dense CRF; VOC: the evaluation
# server's layout under RUN_DIR/segmentation_*/test/results, COCO: val with its mIoU).
# The fits split the configs' total batch over GPUS x NODES processes (`epspp batch-args`, the rule of
# docs/multi_gpu.md, also used by scripts/slurm/); FIT_ARGS come last and override.
define chain
	@$(if $(and $(filter 1,$(words $(METHOD))),$(filter $(METHOD),$(METHODS))),true,\
	  echo "make: METHOD=$(METHOD) is not one of: $(METHODS)" >&2; exit 2)
	recipe=$$($(EPSPP) batch-args --config configs/$(1)/$(3) $(PROCESSES)) && \
	$(EPSPP) fit --config configs/$(1)/$(3) --data.root $(DATA_ROOT) \
	  --trainer.default_root_dir $(RUN_DIR)/localization --ckpt_path last $(TRAINER) $$recipe $(FIT_ARGS)
	$(EPSPP) predict --config configs/$(1)/pseudo_masks.yaml --data.root $(DATA_ROOT) \
	  --ckpt_path $(RUN_DIR)/localization/checkpoints/last.ckpt \
	  --pseudo_masks.output_dir $(RUN_DIR)/pseudo_masks $(TRAINER) $(PREDICT_ARGS)
	recipe=$$($(EPSPP) batch-args --config configs/$(1)/$(2) $(PROCESSES)) && \
	$(EPSPP) fit --config configs/$(1)/$(2) --data.root $(DATA_ROOT) \
	  --data.pseudo_mask_dir $(RUN_DIR)/pseudo_masks \
	  --trainer.default_root_dir $(RUN_DIR)/$(basename $(2)) --ckpt_path last $(TRAINER) $$recipe $(FIT_ARGS)
	$(EPSPP) predict --config configs/$(1)/$(2) --config configs/$(1)/segmentation_test.yaml --data.root $(DATA_ROOT) \
	  --ckpt_path $(RUN_DIR)/$(basename $(2))/checkpoints/last.ckpt \
	  --trainer.default_root_dir $(RUN_DIR)/$(basename $(2))/test \
	  --pseudo_masks.output_dir $(RUN_DIR)/$(basename $(2))/test $(TRAINER) $(TEST_ARGS)
endef

voc-wsss: $(STAMP) ## VOC 2012: METHOD localization (default EPS++) -> pseudo-masks -> DeepLab-v2 (WSSS)
	$(call chain,voc,segmentation_wsss.yaml,localization_$(METHOD).yaml)

voc-ssss: $(STAMP) ## VOC 2012: as voc-wsss (shared stages 1-2), DeepLab-v2 on 1,464 labelled + pseudo-masks
	$(call chain,voc,segmentation_ssss.yaml,localization_$(METHOD).yaml)

coco-wsss: $(STAMP) ## COCO 2014: METHOD localization (default EPS++) -> pseudo-masks -> DeepLab-v2 (WSSS)
	$(call chain,coco,segmentation_wsss.yaml,localization_$(METHOD).yaml)

clean: ## remove caches (keeps .venv, data and runs)
	rm -rf .pytest_cache .ruff_cache build src/*.egg-info
