# The pins are the torch/torchvision pair that installs from the local wheel cache;
# pyproject.toml keeps ranges that admit them.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint bench gpu-check clean

# torch 2.14.1's x86_64 wheel is a CUDA build that pulls NVIDIA's libraries and triton: the venv
# comes to 6.0 GB. A first install checks the free space before it starts, so a full disk gets one
# clear line instead of pip's OSError halfway through.
VENV_GB := 6.5

$(BIN)/ganctl: pyproject.toml
	@test -d $(VENV)/lib/python*/site-packages/torch || $(PY) -c "import shutil, sys; \
		free = shutil.disk_usage('.').free / 1e9; \
		free >= $(VENV_GB) or sys.exit(f'make install: .venv needs about $(VENV_GB) GB of free disk (torch with its CUDA libraries), {free:.1f} GB free here')"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PINS)
	$(BIN)/pip install --quiet -e '.[dev]' $(PINS)
	touch $(BIN)/ganctl

install: $(BIN)/ganctl

# The 8-Gaussian ring (conf/experiment/ring8.yaml): generated data, no download, 10-20 s of
# training on a 2-core CPU, and a picture a newcomer can judge: do the samples cover the 8 modes?
# seed=1 put a tight cluster on all 8 with both CPU backward paths the fast-path timing may pick
# (93% of samples within 3 std of a mode; seed 0 gave 44-78%, seed 2 6 to 8 modes). The thread
# count is trainer.threads=null's timed pick: on a quiet 2-core Xeon two threads trained these
# 128-unit layers faster (15.3 against 19.3 s whole); where one thread times faster, as it may on
# busy cores (two once ran 10x slower there), the pick is one. A scatter every 250 steps makes a
# 12-frame progress.gif; overwrite=true moves an earlier demo aside.
demo: install
	$(BIN)/ganctl train +experiment=ring8 seed=1 trainer.sample_every=250 \
		hydra.run.dir=outputs/demo overwrite=true
	@echo "demo: final samples   outputs/demo/samples/step_003000.png (red rings: the 8 modes)"
	@echo "demo: training as GIF outputs/demo/samples/progress.gif"
	@echo "demo: loss curves     outputs/demo/curves.png"

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
