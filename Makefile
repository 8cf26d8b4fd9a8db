# Takt: `make run` starts the whole pipeline on the local stack in the
# foreground (Ctrl-C stops it); `make test` runs every test against it.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
# Go 1.27.3, taken from the module proxy by the go command on first use
# (~76 MB, once per machine): go1.26.8's standard library has advisories
# on net/http, crypto/tls and crypto/x509 that 1.27.3 clears, and its fuzz
# coordinator a deadline race. These machines' Go says GOTOOLCHAIN=local.
export GOTOOLCHAIN ?= go1.27.3
GO ?= go
STACK := compose/local/stack.sh
# Test settings: race detector on, no cache (integration tests talk to
# services whose state the cache cannot see).
TESTFLAGS ?= -race -count=1 -timeout 15m

.PHONY: run up down status test test-unit build lint fmt loadtest bench bench-growth test-modern test-containers chaos fuzz screenshot up-cluster test-cluster

run: ## whole stack in the foreground; Ctrl-C stops every process it started
	@$(STACK) run

up: ## whole stack in the background; returns when every part is healthy
	@$(STACK) up

# up-cluster: the stack on a replicated ClickHouse (README "Scale out"):
# ZooKeeper and a second 18.16 replica join the first; the services run
# with TAKT_CLICKHOUSE_CLUSTER=takt. TAKT_SCALE=ingestor=2,processor=3,queryapi=2
# starts more of each service (also with make up). make down stops it all.
up-cluster: ## the stack on two ClickHouse replicas with ZooKeeper; returns when every part is healthy
	@TAKT_STACK_CLUSTER=1 $(STACK) up

# test-cluster: a cluster stack of its own (temporary directory, ports
# +4000), 2 ingestors, 3 processors, steady load; a replica, a processor and
# ZooKeeper are killed and brought back; nothing lost or doubled, both
# replicas equal (~4 min). Installs zookeeper when missing.
test-cluster: ## replicated ClickHouse under faults, counted to the part (~4 min)
	@TAKT_STACK_CLUSTER=1 $(STACK) install
	$(GO) test -tags takt_cluster -count=1 -timeout 12m -v -run '^TestCluster$$' ./loadtest/replicated/

down: ## stop every process `up` / `run` / `up-cluster` started
	@$(STACK) down

status:
	@$(STACK) status

test: up ## unit and integration tests against the local stack
	. .run/env && TAKT_CLICKHOUSE_ADDR=$$CLICKHOUSE_ADDR TAKT_CLICKHOUSE_HTTP=$$CLICKHOUSE_HTTP TAKT_REDIS_ADDR=$$REDIS_ADDR TAKT_KAFKA_BROKERS=$$KAFKA_BROKERS \
		$(GO) test $(TESTFLAGS) ./...

# test-modern: every ClickHouse statement shape the services send, run on
# current ClickHouse (chDB: the engine as a library, fetched once by npm into
# .run/chdb) and on the local 18.16; the answers must agree. It is skipped,
# saying so, only when the library cannot be fetched.
CHDB_VERSION ?= 26.5.3
test-modern: up ## Takt's SQL on current ClickHouse (chDB) against the local 18.16
	@lib=$$(compose/local/libchdb.sh $(CHDB_VERSION)) || { echo "test-modern: SKIPPED: could not fetch @chdb/lib-linux-x64-gnu@$(CHDB_VERSION) (above: why)"; exit 0; }; \
	. .run/env && CHDB_LIB_PATH=$$lib TAKT_CLICKHOUSE_ADDR=$$CLICKHOUSE_ADDR TAKT_CLICKHOUSE_HTTP=$$CLICKHOUSE_HTTP \
		$(GO) test -tags chdb -count=1 -timeout 30m -run '^(TestModernClickHouse|TestClusterStatementsOnModern)$$' -v ./internal/chcompat/

test-containers: ## every test, integration tests on official images (testcontainers-go); needs Docker, else they skip (TAKT_REQUIRE_DOCKER=1: fail)
	TAKT_TEST_STACK=containers $(GO) test $(TESTFLAGS) ./...

test-unit: ## tests that need no servers
	$(GO) test -short $(TESTFLAGS) ./...

loadtest: up ## a short verified run of the load harness; LOADTEST_ARGS="-rate 5000 -duration 30s" changes it
	$(GO) run ./loadtest/cmd/loadtest -verify -duration 10s -rate 1000 $(LOADTEST_ARGS)

bench: up ## the figures of bench/README.md on the local stack (~5 min): bench/report.md, bench/report.json
	$(GO) run ./loadtest/cmd/bench -out bench $(BENCH_ARGS)

# bench-growth: the parts area's paging and the 7-day OEE read at growing
# sizes of the parts table, in a scratch database of its own on the local
# ClickHouse (dropped at the end); GROWTH_ARGS="-sizes 1M,10M,100M" for the
# 100M figures (~15 min, ~5 GB while it runs).
bench-growth: up ## paging and OEE cost at 1M and 10M parts (bench/capacity.md's data-growth figures)
	$(GO) run ./loadtest/cmd/growth -json bench/growth.json $(GROWTH_ARGS)

build:
	$(GO) build -o bin/ ./cmd/... ./ingestor/cmd/... ./processor/cmd/... ./queryapi/cmd/...

# Static checks, installed through the module proxy at pinned versions.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## gofmt, go vet (also the tagged builds), staticcheck, govulncheck (local database; see compose/local/vulncheck.sh)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags chdb ./internal/chcompat/
	$(GO) vet -tags takt_failpoints,takt_chaos ./...
	$(GO) vet -tags takt_cluster ./loadtest/replicated/
	$(GO) run $(STATICCHECK) ./...
	compose/local/vulncheck.sh ./...

# Every fuzz target (every func Fuzz* in a _test.go file) for a short
# fixed time; a failing input lands in its package's testdata/fuzz/ and
# belongs in the commit with the fix.
FUZZTIME ?= 10s

fuzz: ## every fuzz target for FUZZTIME (10s) each
	@GO=$(GO) compose/local/fuzz.sh $(FUZZTIME)

chaos: ## the fault matrix on a deployment of its own (~15 min, over 1M parts): bench/chaos.md, bench/chaos.json
	@$(STACK) install
	$(GO) run ./loadtest/cmd/chaos -out bench $(CHAOS_ARGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

screenshot: up ## docs/dashboard.png and docs/dashboard-line.png: the dashboard in headless Chromium over a generated day
	@mkdir -p docs
	. .run/env && TAKT_CLICKHOUSE_ADDR=$$CLICKHOUSE_ADDR TAKT_REDIS_ADDR=$$REDIS_ADDR TAKT_KAFKA_BROKERS=$$KAFKA_BROKERS \
		$(GO) test -count=1 -timeout 10m -run '^TestDashboardInBrowser$$' ./internal/e2e/ -args -dashboard.shots=$(CURDIR)/docs
