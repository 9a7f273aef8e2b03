# Two entry points, each self-sufficient on a fresh machine (see README):
#   make demo  — install what is missing, then run castline on the bundled sample library
#   make test  — install what is missing, then run the test suite (slow tests excluded; `make test-all` runs them)
SHELL := /bin/bash
ENV := source scripts/env.sh

.PHONY: demo test test-all install
install:
	@bash scripts/bootstrap.sh

demo: install
	@$(ENV) && castline run data/sample

test: install
	@$(ENV) && pytest $(PYTEST_ARGS)

test-all: install
	@$(ENV) && pytest -m "" $(PYTEST_ARGS)
