# mpu -- privacy-preserving LLM unlearning as Unix filters over .mpuc streams.
#
#   make            build the programs into bin/ (installs missing Debian packages)
#   make test       run every test; the last line says "N passed, N failed"
#   make demo       the main job on the embedded default model
#   make bench      benchmarks (reports in bench/)
#   make reproduce  the paper's claim end to end (PRESET=small|medium|large)
#   make fuzz       fuzz the .mpuc reader for FUZZ_SECONDS (default 60)
#   make install    PREFIX=/usr/local
#   SAN=1           build and test with AddressSanitizer + UBSan (in build/san)

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

.PHONY: all test demo bench reproduce fuzz install clean vectors
all: $(DEPS_STAMP) $(PROGS)

$(DEPS_STAMP): tools/deps.sh
	@tools/deps.sh build test
	@mkdir -p build && rm -f build/.deps-* && touch $@

$(BUILD)/libmpuc.a: $(FORMAT_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/libmpu.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BINDIR)/%: $(BUILD)/bin/%.o $(BUILD)/libmpu.a $(BUILD)/libmpuc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libmpu.a $(BUILD)/libmpuc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(BUILD)/libmpu.a $(BUILD)/libmpuc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

-include $(FORMAT_OBJ:.o=.d) $(LIB_OBJ:.o=.d) $(PROG_SRC:%.c=$(BUILD)/%.d) $(UNIT_SRC:%.c=$(BUILD)/%.d) $(TOOL_SRC:%.c=$(BUILD)/%.d)

test: all $(UNITS) $(TOOLS)
	@MPU_BIN=$(abspath $(BINDIR)) MPU_TOOLS=$(abspath $(BUILD)/tests/tools) MPU_UNITS="$(UNITS)" tests/run.sh

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
