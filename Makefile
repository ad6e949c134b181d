# memscope build. `make` builds build/libmemscope.so and build/memscope-analyze;
# `make test` runs every check CI runs; `make bench` prints the overhead table.
# `make deps` installs what a fresh Debian machine lacks; the targets that
# need it call it.

GO      ?= go
CC      ?= gcc
BUILD   := build
LIB     := $(BUILD)/libmemscope.so
ANALYZER := $(BUILD)/memscope-analyze
DEPS_STAMP := $(BUILD)/.deps

# libunwind, for the stacks the library's own walker leaves to it
# (preload/unwind.c), linked statically: Debian's libunwind.so.8 would load
# two more libraries into every traced process (itself and liblzma, for a
# feature we do not use: symbol names from MiniDebugInfo), which cost a
# short process a quarter of a millisecond and changed what the program
# itself loads and allocates; Debian's libunwind.a is not PIC. So it is
# built here from the source Debian ships (the same version as Debian
# 12's libunwind8, configured as Debian configures it for x86_64 but
# without lzma, C++ exception symbols, ptrace and coredump support).
LIBUNWIND_VERSION := 1.6.2
LIBUNWIND_TARBALL := libunwind_$(LIBUNWIND_VERSION).orig.tar.gz
LIBUNWIND_URL := http://deb.debian.org/debian/pool/main/libu/libunwind/$(LIBUNWIND_TARBALL)
LIBUNWIND_SHA256 := 4a6aec666991fb45d0889c44aede8ad6eb108071c3554fcdff671f9c94794976
LIBUNWIND_DIR := $(BUILD)/libunwind-$(LIBUNWIND_VERSION)
LIBUNWIND_A := $(LIBUNWIND_DIR)/libunwind.a

