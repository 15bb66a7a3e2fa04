# mpu -- privacy-preserving LLM unlearning as Unix filters over .mpuc streams.
#
#   make            build the programs into bin/ (installs missing Debian packages)
#   make test       run every test; the last line says "N passed, N failed"
#   make demo       the main job on the embedded default model
#   make bench      benchmarks (reports in bench/)
#   make reproduce  the paper's claim end to end (PRESET=small|medium|large)
#   make fuzz       fuzz the .mpuc reader for FUZZ_SECONDS (default 60)
#   make install    PREFIX=/usr/local
#   make test-gpu   CPU/GPU byte equality and the GPU bench (needs a GPU)
#   SAN=1           build and test with AddressSanitizer + UBSan (in build/san)
#   CUDA=0|1        without the CUDA kernels, or require them (default: built
#                   when nvcc is in PATH or /usr/local/cuda/bin)

VERSION := 0.1.0
PREFIX ?= /usr/local
SAN ?= 0
FUZZ_SECONDS ?= 60

ifeq ($(SAN),1)
  BUILD := build/san
  BINDIR := build/san/bin
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  OPT ?= -O1
else
  BUILD := build/release
  BINDIR := bin
  OPT ?= -O2
endif

CC ?= cc
# No FMA contraction anywhere: server-side math must give the same bits on
# every machine (spec/protocol.md, "Reproducibility").  -fno-math-errno lets
# sqrt be one instruction (in vector loops too); its result is the same.
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -Wno-sign-compare -ffp-contract=off -fno-math-errno -pthread -fopenmp $(SANFLAGS)
CPPFLAGS += -D_GNU_SOURCE -Iformat -Ilib -I/usr/include/x86_64-linux-gnu/openblas-pthread -DMPU_VERSION='"$(VERSION)"'
LDFLAGS += -pthread -fopenmp $(SANFLAGS) -Wl,--as-needed
LDLIBS += -lzstd -lxxhash -ljansson -lsodium -larchive -lopenblas -lpcre2-8 -lutf8proc -lz -lm

# CUDA: kernels/*.cu are compiled whenever CUDA=1 (every one of them, so a new
# .cu file needs no edit here); kernels/*.c always (stub.c stands in for the
# kernels when CUDA=0).  -fmad=false: no FMA contraction on the device either,
# so the GPU gives the CPU's bits (spec/protocol.md, "Reproducibility").
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard $(CUDA_HOME)/bin/nvcc))
ifeq ($(SAN),1)
  CUDA ?= 0
endif
CUDA ?= $(if $(NVCC),1,0)
ifeq ($(CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but no nvcc in PATH or $(CUDA_HOME)/bin)
  endif
  KERNEL_CU := $(wildcard kernels/*.cu)
  LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart_static -ldl -lrt -lstdc++
endif
NVCCFLAGS ?= -O2 -g
NVCCFLAGS += -std=c++17 -fmad=false -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90 \
             -Xcompiler -ffp-contract=off,-fno-math-errno,-Wall
CPPFLAGS += -Ikernels -DMPU_CUDA=$(CUDA)
# Objects built for the other CUDA setting must not be reused: the stamp
# changes when CUDA does, and what depends on it is rebuilt.
CUDA_STAMP := $(BUILD)/.cuda-$(CUDA)
$(shell mkdir -p $(BUILD) && [ -e $(CUDA_STAMP) ] || { rm -f $(BUILD)/.cuda-*; touch $(CUDA_STAMP); })
KERNEL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard kernels/*.c)) $(patsubst %.cu,$(BUILD)/%.cu.o,$(KERNEL_CU))

FORMAT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard format/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard lib/*.c))
PROG_SRC := $(wildcard bin/mpu*.c)
PROGS := $(patsubst bin/%.c,$(BINDIR)/%,$(PROG_SRC))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRC))
DEPS_STAMP := build/.deps-$(shell cat tools/deps.sh | cksum | cut -d' ' -f1)

# Keep the objects of the unit tests between runs.
.SECONDARY:

.PHONY: all test test-gpu demo bench reproduce fuzz install clean vectors
all: $(DEPS_STAMP) $(PROGS)

$(DEPS_STAMP): tools/deps.sh
	@tools/deps.sh build test
	@mkdir -p build && rm -f build/.deps-* && touch $@

$(BUILD)/libmpuc.a: $(FORMAT_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/libmpu.a: $(LIB_OBJ) $(KERNEL_OBJ) $(CUDA_STAMP)
	@rm -f $@
	ar rcs $@ $(filter %.o,$^)

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/kernels/%.o: kernels/%.c $(CUDA_STAMP) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/kernels/%.cu.o: kernels/%.cu | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(CPPFLAGS) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BINDIR)/%: $(BUILD)/bin/%.o $(BUILD)/libmpu.a $(BUILD)/libmpuc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libmpu.a $(BUILD)/libmpuc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(BUILD)/libmpu.a $(BUILD)/libmpuc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

-include $(FORMAT_OBJ:.o=.d) $(LIB_OBJ:.o=.d) $(KERNEL_OBJ:.o=.d) $(PROG_SRC:%.c=$(BUILD)/%.d) $(UNIT_SRC:%.c=$(BUILD)/%.d) $(TOOL_SRC:%.c=$(BUILD)/%.d)

test: all $(UNITS) $(TOOLS)
	@MPU_BIN=$(abspath $(BINDIR)) MPU_TOOLS=$(abspath $(BUILD)/tests/tools) MPU_UNITS="$(UNITS)" tests/run.sh

# On a machine with a GPU: the CPU and the GPU give the same bytes, then the
# bench (tests/gpu/run.sh; MPU_GPU_MEM caps the device pool).  Fails without one.
test-gpu: all $(TOOLS)
	@MPU_BIN=$(abspath $(BINDIR)) MPU_TOOLS=$(abspath $(BUILD)/tests/tools) tests/gpu/run.sh

# Regenerates spec/vectors/ (after a deliberate format change only).
vectors: all $(TOOLS)
	@MPU_BIN=$(abspath $(BINDIR)) MPU_TOOLS=$(abspath $(BUILD)/tests/tools) spec/vectors/make.sh spec/vectors

demo: all
	@MPU_BIN=$(abspath $(BINDIR)) examples/demo.sh

bench: all
	@MPU_BIN=$(abspath $(BINDIR)) bench/run.sh

# The paper's headline experiment (bench/reproduce/REPORT-$(PRESET).md).
PRESET ?= small
reproduce: all
	@MPU_BIN=$(abspath $(BINDIR)) bench/reproduce/reproduce.sh $(PRESET)

FUZZ_BIN := build/fuzz/fuzz_reader
$(FUZZ_BIN): tests/fuzz/fuzz_reader.c $(wildcard format/*.c format/*.h)
	@tools/deps.sh fuzz
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iformat $(filter %.c,$^) \
	  -lzstd -lxxhash -ljansson -o $@
# Seeds: every vector with each buffering mode byte in front of it.
fuzz: $(DEPS_STAMP) $(FUZZ_BIN)
	@mkdir -p build/fuzz/corpus
	@cp tests/fuzz/regressions/* build/fuzz/corpus/
	@for f in spec/vectors/*.mpuc spec/vectors/bad/*.mpuc; do \
	  for m in 00 01 03 07 0a 10 13 20 26 30; do \
	    { printf "\\x$$m"; cat $$f; } > build/fuzz/corpus/$$(basename $$f .mpuc)-$$m; \
	  done; done
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
	  -print_final_stats=1 build/fuzz/corpus

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf build $(filter-out $(PROG_SRC),$(wildcard bin/mpu*))
