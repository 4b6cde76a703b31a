# freshet: `make test` is the one command that runs every test (README).

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.0
ENV         := integration/env/freshet-env
# The environment passes FRESHET_TEST_* to the tests; an integration test
# whose service is missing then fails instead of skipping.
GOTEST      := $(GO) test -race -shuffle=on -count=1 -timeout 45m

.PHONY: test lint fmt-check vet staticcheck unit env-up bench-pgwire

## test: lint, then start PostgreSQL, MariaDB and Kafka, run every test, stop them.
test: lint
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
unit:
	$(GOTEST) ./...

## env-up: start the environment for a dev shell: eval "$$(make -s env-up)"
env-up:
	@$(ENV) up

## bench-pgwire: pgbench -S -M prepared -c 8 against PostgreSQL, PgBouncer
## (session mode) and freshet's pass-through front end, in one run.
bench-pgwire:
	integration/env/pgwire-bench.sh $(BENCH_PGWIRE_ARGS)
