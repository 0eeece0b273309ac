# stackd developer targets. `make run` serves the repository you are in; `make test` runs the suite.
GO        ?= go
BIN       := bin/stackd
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
ARGS      ?=
BENCH_ARGS ?=
FUZZTIME  ?= 30s
# The dashboard's TypeScript sources; its build output (impl/dashboard/dist) is committed.
WEB       := impl/dashboard/web

.PHONY: all generate check-generated dashboard check-dashboard build test lint run bench bench-micro fuzz

all: build

## generate: regenerate gen/ from openapi.yaml with the pinned oapi-codegen (tools.go)
generate:
	$(GO) generate ./gen/...
	cp openapi.yaml gen/openapi.yaml

## check-generated: fail when gen/ is stale against openapi.yaml
check-generated: generate
	git diff --exit-code -- gen/
	@test -z "$$(git status --porcelain -- gen/)" || { git status --porcelain -- gen/; echo "gen/ has untracked generated files"; exit 1; }

## dashboard: rebuild the web dashboard into impl/dashboard/dist, the only target that needs Node
## and npm: the pinned tools (npm ci, package-lock.json), src/api.d.ts regenerated from openapi.yaml
## (openapi-typescript), a strict type-check (tsc --noEmit), the bundle (esbuild). Commit the result.
dashboard:
	@test -f $(WEB)/package.json || { echo "$(WEB)/package.json is missing: no dashboard sources to build"; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund && npm run gen && npm run check && npm test && npm run build

## check-dashboard: fail when the committed dashboard build or src/api.d.ts is stale against
## the sources and openapi.yaml (as check-generated for gen/)
check-dashboard: dashboard
	@out=$$(git status --porcelain -- impl/dashboard/dist $(WEB)/src/api.d.ts); test -z "$$out" || { \
		echo "$$out"; git --no-pager diff --stat -- impl/dashboard/dist $(WEB)/src/api.d.ts; \
		echo "impl/dashboard/dist or $(WEB)/src/api.d.ts is stale: run make dashboard and commit"; exit 1; }

## build: write bin/stackd
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/stackd

## test: the whole suite with the race detector
test:
	$(GO) test -race ./...

## lint: go vet, staticcheck (pinned in tools.go), gofmt and a kin-openapi load+validate of openapi.yaml
lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) run ./cmd/speccheck openapi.yaml

## run: serve the git repository of the current directory on 127.0.0.1:8080
run: build
	./$(BIN) serve $(ARGS)

## bench: stackd against git on the same repositories (cmd/stackd-bench): prints one table and
## writes it to docs/benchmarks.md; e.g. BENCH_ARGS="-sizes 1000,10000 -runs 3"
bench: build
	$(GO) run ./cmd/stackd-bench -stackd $(BIN) -out docs/benchmarks.md $(BENCH_ARGS)

## bench-micro: the go test micro-benchmarks (ratios against in-process baselines)
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: run every fuzz target (func FuzzXxx in a *_test.go file) for FUZZTIME each, one after
## the other (e.g. FUZZTIME=5m). `make test` runs only their seeds (f.Add and testdata/fuzz/).
## A failing input is written to the package's testdata/fuzz/FuzzXxx/: commit it with the fix.
fuzz:
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' impl cmd | sort); do \
		pkg=./$$(dirname $$file); \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done
