# runjob: one non-recursive Makefile (docs/STYLE.md "Build").
#   make            bin/runjob (static) + bin/jobmanager, bin/jobctl symlinks
#   make asan|tsan  build/asan/runjob, build/tsan/runjob (dynamic: sanitizers cannot be static)
#   make valgrind   build/debug/runjob (dynamic) + the preload the valgrind tier runs it with
#   make test       every test tier; ends with "N passed, N failed"
#   make certs      certificates into certs/ (runjob certs)
#   make fmt / fmt-check / clean / install PREFIX=/usr/local
# V selects the variant: release (default), asan, tsan, debug.

VERSION := 0.1.0
V ?= release
# BUILD and BIN may be overridden so that several people can build one tree at once
# (make BUILD=/tmp/me/build BIN=/tmp/me/bin).
BUILD ?= build
BIN ?= bin
ifeq ($(V),release)
B := $(BUILD)
else
B := $(BUILD)/$(V)
endif

CC ?= gcc
PKGS := grpc libprotobuf-c openssl libseccomp
PREFIX ?= /usr/local

WARN := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wformat=2 \
        -Wswitch-enum
CPPFLAGS := -D_GNU_SOURCE -DRUNJOB_VERSION='"$(VERSION)"' -I. -I$(B)/proto
OPT := -O2 -g
SAN :=
ifeq ($(V),asan)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
endif
ifeq ($(V),tsan)
SAN := -fsanitize=thread
OPT := -O1 -g
endif
TEST_LIBS := -lcriterion
TEST_CPPFLAGS :=
ifeq ($(V),tsan)
# Criterion aborts at start-up under TSan; test/tsan/criterion/criterion.h stands in for it.
TEST_LIBS :=
TEST_CPPFLAGS := -Itest/tsan
endif
ifeq ($(V),debug)
OPT := -O0 -g
endif
# libFuzzer needs clang; our code is instrumented for coverage, the fuzz targets link libFuzzer.
ifeq ($(V),fuzz)
CC := clang
SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
OPT := -O1 -g
# gcc's -Werror build is the gate; clang's extra warnings are shown here, not fatal.
WARN += -Wno-error
endif
CFLAGS := -std=gnu11 $(OPT) $(SAN) $(WARN) -MMD -MP
# Generated protobuf-c code gets looser flags (it is not ours to fix).
PROTO_CFLAGS := -std=gnu11 $(OPT) $(SAN) -MMD -MP -w

# The TLS 1.3-only enforcement and the refused handshakes' log wrap OpenSSL entry points (and
# shutdown) at link time in the static binary; dynamic builds (tests, sanitizers) interpose
# them instead (core/tls.h explains).
TLS_WRAP := -Wl,--wrap=SSL_CTX_new,--wrap=SSL_CTX_ctrl,--wrap=SSL_ctrl,--wrap=SSL_do_handshake \
            -Wl,--wrap=shutdown
# The accept guard (core/accept.h) sits under gRPC's listener the same two ways.
ACCEPT_WRAP := -Wl,--wrap=accept4
LIBS_STATIC := $(shell pkg-config --static --libs $(PKGS) 2>/dev/null) -lstdc++ -lm
LIBS_DYN := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ldl -lm -pthread

