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

PRELOAD_SRC := $(wildcard preload/*.c)
PRELOAD_HDR := $(wildcard preload/*.h) include/memscope.h
# Hot-path rules (DESIGN.md §5): initial-exec TLS, nothing exported but
# what preload/exports.map lists, no libstdc++.
PRELOAD_CFLAGS := -std=gnu11 -O2 -g -fPIC -Wall -Wextra -Werror \
	-fvisibility=hidden -ftls-model=initial-exec -fno-strict-aliasing \
	-D_GNU_SOURCE -Iinclude
PRELOAD_LDFLAGS := -shared -Wl,--version-script=preload/exports.map \
	-Wl,-z,now -Wl,-z,relro -Wl,--no-undefined
PRELOAD_LIBS := -lunwind -ldl -lpthread

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

# Debian packages the build and the tests need (libunwind for stacks,
# llvm-addr2line as the symbolizer tests' oracle, prometheus to scrape
# --metrics and tmux to drive the live view in the tests). Installs only
# what is missing, once.
$(DEPS_STAMP):
	@mkdir -p $(BUILD)
	@missing=""; \
	printf '#include <libunwind.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 || missing="$$missing libunwind-dev"; \
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

$(LIB): $(DEPS_STAMP) $(PRELOAD_SRC) $(PRELOAD_HDR) preload/exports.map
	@mkdir -p $(BUILD)
	$(CC) $(PRELOAD_CFLAGS) $(PRELOAD_SRC) -o $@ $(PRELOAD_LDFLAGS) $(PRELOAD_LIBS)

$(ANALYZER): $(DEPS_STAMP) $(GO_SRC)
	@mkdir -p $(BUILD)
	$(GO) build -o $@ ./cmd/memscope-analyze

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
