# Two entry points, each self-sufficient on a fresh machine (see README):
#   make demo  — install what is missing, start a local Prefect server with its UI (left running for the
#                next runs; `scripts/prefect_server.sh stop` stops it), run castline on the sample library
#   make test  — install what is missing, then run the test suite (slow tests excluded; `make test-all` runs them)
SHELL := /bin/bash
ENV := source scripts/env.sh

.PHONY: demo test test-all install
install:
	@bash scripts/bootstrap.sh

demo: install
	@$(ENV) && { server="$$(bash scripts/prefect_server.sh)" && eval "$$server" \
	  && echo "Prefect UI: $${PREFECT_API_URL%/api} (scripts/prefect_server.sh stop to stop it)" \
	  || echo "no local Prefect server could start: running in Prefect's ephemeral mode"; } \
	  && castline run data/sample

test: install
	@$(ENV) && pytest $(PYTEST_ARGS)

test-all: install
	@$(ENV) && pytest -m "" $(PYTEST_ARGS)
