# meshlens — see README.md.
GO        ?= go
BIN       := bin/meshlens
DATA      ?= ./data
PKGS      := ./...
# Tests that need a peer binary (Prometheus, Chromium) fail instead of
# skipping when this is 1; .ci/run sets it.
export MESHLENS_REQUIRE_PEERS

.PHONY: all build run test test-unit test-e2e test-deps test-peers test-cassandra bench bench-chaos bench-peers soak fuzz lint fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/meshlens

# Build and serve everything on embedded storage with Bookinfo demo traffic.
# The demo runs at 50 requests/s and the timeout target at 1% so that
# timeout recommendations have enough samples within minutes (the
# production default, 0.1%, needs 50,000 samples per edge).
run: build
	$(BIN) serve --demo --demo.rate=50 --processors.recommendations.target_false_timeout=0.01 --storage.path=$(DATA) \
		--listen.http=127.0.0.1:8088 --listen.grpc=127.0.0.1:11800 \
		--listen.zipkin=127.0.0.1:9411 --listen.otlp_grpc=127.0.0.1:4317 --listen.otlp_http=127.0.0.1:4318

# Every test: unit, fuzz seed corpora, end-to-end against the real binary.
test: test-deps
	$(GO) test -count=1 -timeout 12m $(PKGS)

test-unit:
	$(GO) test -count=1 -short $(PKGS)

test-e2e: build
	$(GO) test -count=1 -timeout 10m ./e2e/...

# Peer binaries some tests compare against: Debian's prometheus and
# chromium. Installed only when missing and when we may (root + apt).
test-deps:
	@./scripts/test-deps.sh

# Compatibility with a real Jaeger all-in-one (docs/jaeger-compat.md): installs
# jaeger-all-in-one and HotROD when missing (~6 min cold on 2 cores), then runs
# the test with MESHLENS_REQUIRE_JAEGER=1 so that a missing peer fails instead
# of skipping. telemetrygen traces join in when it is installed
# (scripts/install-peers.sh telemetrygen).
test-peers:
	./scripts/install-peers.sh jaeger
	MESHLENS_REQUIRE_JAEGER=1 $(GO) test -count=1 -timeout 5m -run '^TestJaegerCompat$$' ./e2e/

# Go benchmarks of the hot paths, then the end-to-end ALS benchmark over
# gRPC: server pinned to CPU 1, load generator to CPU 0.
# The trace-store conformance suite against a real Cassandra (start one with
# deploy/cassandra/compose.yaml); without CASSANDRA_HOSTS it reports a skip.
test-cassandra:
	CASSANDRA_HOSTS=$${CASSANDRA_HOSTS:-127.0.0.1:9042} $(GO) test -count=1 -v -run 'Cassandra' ./storage/tracestore/cassandra/

# kill -9 durability: CYCLES (default 20) SIGKILL/restart cycles under ALS
# and Zipkin load; every acknowledged record and span must be there once.
bench-chaos: build
	MESHLENS_CHAOS_CYCLES=$(or $(CYCLES),20) $(GO) test -count=1 -timeout 30m -run '^TestKill9KeepsAcknowledgedData$$' -v ./e2e/

# Soak: the binary on CPU 1 under ALS + Zipkin load at 70% of the capacity
# a step ramp measures first, for DURATION (default 10m); fails on memory
# growth, goroutine growth or latency drift; writes docs/soak.md.
soak: build
	$(GO) build -o bin/meshlens-soak ./cmd/meshlens-soak
	taskset -c 0 bin/meshlens-soak -binary $(BIN) -server-cpu 1 -duration $(or $(DURATION),10m) -out docs/soak.md

# meshlens against Jaeger (badger, memory), the OpenTelemetry Collector,
# Prometheus and VictoriaMetrics on this machine; writes docs/benchmarks.md.
# Installs the pinned peers first (scripts/install-peers.sh, ~10-15 min cold).
# SHORT=1: meshlens against Jaeger-badger only, under 3 minutes.
bench-peers: build
	./scripts/install-peers.sh
	$(GO) build -o bin/meshlens-benchpeers ./cmd/meshlens-benchpeers
	taskset -c 0 bin/meshlens-benchpeers $(if $(SHORT),-short)

bench: build
	$(GO) build -o bin/meshlens-bench ./cmd/meshlens-bench
	taskset -c 1 $(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./processors/... ./receivers/... ./storage/... ./query/...
	taskset -c 0 bin/meshlens-bench als
	$(GO) test -run '^$$' -bench BenchmarkUI -benchtime 3x ./e2e/

# Continuous fuzzing: every Fuzz* test in turn, FUZZTIME each (default
# 60s); FUZZ=regexp picks fuzzers, CORPUS=1 copies up to 20 new inputs per
# fuzzer into its testdata/fuzz (docs/hostile-input.md).
fuzz:
	FUZZTIME=$(or $(FUZZTIME),60s) FUZZ='$(or $(FUZZ),.)' CORPUS=$(or $(CORPUS),0) ./scripts/fuzz.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

clean:
	rm -rf bin

# make proto: regenerate the committed protobuf code (SkyWalking mesh protocol).
include proto.mk
