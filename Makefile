# dptrain — GNU make build.
#   make               library build/libdptrain.a and the command build/dptrain
#   make check         install what the tests need, fetch data/mnist, run the suite
#   make demo          train the default network on data/mnist with all cores
#   make bench         gemm benchmark vs OpenBLAS and the thread-scaling bench
#   make SAN=1 check   the suite under AddressSanitizer + UBSan (objects in build/san)
#   make OMP=0 check   the suite without OpenMP (objects in build/noomp)
#   make install PREFIX=/usr/local DESTDIR=

CC      ?= cc
PREFIX  ?= /usr/local
OMP     ?= 1
SAN     ?= 0
OPT     ?= -O3

VARIANT := $(if $(filter 1,$(SAN)),san)$(if $(filter 0,$(OMP)),noomp)
BUILD   := build$(if $(VARIANT),/$(VARIANT))

PKGS     := hwloc zlib
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE -MMD -MP
CFLAGS   += -std=c11 $(OPT) -g -Wall -Wextra -Wshadow -Wno-unused-parameter -fno-math-errno
LDLIBS   += -lm

ifneq ($(shell pkg-config --exists $(PKGS) 2>/dev/null && echo y),)
CPPFLAGS += $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS))
else
LDLIBS   += -lhwloc -lz
endif
ifeq ($(OMP),1)
CFLAGS  += -fopenmp
LDFLAGS += -fopenmp
endif
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC   := $(sort $(shell find src -name '*.c' -not -path 'src/cli/*'))
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libdptrain.a
BIN       := $(BUILD)/dptrain
TESTBIN   := $(BUILD)/test_dptrain

# Micro-kernels are compiled for their own ISA; the dispatcher picks one at start-up.
$(BUILD)/obj/src/gemm/kernel_avx2.o:   CFLAGS += -mavx2 -mfma
$(BUILD)/obj/src/gemm/kernel_avx512.o $(BUILD)/obj/src/gemm/kernel_avx512_tall.o \
$(BUILD)/obj/src/gemm/kernel_avx512_n16.o $(BUILD)/obj/src/gemm/kernel_avx512_n24.o \
$(BUILD)/obj/src/gemm/pack_avx512.o: CFLAGS += -mavx512f -mavx512vl -mavx2 -mfma
$(BUILD)/obj/src/gemm/sparse_avx512.o: CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx2 -mfma

.PHONY: all check test demo bench bench-gemm bench-xcore bench-peers install clean deps data fuzz
all: $(BIN) $(LIB)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TESTBIN): $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

deps:
	@scripts/install-deps

data:
	@scripts/fetch-data

# The suite: Criterion unit tests, then the command-line tests.
check: deps
	@scripts/fetch-data mnist
	@$(MAKE) --no-print-directory $(TESTBIN) $(BIN)
	DPTRAIN_DATA=data LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(TESTBIN) --jobs 2 --timeout 300
	DPTRAIN=$(BIN) bash tests/cli.sh

test: check

demo:
	@scripts/install-deps --demo
	@scripts/fetch-data mnist
	@$(MAKE) --no-print-directory $(BIN)
	$(BIN) train --data data/mnist --log $(BUILD)/demo.csv --save $(BUILD)/demo.safetensors
	scripts/plot $(BUILD)/demo.csv $(BUILD)/demo

BENCH_GEMM := $(BUILD)/bench_gemm
$(BENCH_GEMM): bench/gemm.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) -lopenblas

bench-gemm: $(BENCH_GEMM)
	$(BENCH_GEMM)

# what a cache line costs when it changes core (needs two processors)
BENCH_XCORE := $(BUILD)/bench_xcore
$(BENCH_XCORE): bench/xcore.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O3 -march=native -g -Wall -Wextra -pthread -o $@ $<

bench-xcore: $(BENCH_XCORE)
	$(BENCH_XCORE)

bench:
	@scripts/install-deps --bench
	@scripts/fetch-data
	@$(MAKE) --no-print-directory $(BIN) $(BENCH_GEMM) $(BENCH_XCORE)
	$(BENCH_GEMM)
	-$(BENCH_XCORE)
	$(BIN) bench --data data/fashion-mnist

bench-peers:
	@scripts/install-deps --bench
	@scripts/fetch-data
	@$(MAKE) --no-print-directory $(BIN)
	DPTRAIN=$(BIN) bench/peers/run

# libFuzzer targets for the two parsers of untrusted files (clang; not part of
# `make check`; built without OpenMP, for this machine's ISA). FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -march=native -Wno-unknown-pragmas -Iinclude -Isrc -D_GNU_SOURCE
fuzz:
	@mkdir -p build/fuzz/corpus-idx build/fuzz/corpus-checkpoint
	clang $(FUZZ_FLAGS) -o build/fuzz/fuzz_idx tests/fuzz/fuzz_idx.c $(LIB_SRC) -lhwloc -lz -lm
	clang $(FUZZ_FLAGS) -o build/fuzz/fuzz_checkpoint tests/fuzz/fuzz_checkpoint.c $(LIB_SRC) \
	    -lhwloc -lz -lm
	build/fuzz/fuzz_idx -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	    build/fuzz/corpus-idx tests/fuzz/seeds/idx
	build/fuzz/fuzz_checkpoint -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	    build/fuzz/corpus-checkpoint tests/fuzz/seeds/checkpoint

install: $(BIN) $(LIB)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/dptrain
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/libdptrain.a
	install -m 644 include/dptrain.h $(DESTDIR)$(PREFIX)/include/dptrain.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^#define DPT_VERSION "\(.*\)"/\1/p' include/dptrain.h)|' \
	    -e 's|@LIBS@|$(if $(filter 1,$(OMP)),-fopenmp )$(LDLIBS)|' scripts/dptrain.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/dptrain.pc

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
