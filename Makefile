# labkit: the commands a user types. `make test` and `make lab-up` set the host
# up first (engine, .venv, images); that step is quick when all is there.
TOPOLOGY ?= default
PYTEST_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test unit lab-up lab-down lab-status lint bench clean

setup:
	@bash scripts/setup-host.sh

test: setup
	$(BIN)/pytest -q --junitxml=junit.xml $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

lab-up: setup
	$(BIN)/labkit up $(TOPOLOGY)

lab-down:
	$(BIN)/labkit down $$($(BIN)/python -c 'import yaml,sys; print(yaml.safe_load(open("topologies/$(TOPOLOGY).yaml"))["name"])')

lab-status:
	$(BIN)/labkit status

lint:
	$(BIN)/ruff check labkit tests
	$(BIN)/ruff format --check labkit tests
	$(BIN)/mypy labkit
	$(BIN)/lint-imports

bench: setup
	$(BIN)/labkit bench up

clean:
	-$(BIN)/labkit down --all
