# focalinfer: `make demo` runs the chain on generated sample data; `make test` runs the tests.
# Stage targets take the variables below, e.g. `make preprocess export om BS=16 DATA=ImageNet/val`.

# Defaults come from focalinfer/defaults.py, the one place the CLI reads them too.
default_of   = $(shell sed -n 's/^$(1) = "\{0,1\}\([^" #]*\).*$$/\1/p' focalinfer/defaults.py)
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
AIPP        ?=
DTYPE       ?= $(if $(AIPP),uint8,float32)
DYN_BATCH   ?=
PRECISION   ?=
KEEP_DTYPE  ?=
SAMPLES     ?= $(call default_of,PRECISION_SAMPLES)
# infer / eval on a Ray cluster: RAY=local (a Ray started for the run), auto, ray://HOST:10001 or HOST:PORT
RAY         ?=
RAY_ACTORS  ?=

PYTHON      ?= python3
VENV        := .venv
FI          := $(VENV)/bin/focalinfer
# uint8 files and AIPP .om files get their own folders: a folder never mixes dtypes. A model with
# another eval transform (evo-levit-256-384's 384 px) needs its own DATABIN=…, on every target.
DATABIN     ?= $(WORK)/databin$(if $(filter uint8,$(DTYPE)),_uint8)
ONNX        := $(WORK)/$(MODEL).onnx
OM_DIR      := $(WORK)/om$(if $(AIPP),_aipp)
OM          := $(OM_DIR)/$(MODEL)_$(if $(DYN_BATCH),dyn,bs$(BS)).om
DEMO        := demo
# Per model: a demo of another MODEL never meets this one's .bin files, ONNX or results.
DEMO_DIR    := $(DEMO)/$(MODEL)

.PHONY: help setup browser demo test test-fast test-slow preprocess export precision om infer eval bench bench-preprocess clean

help:
	@echo "make demo                      run the pipeline on generated sample data"
	@echo "make test                      install and run the test suite (installs Chromium for the report's browser test;"
	@echo "                               make test-slow: the 100-moment crash runs)"
	@echo "make preprocess export om BS=16 DATA=ImageNet/val CKPT=model.pth   the NPU path"
	@echo "make eval BACKEND=auto         score on CPU (onnxruntime or OpenVINO, measured fastest here)"
	@echo "make preprocess om infer AIPP=1   uint8 files, normalised on the NPU (AIPP)"
	@echo "make eval RAY=auto             the same, split over a Ray cluster's NPUs / CPUs (files on a shared path)"
	@echo "make precision                 is ATC's fp16 safe for the ONNX on DATABIN? (writes $(WORK)/precision/)"
	@echo "make om PRECISION=$(WORK)/precision/precision.json   build with the mode and keep list it found"
	@echo "variables: MODEL=$(MODEL) DATA=$(DATA) LABELS=$(LABELS) CKPT=$(CKPT) BS=$(BS)"
	@echo "           BATCH_SIZES=$(BATCH_SIZES) SOC=$(SOC) WORK=$(WORK) PRESET=$(PRESET) BACKEND=$(BACKEND)"
	@echo "           AIPP=$(AIPP) DTYPE=$(DTYPE) DYN_BATCH=$(DYN_BATCH) DATABIN=$(DATABIN) RAY=$(RAY) RAY_ACTORS=$(RAY_ACTORS)"

# The venv is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test,openvino,plot,ray]'
	touch $@

setup: $(VENV)/.installed

# The report's browser test (tests/report/test_report_render.py) loads report.html in headless
# Chromium: Debian's package, installed when missing and apt-get can (as root, as CI runs).
CHROMIUM    ?= /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "make browser: installing Debian's chromium for the report's browser test"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "make browser: $(CHROMIUM) is missing and installing it needs root (apt-get install chromium);" \
				"the report's browser test will be skipped"; \
		fi; \
	fi

# `slow`: the 100-moment crash-consistency runs; `make test` runs their 10-moment versions.
test: setup browser
	$(VENV)/bin/python -m pytest -q -m "not slow"

