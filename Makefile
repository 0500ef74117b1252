# The one task runner, used the same way locally and in CI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: install test test-slow lint demo bench bench-speed bench-transfer bench-transfer-quick bench-compare clean

install: $(STAMP)

# torch is installed first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check mupx tests scripts benchmarks
	$(VENV)/bin/ruff format --check mupx tests scripts benchmarks

demo: install
	$(PY) scripts/demo.py

# Benchmarks write their sections of benchmarks/RESULTS.md and README.md (raw numbers next to RESULTS.md).
# On 2 CPU cores: bench-speed ~7 min, bench-transfer a few hours (resumable), bench-compare ~20 min after it.
bench: bench-speed bench-transfer bench-compare

bench-speed: install
	$(PY) benchmarks/bench_speed.py

bench-transfer: install
	$(PY) benchmarks/bench_transfer.py

bench-transfer-quick: install
	$(PY) benchmarks/bench_transfer.py --quick

bench-compare: install
	$(PY) benchmarks/bench_compare.py

clean:
	rm -rf $(VENV) runs .pytest_cache
