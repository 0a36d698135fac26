#!/usr/bin/env bash
# sanitize.sh DAY... - the tests of the named days under each sanitizer in
# turn: ASan+UBSan for every day, then ThreadSanitizer for days 3 and later
# (days 1 and 2 are racy by design). Every stage runs even when one before
# it failed; a summary names each stage's result, and the exit status is
# non-zero if any stage failed. Run by `make sanitize` and `make dayN sanitize`.
# Environment: MAKE, WERROR (passed on), NAMED (the day goals given, if any).
set -u
days=("$@")
make=${MAKE:-make}
named=${NAMED:-}
asan="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
results=()
status=0

stage() { # stage LABEL COMMAND... : run one stage, remember how it ended
  local label=$1; shift
  echo "== $label"
  if "$@"; then results+=("passed  $label")
  else results+=("FAILED  $label"); status=1; fi
}

stage "ASan+UBSan: ${days[*]}" env SPMC_STRESS_MESSAGES=500000 ASAN_OPTIONS=detect_leaks=1 \
  $make --no-print-directory BUILD=build/asan SAN="$asan" OPT="-O1 -g" WERROR="${WERROR:-0}" test $named

tsan_days=()
for d in "${days[@]}"; do
  case $d in day1|day2) ;; *) tsan_days+=("$d") ;; esac
done
if [ ${#tsan_days[@]} -eq 0 ]; then
  echo "== ThreadSanitizer: no day 3+ selected (days 1-2 are racy by design)"
else
  # gcc 12 and later warn (-Wtsan) that TSan does not model
  # atomic_thread_fence(), which day 7's wake-up protocol rests on. The
  # fences order only atomic operations, which TSan never reports as races,
  # so the warning is turned off where the compiler has it (clang has none).
  tsan=-fsanitize=thread
  if ${CC:-cc} -Werror -Wno-tsan -fsanitize=thread -x c -c /dev/null -o /dev/null 2>/dev/null; then
    tsan="$tsan -Wno-tsan"
  fi
  # TSan needs a fixed address-space layout: setarch -R turns ASLR off for it.
  stage "ThreadSanitizer: ${tsan_days[*]}" env SPMC_STRESS_MESSAGES=200000 \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" setarch "$(uname -m)" -R \
    $make --no-print-directory BUILD=build/tsan SAN="$tsan" OPT="-O1 -g" \
      WERROR="${WERROR:-0}" test "${tsan_days[@]}"
fi

echo "== sanitize summary"
printf '  %s\n' "${results[@]}"
exit $status
