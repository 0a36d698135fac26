# Makefile - one build for every day of the tutorial.
#
# Build output goes under build/ only. Day goals scope the others:
#   make day3 bench      runs day 3's benchmark alone
#   make day2 test       runs day 2's tests alone
# `make help` lists everything.

.DEFAULT_GOAL := all
SHELL := /bin/bash

BUILD   ?= build
CC      ?= cc
OPT     ?= -O2 -g
WERROR  ?= 0
# Extra flags for sanitizer builds (set by `make sanitize`).
SAN     ?=

ifeq ($(V),1)
Q :=
quiet = @:
else
Q := @
quiet = @printf '  %-7s %s\n'
endif

WARN := -Wall -Wextra -Wpedantic $(if $(filter 1,$(WERROR)),-Werror)
ALL_CFLAGS  = -std=c11 $(WARN) $(OPT) $(SAN) -MMD -MP -Icommon $(CFLAGS)
ALL_LDFLAGS = $(SAN) $(LDFLAGS)
LDLIBS      = -pthread -lrt

# Check, found through pkg-config once `make deps-check` has installed it.
# Recursively expanded on purpose: read when a test links, after the install.
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null)

# ---------------------------------------------------------------------------
# Which days exist, and which ones the command line names.
# ---------------------------------------------------------------------------
ALL_DAYS   := day1 day2 day3 day4 day5 day6 day7 day8
DAYS       := $(patsubst %/,%,$(dir $(wildcard day*/producer.c)))
NAMED_DAYS := $(filter $(ALL_DAYS),$(MAKECMDGOALS))
MISSING    := $(filter-out $(DAYS),$(NAMED_DAYS))
SEL        := $(if $(NAMED_DAYS),$(filter $(DAYS),$(NAMED_DAYS)),$(DAYS))
BENCH_DAYS := $(patsubst %/,%,$(dir $(wildcard day*/benchmark.c)))
SEL_BENCH  := $(filter $(BENCH_DAYS),$(SEL))
RACE_DAYS  := $(patsubst %/,%,$(dir $(wildcard day*/race.c)))
SEL_RACE   := $(filter $(RACE_DAYS),$(SEL))
# The test matrix, declared once: which suite runs against which days.
# A day's own suite, tests/check_dayN.c, runs against that day. Each suite
# below runs against its first day and every day after it; its binary is
# $(BUILD)/tests/check_<suite>_<day>. Fields: suite, source, first day, and
# what else it needs:
#   programs      it starts the day's producer and consumer (-DDAY_BUILD)
#   crash-points  it runs against the queue built with -DSPMC_CRASH_POINTS
# contract: the public contract, version-independent cases from day 2 on;
# day5: day 5's fan-out suite (day 5's own suite, later days' too);
# day6: day 6's own suite (stale and hostile segments, full /dev/shm), later days' too;
# liveness: PID namespaces, no /proc, exited main threads, forks;
# crash: a process SIGKILLed or SIGSTOPped at each named crash point;
# sleep: futex sleeps and wake-ups, lost ones caught as timeouts (its test
# hook, spmc_test_sleep_ns, comes with the crash points).
TEST_MATRIX := contract:tests/check_contract.c:day2 \
               day5:tests/check_day5.c:day6 \
               day6:tests/check_day6.c:day7 \
               liveness:tests/check_liveness.c:day6:programs \
               crash:tests/check_crash.c:day6:crash-points \
               sleep:tests/check_sleep.c:day7:crash-points

field        = $(word $(1),$(subst :, ,$(2)))
# dayN is the Nth word of ALL_DAYS: the days present from day $(1) on.
days_from    = $(filter $(wordlist $(patsubst day%,%,$(1)),99,$(ALL_DAYS)),$(DAYS))
# The matrix entries that run against day $(1).
suites_of    = $(foreach m,$(TEST_MATRIX),$(if $(filter $(1),$(call days_from,$(call field,3,$(m)))),$(m)))
suite_needs  = $(filter $(2),$(wordlist 4,9,$(subst :, ,$(1))))
suite_name   = $(call field,1,$(1))
# Matrix entry $(1) against day $(2) with build folder $(3): the queue object
# it links, and its extra flags.
suite_lib    = $(3)/$(if $(call suite_needs,$(1),crash-points),crash/)$(2)/spmc_queue.o
suite_flags  = $(if $(call suite_needs,$(1),crash-points),-DSPMC_CRASH_POINTS)

COMMON_OBJ := $(BUILD)/common/common.o $(BUILD)/common/bench.o

