# The pins are the torch/torchvision pair that installs from the local wheel cache;
# pyproject.toml keeps ranges that admit them.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint bench gpu-check clean

$(BIN)/ganctl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PINS)
	$(BIN)/pip install --quiet -e '.[dev]' $(PINS)
	touch $(BIN)/ganctl

install: $(BIN)/ganctl

demo: install
	$(BIN)/ganctl train hydra.run.dir=outputs/demo

# Two workers, one test file each (module fixtures are built once); tests pin torch to one
# thread per process, so the two workers share the two cores instead of fighting over them.
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: install
	$(BIN)/python benchmarks/run_all.py

# One prepared check for a machine with an NVIDIA GPU (< 6 min; its own data, no ../shared): tests
# marked cuda, speeds, memory, DDP with 2+ GPUs. Summary in $OUT if set, else gpu_check_out/.
# `benchmarks/gpu_check.py --dry-run` runs the same steps on CPU at tiny sizes.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py

# ruff (lint and format check, pyproject.toml [tool.ruff]) and the import layers (pyproject.toml
# [tool.importlinter], docs/ARCHITECTURE.md): an upward import or a circle fails here. CI runs this
# before the tests; .pre-commit-config.yaml runs the same checks before each commit.
lint: install
	$(BIN)/ruff check ganctl tests benchmarks
	$(BIN)/ruff format --check ganctl tests benchmarks
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf outputs multirun .pytest_cache
