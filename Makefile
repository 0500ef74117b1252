# The one task runner, used the same way locally and in CI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: install test test-slow lint demo bench bench-speed bench-transfer bench-transfer-quick bench-compare bench-protocol bench-horizon gpu-wheels gpu-check gpu-check-smoke clean

install: $(STAMP)

# torch is installed first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Two workers, a test file each at a time (its module fixtures built once), longest files first (tests/conftest.py);
# every process one thread (conftest).
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check mupx tests scripts benchmarks
	$(VENV)/bin/ruff format --check mupx tests scripts benchmarks

demo: install
	$(PY) scripts/demo.py

# Benchmarks write their sections of benchmarks/RESULTS.md and README.md (raw numbers next to RESULTS.md).
# On 2 CPU cores: bench-speed ~7 min, bench-transfer about four hours (resumable), bench-compare ~20 min after it,
# bench-protocol (the experiments behind configs/proxy-cpu.yaml) about an hour, bench-horizon ~40 min.
bench: bench-speed bench-transfer bench-compare

bench-speed: install
	$(PY) benchmarks/bench_speed.py

bench-transfer: install
	$(PY) benchmarks/bench_transfer.py

bench-transfer-quick: install
	$(PY) benchmarks/bench_transfer.py --quick

bench-compare: install
	$(PY) benchmarks/bench_compare.py

bench-protocol: install
	$(PY) benchmarks/bench_protocol.py

bench-horizon: install
	$(PY) benchmarks/bench_horizon.py

# The GPU check (benchmarks/gpu_check.py): one call of at most 8 minutes on a GPU machine that has python3 3.12
# with a CUDA torch but no package registry. Here, `make gpu-wheels` puts the packages mupx needs and that
# machine lacks into .whl/ (pure-Python wheels, at the versions tested here, < 2 MB), to be carried along;
# there, `make gpu-check` installs them and mupx offline and runs the check (results in $OUT, else runs/).
# `make gpu-check-smoke`: the same script at tiny sizes on this CPU (tests/test_gpu_check.py runs it).
GPU_PY ?= python3
# setuptools: the build backend of mupx's offline editable install, at the version tested here
GPU_WHEELS := hydra-core omegaconf pytorch-optimizer typer setuptools
# hydra's parser runtime, only an sdist on PyPI: a pure-Python wheel built here
GPU_SDISTS := antlr4-python3-runtime
PINS = $(PY) -c 'import sys; from importlib.metadata import version; print(*(f"{n}=={version(n)}" for n in sys.argv[1:]))'

gpu-wheels: install
	rm -rf .whl && mkdir .whl
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .whl $$($(PINS) $(GPU_WHEELS))
	$(PY) -m pip wheel -q --no-deps -w .whl $$($(PINS) $(GPU_SDISTS))
	ls .whl && du -sh .whl

gpu-check:
	$(GPU_PY) -m pip install -q --no-index --no-deps --no-cache-dir --root-user-action=ignore .whl/*.whl
	$(GPU_PY) -m pip install -q --no-index --no-deps --no-build-isolation --root-user-action=ignore -e .
	$(GPU_PY) benchmarks/gpu_check.py

gpu-check-smoke: install
	$(PY) benchmarks/gpu_check.py --smoke

clean:
	rm -rf $(VENV) runs .pytest_cache
