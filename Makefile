# Antaca: every target works on a fresh Debian machine with Go 1.26.8 (go.mod).
GO        ?= go
BIN       := bin/antaca
PKGS      := ./...
export ANTACA_KEYS_DIR ?= $(CURDIR)/keys

.PHONY: all build test test-short bench bench-micro run demo lint services browser fuzz deploy-check clean

all: build

# -buildvcs=auto: `antaca version` names the git revision even where the
# environment's GOFLAGS turn stamping off (it is left out outside git).
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/antaca

# Starts Redis and PostgreSQL on 127.0.0.1 when they are not running
# (installing them with apt when missing).
services:
	bash .ci/services.sh

# Headless Chromium for the browser tests (installed with apt when missing).
browser:
	bash .ci/tools.sh browser

test: services browser
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

# Micro-benchmarks of the hot path, then the end-to-end benchmark with
# redis-benchmark and pgbench side by side (bench/README.md).
bench: services build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./ledger/... ./iso/... ./authz/... ./bench/...
	$(BIN) bench --out bench/results

bench-micro: services
	$(GO) test -run '^$$' -bench . -benchtime 2s ./ledger/... ./iso/... ./authz/...

run: services build
	$(BIN) serve --log-format text

# The whole system in one process with nothing installed but Go: an
# in-process Redis and a SQLite file in ./antaca-demo (`antaca demo`).
# Its keys stay in ./antaca-demo too, unless ANTACA_KEYS_DIR is set by the
# caller (this Makefile's own default is for `make run`).
demo: build
	$(if $(filter file,$(origin ANTACA_KEYS_DIR)),env -u ANTACA_KEYS_DIR) $(BIN) demo

# Coverage-guided fuzzing of the ISO frame path and of the journal's
# encoder (what Postgres gets from any bytes a script wrote); the corpora
# live in iso/testdata/fuzz and ledger/pgstore/testdata/fuzz.
# FUZZTIME=10m make fuzz for a long run.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseFrame -fuzztime $(FUZZTIME) ./iso/
	$(GO) test -run '^$$' -fuzz FuzzJournalEncoding -fuzztime $(FUZZTIME) ./ledger/pgstore/

# Formatting, vet, and the documentation checks (every relative Markdown
# link and every document a comment names exists; the README's settings
# table matches `antaca serve`'s flags). make test runs them too.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -run '^TestDocs' ./cmd/antaca/

# Static checks of deploy/: installs promtool (Debian's prometheus package,
# without recommends) and PyYAML when missing, then runs deploy/check.sh.
deploy-check:
	bash .ci/tools.sh deploy
	bash deploy/check.sh

clean:
	rm -rf bin