test-fast: setup browser
	$(VENV)/bin/python -m pytest -q -m "not fullsize and not slow"

test-slow: setup
	$(VENV)/bin/python -m pytest -q -m slow

preprocess: setup
	$(FI) preprocess --model $(MODEL) --images $(DATA) --out $(DATABIN) --labels-out $(LABELS) \
		--preset $(PRESET) --dtype $(DTYPE) $(if $(WORKERS),--workers $(WORKERS))

export: setup
	@test -n "$(CKPT)" || { echo "make export: set CKPT=path/to/official.pth (or run make demo)"; exit 2; }
	$(FI) export --model $(MODEL) --checkpoint $(CKPT) --out $(ONNX) --dynamic-batch --force

precision: setup
	$(FI) precision --onnx $(ONNX) --input $(DATABIN) --out $(WORK)/precision --samples $(SAMPLES)

# Without CANN, say how to get the commands instead (focalinfer's own hint names --dry-run, not ATC_FLAGS).
om: setup
	@command -v atc >/dev/null 2>&1 || case " $(ATC_FLAGS) " in *" --dry-run "*) ;; *) \
		echo "make om: atc (CANN) is not on PATH: source CANN's set_env.sh, or add ATC_FLAGS=--dry-run to print the atc commands"; \
		exit 2;; esac
	$(FI) om --onnx $(ONNX) --model $(MODEL) $(if $(DYN_BATCH),--dynamic-batch $(DYN_BATCH),--batch-sizes $(BATCH_SIZES)) \
		--soc $(SOC) --out-dir $(OM_DIR) $(if $(AIPP),--aipp --preset $(PRESET)) \
		$(if $(PRECISION),--precision $(PRECISION)) $(if $(KEEP_DTYPE),--keep-dtype $(KEEP_DTYPE)) $(ATC_FLAGS)

CPU_BACKENDS := auto onnxruntime openvino
RAY_FLAGS    := $(if $(RAY),--ray $(RAY)) $(if $(RAY_ACTORS),--ray-actors $(RAY_ACTORS))

# An .om target without the .om (a CPU machine, or om not run yet): say how to run the ONNX instead.
NEED_OM = $(if $(filter $(CPU_BACKENDS),$(BACKEND)),,@test -f $(OM) || { echo "make $@: $(OM) not found: build it \
	with make om on the NPU host (CANN), or run the ONNX on this CPU with BACKEND=auto"; exit 2; })

infer: setup
	$(NEED_OM)
	$(FI) infer --model-file $(if $(filter $(CPU_BACKENDS),$(BACKEND)),$(ONNX),$(OM)) --input $(DATABIN) \
		--output $(WORK) --output-dirname result_bs$(BS) --outfmt $(OUTFMT) --batch-size $(BS) --backend $(BACKEND) \
		$(RAY_FLAGS)

eval: setup
	$(NEED_OM)
	$(FI) eval $(if $(filter $(CPU_BACKENDS),$(BACKEND)),--onnx $(ONNX),--om $(OM)) --backend $(BACKEND) --labels $(LABELS) \
		--input $(DATABIN) --output $(WORK)/result_bs$(BS).json --batch-size $(BS) $(RAY_FLAGS)

bench: setup
	$(FI) bench all

bench-preprocess: setup
	$(FI) bench preprocess

