# throttle — see README.md. Every target works on a fresh clone with Go installed.
GO       ?= go
BIN      := bin/throttle
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/throttle-dev/throttle/cli.Version=$(VERSION)
FUZZTIME ?= 20s
# The linter CI runs (.ci/run installs this version when it is missing).
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT_INSTALL := go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: build test demo bench fuzz lint fmt clean

build: ## build bin/throttle
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

test: ## go vet + the whole suite under the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

demo: build ## a real http job against the embedded simulated API on 127.0.0.1
	./$(BIN) demo

bench: build ## engine, adapter, probe and screen benchmarks, rate adherence, peak RSS, recording and replay, finding and holding limits on the binary beside a plain script (about 10-15 min)
	$(GO) run ./bench/scenarios -bin $(BIN) | tee bench.out
	$(GO) test -run '^$$' -bench . -count 3 ./probes/ ./tui/ | tee -a bench.out
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 3 ./record/ | tee -a bench.out
	@if [ -n "$$THROTTLE_TEST_REDIS" ]; then $(GO) run ./bench/scenarios -bin $(BIN) -only cluster,shares | tee -a bench.out; \
	$(GO) test -run '^$$' -bench 'LimitAcquire|LimitJob' -benchtime 20000x -count 3 ./cluster/ | tee -a bench.out; \
	else echo "THROTTLE_TEST_REDIS is not set: the --redis cost and 1-to-3-host scaling figures are skipped" | tee -a bench.out; fi
	@if [ -n "$$THROTTLE_TEST_PG" ]; then $(GO) test -run '^$$' -bench PostgresInsert -benchtime 1x -count 3 ./adapters/ | tee -a bench.out; \
	else echo "THROTTLE_TEST_PG is not set: the postgres rows/s benchmark is skipped" | tee -a bench.out; fi
	$(GO) run ./bench/scenarios -bin $(BIN) -only limits -parallel-contestants -limits-long | tee -a bench.out

fuzz: ## each fuzz target for FUZZTIME (default 20s), one after another; seeds in */testdata/fuzz
	@fail=0; for t in engine/FuzzLineReader engine/FuzzResultsReader adapters/FuzzTemplate adapters/FuzzRetryAfter internal/redact/FuzzRedact; do \
		echo "$(GO) test -run '^$$' -fuzz '^$${t##*/}$$' -fuzztime $(FUZZTIME) ./$${t%/*}/"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*/}\$$" -fuzztime $(FUZZTIME) ./$${t%/*}/ || fail=1; \
	done; exit $$fail

.PHONY: man
man: ## man pages of every command into man/, made from the command definitions (what --help says)
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} \
		$(GO) run ./cmd/gen-man -version $(VERSION) man

lint: ## gofmt, go vet and golangci-lint (.golangci.yml; the pinned GOLANGCI_LINT_VERSION on PATH or in $(go env GOPATH)/bin)
	@test -z "$$(gofmt -l .)" || (echo "gofmt would change:"; gofmt -l .; exit 1)
	$(GO) vet ./...
	@gl=$$(command -v golangci-lint || { p="$$($(GO) env GOPATH)/bin/golangci-lint"; [ -x "$$p" ] && echo "$$p"; }); \
	if [ -z "$$gl" ]; then echo "golangci-lint is not installed: $(GOLANGCI_LINT_INSTALL)"; exit 1; fi; \
	"$$gl" version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION:v%=%) " || \
		echo "note: $$gl is not golangci-lint $(GOLANGCI_LINT_VERSION), the version CI runs: $(GOLANGCI_LINT_INSTALL)"; \
	echo "$$gl run ./..."; "$$gl" run ./...

fmt:
	gofmt -w .

clean:
	rm -rf bin bench.out
