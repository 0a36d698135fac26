#!/usr/bin/env bash
# fuzz.sh DAY... - each day's fuzz target (BUILD/fuzz/fuzz_DAY: hostile
# segment bytes into attach and pop, under ASan+UBSan) for FUZZ_SECONDS,
# starting from seeds that BUILD/fuzz/seeds_DAY makes with the day's own
# code (tests/fuzz_seeds.c: real segments, each checked to attach, so that
# the fuzzer starts past the header checks). Stops at the first day that
# fails, with the input that did it saved as BUILD/fuzz/DAY-*.
# Run by `make fuzz`. Environment: BUILD, FUZZ_SECONDS (default 12).
set -uo pipefail
build="${BUILD:-build}"
for d in "$@"; do
  echo "== fuzz $d for ${FUZZ_SECONDS:-12} s (seeds: made by $build/fuzz/seeds_$d)"
  work="$build/fuzz/corpus-$d"
  mkdir -p "$work"
  if ! "$build/fuzz/seeds_$d" "$work" > "$build/fuzz/seeds-$d.log" 2>&1; then
    cat "$build/fuzz/seeds-$d.log"
    echo "fuzz: $d: its seeds could not be made"
    exit 1
  fi
  if ! "$build/fuzz/fuzz_$d" -max_total_time="${FUZZ_SECONDS:-12}" -timeout=10 -max_len=8192 \
       -artifact_prefix="$build/fuzz/$d-" "$work" > "$build/fuzz/$d.log" 2>&1; then
    tail -n 40 "$build/fuzz/$d.log"
    echo "fuzz: $d FAILED (input saved as $build/fuzz/$d-*)"
    exit 1
  fi
  grep -E '^#[0-9]+.*DONE' "$build/fuzz/$d.log" | tail -n 1
done