# The whole chain on generated data: synthetic images, deterministic (untrained) weights in the
# official checkpoint layout, onnxruntime in place of the NPU, ATC as a dry run.
DEMO_BS ?= 16
DEMO_BACKEND ?= onnxruntime
demo: setup
	@echo "== demo: $(MODEL) on synthetic data; the weights are NOT the trained ones, so accuracy only checks the pipeline"
	$(FI) sample-data --out $(DEMO)/images --count 48
	$(FI) synthetic-checkpoint --model $(MODEL) --out $(DEMO_DIR)/$(MODEL).pth
	$(FI) preprocess --model $(MODEL) --images $(DEMO)/images --out $(DEMO_DIR)/databin --quiet
	$(FI) export --model $(MODEL) --checkpoint $(DEMO_DIR)/$(MODEL).pth --out $(DEMO_DIR)/$(MODEL).onnx \
		--dynamic-batch --parity-data $(DEMO_DIR)/databin --force
	@# exit 1 means "no safe fp16 configuration": the report still says which ATC mode to use
	-$(FI) precision --onnx $(DEMO_DIR)/$(MODEL).onnx --input $(DEMO_DIR)/databin --out $(DEMO_DIR)/precision --samples 16 --quiet
	$(FI) om --onnx $(DEMO_DIR)/$(MODEL).onnx --model $(MODEL) --batch-sizes 1,$(DEMO_BS) --out-dir $(DEMO_DIR)/om --dry-run \
		--precision $(DEMO_DIR)/precision/precision.json
	$(FI) om --onnx $(DEMO_DIR)/$(MODEL).onnx --model $(MODEL) --batch-sizes $(DEMO_BS) --out-dir $(DEMO_DIR)/om_aipp --aipp --dry-run
	@rm -f $(DEMO_DIR)/results.csv
	@# An explicit backend runs whole batches (auto may run a batch of 16 as calls of 1), so the compare
	@# below really sets 16 images per call against 1; result.json records images_per_call either way.
	$(FI) eval --onnx $(DEMO_DIR)/$(MODEL).onnx --labels $(DEMO)/images/val_label.txt --input $(DEMO_DIR)/databin \
		--output $(DEMO_DIR)/result_bs$(DEMO_BS).json --batch-size $(DEMO_BS) --backend $(DEMO_BACKEND) \
		--csv $(DEMO_DIR)/results.csv
	$(FI) eval --onnx $(DEMO_DIR)/$(MODEL).onnx --labels $(DEMO)/images/val_label.txt --input $(DEMO_DIR)/databin \
		--output $(DEMO_DIR)/result_bs1.json --batch-size 1 --backend $(DEMO_BACKEND) --csv $(DEMO_DIR)/results.csv \
		--reference $(DEMO_DIR)/result_bs$(DEMO_BS).json --max-drop 0.5
	@echo "== batch 1 against batch $(DEMO_BS), $(DEMO_BACKEND), whole batches: 1 and $(DEMO_BS) images per call"
	$(FI) compare $(DEMO_DIR)/result_bs1 $(DEMO_DIR)/result_bs$(DEMO_BS) --min-cosine 0.99999 \
		--labels $(DEMO)/images/val_label.txt --max-drop 0.5
	$(FI) report $(DEMO_DIR)/result_bs$(DEMO_BS).json $(DEMO_DIR)/result_bs1.json --out $(DEMO_DIR)/report.html \
		--precision $(DEMO_DIR)/precision/precision.json --max-drop 0.5 \
		--title "focalinfer demo: $(MODEL) on synthetic images with untrained weights (the accuracy checks the pipeline only)"
	@echo "== demo artefacts:"
	@echo "   images + labels   $(DEMO)/images/ (val_label.txt; shared by every model's demo)"
	@echo "   weights           $(DEMO_DIR)/$(MODEL).pth   (synthetic, NOT trained)"
	@echo "   preprocessed      $(DEMO_DIR)/databin/ (manifest.json)"
	@echo "   ONNX + report     $(DEMO_DIR)/$(MODEL).onnx, $(DEMO_DIR)/$(MODEL).onnx.report.json (PyTorch vs onnxruntime parity)"
	@echo "   fp16 check        $(DEMO_DIR)/precision/precision.json (emulated ATC fp16 vs fp32; synthetic weights)"
	@echo "   ATC commands      $(DEMO_DIR)/om/, $(DEMO_DIR)/om_aipp/ (with --aipp and its cfg; dry run: no CANN here)"
	@echo "   outputs, scores   $(DEMO_DIR)/result_bs$(DEMO_BS)/, $(DEMO_DIR)/result_bs$(DEMO_BS).json, $(DEMO_DIR)/result_bs1.json"
	@echo "   results table     $(DEMO_DIR)/results.csv (timm's columns)"
	@echo "== the report of these runs: $(DEMO_DIR)/report.html"

clean:
	rm -rf $(DEMO) .pytest_cache
