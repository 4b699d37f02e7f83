# Two commands for a newcomer: `make demo` and `make test`. Each sets the machine up first.
VENV ?= .venv

.PHONY: setup demo test bench schemas

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/crmstream demo

# Test files run in parallel, one per CPU (each xdist worker starts its own broker and redis-server); a file's
# tests stay together so its module stacks are built once; the slowest files start first (tests/conftest.py).
test: setup
	$(VENV)/bin/python -m pytest -n auto --dist loadfile --no-loadscope-reorder

bench: setup
	$(VENV)/bin/python bench/throughput.py

schemas: setup
	$(VENV)/bin/crmstream schemas --out schemas/json
