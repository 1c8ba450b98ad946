# Stages: synth -> train -> tune. Each writes a file the next reads, so only stale work reruns.
# HW is a preset name or a YAML path; MODEL a zoo name or an .onnx path.
HW ?= mlu100
MODEL ?= resnet50
BATCH ?= 1
SEED ?= 0
BUDGET ?=
SAMPLING ?= sobol
JOBS ?= 2
# HW=cpu: this machine measured with ONNX Runtime (synth picks a budget a 2-core machine labels in minutes)
CPUHW := $(filter cpu,$(HW))
BUDGET_ARG := $(if $(BUDGET),--budget $(BUDGET),)
# on the CPU a share of the labels goes to MODEL's kernels: random ones, then those its plans use (autotune/synth/plan_labels.py)
CPUPLANS := $(if $(CPUHW),$(MODEL),)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HWNAME := $(basename $(notdir $(HW)))
MODELNAME := $(basename $(notdir $(MODEL)))
HWDEP := $(if $(findstring /,$(HW)),$(HW),)
SRC := $(wildcard autotune/*.py autotune/*/*.py autotune/*/*/*.py autotune/hardware/presets/*.yaml)

.PHONY: all synth train tune study eval test test-slow test-all bench lint clean venv universal FORCE

all: synth train tune

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,onnxruntime]'
	touch $@

# a stamp that changes only when BUDGET, SAMPLING or SEED do, so changing them remakes the dataset
PARAMS := data/$(HWNAME)/.make-params
$(PARAMS): FORCE
	@mkdir -p $(dir $@)
	@echo "$(BUDGET) $(SAMPLING) $(SEED) $(CPUPLANS)" | cmp -s - $@ || echo "$(BUDGET) $(SAMPLING) $(SEED) $(CPUPLANS)" > $@

synth: data/$(HWNAME)/manifest.json
data/$(HWNAME)/manifest.json: $(STAMP) $(SRC) $(HWDEP) $(PARAMS)
	$(BIN)/autotune synth --hw $(HW) $(BUDGET_ARG) --sampling $(SAMPLING) --seed $(SEED) \
		--jobs $(JOBS) --out data/$(HWNAME) --force $(if $(CPUHW),--backend onnxruntime --plans $(MODEL),)

train: models/$(HWNAME)/meta.json
models/$(HWNAME)/meta.json: data/$(HWNAME)/manifest.json autotune/costmodel/model.py autotune/costmodel/training.py \
		autotune/costmodel/features.py autotune/hardware/analytic.py autotune/costmodel/calibration.py autotune/data/dataset.py autotune/ir/tables.py \
		autotune/costmodel/feature_cache.py autotune/costmodel/boosters.py autotune/costmodel/memory.py \
		$(wildcard autotune/ir/ops/*.py)
	$(BIN)/autotune train --hw $(HW) --data data/$(HWNAME) --out models/$(HWNAME) --seed $(SEED)

tune: reports/$(HWNAME)/$(MODELNAME).plan.json
reports/$(HWNAME)/$(MODELNAME).plan.json: models/$(HWNAME)/meta.json
	$(BIN)/autotune tune --hw $(HW) --model $(MODEL) --batch $(BATCH) --verify \
		$(if $(MEASURE),--measure-budget $(MEASURE),) --out $@ --plot reports/$(HWNAME)/$(MODELNAME).plan.png

# One model for a family of parts (presets/family.yaml): DEVICES drawn datasheets, each measured on
# SIBLINGS devices, UBUDGET labels over them all (defaults 256 x 16, 6,144,000 labels); then
# `autotune tune --cost universal` plans any part in the family.
FAMILY ?= family
DEVICES ?=
SIBLINGS ?=
UBUDGET ?=
universal: models/universal/meta.json
data/universal/family.json: $(STAMP) $(SRC) $(if $(findstring /,$(FAMILY)),$(FAMILY),)
	$(BIN)/autotune synth --hw-family $(FAMILY) $(if $(DEVICES),--devices $(DEVICES),) \
		$(if $(SIBLINGS),--siblings $(SIBLINGS),) $(if $(UBUDGET),--budget $(UBUDGET),) --seed $(SEED) --jobs $(JOBS) --out data/universal --force
models/universal/meta.json: data/universal/family.json autotune/costmodel/model.py autotune/costmodel/universal.py \
		autotune/costmodel/features.py autotune/hardware/analytic.py autotune/costmodel/calibration.py autotune/data/dataset.py autotune/ir/tables.py
	$(BIN)/autotune train --universal --data data/universal --out models/universal --seed $(SEED)

study: $(STAMP)
	$(BIN)/autotune study --hw $(HW)

eval: models/$(HWNAME)/meta.json
	$(BIN)/autotune eval --hw $(HW) --models all $(if $(MEASURE),--measure-budget $(MEASURE),) \
		--json reports/$(HWNAME)/eval.json

# the suite to run while working (a few minutes); test-all adds the slow tests (marked `slow`).
# TEST_JOBS worker processes (pytest-xdist), each test file on one worker so a module's fixture is
# made once; TEST_JOBS=0 runs in this process.
TEST_JOBS ?= 2
XDIST = $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile,)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(XDIST)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(XDIST)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(XDIST)

bench: $(STAMP)
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check autotune tests bench
	$(BIN)/mypy

clean:
	rm -rf data/*/ models/*/ reports/*/
