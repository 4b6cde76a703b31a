# freshet: `make test` is the one command that runs every test (README).

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.0
ENV         := integration/env/freshet-env
# The environment passes FRESHET_TEST_* to the tests; an integration test
# whose service is missing then fails instead of skipping.
GOTEST      := $(GO) test -race -shuffle=on -count=1 -timeout 45m

.PHONY: demo test lint fmt-check vet staticcheck unit third-party env-up env-selftest bench bench-cdc bench-materialize bench-materialize-e2e bench-pgwire bench-kafka bench-kafka-e2e

## test: lint, check the launcher cleans up after interrupts, then start
## PostgreSQL, MariaDB and Kafka, run every test, stop them.
test: lint env-selftest third-party
	$(ENV) run -- $(GOTEST) ./...

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...

## unit: tests that need no server (integration tests skip, loudly).
unit: third-party
	$(GOTEST) ./...

## third-party: the tests of the patched ristretto in third_party/ (FRESHET.md
## there), a module of its own that ./... does not reach.
third-party:
	$(GO) -C third_party/ristretto test -race -count=1 .

## env-selftest: interrupt the launcher five ways; nothing may be left behind.
env-selftest:
	integration/env/selftest

## bench-cdc: change-capture benchmarks against a throwaway PostgreSQL (decode + pipeline
## alone, the whole stream from a real slot; BENCHTIME runs of 200k rows
## each), then JSON encoding. Not part of test.
BENCHTIME ?= 3x
bench-cdc:
	$(ENV) run --only pg -- $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./connectors/postgres/
	$(GO) test -run '^$$' -bench . ./schemas/

## env-up: start the environment for a dev shell: eval "$$(make -s env-up)"
env-up:
	@$(ENV) up

## bench-pgwire: pgbench -S -M prepared -c 8 against PostgreSQL, PgBouncer
## (session mode) and freshet's pass-through front end, in one run, each at -j 1 and
## -j 2 (the client shares the machine; ratios per -j and each target at its best).
bench-pgwire:
	integration/env/pgwire-bench.sh $(BENCH_PGWIRE_ARGS)

## bench-materialize: query analysis and result-store benchmarks (no server needed).
bench-materialize:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./materialize/...

## bench-kafka: Kafka transport benchmarks against a throwaway broker: produce
## throughput (acks=all), region apply rate, freshness p50/p99 from publish
## to delivery. Not part of test.
KAFKA_BENCHTIME ?= 3x
bench-kafka:
	$(ENV) run --only kafka -- $(GO) test -run '^$$' -bench . -benchtime $(KAFKA_BENCHTIME) ./connectors/kafka/

## bench-kafka-e2e: ingest throughput end to end (200k row changes committed at the origin
## until freshet ingest has them acknowledged by Kafka: 4 large transactions, 20k small ones,
## and a 20k-transaction backlog; changes/s and CPU µs/change), then freshness p50/p99 from
## an origin commit to each of two regional nodes (freshet ingest → Kafka on loopback →
## freshet serve --region), polling a cached read. BENCH_KAFKA_E2E_ARGS=-mode=ingest (or
## freshness) runs one half.
bench-kafka-e2e:
	$(ENV) run --only pg,kafka -- $(GO) run ./integration/cmd/kafkafresh $(BENCH_KAFKA_E2E_ARGS)

## demo: the README's first command: a throwaway PostgreSQL, a small dataset, `freshet up`,
## ~30 s of reads with concurrent writes through it; prints hit ratio, latency, freshness and
## stale reads. DEMO_ARGS passes flags (e.g. DEMO_ARGS=-duration=10s).
demo:
	$(ENV) run --only pg -- $(GO) run ./integration/cmd/demo $(DEMO_ARGS)

## bench-materialize-e2e: pgbench -S -M prepared -c 8 (scale 1: 100k accounts, so the cache
## warms in one pgbench run) against PostgreSQL, PgBouncer, freshet pass-through and freshet
## with the materializer and a warm cache (session mode, and transaction pooling); then p50
## latency at 1 client, a 1M-row aggregate cached vs direct, and freshness in embedded mode.
bench-materialize-e2e:
	integration/env/pgwire-bench.sh -cached -s 1 -rounds 1 -T 10s $(BENCH_E2E_ARGS)

## bench: every benchmark, figures for the closing notes.
bench: bench-cdc bench-materialize bench-pgwire bench-materialize-e2e bench-kafka bench-kafka-e2e
