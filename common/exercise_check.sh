#!/usr/bin/env bash
# exercise_check.sh DAY... - keep the exercises honest. For each day named:
#
#  1. exercises/DAY/spmc_queue.c, untouched, builds without a warning
#     (WERROR=1), and its suites FAIL: an exercise must not be solved by
#     accident, or by a stub that happens to satisfy the tests;
#  2. outside the functions it asks for (the names on its "Functions to
#     write:" line), it is DAY/spmc_queue.c line for line, once both are
#     read with those functions' bodies left out and the exercise's opening
#     comment dropped: the exercise has not gone stale when the day changed.
#
# The day's own suites passing is `make test`'s business, not this script's.
# Prints one line per day and exits non-zero on any problem. Run by
# `make exercise-check`.
#
# Environment: MAKE, BUILD (passed on). CK_TIMEOUT_MULTIPLIER, 0.05 unless
# set: an untouched exercise leaves some tests waiting for a peer that gave
# up, and it only has to fail, so Check's per-test timeouts are cut to a
# twentieth (a test ended by its timeout counts as failed, and is named so).
set -u
cd "$(dirname "$0")/.." || exit 2
make=${MAKE:-make}
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-0.05}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# strip NAMES FILE: FILE without the bodies of the functions NAMES (a
# definition starts on a line at column 0 that names the function and does
# not end in ';'; its body is the lines from "{" to "}" at column 0, the
# style of every day), and without an opening comment that starts with
# "/* Exercise". Fails, naming it, if a function is not defined exactly once.
strip() {
  awk -v names="$1" '
    BEGIN { n = split(names, list, " "); for (i = 1; i <= n; i++) count[list[i]] = 0 }
    FNR == 1 && /^\/\* Exercise/ { banner = 1 }
    banner { if (index($0, "*/")) banner = 0; next }
    body { if ($0 == "}") { body = 0; print "}" }; next }
    sig != "" {
      print
      if ($0 == "{") { body = 1; print "    /* body of " sig "() left out */"; sig = "" }
      else if ($0 ~ /;[ \t]*$/) sig = ""
      next
    }
    /^[A-Za-z_]/ && $0 !~ /;[ \t]*$/ {
      for (f in count)
        if (match($0, "(^|[^A-Za-z0-9_])" f "\\(")) { sig = f; count[f]++ }
    }
    { print }
    END {
      bad = 0
      for (f in count)
        if (count[f] != 1) { printf "%s() is defined %d times in %s\n", f, count[f], FILENAME > "/dev/stderr"; bad = 1 }
      exit bad
    }
  ' "$2"
}

# Stale and build checks, one day after another (the builds share objects).
declare -A problem log names_of note
for d in "$@"; do
  ex=exercises/$d/spmc_queue.c
  orig=$d/spmc_queue.c
  names=$(sed -n 's/^ \* Functions to write: *//p' "$ex" | head -n 1)
  names_of[$d]=${names// /, }
  problem[$d]=""
  if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet HEAD -- "exercises/$d" 2>/dev/null; then
    note[$d]=" (with the edits git diff shows in exercises/$d)"
  fi
  if [ -z "$names" ]; then
    problem[$d]="$ex has no \" * Functions to write: NAME...\" line in its opening comment"
    continue
  fi

  # 2. Not stale: the same file as the day's outside the blanked bodies.
  if ! strip "$names" "$orig" >"$tmp/$d.orig" 2>"$tmp/$d.err" ||
     ! strip "$names" "$ex" >"$tmp/$d.ex" 2>>"$tmp/$d.err"; then
    problem[$d]="stale: $(tr '\n' ';' <"$tmp/$d.err" | sed 's/;$//')"
    continue
  fi
  if ! diff -u --label "$orig" --label "$ex" "$tmp/$d.orig" "$tmp/$d.ex" >"$tmp/$d.diff"; then
    problem[$d]="stale: differs from $orig outside ${names_of[$d]} (bodies left out):"
    log[$d]=$d.diff
    continue
  fi

  # 1a. Builds without a warning.
  if ! $make --no-print-directory WERROR=1 exercise-build "$d" >"$tmp/$d.build" 2>&1; then
    problem[$d]="does not build with WERROR=1:"
    log[$d]=$d.build
  fi
done

# 1b. The untouched suites fail: the days at once, since they mostly wait
# (each test's shm names carry its suite's pid, so runs never collide).
run() { # run DAY: its suites, then a summary line "rc checks failed timeouts suites secs"
  local d=$1 start rc
  start=$(date +%s)
  $make --no-print-directory exercise-run "$d" >"$tmp/$d.run" 2>&1
  rc=$?
  awk -v rc="$rc" -v secs=$(( $(date +%s) - start )) '
    /^[0-9]+%: Checks: / { gsub(",", ""); c += $3; f += $5 + $7; s++ }
    /Test timeout expired/ { t++ }
    END { print rc, c + 0, f + 0, t + 0, s + 0, secs }' "$tmp/$d.run" >"$tmp/$d.sum"
}
for d in "$@"; do
  [ -z "${problem[$d]}" ] && run "$d" &
done
wait

for d in "$@"; do
  orig=$d/spmc_queue.c
  if [ -z "${problem[$d]}" ]; then
    read -r rc checks failed timeouts suites secs <"$tmp/$d.sum"
    expected=$($make --no-print-directory -s exercise-list "$d" | wc -w)
    if [ "$rc" -eq 0 ]; then
      problem[$d]="its suites PASS untouched ($checks checks): the stubs must make them fail"
    elif [ "$suites" -ne "$expected" ]; then
      problem[$d]="$suites of $expected suites reported (one crashed or did not start):"
      log[$d]=$d.run
    fi
  fi
  if [ -n "${problem[$d]}" ]; then
    status=1
    echo "$d exercise: FAILED: ${problem[$d]}${note[$d]:-}"
    case ${log[$d]:-} in
      "") ;;
      *.diff) head -n 40 "$tmp/${log[$d]}" | sed 's/^/    /' ;;
      *) tail -n 30 "$tmp/${log[$d]}" | sed 's/^/    /' ;;
    esac
    continue
  fi
  verdict="untouched fails ($failed of $checks checks"
  [ "$timeouts" -gt 0 ] && verdict+=", $timeouts of them by timeout"
  echo "$d exercise: $verdict, $secs s), matches $orig outside ${names_of[$d]}${note[$d]:-}"
done
exit $status
