# ccengine: `make demo` runs real calls on the lab PBX; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
CCENGINE := $(VENV)/bin/ccengine
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench lab-down clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml bin/setup-host
	bin/setup-host
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(CCENGINE) demo $(ARGS)

test: setup
	$(CCENGINE) lab up
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check ccengine ari_apps tests bench migrations
	$(VENV)/bin/mypy

bench: setup
	$(CCENGINE) lab up
	$(PY) bench/call_setup.py

lab-down:
	$(CCENGINE) lab down

clean: lab-down
	rm -rf var .lab