# Linked into the dynamic runjob only, not libcore.a (see each).
DYN_ONLY_SRC := core/accept-interpose.c core/tls-peer-interpose.c
CORE_SRC := $(filter-out $(DYN_ONLY_SRC),$(sort $(wildcard core/*.c)))
APPLET_SRC := $(sort $(wildcard applets/*.c))
# proto/runjob.proto (our service), proto/health.proto (grpc.health.v1, as published).
PROTOS := $(sort $(basename $(notdir $(wildcard proto/*.proto))))
PROTO_C := $(PROTOS:%=$(B)/proto/%.pb-c.c)
PROTO_H := $(PROTOS:%=$(B)/proto/%.pb-c.h)
CORE_OBJ := $(CORE_SRC:%.c=$(B)/%.o) $(PROTOS:%=$(B)/proto/%.pb-c.o)
APPLET_OBJ := $(APPLET_SRC:%.c=$(B)/%.o)
UNIT_SRC := $(sort $(wildcard test/unit/test_*.c))
HOST_SRC := $(sort $(wildcard test/host/test_*.c))
ifeq ($(V),tsan)
# Parameterized tests need the real Criterion.
UNIT_SRC := $(filter-out $(shell grep -l ParameterizedTest $(UNIT_SRC) /dev/null),$(UNIT_SRC))
HOST_SRC := $(filter-out $(shell grep -l ParameterizedTest $(HOST_SRC) /dev/null),$(HOST_SRC))
endif
UNIT_BIN := $(UNIT_SRC:%.c=$(B)/%)
HOST_BIN := $(HOST_SRC:%.c=$(B)/%)
FUZZ_SRC := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:%.c=$(B)/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:%.c=$(B)/%)

ifeq ($(V),release)
RUNJOB := $(BIN)/runjob
else
RUNJOB := $(B)/runjob
endif

PHONY_EXTRA := fuzzers fuzz-bins fuzz fuzz-seeds
.PHONY: $(PHONY_EXTRA) all asan tsan debug valgrind test test-unit test-host test-vm certs demo bench fmt fmt-check \
        clean install deps tests
.DEFAULT_GOAL := all

all: $(RUNJOB) $(if $(filter release,$(V)),$(BIN)/jobmanager $(BIN)/jobctl)

asan tsan debug:
	$(MAKE) V=$@ BUILD=$(BUILD) all tests

# The valgrind tier (test/valgrind/run.sh) runs the server of the unsanitized dynamic debug
# build (valgrind cannot replace malloc in a static binary) with test/valgrind/vgpreload.c.
valgrind:
	$(MAKE) V=debug BUILD=$(BUILD) all $(BUILD)/debug/vgpreload.so

$(B)/vgpreload.so: test/valgrind/vgpreload.c
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O1 -g $(WARN) -o $@ $< -ldl

# Every object waits for the generated header: any file may include core/rpc.h.
$(B)/%.o: %.c | $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# Kept: generated once, read by the objects and by tools (clangd, the fuzz build).
.SECONDARY: $(PROTO_C) $(PROTO_H)
$(B)/proto/%.pb-c.c $(B)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(B)/proto
	protoc-c --proto_path=proto --c_out=$(B)/proto $<

$(B)/proto/%.pb-c.o: $(B)/proto/%.pb-c.c
	$(CC) $(CPPFLAGS) $(PROTO_CFLAGS) -c $< -o $@

$(B)/libcore.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libapplets.a: $(APPLET_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/runjob: $(B)/main.o $(B)/libapplets.a $(B)/libcore.a
	@mkdir -p $(BIN)
	$(CC) -static $(CFLAGS) -o $@ $(B)/main.o $(B)/libapplets.a $(B)/libcore.a $(TLS_WRAP) \
	    $(ACCEPT_WRAP) $(LIBS_STATIC) 2> $(B)/link.log || { cat $(B)/link.log; exit 1; }
	@# glibc's NSS warns that getaddrinfo in a static binary needs the same glibc at run time;
	@# runjob resolves only numeric addresses and localhost, so the warning is expected.
	@grep -v -e 'statically linked applications requires at runtime' -e 'in function' \
	    $(B)/link.log || true

$(B)/runjob: $(B)/main.o $(B)/libapplets.a $(B)/libcore.a $(DYN_ONLY_SRC:%.c=$(B)/%.o)
	$(CC) $(CFLAGS) -rdynamic -o $@ $(B)/main.o $(DYN_ONLY_SRC:%.c=$(B)/%.o) $(B)/libapplets.a \
	    $(B)/libcore.a $(LIBS_DYN)

$(BIN)/jobmanager $(BIN)/jobctl: $(BIN)/runjob
	ln -sf runjob $@

tests: $(UNIT_BIN) $(HOST_BIN) $(BENCH_BIN) $(RUNJOB) $(if $(filter release,$(V)),$(B)/test/vm/cg_change)

# Runs inside the VM tier's guest, which has no libraries: static, like bin/runjob.
$(B)/test/vm/cg_change: test/vm/cg_change.c $(B)/libcore.a
	@mkdir -p $(@D)
	$(CC) -static $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libcore.a $(LIBS_STATIC)

$(B)/test/%: test/%.c $(B)/libapplets.a $(B)/libcore.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(TEST_CPPFLAGS) $(CFLAGS) -rdynamic -o $@ $< $(B)/libapplets.a $(B)/libcore.a $(TEST_LIBS) \
	    $(LIBS_DYN)

# libFuzzer targets (V=fuzz): the more specific pattern wins over $(B)/test/%.
$(B)/test/fuzz/%: test/fuzz/%.c $(B)/libapplets.a $(B)/libcore.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libapplets.a $(B)/libcore.a \
	    $(LIBS_DYN)

fuzzers:
	$(MAKE) V=fuzz BUILD=$(BUILD) fuzz-bins

fuzz-bins: $(FUZZ_BIN)

# make fuzz FUZZ_SECONDS=N: every target for N seconds, two at a time (make test: 15 s, 30 s for the two slow to saturate).
fuzz: fuzzers
	BUILD=$(BUILD) FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) test/fuzz/run.sh

# The committed seed corpora (test/fuzz/corpus/) are written by this program (release variant;
# an explicit rule, so the libFuzzer pattern rule above does not apply).
$(B)/fuzz-seeds: test/fuzz/gen_seeds.c $(B)/libcore.a
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libcore.a $(LIBS_DYN)

fuzz-seeds: $(B)/fuzz-seeds
	$(B)/fuzz-seeds test/fuzz/corpus

$(B)/bench/%: bench/%.c $(B)/libcore.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libcore.a $(LIBS_DYN)

# Installs the Debian packages the build and the tests need, once (install.sh is idempotent).
deps:
	@./install.sh --deps-only --quiet

# Checks the format (clang-format, .clang-format), builds the release, ASan+UBSan, TSan and
# valgrind (debug) variants, then runs every tier.
# The builds use every core unless make was given -j itself (its jobserver then rules).
TEST_JOBS := $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc))
test: deps
	$(MAKE) fmt-check
	$(MAKE) $(TEST_JOBS) all tests
	$(MAKE) $(TEST_JOBS) V=asan BUILD=$(BUILD) all tests
	$(MAKE) $(TEST_JOBS) V=tsan BUILD=$(BUILD) all tests
	$(MAKE) $(TEST_JOBS) BUILD=$(BUILD) valgrind
	$(MAKE) $(TEST_JOBS) V=fuzz BUILD=$(BUILD) fuzz-bins
	BUILD=$(BUILD) test/run.sh

test-vm: all $(B)/test/vm/cg_change
	BUILD=$(BUILD) test/run.sh vm

test-unit: all tests
	BUILD=$(BUILD) test/run.sh unit

test-host: all tests
	BUILD=$(BUILD) test/run.sh host

# Benchmarks against ssh and the bare isolated spawn (not part of make test; 3-6 minutes;
# BENCH_QUICK=1 for a 1-minute smoke run). Writes bench/RESULTS.md.
bench: all tests
	BUILD=$(BUILD) bench/run.sh

certs: all
	$(RUNJOB) certs --out certs

# The README's first command: dependencies, build, then a real server and client round trip.
demo: deps
	$(MAKE) all
	test/demo.sh

# Tests and benchmarks too: they are read as often as the code.
FMT_SRC = $(CORE_SRC) $(DYN_ONLY_SRC) $(wildcard core/*.h) $(APPLET_SRC) applets/*.h main.c \
	$(wildcard test/*.h test/*/*.c test/*/*.h bench/*.c)

fmt:
	clang-format -i $(FMT_SRC)

fmt-check:
	clang-format --dry-run --Werror $(FMT_SRC)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/runjob $(DESTDIR)$(PREFIX)/bin/runjob
	ln -sf runjob $(DESTDIR)$(PREFIX)/bin/jobmanager
	ln -sf runjob $(DESTDIR)$(PREFIX)/bin/jobctl

clean:
	rm -rf build bin

-include $(shell find $(B) -name '*.d' 2>/dev/null)
