# The two commands the README puts first:
#   make demo   set everything up and run the whole chain on this machine
#   make test   set everything up and run every test
VENV ?= .venv
SONIC := $(VENV)/bin/sonic
PY := $(VENV)/bin/python

.PHONY: setup controlplane-tools github-openapi scanner scan demo test lint render check-rendered e2e bench clean

setup:
	./scripts/setup.sh

# etcd, kube-apiserver, controller-manager, scheduler, kwok, KEDA and the Argo Workflows controller,
# built from their Go modules into ~/.cache/sonic-gitops/controlplane (reused when present).
controlplane-tools:
	./scripts/controlplane-tools.sh

# GitHub's REST API description (npm package @octokit/openapi, pinned): the fake GitHub's contract.
github-openapi:
	./scripts/github-openapi.sh

# checkov, the manifest scanner, in its own virtualenv .venv-scan (its dependencies clash with ours).
scanner:
	./scripts/scanner.sh

# checkov over a fresh render: fails on any finding not accepted in pipelines/render/scanner.py.
scan: setup scanner
	$(PY) -m pytest -q tests/render/test_scanner.py

demo: setup
	$(SONIC) demo

test: setup controlplane-tools github-openapi scanner
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check pipelines tests bench
	$(VENV)/bin/ruff format --check pipelines tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

render: setup
	$(SONIC) render

check-rendered: setup
	$(SONIC) render --check

# End-to-end on a real kind cluster (needs Docker with image pulls; skips with the reason elsewhere).
e2e: setup
	$(PY) -m pytest -m kind tests/e2e -rs

# Benchmarks (not tests): each prints a Markdown table; recorded figures are in docs/benchmarks.md.
bench: setup controlplane-tools
	$(PY) bench/validate_bench.py --markdown
	$(PY) bench/render_bench.py --markdown
	$(PY) bench/modelrepo_bench.py --markdown
	$(PY) bench/dataplane.py --markdown
	$(PY) bench/controlplane_bench.py --markdown

clean:
	rm -rf $(VENV) .venv-scan .pytest_cache .mypy_cache .ruff_cache
