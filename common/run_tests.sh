#!/usr/bin/env bash
# run_tests.sh PROGRAM... [-- PROGRAM...] - run test programs, TEST_JOBS of
# them at a time, and print each one's output whole, in the order given, as
# soon as it and every program before it have ended (so the output reads the
# same whatever the number of jobs). The programs after "--" run alone, one
# after another, once the others have ended. Every program runs even when
# one before it failed; the exit status is non-zero if any failed, and the
# last line names them.
# Run by `make test` and `make memcheck`.
# Environment:
#   TEST_JOBS  programs at a time (default: the number of CPUs, at most 4;
#              1 runs them one by one, printing as they go)
#   TEST_WRAP  a command put before each program of the first group
#              (`make memcheck` puts Valgrind there)
#   LABEL      the word that begins the summary line (default: test)
#   TEST_TIMES when 1, end with how long each program of the first group
#              took, longest first (CI sets it, to show where time goes)
#
# Running suites side by side is safe: each names its segments after its own
# process ID, and no suite depends on timing (more processes than CPUs only
# makes them slower). A suite is mostly waiting for its peer processes, so
# two at a time take little more than half the time of one after another.
set -u
label=${LABEL:-test}
jobs=${TEST_JOBS:-}
if [ -z "$jobs" ]; then
  jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
  [ "$jobs" -le 4 ] || jobs=4
fi
case $jobs in ''|*[!0-9]*|0) echo "run_tests.sh: TEST_JOBS must be a positive number, not '$jobs'" >&2; exit 2 ;; esac
read -r -a wrap <<< "${TEST_WRAP:-}"

progs=()
alone=()
seen_sep=0
for a in "$@"; do
  if [ "$a" = "--" ]; then seen_sep=1
  elif [ $seen_sep -eq 0 ]; then progs+=("$a")
  else alone+=("$a"); fi
done

failed=""
times=()
out=$(mktemp -d "${TMPDIR:-/tmp}/run_tests.XXXXXX")
trap 'rm -rf "$out"' EXIT
# On an interrupt, stop every program still running (each is its own
# process group's leader when job control is off, so signal the group).
trap 'jobs -p | xargs -r kill 2>/dev/null; exit 130' INT TERM

# run_one I PROGRAM [WRAP...]: one program, its output and exit status to $out/I.
run_one() {
  local i=$1 t=$2; shift 2
  local start=$SECONDS rc=0
  "$@" "$t" > "$out/$i.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - start))" > "$out/$i.rc"
}

# report I PROGRAM: print what program I said, and note it if it failed.
report() {
  local i=$1 t=$2 rc secs
  read -r rc secs < "$out/$i.rc"
  echo "== $t"
  cat "$out/$i.log"
  times+=("$secs $t")
  if [ "$rc" -ne 0 ]; then
    echo "$label: $t failed (exit status $rc, after ${secs}s)"
    failed="$failed $t"
  fi
}

if [ "$jobs" -eq 1 ]; then
  # One at a time: print as the program writes, as a plain loop would.
  for t in "${progs[@]}"; do
    echo "== $t"
    start=$SECONDS
    "${wrap[@]}" "$t" || { echo "$label: $t failed (exit status $?)"; failed="$failed $t"; }
    times+=("$((SECONDS - start)) $t")
  done
else
  n=${#progs[@]}
  next=0     # the next program to start
  shown=0    # the next program to print
  running=0
  while [ $shown -lt $n ]; do
    while [ $running -lt "$jobs" ] && [ $next -lt $n ]; do
      run_one $next "${progs[$next]}" "${wrap[@]}" &
      next=$((next + 1)); running=$((running + 1))
    done
    wait -n 2>/dev/null || true
    # Count what has ended; print, in order, what can be printed.
    running=0
    for ((i = shown; i < next; i++)); do [ -e "$out/$i.rc" ] || running=$((running + 1)); done
    while [ $shown -lt $next ] && [ -e "$out/$shown.rc" ]; do
      report $shown "${progs[$shown]}"
      shown=$((shown + 1))
    done
  done
  wait
fi

if [ "${TEST_TIMES:-0}" = 1 ] && [ ${#times[@]} -gt 0 ]; then
  echo "$label: seconds each program took (${jobs} at a time):"
  printf '%s\n' "${times[@]}" | sort -rn | awk '{ printf "  %5d  %s\n", $1, $2 }'
fi

for t in "${alone[@]}"; do
  echo "== $t"
  "$t" || { echo "$label: $t failed (exit status $?)"; failed="$failed $t"; }
done

if [ -n "$failed" ]; then
  echo "$label: FAILED:$failed"
  exit 1
fi
exit 0
