# `make study` and `make test` set everything up from nothing (a .venv beside this
# file, the exact package set of constraints.txt) and then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs/default
CONFIG ?= configs/default.py

.PHONY: study audit sweep test install lock clean bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

study: $(STAMP)
	$(PY) -m launch.study --config=$(CONFIG) --workdir=$(WORKDIR)

audit: $(STAMP)
	$(PY) -m launch.audit --config=configs/audit.py --workdir=runs/audit

sweep: $(STAMP)
	$(PY) -m launch.sweep --config=configs/sweep.py --workdir=runs/sweep

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(PY) -m benchmarks.bench_synthesize

# Regenerate constraints.txt from the current .venv (a deliberate act: commit it).
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) runs
