# Two commands for a newcomer: `make demo` and `make test`. Each sets the machine up first.
VENV ?= .venv

.PHONY: setup demo test bench schemas

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/crmstream demo

test: setup
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/python bench/throughput.py

schemas: setup
	$(VENV)/bin/crmstream schemas --out schemas/json
