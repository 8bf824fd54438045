# fastpath: the README's two commands are `make demo` and `make test` (as root).
GO      ?= go
# Fuzzing runs for a count of inputs, not a time: go's coordinator can fail
# a target with a bare "context deadline exceeded" when its wall-clock
# -fuzztime ends while a worker is busy (CI saw it, no crasher written). About
# 20 s each here; minimizing a new input is bounded the same way, and a
# stuck run by -timeout.
FUZZTIME ?= 200000x
FUZZMIN  ?= 2000x
BIN     := bin/fastpath
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# make install PREFIX=/usr/local [DESTDIR=...] [SYSCONFDIR=...]
PREFIX  ?= /usr/local
DESTDIR ?=

.PHONY: all build demo test unit lint generate check-generate check-headers deps clean deb install difftest

all: build

# A static binary (no cgo: nothing needs it), with the VCS revision
# embedded (-buildvcs overrides a GOFLAGS that turns it off) for
# `fastpath version` and fastpath_build_info.
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fastpath

# The Debian package, into dist/: /usr/bin/fastpath, the systemd unit, man
# pages, completions and /etc/fastpath/fastpath.yaml (a conffile).
# Install it with: apt install ./dist/fastpath_*.deb
deb: build
	scripts/package.sh deb $(BIN) dist

# The same files into PREFIX (an existing config is kept).
install: build
	scripts/package.sh install $(BIN) $(PREFIX) $(DESTDIR)

deps:
	scripts/deps.sh runtime

# The main job: a lab of network namespaces, the daemon in it, real traffic,
# a report; everything removed afterwards.
demo: deps build
	$(BIN) demo

# The whole suite as CI runs it: generated code current, lint, all tests
# (privileged ones included, so run as root). ./... includes the
# differential tests' fixed scripts (test/difftest, about 6 minutes).
test: check-generate lint
	scripts/deps.sh test
	$(GO) test -count=1 -timeout 15m ./...
	# the fuzzers, each for a bounded time against its reference model
	$(GO) test -run '^$$' -fuzz '^FuzzXDP$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) -timeout 5m ./internal/datapath
	$(GO) test -run '^$$' -fuzz '^FuzzOffload$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) -timeout 5m ./internal/datapath
	$(GO) test -run '^$$' -fuzz '^FuzzGuard$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) -timeout 5m ./internal/datapath
	# the daemon's concurrent parts again under the race detector (seconds)
	$(GO) test -count=1 -race ./internal/daemon ./internal/eventhub ./internal/api ./internal/metrics ./internal/dashboard ./cmd/...
	# the Debian package installed and run as a service under a real systemd
	# (systemd-nspawn; about 2 minutes on a fresh machine)
	$(MAKE) systemd-check

# Fast, unprivileged subset.
unit:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Regenerate the BPF objects with the pinned clang (Debian clang-19).
generate:
	scripts/deps.sh build
	$(GO) generate ./internal/datapath ./internal/bench/...

# Each header of the BPF library compiles on its own: it includes what it
# uses. (Unused static functions are what a header is made of, hence
# -Wno-unused-function.)
BPF_CFLAGS := -target bpf -O2 -g -Wall -Werror -Wno-unused-function -I/usr/include/x86_64-linux-gnu -Ibpf
check-headers:
	scripts/deps.sh build
	@for h in bpf/lib/*.h; do \
	  echo "#include \"$$h\"" | clang-19 $(BPF_CFLAGS) -I. -fsyntax-only -x c - || \
	    { echo "$$h does not compile on its own: include what it uses"; exit 1; }; \
	done

# CI: the committed objects must be what the sources produce, and each
# header compiles alone.
check-generate: generate check-headers
	@git diff --exit-code --stat -- internal/datapath internal/bench || \
	  { echo "generated BPF objects differ from the committed ones: run 'make generate' and commit"; exit 1; }

clean:
	rm -rf bin dist

# The package under a real systemd (docs/operations.md, "Checked under
# systemd"): a minimal Debian booted with systemd-nspawn installs the
# package and runs the service: start, CLI, traffic, reload, watchdog,
# stop, detach, remove, purge. As root; about 1.5 minutes, plus one the
# first time (debootstrap, cached in /var/cache/fastpath-systemd-check).
# go test ./internal/distcheck runs it too with FASTPATH_SYSTEMD_CHECK=1.
systemd-check: deb
	scripts/deps.sh systemd-check
	scripts/systemd-check.sh $(wildcard dist/fastpath_*.deb)
.PHONY: systemd-check

# The forwarding benchmark (docs/benchmarks.md): kernel, kernel + masquerade
# and fastpath in one run, on a lab of its own. As root; about 10 minutes.
# BENCH_FLAGS=--quick for a run under 90 s.
BENCH_FLAGS ?= --json bench.json --plot bench.png
bench: deps build
	$(BIN) bench $(BENCH_FLAGS)
.PHONY: bench

# Differential tests (docs/development.md): N generated scripts from SEED
# on, each played on the kernel alone and with fastpath (XDP and TC), or
# one script file with SCRIPT=FILE (what a failure prints). As root.
# ATTACH=tc narrows the fastpath runs; KNOWN=1 plays known divergences too.
SEED ?= 1
N    ?= 10
difftest:
	DIFFTEST_ATTACH=$(ATTACH) DIFFTEST_KNOWN=$(KNOWN) \
	$(if $(SCRIPT),DIFFTEST_SCRIPT=$(abspath $(SCRIPT)) $(GO) test -count=1 -v -timeout 30m -run '^TestReplay$$' ./test/difftest, \
	DIFFTEST_SEED=$(SEED) DIFFTEST_N=$(N) $(GO) test -count=1 -v -timeout 0 -run '^TestGenerated$$' ./test/difftest)
