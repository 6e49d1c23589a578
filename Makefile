# focalinfer: `make demo` runs the chain on generated sample data; `make test` runs the tests.
# Stage targets take the variables below, e.g. `make preprocess export om BS=16 DATA=ImageNet/val`.

# Defaults come from focalinfer/defaults.py, the one place the CLI reads them too.
default_of   = $(shell sed -n 's/^$(1) = "\(.*\)"$$/\1/p' focalinfer/defaults.py)
MODEL       ?= $(call default_of,DEFAULT_MODEL)
DATA        ?= ImageNet/val
WORK        ?= $(call default_of,WORK_DIR)
LABELS      ?= $(WORK)/val_label.txt
CKPT        ?=
BS          ?= 1
BATCH_SIZES ?= $(BS)
SOC         ?= $(call default_of,DEFAULT_SOC)
PRESET      ?= official
BACKEND     ?= ais_bench
OUTFMT      ?= TXT
WORKERS     ?=
PRECISION   ?=
KEEP_DTYPE  ?=
SAMPLES     ?= 64

PYTHON      ?= python3
VENV        := .venv
FI          := $(VENV)/bin/focalinfer
DATABIN     := $(WORK)/databin
ONNX        := $(WORK)/$(MODEL).onnx
OM_DIR      := $(WORK)/om
OM          := $(OM_DIR)/$(MODEL)_bs$(BS).om
DEMO        := demo

.PHONY: help setup demo test test-fast preprocess export precision om infer eval bench bench-preprocess clean

help:
	@echo "make demo                      run the pipeline on generated sample data"
	@echo "make test                      install and run the test suite"
	@echo "make preprocess export om BS=16 DATA=ImageNet/val CKPT=model.pth   the NPU path"
	@echo "make eval BACKEND=onnxruntime  score on CPU (onnxruntime)"
	@echo "make precision                 is ATC's fp16 safe for the ONNX on DATABIN? (writes $(WORK)/precision/)"
	@echo "make om PRECISION=$(WORK)/precision/precision.json   build with the mode and keep list it found"
	@echo "variables: MODEL=$(MODEL) DATA=$(DATA) LABELS=$(LABELS) CKPT=$(CKPT) BS=$(BS)"
	@echo "           BATCH_SIZES=$(BATCH_SIZES) SOC=$(SOC) WORK=$(WORK) PRESET=$(PRESET) BACKEND=$(BACKEND)"

# The venv is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(VENV)/bin/python -m pytest -q

test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not fullsize"

preprocess: setup
	$(FI) preprocess --model $(MODEL) --images $(DATA) --out $(DATABIN) --labels-out $(LABELS) \
		--preset $(PRESET) $(if $(WORKERS),--workers $(WORKERS))

export: setup
	@test -n "$(CKPT)" || { echo "make export: set CKPT=path/to/official.pth (or run make demo)"; exit 2; }
	$(FI) export --model $(MODEL) --checkpoint $(CKPT) --out $(ONNX) --dynamic-batch --force

precision: setup
	$(FI) precision --onnx $(ONNX) --input $(DATABIN) --out $(WORK)/precision --samples $(SAMPLES)

om: setup
	$(FI) om --onnx $(ONNX) --model $(MODEL) --batch-sizes $(BATCH_SIZES) --soc $(SOC) --out-dir $(OM_DIR) \
		$(if $(PRECISION),--precision $(PRECISION)) $(if $(KEEP_DTYPE),--keep-dtype $(KEEP_DTYPE)) $(ATC_FLAGS)

infer: setup
	$(FI) infer --model-file $(if $(filter onnxruntime,$(BACKEND)),$(ONNX),$(OM)) --input $(DATABIN) \
		--output $(WORK) --output-dirname result_bs$(BS) --outfmt $(OUTFMT) --batch-size $(BS) --backend $(BACKEND)

eval: setup
	$(FI) eval $(if $(filter onnxruntime,$(BACKEND)),--onnx $(ONNX),--om $(OM)) --labels $(LABELS) \
		--input $(DATABIN) --output $(WORK)/result_bs$(BS).json --batch-size $(BS)

bench: setup
	$(FI) bench all

bench-preprocess: setup
	$(FI) bench preprocess

# The whole chain on generated data: synthetic images, deterministic (untrained) weights in the
# official checkpoint layout, onnxruntime in place of the NPU, ATC as a dry run.
DEMO_BS ?= 16
demo: setup
	@echo "== demo: $(MODEL) on synthetic data; the weights are NOT the trained ones, so accuracy only checks the pipeline"
	$(FI) sample-data --out $(DEMO)/images --count 48
	$(FI) synthetic-checkpoint --model $(MODEL) --out $(DEMO)/$(MODEL).pth
	$(FI) preprocess --model $(MODEL) --images $(DEMO)/images --out $(DEMO)/databin --quiet
	$(FI) export --model $(MODEL) --checkpoint $(DEMO)/$(MODEL).pth --out $(DEMO)/$(MODEL).onnx \
		--dynamic-batch --parity-data $(DEMO)/databin --force
	@# exit 1 means "no safe fp16 configuration": the report still says which ATC mode to use
	-$(FI) precision --onnx $(DEMO)/$(MODEL).onnx --input $(DEMO)/databin --out $(DEMO)/precision --samples 16 --quiet
	$(FI) om --onnx $(DEMO)/$(MODEL).onnx --model $(MODEL) --batch-sizes 1,$(DEMO_BS) --out-dir $(DEMO)/om --dry-run \
		--precision $(DEMO)/precision/precision.json
	$(FI) eval --onnx $(DEMO)/$(MODEL).onnx --labels $(DEMO)/images/val_label.txt --input $(DEMO)/databin \
		--output $(DEMO)/result_bs$(DEMO_BS).json --batch-size $(DEMO_BS)
	$(FI) eval --onnx $(DEMO)/$(MODEL).onnx --labels $(DEMO)/images/val_label.txt --input $(DEMO)/databin \
		--output $(DEMO)/result_bs1.json --batch-size 1
	$(FI) compare $(DEMO)/result_bs1 $(DEMO)/result_bs$(DEMO_BS) --min-cosine 0.99999
	@echo "== demo artefacts:"
	@echo "   images + labels   $(DEMO)/images/ (val_label.txt)"
	@echo "   weights           $(DEMO)/$(MODEL).pth   (synthetic, NOT trained)"
	@echo "   preprocessed      $(DEMO)/databin/ (manifest.json)"
	@echo "   ONNX + report     $(DEMO)/$(MODEL).onnx, $(DEMO)/$(MODEL).onnx.report.json (PyTorch vs onnxruntime parity)"
	@echo "   fp16 check        $(DEMO)/precision/precision.json (emulated ATC fp16 vs fp32; synthetic weights)"
	@echo "   ATC commands      $(DEMO)/om/ (dry run: no CANN here; mode and keep list from the fp16 check)"
	@echo "   outputs, scores   $(DEMO)/result_bs$(DEMO_BS)/, $(DEMO)/result_bs$(DEMO_BS).json, $(DEMO)/result_bs1.json"

clean:
	rm -rf $(DEMO) .pytest_cache
