# The two commands the README puts first:
#   make demo   set everything up and run the whole chain on this machine
#   make test   set everything up and run every test
VENV ?= .venv
SONIC := $(VENV)/bin/sonic
PY := $(VENV)/bin/python

.PHONY: setup demo test lint render check-rendered bench clean

setup:
	./scripts/setup.sh

demo: setup
	$(SONIC) demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check pipelines tests bench
	$(VENV)/bin/mypy

render: setup
	$(SONIC) render

check-rendered: setup
	$(SONIC) render --check

bench: setup
	$(PY) bench/validate_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
