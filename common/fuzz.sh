#!/usr/bin/env bash
# fuzz.sh DAY... - each day's fuzz target (BUILD/fuzz/fuzz_DAY: hostile
# segment bytes into attach and pop, under ASan+UBSan) for FUZZ_SECONDS,
# starting from the seeds in tests/fuzz-corpus/DAY. Stops at the first day
# that fails, with the input that did it saved as BUILD/fuzz/DAY-*.
# Run by `make fuzz`. Environment: BUILD, FUZZ_SECONDS (default 12).
set -uo pipefail
build="${BUILD:-build}"
for d in "$@"; do
  echo "== fuzz $d for ${FUZZ_SECONDS:-12} s (seeds: tests/fuzz-corpus/$d)"
  work="$build/fuzz/corpus-$d"
  mkdir -p "$work"
  cp tests/fuzz-corpus/"$d"/* "$work"/
  if ! "$build/fuzz/fuzz_$d" -max_total_time="${FUZZ_SECONDS:-12}" -timeout=10 -max_len=8192 \
       -artifact_prefix="$build/fuzz/$d-" "$work" > "$build/fuzz/$d.log" 2>&1; then
    tail -n 40 "$build/fuzz/$d.log"
    echo "fuzz: $d FAILED (input saved as $build/fuzz/$d-*)"
    exit 1
  fi
  grep -E '^#[0-9]+.*DONE' "$build/fuzz/$d.log" | tail -n 1
done
