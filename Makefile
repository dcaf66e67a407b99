# ccengine: `make demo` runs real calls on the lab PBX; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
CCENGINE := $(VENV)/bin/ccengine
ARGS ?=
PYTEST_ARGS ?=
ACD := ccengine/acd
ROUTER_RECORD := $(ACD)/router.sha256sums

.PHONY: setup demo test lint bench lab-down clean

setup: $(VENV)/.installed $(ROUTER_RECORD)

$(VENV)/.installed: pyproject.toml bin/setup-host
	bin/setup-host
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The ACD router compiled in place with mypyc; the record (source hash first, extension hashes
# after the build) is what ccengine/acd/native.py checks before it lets the extension be used.
$(ROUTER_RECORD): $(ACD)/router.py $(VENV)/.installed
	rm -f $@ $@.tmp $(ACD)/router.*.so $(ACD)/router__mypyc.*.so
	cd $(ACD) && sha256sum router.py > router.sha256sums.tmp
	$(VENV)/bin/mypyc $(ACD)/router.py
	cd $(ACD) && sha256sum router.*.so router__mypyc.*.so >> router.sha256sums.tmp
	mv $@.tmp $@

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
	rm -rf var .lab build $(ROUTER_RECORD) $(ACD)/router.*.so $(ACD)/router__mypyc.*.so