# Programs of one day: every .c in the folder but the queue library itself.
day_progs = $(patsubst $(1)/%.c,$(BUILD)/$(1)/%,$(filter-out $(1)/spmc_queue.c,$(wildcard $(1)/*.c)))
day_lib   = $(if $(wildcard $(1)/spmc_queue.c),$(BUILD)/$(1)/spmc_queue.o)
day_tests = $(if $(wildcard tests/check_$(1).c),$(BUILD)/tests/check_$(1)) \
            $(foreach m,$(call suites_of,$(1)),$(BUILD)/tests/check_$(call suite_name,$(m))_$(1))

TOOLS := $(BUILD)/common/baseline $(BUILD)/common/ceiling $(BUILD)/common/c2c

.PHONY: all $(ALL_DAYS) test build-tests bench run race memcheck sanitize docs linkcheck diff deps soak fuzz plot layout \
        deps-check deps-valgrind deps-docs deps-doxygen deps-fuzz clean help tools \
        exercise exercise-build exercise-run exercise-list exercise-check \
        lib install uninstall tool-test install-test

all: $(foreach d,$(SEL),$(call day_progs,$(d)))
	@true

# `make dayN` builds that day; with another goal it only narrows that goal.
$(ALL_DAYS):
	@if [ ! -f $@/producer.c ]; then echo "$@: not built yet (no $@/producer.c); nothing to do"; \
	 elif [ "$(filter-out $(ALL_DAYS),$(MAKECMDGOALS))" = "" ]; then \
	   $(MAKE) --no-print-directory all $@-only; fi
$(addsuffix -only,$(ALL_DAYS)):
	@true

# A day goal that names no day of the course: say which days there are.
UNKNOWN_DAYS := $(filter-out $(ALL_DAYS) %-only,$(filter day%,$(MAKECMDGOALS)))
ifneq ($(UNKNOWN_DAYS),)
$(UNKNOWN_DAYS):
	@echo "make: there is no $@; the days are $(ALL_DAYS) (make help lists the goals)" >&2; exit 2
endif

# ---------------------------------------------------------------------------
# Compiling and linking.
# ---------------------------------------------------------------------------
$(BUILD)/%.o: %.c
	$(quiet) CC $<
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

define DAY_RULES
$(call day_progs,$(1)): $(BUILD)/$(1)/%: $(BUILD)/$(1)/%.o $(call day_lib,$(1)) $(COMMON_OBJ)
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(ALL_LDFLAGS) $$^ -o $$@ $$(LDLIBS)

# The queue with its test-only crash points compiled in.
$(BUILD)/crash/$(1)/spmc_queue.o: $(1)/spmc_queue.c
	$$(quiet) CC "$$< (crash points)"
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)$$(CC) $$(ALL_CFLAGS) -DSPMC_CRASH_POINTS -c $$< -o $$@
endef
$(foreach d,$(DAYS),$(eval $(call DAY_RULES,$(d))))

# One test binary: $(1) the binary, $(2) its object, $(3) the source,
# $(4) the day under test, $(5) the queue object, $(6) the folder of the
# programs it starts (empty: none), $(7) extra flags. Arguments may carry
# the blanks of a continued line, hence the strips.
define TEST_RULES
$(1): $(2) $(5) $(COMMON_OBJ)
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(ALL_LDFLAGS) $$^ -o $$@ $$(CHECK_LIBS) $$(LDLIBS)

$(2): $(3) | deps-check
	$$(quiet) CC "$$< ($(strip $(4) $(7)))"
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)$$(CC) $$(ALL_CFLAGS) -I$(strip $(4)) -DSPMC_DAY='"$(strip $(4))"' $(if $(strip $(6)),-DDAY_BUILD='"$(strip $(6))"') $(strip $(7)) $$(CHECK_CFLAGS) -c $$< -o $$@
endef
# Each day's own suite, then the matrix's suites against it.
$(foreach d,$(DAYS),$(if $(wildcard tests/check_$(d).c),$(eval $(call TEST_RULES,$(BUILD)/tests/check_$(d),\
  $(BUILD)/tests/check_$(d).o,tests/check_$(d).c,$(d),$(call day_lib,$(d)),$(abspath $(BUILD))/$(d)))))
$(foreach d,$(DAYS),$(foreach m,$(call suites_of,$(d)),$(eval $(call TEST_RULES,\
  $(BUILD)/tests/check_$(call suite_name,$(m))_$(d),$(BUILD)/tests/$(call suite_name,$(m))_$(d).o,\
  $(call field,2,$(m)),$(d),$(call suite_lib,$(m),$(d),$(BUILD)),\
  $(if $(call suite_needs,$(m),programs),$(abspath $(BUILD))/$(d)),$(call suite_flags,$(m))))))

# Day 4 built again with one of its two changes undone by a knob of
# day4/spmc_queue.[ch], for `make day4 bench`: "orders" keeps day 4's memory
# orders with day 3's packed layout, "align" day 4's layout with day 3's
# seq_cst orders. Objects under build/day4/orders/ and build/day4/align/.
KNOB_orders := -DSPMC_ALIGN=0
KNOB_align  := -DSPMC_SEQ_CST=1
DAY4_KNOB_BINS := $(BUILD)/day4/benchmark-orders $(BUILD)/day4/benchmark-align
define KNOB_RULES
$(BUILD)/day4/$(1)/%.o: day4/%.c
	$$(quiet) CC "$$< ($(KNOB_$(1)))"
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)$$(CC) $$(ALL_CFLAGS) $(KNOB_$(1)) -c $$< -o $$@
endef
$(foreach k,orders align,$(eval $(call KNOB_RULES,$(k))))
$(BUILD)/day4/benchmark-%: $(BUILD)/day4/%/benchmark.o $(BUILD)/day4/%/spmc_queue.o $(COMMON_OBJ)
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LDLIBS)

# What waiting costs (common/waitbench.c), built against each day's queue
# from day 6 on: build/dayN/waitbench, for common/bench_wait.sh.
WAIT_DAYS := $(call days_from,day6)
define WAIT_RULES
$(BUILD)/$(1)/waitbench.o: common/waitbench.c $(1)/spmc_queue.h
	$$(quiet) CC "$$< (-I$(1))"
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)$$(CC) $$(ALL_CFLAGS) -I$(1) -c $$< -o $$@
$(BUILD)/$(1)/waitbench: $(BUILD)/$(1)/waitbench.o $(BUILD)/$(1)/spmc_queue.o $(COMMON_OBJ)
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(ALL_LDFLAGS) $$^ -o $$@ $$(LDLIBS)
endef
$(foreach d,$(WAIT_DAYS),$(eval $(call WAIT_RULES,$(d))))

$(BUILD)/common/%: $(BUILD)/common/%.o $(COMMON_OBJ)
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LDLIBS)

tools: $(TOOLS)

# ---------------------------------------------------------------------------
# The newest day as an installed library and tool: make lib, make install.
# libspmc.a, libspmc.so.MAJOR.MINOR (soname libspmc.so.MAJOR, MAJOR the
# wire-format version SPMC_VERSION), spmc_queue.h, spmc.pc, man pages from
# the header's comments, and the spmc tool (tools/spmc.c).
# ---------------------------------------------------------------------------
LIB_DAY    := day8
LIB_MAJOR  := $(shell sed -n 's/^\#define SPMC_VERSION \([0-9]*\)u$$/\1/p' $(LIB_DAY)/spmc_queue.h)
LIB_MINOR  := 0
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
PCDIR      ?= $(LIBDIR)/pkgconfig
LIB_OUT    := $(BUILD)/lib
LIB_SONAME := libspmc.so.$(LIB_MAJOR)
LIB_REAL   := libspmc.so.$(LIB_MAJOR).$(LIB_MINOR)
LIB_FILES  := $(LIB_OUT)/libspmc.a $(LIB_OUT)/$(LIB_REAL) $(LIB_OUT)/spmc $(LIB_OUT)/spmc.pc \
              $(LIB_OUT)/man/man3/spmc_queue.h.3
# The man pages installed: the header's page, one per function and public
# type (links to it or pages of their own), none for struct fields.
LIB_MAN3    = $(notdir $(wildcard $(LIB_OUT)/man/man3/spmc_*.3))

# The object is named after its day, so that changing LIB_DAY rebuilds it.
$(LIB_OUT)/spmc_queue-$(LIB_DAY).o: lib/libspmc.c $(LIB_DAY)/spmc_queue.c $(LIB_DAY)/spmc_queue.h
	$(quiet) CC "$< (-I$(LIB_DAY) -fPIC -fvisibility=hidden)"
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -I$(LIB_DAY) -c $< -o $@
$(LIB_OUT)/libspmc.a: $(LIB_OUT)/spmc_queue-$(LIB_DAY).o
	$(quiet) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^
$(LIB_OUT)/$(LIB_REAL): $(LIB_OUT)/spmc_queue-$(LIB_DAY).o lib/libspmc.map
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -shared -Wl,-soname,$(LIB_SONAME) -Wl,--version-script=lib/libspmc.map \
	  $(LIB_OUT)/spmc_queue-$(LIB_DAY).o -o $@ $(LDLIBS)
	$(Q)ln -sf $(LIB_REAL) $(LIB_OUT)/$(LIB_SONAME) && ln -sf $(LIB_SONAME) $(LIB_OUT)/libspmc.so
# The tool includes the queue's source (see tools/spmc.c): one program.
$(LIB_OUT)/spmc: tools/spmc.c $(LIB_DAY)/spmc_queue.c $(LIB_DAY)/spmc_queue.h
	$(quiet) CC "$< (-I$(LIB_DAY))"
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -I$(LIB_DAY) $< -o $@ $(ALL_LDFLAGS) $(LDLIBS)
$(LIB_OUT)/spmc.pc: lib/spmc.pc.in $(LIB_DAY)/spmc_queue.h
	$(quiet) GEN $@
	$(Q)mkdir -p $(dir $@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	  -e 's|@MAJOR@|$(LIB_MAJOR)|g; s|@MINOR@|$(LIB_MINOR)|' $< > $@
$(LIB_OUT)/man/man3/spmc_queue.h.3: $(LIB_DAY)/spmc_queue.h lib/Doxyfile.man | deps-doxygen
	$(quiet) DOXYGEN "man pages of $<"
	$(Q)rm -rf $(LIB_OUT)/man && mkdir -p $(LIB_OUT)
	$(Q)(cat lib/Doxyfile.man; echo "INPUT = $<"; echo "OUTPUT_DIRECTORY = $(LIB_OUT)") | doxygen -

lib: $(LIB_FILES)

# DESTDIR stages the files elsewhere (packaging, CI); PREFIX says where they
# will live, and goes into spmc.pc.
install: $(LIB_FILES)
	$(Q)set -e; d='$(DESTDIR)'; \
	 install -d "$$d$(LIBDIR)" "$$d$(PCDIR)" "$$d$(INCLUDEDIR)" "$$d$(BINDIR)" "$$d$(MANDIR)/man1" "$$d$(MANDIR)/man3"; \
	 install -m 644 $(LIB_OUT)/libspmc.a "$$d$(LIBDIR)/"; \
	 install -m 755 $(LIB_OUT)/$(LIB_REAL) "$$d$(LIBDIR)/"; \
	 ln -sf $(LIB_REAL) "$$d$(LIBDIR)/$(LIB_SONAME)"; ln -sf $(LIB_SONAME) "$$d$(LIBDIR)/libspmc.so"; \
	 install -m 644 $(LIB_OUT)/spmc.pc "$$d$(PCDIR)/"; \
	 install -m 644 $(LIB_DAY)/spmc_queue.h "$$d$(INCLUDEDIR)/"; \
	 install -m 755 $(LIB_OUT)/spmc "$$d$(BINDIR)/"; \
	 install -m 644 lib/spmc.1 "$$d$(MANDIR)/man1/"; \
	 for m in $(LIB_MAN3); do install -m 644 $(LIB_OUT)/man/man3/$$m "$$d$(MANDIR)/man3/"; done; \
	 if [ -z "$$d" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi; \
	 echo "installed libspmc $(LIB_MAJOR).$(LIB_MINOR) ($(LIB_DAY)) and spmc under $$d$(PREFIX)"

uninstall:
	$(Q)d='$(DESTDIR)'; \
	 rm -f "$$d$(LIBDIR)/libspmc.a" "$$d$(LIBDIR)/$(LIB_REAL)" "$$d$(LIBDIR)/$(LIB_SONAME)" \
	       "$$d$(LIBDIR)/libspmc.so" "$$d$(PCDIR)/spmc.pc" "$$d$(INCLUDEDIR)/spmc_queue.h" \
	       "$$d$(BINDIR)/spmc" "$$d$(MANDIR)/man1/spmc.1" "$$d$(MANDIR)/man3/spmc_queue.h.3"; \
	 for m in "$$d$(MANDIR)"/man3/spmc_*.3; do \
	   [ -e "$$m" ] || continue; \
	   if grep -q '^\.so man3/spmc_queue.h.3' "$$m" || grep -q '"spmc"' "$$m"; then rm -f "$$m"; fi; \
	 done; \
	 if [ -z "$$d" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi; \
	 echo "removed libspmc and spmc from $$d$(PREFIX)"

# The tool's tests (tests/tool.sh) and the examples built against an
# installed copy (tests/install.sh), both in `make test`.
tool-test: $(LIB_OUT)/spmc
	$(Q)BUILD=$(BUILD) ./tests/tool.sh
install-test: $(LIB_FILES)
	$(Q)MAKE="$(MAKE)" BUILD=$(BUILD) ./tests/install.sh

# ---------------------------------------------------------------------------
# Goals that act on the selected days.
# ---------------------------------------------------------------------------
TEST_BINS = $(foreach d,$(SEL),$(call day_tests,$(d)))

define no_days
	@if [ -n "$(MISSING)" ]; then echo "$(MISSING): not built yet, skipped"; fi
endef

# With the newest day selected, `make test` also tests the tool and the
# library as installed (tests/tool.sh, tests/install.sh); not in sanitizer
# builds (SAN set by `make sanitize`), whose libspmc.so would need the
# sanitizer's runtime loaded first by every program built against it.
LIB_TESTS = $(if $(SAN),,$(if $(filter $(LIB_DAY),$(SEL)),tests/tool.sh tests/install.sh))
test: deps-check $(TEST_BINS) $(foreach d,$(SEL),$(call day_progs,$(d))) $(if $(LIB_TESTS),$(LIB_FILES))
	$(no_days)
	@if [ -z "$(strip $(TEST_BINS))" ]; then echo "test: no day with tests selected"; exit 0; fi; \
	 BUILD=$(BUILD) MAKE="$(MAKE)" ./common/run_tests.sh $(TEST_BINS) -- $(LIB_TESTS)

# Every program, tool and test binary of the selected days, built, not run
# (CI builds them with clang as well as gcc: make CC=clang build-tests).
build-tests: deps-check $(TEST_BINS) $(foreach d,$(SEL),$(call day_progs,$(d))) $(TOOLS)
	@echo "build-tests: built $(words $(TEST_BINS)) test binaries with $(CC)"

memcheck: deps-check deps-valgrind $(TEST_BINS) $(foreach d,$(SEL),$(call day_progs,$(d)))
	$(no_days)
	@TESTS="$(TEST_BINS)" BUILD=$(BUILD) ./common/memcheck.sh $(SEL)

# Every stage runs, each is reported, and the goal fails at the end if one did.
sanitize: deps-check
	$(no_days)
	@MAKE="$(MAKE)" WERROR=$(WERROR) NAMED="$(NAMED_DAYS)" ./common/sanitize.sh $(SEL)

run: all
	$(no_days)
	@for d in $(SEL); do BUILD=$(BUILD) ./common/demo.sh $$d || exit 1; done

# Day 2's attach race, counted (day2/race.c): `make race` or `make day2 race`.
race: $(foreach d,$(SEL_RACE),$(BUILD)/$(d)/race)
	$(no_days)
	@if [ -z "$(SEL_RACE)" ]; then echo "race: only day 2 has a race program (its attach is racy by design)"; exit 0; fi
	@for d in $(SEL_RACE); do echo "== $$d race"; $(BUILD)/$$d/race $(ARGS) || exit 1; done

# Day 5's store-buffer litmus test (day5/litmus.c), a second or two:
# how often both loads see 0, with relaxed, acquire/release and seq_cst.
.PHONY: litmus
litmus: $(BUILD)/day5/litmus
	$(Q)$(BUILD)/day5/litmus $(ARGS)

# `make day4 bench` without ARGS: day 3, day 4 and the two knob builds,
# interleaved (common/bench_knobs.sh); with ARGS, day 4's benchmark alone.
KNOBS_BENCH := $(if $(NAMED_DAYS),$(if $(ARGS),,$(filter day4,$(SEL_BENCH))))
# `make day7 bench` without ARGS: day 6 and day 7 at full speed with their
# futex calls, then the "waiting" table (common/bench_wait.sh); `make bench`
# ends with the waiting table of the days that have a waitbench.
WAIT_BENCH  := $(if $(NAMED_DAYS),$(if $(ARGS),,$(filter $(WAIT_DAYS),$(SEL_BENCH))))
WAIT_TABLE  := $(if $(NAMED_DAYS),,$(WAIT_DAYS))
# Day 8's records of any length (common/bench_records.sh): at the end of
# `make bench`, and of `make day8 bench` without ARGS.
RECORDS_DAY   := $(filter day8,$(DAYS))
RECORDS_BENCH := $(if $(RECORDS_DAY),$(if $(NAMED_DAYS),$(if $(ARGS),,$(filter day8,$(SEL_BENCH))),day8))

bench: $(foreach d,$(SEL_BENCH),$(call day_progs,$(d))) $(if $(NAMED_DAYS),,$(TOOLS)) \
       $(if $(KNOBS_BENCH),$(BUILD)/day3/benchmark $(DAY4_KNOB_BINS) $(BUILD)/common/c2c) \
       $(if $(WAIT_BENCH)$(WAIT_TABLE),$(BUILD)/common/c2c $(foreach d,$(WAIT_DAYS),$(BUILD)/$(d)/waitbench $(BUILD)/$(d)/benchmark)) \
       $(if $(RECORDS_BENCH),$(BUILD)/common/c2c $(BUILD)/day8/records $(BUILD)/day7/benchmark)
	$(no_days)
	@if [ -z "$(SEL_BENCH)" ]; then echo "bench: no day has a benchmark yet (day 3 brings the first)"; exit 0; fi
	@if [ -n "$(NAMED_DAYS)" ]; then for d in $(SEL_BENCH); do \
	   if [ $$d = "$(KNOBS_BENCH)" ]; then \
	     BUILD=$(BUILD) CC="$(CC)" CFLAGS_SHOWN="$(OPT)" ./common/bench_knobs.sh || exit 1; continue; fi; \
	   case " $(filter-out $(firstword $(WAIT_DAYS)),$(WAIT_BENCH)) " in *" $$d "*) \
	     prev=$$(echo $(WAIT_DAYS) | tr ' ' '\n' | grep -B1 -x $$d | head -n 1); \
	     BUILD=$(BUILD) ./common/bench_wait.sh --full-speed $$prev $$d || exit 1; continue;; esac; \
	   echo "== $$d benchmark"; $(BUILD)/$$d/benchmark $(ARGS) || exit 1; done; \
	 else BUILD=$(BUILD) CC="$(CC)" CFLAGS_SHOWN="$(OPT)" ./common/bench.sh $(SEL_BENCH) && \
	   { [ -z "$(WAIT_TABLE)" ] || { echo; BUILD=$(BUILD) ./common/bench_wait.sh $(WAIT_TABLE); }; }; fi
	@if [ -n "$(RECORDS_BENCH)" ]; then echo; BUILD=$(BUILD) ./common/bench_records.sh; fi

# The chart: from the last make bench (run first if there is none); then the
# segment pictures.
plot:
	@[ -f $(BUILD)/bench/medians.csv ] || $(MAKE) --no-print-directory bench
	@./common/deps.sh plot doxygen
	@BUILD=$(BUILD) ./common/plot.sh
	@$(MAKE) --no-print-directory layout

# The segment pictures docs/layout/dayN.dot and .svg, from each day's
# offsetof() and sizeof() (docs/layout/draw.sh; templates dayN.dot.in).
LAYOUT_DAYS = $(patsubst docs/layout/%.dot.in,%,$(wildcard docs/layout/day*.dot.in))
layout: deps-docs
	$(Q)BUILD=$(BUILD) CC="$(CC)" ./docs/layout/draw.sh $(filter $(SEL),$(LAYOUT_DAYS))

SOAK_SECONDS ?= 60
# Day 6's soak, built against day 7 and day 8 too (their soak.c are links).
SOAK_DAYS := day6 day7 day8
soak: $(foreach d,$(SOAK_DAYS),$(BUILD)/$(d)/soak)
	$(Q)for d in $(SOAK_DAYS); do echo "== $$d soak"; \
	  $(BUILD)/$$d/soak --seconds $(SOAK_SECONDS) || exit 1; done

# Fuzzing: every day with a queue library, under ASan+UBSan (clang).
FUZZ_DAYS    = $(filter-out day1,$(DAYS))
FUZZ_SECONDS ?= 12
FUZZ_CC      ?= clang
FUZZ_FLAGS   = -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               -DSPMC_ATTACH_WAIT_NS=0 -DSPMC_CRASH_POINTS

# The seeds: real segments of each day, made by its own code at each run
# (tests/fuzz_seeds.c), so that they never go stale.
SEED_FLAGS   = -std=c11 -g -O1 $(WARN) -DSPMC_ATTACH_WAIT_NS=0 -DSPMC_CRASH_POINTS

fuzz: deps-fuzz $(foreach d,$(FUZZ_DAYS),$(BUILD)/fuzz/fuzz_$(d) $(BUILD)/fuzz/seeds_$(d))
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) ./common/fuzz.sh $(FUZZ_DAYS)

$(BUILD)/fuzz/fuzz_%: tests/fuzz_segment.c %/spmc_queue.c %/spmc_queue.h | deps-fuzz
	$(quiet) FUZZ $@
	$(Q)mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -I$* tests/fuzz_segment.c $*/spmc_queue.c -o $@ -pthread

$(BUILD)/fuzz/seeds_%: tests/fuzz_seeds.c %/spmc_queue.c %/spmc_queue.h | deps-fuzz
	$(quiet) SEEDS $@
	$(Q)mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(SEED_FLAGS) -I$* tests/fuzz_seeds.c $*/spmc_queue.c -o $@ -pthread

deps-fuzz:
	@./common/deps.sh fuzz

docs: deps-docs
	$(Q)mkdir -p $(BUILD)/docs
	$(Q)./docs/build.sh $(BUILD)/docs

# Every link of the site, followed as from disk (file://): no network needed.
linkcheck: docs
	$(Q)./docs/check_links.sh $(BUILD)/docs

# `make diff FROM=dayN` compares day N with day N+1; `TO=dayN` alone, day N-1
# with day N; neither, day 3 with day 4. The queue and its programs, and any
# other program the later day brings (day 2's race.c, day 5's litmus.c).
DIFF_SRC := spmc_queue.h spmc_queue.c producer.c consumer.c benchmark.c
diff:
	@from="$(FROM)"; to="$(TO)"; day='^day[1-9][0-9]*$$'; \
	 [ -n "$$from$$to" ] || from=day3; \
	 if [ -z "$$to" ] && [[ $$from =~ $$day ]]; then to=day$$(( $${from#day} + 1 )); fi; \
	 if [ -z "$$from" ] && [[ $$to =~ $$day ]]; then from=day$$(( $${to#day} - 1 )); fi; \
	 if [ ! -f "$$from/README.md" ] || [ ! -f "$$to/README.md" ]; then \
	   echo "diff: cannot compare '$$from' with '$$to': days are $(DAYS) (FROM=dayN alone compares day N with the day after)" >&2; exit 2; fi; \
	 extra=; for f in $$(cd $$to && ls *.c); do \
	   case " $(DIFF_SRC) " in *" $$f "*) ;; *) extra="$$extra $$f";; esac; done; \
	 for f in $(DIFF_SRC) $$extra; do \
	   a=$$from/$$f; b=$$to/$$f; \
	   [ -f $$a ] || a=/dev/null; [ -f $$b ] || b=/dev/null; \
	   [ $$a = /dev/null ] && [ $$b = /dev/null ] && continue; \
	   diff -u --label $$from/$$f --label $$to/$$f $$a $$b; \
	   st=$$?; [ $$st -le 1 ] || [ $$st -ge 128 ] || exit 2; done; true

# ---------------------------------------------------------------------------
# Exercises, days 3 and later. exercises/dayN/spmc_queue.c is
# dayN/spmc_queue.c with the bodies of the day's lesson functions taken out.
# `make dayN exercise` builds the day's suites (those of day_tests but the
# crash-point suite) and the programs they start against that file, with
# -IdayN for the day's header, into $(EXERCISE_BUILD)/dayN/, and runs them;
# once they pass, again under ThreadSanitizer (in $(BUILD)/tsan, beside
# `make sanitize`'s objects). `make exercise-check` makes sure that every
# untouched exercise fails, and that it still matches its day outside the
# functions to write (common/exercise_check.sh).
# ---------------------------------------------------------------------------
EXERCISE_BUILD ?= $(BUILD)/exercise
EXERCISE_DAYS  := $(filter $(DAYS),$(patsubst exercises/%/spmc_queue.c,%,$(wildcard exercises/day*/spmc_queue.c)))
SEL_EXERCISE   := $(filter $(EXERCISE_DAYS),$(SEL))
# A day's own suite and the matrix's suites but the crash-point ones,
# built against its exercise.
exercise_suites = $(foreach m,$(call suites_of,$(1)),$(if $(call suite_needs,$(m),crash-points),,$(m)))
exercise_tests  = $(if $(wildcard tests/check_$(1).c),$(EXERCISE_BUILD)/$(1)/check_$(1)) \
                  $(foreach m,$(call exercise_suites,$(1)),$(EXERCISE_BUILD)/$(1)/check_$(call suite_name,$(m))_$(1))
EXERCISE_TESTS = $(foreach d,$(SEL_EXERCISE),$(call exercise_tests,$(d)))
EXERCISE_BINS  = $(EXERCISE_TESTS) \
                 $(foreach d,$(SEL_EXERCISE),$(EXERCISE_BUILD)/$(d)/producer $(EXERCISE_BUILD)/$(d)/consumer)
EXERCISE_TSAN  = SPMC_STRESS_MESSAGES=200000 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
                 setarch "$$(uname -m)" -R $(MAKE) --no-print-directory BUILD=$(BUILD)/tsan \
                 EXERCISE_BUILD=$(BUILD)/tsan/exercise SAN=-fsanitize=thread OPT="-O1 -g"

# $(1): the day: its exercise's queue object and the programs built with it.
define EXERCISE_RULES
$(EXERCISE_BUILD)/$(1)/spmc_queue.o: exercises/$(1)/spmc_queue.c $(1)/spmc_queue.h
	$$(quiet) CC "$$< (-I$(1))"
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)$$(CC) $$(ALL_CFLAGS) -I$(1) -c $$< -o $$@

$(EXERCISE_BUILD)/$(1)/producer $(EXERCISE_BUILD)/$(1)/consumer: $(EXERCISE_BUILD)/$(1)/%: \
		$(BUILD)/$(1)/%.o $(EXERCISE_BUILD)/$(1)/spmc_queue.o $(COMMON_OBJ)
	$$(quiet) LD $$@
	$$(Q)$$(CC) $$(ALL_LDFLAGS) $$^ -o $$@ $$(LDLIBS)
endef
$(foreach d,$(EXERCISE_DAYS),$(eval $(call EXERCISE_RULES,$(d))))
# The tests, from the test matrix as for the days themselves, compiled here
# rather than shared with the day's own: DAY_BUILD names the programs built
# against the exercise.
$(foreach d,$(EXERCISE_DAYS),$(if $(wildcard tests/check_$(d).c),$(eval $(call TEST_RULES,\
  $(EXERCISE_BUILD)/$(d)/check_$(d),$(EXERCISE_BUILD)/$(d)/tests/check_$(d).o,tests/check_$(d).c,$(d),\
  $(EXERCISE_BUILD)/$(d)/spmc_queue.o,$(abspath $(EXERCISE_BUILD))/$(d)))))
$(foreach d,$(EXERCISE_DAYS),$(foreach m,$(call exercise_suites,$(d)),$(eval $(call TEST_RULES,\
  $(EXERCISE_BUILD)/$(d)/check_$(call suite_name,$(m))_$(d),$(EXERCISE_BUILD)/$(d)/tests/$(call suite_name,$(m))_$(d).o,\
  $(call field,2,$(m)),$(d),$(EXERCISE_BUILD)/$(d)/spmc_queue.o,\
  $(if $(call suite_needs,$(m),programs),$(abspath $(EXERCISE_BUILD))/$(d))))))

# Each selected day: its suites against the exercise; once they pass, the
# same under ThreadSanitizer. One verdict line per day; fails if one failed.
exercise: deps-check
	$(no_days)
	@if [ -z "$(SEL_EXERCISE)" ]; then \
	   echo "exercise: no exercise for $(SEL); the days with one: $(EXERCISE_DAYS)"; exit 0; fi
	@status=0; for d in $(SEL_EXERCISE); do \
	   echo "== exercise $$d: the suites against exercises/$$d/spmc_queue.c"; \
	   if ! $(MAKE) --no-print-directory exercise-run $$d; then \
	     echo "exercise $$d: not passing yet (see the failures above)"; status=1; continue; fi; \
	   echo "== exercise $$d: the same under ThreadSanitizer"; \
	   if $(EXERCISE_TSAN) exercise-run $$d; then echo "exercise $$d: passed, under ThreadSanitizer too"; \
	   else echo "exercise $$d: the suites pass, but not under ThreadSanitizer (see above)"; status=1; fi; \
	 done; exit $$status

# The steps of `make exercise`, for it and for common/exercise_check.sh.
exercise-build: deps-check $(EXERCISE_BINS)
	@true
exercise-run: exercise-build
	@status=0; for t in $(EXERCISE_TESTS); do \
	   echo "== $$t"; $$t || status=1; done; \
	 exit $$status

exercise-list:
	@echo $(EXERCISE_TESTS)

exercise-check: deps-check
	@MAKE="$(MAKE)" BUILD=$(BUILD) ./common/exercise_check.sh $(SEL_EXERCISE)

deps: deps-check deps-valgrind deps-docs
deps-check:
	@./common/deps.sh check
deps-valgrind:
	@./common/deps.sh valgrind
deps-docs:
	@./common/deps.sh doxygen
deps-doxygen:
	@./common/deps.sh doxygen-only

clean:
	rm -rf $(sort $(BUILD) build)

help:
	@echo "make                      build every day"
	@echo "make dayN                 build one day (and narrow the goals below to it)"
	@echo "make test                 run the Check suites (installs Check if missing)"
	@echo "make build-tests          build every program and test without running them"
	@echo "make bench                benchmark days 3+ and the baselines, one table"
	@echo "make day4 bench           day 3 against day 4 with only its orders, only its alignment, both"
	@echo "make day7 bench           day 6 and day 7 at full speed with their futex calls, then the waiting table"
	@echo "make day8 bench           the same for day 7 and day 8, then records of 16 B to 64 KiB against a pipe, a socket, memcpy"
	@echo "make run                  each day's producer/consumer demo, as real processes"
	@echo "make race                 day 2's attach race: two readers at once, both attached? (ARGS=--tries N)"
	@echo "make litmus               day 5's store-buffer litmus test (ARGS=\"--order acq_rel\")"
	@echo "make memcheck             tests and demos under Valgrind memcheck"
	@echo "make sanitize             tests under ASan+UBSan, then ThreadSanitizer (days 3+)"
	@echo "make docs                 Doxygen HTML in build/docs, fails on any warning"
	@echo "make linkcheck            make docs, then check every link of build/docs offline"
	@echo "make diff FROM=dayA TO=dayB   unified diff of two days' sources"
	@echo "make soak                 days 6-8, SOAK_SECONDS (60) each: consumers killed at random"
	@echo "make plot                 docs/throughput.svg and records.svg from the last make bench (gnuplot), then make layout"
	@echo "make layout               docs/layout/dayN.dot and .svg from each day's offsetof() (graphviz)"
	@echo "make fuzz                 hostile segment bytes into attach/pop of days 2-8 (clang)"
	@echo "make exercise             days 3-6: the suites against exercises/dayN/spmc_queue.c, then TSan"
	@echo "make exercise-check       every untouched exercise fails and still matches its day"
	@echo "make lib                  the newest day as libspmc.a, libspmc.so, spmc.pc, man pages and the spmc tool (build/lib)"
	@echo "make install                install them (PREFIX=/usr/local, DESTDIR for staging); make uninstall removes them"
	@echo "make tool-test              the spmc tool against live, dead and hostile queues (tests/tool.sh)"
	@echo "make install-test           install into a staging root, check exports and man pages, build and run examples/"
	@echo "make deps                 install Check, Valgrind and Doxygen"
	@echo "make clean                remove build/"
	@echo "Examples: make day3 bench   make day2 test   make -C day4 test   V=1 make   TEST_JOBS=1 make test"
	@echo "Days present: $(DAYS)"

# Keep object files that chains of implicit rules would delete.
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
