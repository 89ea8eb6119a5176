# The two commands a newcomer runs (see README): `make demo` and `make test`.
# Both set everything up first; `setup` is idempotent and cheap when nothing changed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Where torch's wheel comes from: empty = pip's configured indexes (here they hold the CPU build);
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu on a machine that reaches PyTorch's index.
TORCH_INDEX ?=
# The CPU image always gets a CPU torch build: TORCH_INDEX if given, else PyTorch's CPU index.
IMAGE_TORCH_INDEX ?= $(or $(TORCH_INDEX),https://download.pytorch.org/whl/cpu)
# Base images; pin by digest (name@sha256:...) for reproducible images (docs/deployment.md).
PYTHON_IMAGE ?= python:3.11-slim-bookworm
CUDA_IMAGE ?= nvidia/cuda:12.8.1-base-ubuntu24.04

.PHONY: setup system-tools demo test lint image image-cuda fire-chroot clean

setup: $(STAMP) system-tools

# torch first, pinned to the CPU build, so that nothing later pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Independent references used by the tests and the demo's data generator (Debian packages;
# dicom3tools' dciodvfy validates the DICOM export).
system-tools:
	@command -v ismrmrd_generate_cartesian_shepp_logan >/dev/null && command -v bart >/dev/null && \
	  command -v dciodvfy >/dev/null || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ismrmrd-tools bart dicom3tools )

demo: setup
	$(BIN)/mrzero demo

# Style first (seconds; ruff is pinned in pyproject.toml so that every machine formats alike), then the suite.
test: setup lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Container images (where a Docker engine exists; none runs on the development machines).
image:
	docker build -f docker/Dockerfile --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
	  --build-arg TORCH_INDEX_URL=$(IMAGE_TORCH_INDEX) -t mrzero-server:cpu .

image-cuda:
	docker build -f docker/Dockerfile.cuda --build-arg CUDA_IMAGE=$(CUDA_IMAGE) -t mrzero-server:cuda .

# The chroot archive a Siemens FIRE installation loads, from the CPU image.
fire-chroot: image
	deploy/fire/make_chroot.sh --image mrzero-server:cpu -o mrzero-chroot.img.zip

clean:
	rm -rf $(VENV) demo-output .pytest_cache
