# edge-quota: the two commands a newcomer needs are `make run` and `make test`.
#
# Build output goes outside the clone (shared by every checkout and by CI) so
# repeat builds are incremental. Override with CARGO_TARGET_DIR=... .

SHELL := /bin/bash
EDGE_QUOTA_CACHE ?= $(HOME)/.cache/edge-quota
CARGO_TARGET_DIR ?= $(EDGE_QUOTA_CACHE)/target
export CARGO_TARGET_DIR EDGE_QUOTA_CACHE

CARGO ?= cargo

.PHONY: help run run-operator build release test test-unit bench generate fmt fmt-check lint ci test-env cluster-up cluster-down edge-env edge-up edge-down image clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## Run the quota service on its embedded SQLite default (data/quota/quotas.db); reads .env if present
	set -a; [ ! -f .env ] || . ./.env; set +a; $(CARGO) run -p quota-service --bin quota-service

run-operator: ## Run the operator against the cluster in KUBECONFIG and the service on 127.0.0.1:8183
	LEADER_ELECTION=$${LEADER_ELECTION:-false} $(CARGO) run -p quota-operator --bin quota-operator

build: ## Build everything (debug)
	$(CARGO) build --workspace --all-targets

release: ## Build the binaries with optimizations
	$(CARGO) build --workspace --release

test: ## Run every test: unit, API, durability, and cluster tests on a real kube-apiserver (builds it once)
	@hack/test.sh

test-unit: ## Only the pure unit tests (fast)
	$(CARGO) test --workspace --lib

generate: ## Regenerate crds/ (and the chart's copy) and openapi/edge-quota.json from the code (tests fail when stale)
	$(CARGO) run -q -p quota-operator --bin crdgen -- crds
	cp crds/*.yaml charts/edge-quota/crds/
	$(CARGO) run -q -p quota-service --bin openapigen -- openapi/edge-quota.json

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check: ## Fail when the code is not formatted
	$(CARGO) fmt --all -- --check

lint: ## clippy on every target, warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

ci: fmt-check lint test ## What CI runs

bench: test-env ## Benchmarks on release builds: wrk on loopback vs the baseline server (results: bench/results/latest.md)
	@hack/ensure-bench-tools.sh
	$(CARGO) build --release -p quota-service -p quota-bench -p quota-operator
	bench/run.py

test-env: ## Build kube-apiserver, etcd, kubectl and helm from pinned Go modules (once; cached)
	@hack/test-env.sh

CLUSTER ?= default
cluster-up: test-env ## Start etcd + kube-apiserver (CLUSTER=name); prints the export KUBECONFIG=... line
	@hack/cluster.sh up --name $(CLUSTER)

cluster-down: ## Stop the cluster started by cluster-up (CLUSTER=name)
	@hack/cluster.sh down --name $(CLUSTER)

edge-env: ## Build the edge node's components and images from pinned sources (once; cached)
	@hack/edge-env.sh

EDGE ?= default
edge-up: test-env edge-env ## Start a single-node cluster where pods run (EDGE=name; needs root); last line: export KUBECONFIG=...
	@hack/edge.sh up --name $(EDGE)

edge-down: ## Stop the edge node (EDGE=name) and remove everything it made
	@hack/edge.sh down --name $(EDGE)

image: ## Build the project's image without a registry and load it into every running edge node; last line: the image reference
	@hack/image.sh edge-quota --out $(EDGE_QUOTA_CACHE)/images/edge-quota.tar >$(EDGE_QUOTA_CACHE)/image.ref.tmp
	@for node in $$(hack/edge.sh list); do hack/edge.sh load --name $$node $(EDGE_QUOTA_CACHE)/images/edge-quota.tar; done
	@tail -n1 $(EDGE_QUOTA_CACHE)/image.ref.tmp && rm -f $(EDGE_QUOTA_CACHE)/image.ref.tmp

clean: ## Remove build output
	$(CARGO) clean
