# luxchat — build and test.
LUXCHAT_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export LUXCHAT_TEST_POSTGRES
# Tools installed with go install (versitygw for the S3 blob store tests).
export PATH := $(PATH):$(shell go env GOPATH)/bin

.PHONY: build run test test-short unit e2e lint bench tools complement-image complement web web-check

build:
	CGO_ENABLED=0 go build -trimpath -o bin/luxchat ./cmd/luxchat

run:
	go run ./cmd/luxchat serve

# The whole suite: static checks, the web client's check, unit and
# integration tests on SQLite and PostgreSQL, then end-to-end tests with
# real Matrix client libraries.
test: lint web-check unit e2e

# The fast tests only (SQLite, no federating servers, no external tools).
test-short:
	go test -short -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# An S3-compatible server that the S3 blob store tests start on loopback,
# and e2e/js's npm packages: the LiveKit token tests verify tokens with
# livekit-server-sdk, the single sign-on browser test drives Chromium with
# playwright-core.
tools:
	@command -v versitygw >/dev/null 2>&1 || go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
	@test -d e2e/js/node_modules/livekit-server-sdk -a -d e2e/js/node_modules/playwright-core || (cd e2e/js && npm ci --no-audit --no-fund --loglevel=error)

# The embedded web client: web/'s sources (TypeScript, Preact,
# matrix-js-sdk) built with Vite into internal/webclient/dist, which is
# committed so that go build needs no Node.
web:
	cd web && npm ci --no-audit --no-fund --loglevel=error && npx vite build

# Type-checks and unit-tests the web client, and fails when the committed
# bundle is not what the sources build.
web-check:
	bash web/check.sh

# The encrypted appservice bot test needs mautrix-go's pure-Go olm (goolm).
unit: tools
	go test -count=1 -timeout 20m ./...
	go test -tags goolm -count=1 -run TestEncryptedAppServiceBot ./internal/integration

e2e:
	bash e2e/run.sh
	LUXCHAT_E2E_DATABASE=postgres bash e2e/run.sh

bench:
	go test -run '^$$' -bench . -benchmem ./internal/...

# Builds the Complement image (FROM scratch, static binary) where a Docker
# engine runs: see build/complement/README.md.
complement-image: build
	cp bin/luxchat build/complement/luxchat
	docker build -t complement-luxchat build/complement
	rm -f build/complement/luxchat

# Runs Complement (see ../shared/tools/complement/README.md) on the image:
#   make complement COMPLEMENT_DIR=/path/to/complement [COMPLEMENT_OUT=dir] [COMPLEMENT_ARGS='./tests/csapi -run TestX']
complement:
	@test -n "$(COMPLEMENT_DIR)" || { echo "set COMPLEMENT_DIR to a checkout of github.com/matrix-org/complement"; exit 1; }
	../shared/tools/complement/run.sh $(COMPLEMENT_DIR) $(or $(COMPLEMENT_OUT),/tmp/complement-out) $(COMPLEMENT_ARGS)
