# zenklav: `make run` and `make test` are the two commands; `make help` lists the rest.
# The servers the scripts start listen on 127.0.0.1 only; their data lives under .data/ and the
# Kafka jars under .cache/ (both git-ignored).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
BIN := bin/zenklav
STATICCHECK_VERSION := v0.8.2

# Test servers (make test, make bench, make services).
export TEST_KAFKA_PORT ?= 19092
export TEST_KAFKA_CONTROLLER_PORT ?= 19093
export TEST_CLICKHOUSE_PORT ?= 19000
export TEST_CLICKHOUSE_HTTP_PORT ?= 18123
# The ClickHouse that `make run` starts when ZENKLAV_CLICKHOUSE_ADDR is empty.
export RUN_CLICKHOUSE_PORT ?= 29000
export RUN_CLICKHOUSE_HTTP_PORT ?= 28123

# Extra flags for go test, e.g. make test GOTESTFLAGS='-run TestSink -v'. The timeout is twice
# go's default: the fault tests of internal/resilience hold outages of 20 and 60 s, and take
# about five minutes on two busy cores.
GOTESTFLAGS ?=

# What the Zendesk app's tests need (build/deps.sh): its npm packages, and Chromium, whose path
# the browser test reads from ZENKLAV_CHROMIUM. A shell prefix for the recipes that run tests.
DEPS = bash build/deps.sh npm && chromium=$$(bash build/deps.sh chromium) && export ZENKLAV_CHROMIUM="$$chromium"

.PHONY: help build run test test-cluster services services-stop lint bench deps app clean

help: ## list the targets
	@echo 'usage: make TARGET'
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/zenklav
	$(GO) build -o $(BIN) ./cmd/zenklav

run: build ## run `zenklav all` (embedded Kafka, sandbox; starts a local ClickHouse unless ZENKLAV_CLICKHOUSE_ADDR is set)
	@bash build/run.sh

test: ## install npm packages, Chromium, chdb (ClickHouse 26.9) and ZooKeeper, start real Kafka and ClickHouse, run go test -race ./..., stop them
	$(GO) mod download
	@$(DEPS) && chdb=$$(bash build/deps.sh chdb) && export ZENKLAV_TEST_CHDB_PYTHON="$$chdb" && \
		bash build/zookeeper.sh jars && export ZENKLAV_TEST_CLICKHOUSE_CLUSTER=1 && \
		bash build/services.sh run $(GO) test -race -count=1 -timeout 20m $(GOTESTFLAGS) ./...

test-cluster: ## the ClickHouse cluster test alone (ZooKeeper + 2 shards × 2 replicas of its own; make test runs it too)
	$(GO) mod download
	@bash build/zookeeper.sh jars && export ZENKLAV_TEST_CLICKHOUSE_CLUSTER=1 && \
		bash build/services.sh run $(GO) test -count=1 -timeout 10m -run 'TestCluster' -v ./analytics

services: ## start the test Kafka and ClickHouse and print the env for `go test ./...`
	@bash build/services.sh start

services-stop: ## stop the servers that `make services` started
	@bash build/services.sh stop

lint: ## gofmt, go vet, staticcheck, the import and function-size rules of docs/architecture.md
	@files=$$(find . \( -name .git -o -name .cache -o -name .data -o -name node_modules \) -prune -o -name '*.go' -print); \
	unformatted=$$([ -z "$$files" ] || gofmt -l $$files); \
	if [ -n "$$unformatted" ]; then echo "gofmt: these files need 'gofmt -w':"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) test -count=1 ./internal/arch

bench: ## install npm packages and Chromium, start real Kafka and ClickHouse, run build/bench.sh, stop them
	$(GO) mod download
	@$(DEPS) && bash build/services.sh run bash build/bench.sh

deps: ## install npm packages and Chromium for the sidebar's and /reports' tests
	@bash build/deps.sh npm
	@bash build/deps.sh chromium

app: ## rebuild the committed bundles from npm: the sidebar's ZAF SDK, the /reports charts
	@bash build/deps.sh npm
	cd zendesk-app && npm run --silent build
	cd reportsui && npm run --silent build

clean: ## remove bin/ and .data/ (keeps the cached jars in .cache/)
	@bash build/services.sh stop
	@bash build/clickhouse.sh stop .data/run/clickhouse
	rm -rf bin .data
