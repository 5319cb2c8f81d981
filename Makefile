# sumo-k8 — `make run` starts the service on this machine; `make test` runs every test tier.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SUMO_K8_CACHE ?= $(HOME)/.cache/sumo-k8

.PHONY: run test test-unit test-storage test-integration bench venv clean settings-table dev-cluster

venv: $(STAMP)

# The project installs everything it needs into .venv, pinned by requirements.lock.
$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

run: venv
	$(BIN)/python -m devstack.run

test: venv
	$(BIN)/python -m devstack.emulators ensure
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/unit tests/storage tests/integration

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

test-storage: venv
	$(BIN)/python -m pytest -q tests/storage

test-integration: venv
	$(BIN)/python -m pytest -q tests/integration

bench: venv
	$(BIN)/python -m bench.run_all

settings-table: venv
	$(BIN)/python -m core.settings

clean:
	rm -rf $(VENV) .data .pytest_cache
