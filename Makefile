# clawguard — build, test and demo on a Debian 12 host (run as root: sudo make ...).

SHELL   := /bin/bash
# sudo's secure_path drops the Go toolchain; put it back.
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Host packages clawguard and its tests use (Debian names). nodejs only when
# no node is on the PATH: the tests copy the host's node into an image.
DEB_PKGS := containerd runc iptables ipset libseccomp-dev iproute2 busybox-static gcc systemd

.PHONY: all deps build test unit e2e demo demo-stop bench lint install clean

all: build

## deps: install the Debian packages that are missing (nothing else is downloaded)
deps:
	@missing=""; \
	for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "deps: all present"; fi

## build: bin/clawguard (cgo, for libseccomp), bin/cgprobe and bin/cgimage (static)
build:
	CGO_ENABLED=1 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/clawguard ./cmd/clawguard
	CGO_ENABLED=0 $(GO) build -o $(BIN)/cgprobe ./cmd/cgprobe
	CGO_ENABLED=0 $(GO) build -o $(BIN)/cgimage ./cmd/cgimage

## lint: gofmt and go vet
lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...

## test: deps, lint, unit tests and the end-to-end suite (starts its own containerd)
test: deps lint
	$(GO) test -count=1 -p 1 ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: deps
	$(GO) test -count=1 -v ./e2e

## demo: build, make sure containerd runs, start a sandbox on the built-in profile, show it, stop it
demo: deps build
	@bash deploy/demo.sh

## bench: startup latency against a bare `ctr run`; writes docs/benchmarks.md
bench: deps build
	CLAWGUARD_BENCH_OUT=$(CURDIR)/docs/benchmarks.md $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./e2e

## install: the binary, the systemd unit template and /etc/clawguard/profiles
install: build
	install -m 0755 $(BIN)/clawguard /usr/local/bin/clawguard
	install -m 0644 deploy/systemd/clawguard@.service /etc/systemd/system/clawguard@.service
	install -d -m 0755 /etc/clawguard/profiles
	@echo "installed; put a profile at /etc/clawguard/profiles/NAME.yaml and run: systemctl enable --now clawguard@NAME"

clean:
	rm -rf $(BIN)
