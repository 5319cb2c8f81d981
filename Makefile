# sumo-k8 — `make run` starts the service on this machine; `make test` runs every test tier.
# The venv's interpreter: the distribution's python3.11 when it can build a venv (Debian ships
# ensurepip apart, in python3.11-venv), else python3 from PATH.  Distributions (like the python:3.11
# images the Dockerfile uses) build CPython with PGO and LTO; pyenv and other from-source builds default
# to neither: the service's processes spent 15-30 % more CPU on this machine's pyenv 3.11.7 (bench/HISTORY.md,
# "The interpreter").  `make PY=…` picks another.
PY ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1 && echo /usr/bin/python3.11 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The interpreter the venv was built on (path and version); another one rebuilds the venv.
PY_ID := $(shell $(PY) -c 'import sys; print(sys.executable, sys.version.split()[0])' 2>/dev/null)
export SUMO_K8_CACHE ?= $(HOME)/.cache/sumo-k8

.PHONY: FORCE run test test-unit test-storage test-integration test-kube kube-deps sandbox-deps bench bench-tools venv clean settings-table dev-cluster

venv: $(STAMP)

# The project installs everything it needs into .venv, pinned by requirements.lock.
$(STAMP): pyproject.toml requirements.lock $(VENV)/.python
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

$(VENV)/.python: FORCE
	@if [ "$$(cat $@ 2>/dev/null)" != "$(PY_ID)" ]; then \
		echo "venv: building on $(PY_ID)"; rm -rf $(VENV); mkdir -p $(VENV); echo "$(PY_ID)" > $@; fi

# EXECUTOR=kubernetes (with KUBECONFIG, e.g. .devcluster/kubeconfig of `make dev-cluster`) runs jobs on a cluster.
run: venv sandbox-deps
	$(BIN)/python -m devstack.run

# Every tier: unit, storage (S3/GCS/Azure emulators), integration (the real service), and the
# Kubernetes tiers on a real v1.34 control plane (built once, cached under $(SUMO_K8_CACHE)).
test: venv kube-deps sandbox-deps bench-tools
	$(BIN)/python -m devstack.emulators ensure
	SUMO_K8_REQUIRE_KUBE=1 $(BIN)/python -m pytest -p no:cacheprovider -q tests

# etcd from Debian, kube-apiserver/controller-manager/scheduler built from the k8s.io/kubernetes module.
kube-deps:
	@command -v etcd >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
	devcluster/build.sh

# What LOCAL_SANDBOX=on runs every local simulation in: bubblewrap, and util-linux's unshare and prlimit.
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }
	@{ command -v unshare && command -v prlimit; } >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux >/dev/null; }

test-kube: venv kube-deps
	SUMO_K8_REQUIRE_KUBE=1 $(BIN)/python -m pytest -q tests/devcluster tests/kube

# A v1.34 cluster in the foreground; its kubeconfig goes to .devcluster/kubeconfig.
dev-cluster: venv kube-deps
	$(BIN)/python -m devcluster

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

test-storage: venv
	$(BIN)/python -m pytest -q tests/storage

test-integration: venv sandbox-deps
	$(BIN)/python -m pytest -q tests/integration

bench: venv bench-tools
	$(BIN)/python -m bench.run_all

# The HTTP load generator of bench/submit_throughput (Go; cheap on the client side), into the cache.
BOMBARDIER := $(SUMO_K8_CACHE)/bin/bombardier
bench-tools: $(BOMBARDIER)
$(BOMBARDIER):
	GOBIN=$(SUMO_K8_CACHE)/bin GOFLAGS=-mod=mod go install github.com/codesenberg/bombardier@v1.2.6

settings-table: venv
	$(BIN)/python -m core.settings

clean:
	rm -rf $(VENV) .data .pytest_cache