PRELOAD_SRC := $(wildcard preload/*.c)
PRELOAD_HDR := $(wildcard preload/*.h) include/memscope.h
# Hot-path rules (DESIGN.md §5): initial-exec TLS, nothing exported but
# what preload/exports.map lists, no libstdc++.
PRELOAD_CFLAGS := -std=gnu11 -O2 -g -fPIC -Wall -Wextra -Werror \
	-fvisibility=hidden -ftls-model=initial-exec -fno-strict-aliasing \
	-D_GNU_SOURCE -Iinclude -I$(LIBUNWIND_DIR)/api
PRELOAD_LDFLAGS := -shared -Wl,--version-script=preload/exports.map \
	-Wl,-z,now -Wl,-z,relro -Wl,--no-undefined
PRELOAD_LIBS := $(LIBUNWIND_A) -ldl -lpthread

GO_SRC := $(shell find . -name '*.go' -not -path './build/*') go.mod go.sum

# Budget of the fuzz smoke run in `make test`, as an execution count per
# target. A count rather than a duration because Go 1.26's fuzz coordinator
# can fail a duration-bounded run with "context deadline exceeded" and no
# crasher when the deadline lands mid-minimization (golang/go#75804).
FUZZTIME ?= 100000x
# The session socket's target makes three connections an execution (2000/s).
FUZZTIME_SOCKET ?= 20000x

.PHONY: all deps demo test test-go test-fuzz lint bench clean

all: $(LIB) $(ANALYZER)

# Debian packages the build and the tests need (curl to fetch libunwind's
# source, llvm-addr2line as the symbolizer tests' oracle, prometheus to
# scrape --metrics and tmux to drive the live view in the tests). Installs
# only what is missing, once.
$(DEPS_STAMP):
	@mkdir -p $(BUILD)
	@missing=""; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v llvm-addr2line >/dev/null 2>&1 || missing="$$missing llvm"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v tmux >/dev/null 2>&1 || missing="$$missing tmux"; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

deps: $(DEPS_STAMP)

# Fetched once (checked against its SHA-256), built in about 40 s. Its
# public headers go to api/ beside the archive (its include/ also holds
# private ones named like system headers); nothing is installed.
$(LIBUNWIND_A): $(DEPS_STAMP)
	@rm -rf $(LIBUNWIND_DIR) && mkdir -p $(LIBUNWIND_DIR)
	@if ! echo "$(LIBUNWIND_SHA256)  $(BUILD)/$(LIBUNWIND_TARBALL)" | sha256sum -c --status 2>/dev/null; then \
		echo "make: fetching $(LIBUNWIND_URL)"; \
		curl -fsSL --retry 3 -o $(BUILD)/$(LIBUNWIND_TARBALL).tmp $(LIBUNWIND_URL) || \
			{ echo "make: cannot fetch libunwind's source from $(LIBUNWIND_URL); put $(LIBUNWIND_TARBALL) (sha256 $(LIBUNWIND_SHA256)) in $(BUILD)/" >&2; exit 1; }; \
		echo "$(LIBUNWIND_SHA256)  $(BUILD)/$(LIBUNWIND_TARBALL).tmp" | sha256sum -c --status || \
			{ echo "make: $(LIBUNWIND_URL) does not have the SHA-256 $(LIBUNWIND_SHA256)" >&2; exit 1; }; \
		mv $(BUILD)/$(LIBUNWIND_TARBALL).tmp $(BUILD)/$(LIBUNWIND_TARBALL); \
	fi
	@echo "make: building libunwind $(LIBUNWIND_VERSION) (static, PIC)"
	@tar -xzf $(BUILD)/$(LIBUNWIND_TARBALL) -C $(LIBUNWIND_DIR) --strip-components=1
	@cd $(LIBUNWIND_DIR) && ./configure --quiet CC="$(CC)" CFLAGS="-O2 -g" \
		--disable-shared --enable-static --with-pic \
		--disable-minidebuginfo --disable-zlibdebuginfo --disable-cxx-exceptions \
		--disable-coredump --disable-ptrace --disable-setjmp --disable-debug-frame \
		--disable-tests --disable-documentation >configure.out 2>&1 || \
		{ cat configure.out >&2; exit 1; }
	@$(MAKE) -s -C $(LIBUNWIND_DIR)/src libunwind.la >$(LIBUNWIND_DIR)/build.out 2>&1 || \
		{ cat $(LIBUNWIND_DIR)/build.out >&2; exit 1; }
	@mkdir -p $(LIBUNWIND_DIR)/api && cd $(LIBUNWIND_DIR)/include && \
		cp libunwind.h libunwind-common.h libunwind-dynamic.h libunwind-x86_64.h ../api/
	@cp $(LIBUNWIND_DIR)/src/.libs/libunwind.a $@

$(LIB): $(LIBUNWIND_A) $(PRELOAD_SRC) $(PRELOAD_HDR) preload/exports.map
	@mkdir -p $(BUILD)
	$(CC) $(PRELOAD_CFLAGS) $(PRELOAD_SRC) -o $@ $(PRELOAD_LDFLAGS) $(PRELOAD_LIBS)

# Without cgo (which only the standard library's net package would use,
# for its DNS resolver) the analyzer is a static executable: no dynamic
# loader, no libc start, no cgo runtime. `run /bin/true` took 34 ms
# instead of 39 (make bench's startup row; 50 runs, 6 alternations).
#
# The linker writes its output through a memory mapping, and the kernel
# keeps such a file in its page cache in 4 KiB pages; a copy written with
# large write(2)s (as cp, install or a package manager write it) is kept
# in large folios, which an exec maps with fewer faults: every start of
# the analyzer took 0.4-0.5 ms less (`perf stat -r 200 ... --help`: 3.50
# -> 3.10 ms, 698 -> 670 page faults; `run /bin/true` 7.65 -> 7.13 ms,
# on Linux 6.18), and build/ is what users and `make bench` run. cp, then
# rename: a running analyzer keeps its old file.
$(ANALYZER): $(DEPS_STAMP) $(GO_SRC)
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -o $@.link ./cmd/memscope-analyze
	cp $@.link $@.copy && mv -f $@.copy $@ && rm -f $@.link

lint:
	@out=$$(gofmt -l $(filter %.go,$(GO_SRC))); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Go tests include the end-to-end tests, which run the real library and
# analyzer on the programs in testdata/ (they find them in build/).
test-go: all
	$(GO) test -race -count=1 -timeout 20m ./...

test-fuzz: $(DEPS_STAMP)
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeChunk$$' -fuzztime $(FUZZTIME) ./shm
	$(GO) test -run '^$$' -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME) ./analyzer/engine
	$(GO) test -run '^$$' -fuzz '^FuzzReports$$' -fuzztime $(FUZZTIME) ./analyzer/gate
	$(GO) test -run '^$$' -fuzz '^FuzzBaseline$$' -fuzztime $(FUZZTIME) ./analyzer/gate
	$(GO) test -run '^$$' -fuzz '^FuzzSuppressions$$' -fuzztime $(FUZZTIME) ./analyzer/report
	$(GO) test -run '^$$' -fuzz '^FuzzReplay$$' -fuzztime $(FUZZTIME) ./analyzer/journal
	$(GO) test -run '^$$' -fuzz '^FuzzSessionSocket$$' -fuzztime $(FUZZTIME_SOCKET) ./analyzer/live

test: lint test-go test-fuzz

# Benchmark workloads (testdata/bench/*.c), built as users build programs.
BENCH_PROGS := $(patsubst testdata/bench/%.c,$(BUILD)/bench/%,$(wildcard testdata/bench/*.c))
# e.g. make bench BENCH_FLAGS='-runs 7 -only micro'
BENCH_FLAGS ?=

$(BUILD)/bench/%: testdata/bench/%.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -Wall -Wextra -Werror -pthread $< -o $@

# The start time is taken before the build so the total printed covers
# all of `make bench`.
bench:
	@start=$$(date +%s%N); \
	$(MAKE) --no-print-directory all $(BENCH_PROGS) && \
	$(GO) build -o $(BUILD)/memscope-bench ./cmd/memscope-bench && \
	$(BUILD)/memscope-bench -build $(BUILD) -started-ns $$start $(BENCH_FLAGS)

# Profile the bundled demo program and show its leak report.
demo: all
	@rm -rf $(BUILD)/demo-out && mkdir -p $(BUILD)/demo-out
	$(CC) -g -O0 -o $(BUILD)/demo testdata/demo.c
	$(ANALYZER) run --out $(BUILD)/demo-out -- $(BUILD)/demo
	@cat $(BUILD)/demo-out/memscope.demo.*.leaks.txt

clean:
	rm -rf $(BUILD)
