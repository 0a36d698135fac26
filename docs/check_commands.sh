#!/usr/bin/env bash
# check_commands.sh - run every command the READMEs tell a reader to run, so
# that no instruction can rot. Commands are the lines of fenced blocks (not
# ```diff or ```c) that start with `make ` or `build/` (or `$ make`, `$ build/`,
# `$ truncate`, `$ ls` in a block of typed commands), and inline code spans
# in the prose that start with `make ` or `build/`. A block's commands run in
# order in one shell; an inline command runs alone.
#
# A `make` command must exit 0; a program may exit non-zero (the READMEs show
# programs refusing bad input) but must not die of a signal or hang. Goals
# that CI runs as steps of their own (test, memcheck, sanitize, docs, fuzz,
# soak, bench, linkcheck, exercise-check; test, memcheck and sanitize of one
# day too) are not run twice, wherever they appear; a make command that has
# already passed here is not run again; and no exercise is run (an
# untouched one fails by design). Benchmarks run as their smoke run
# (BENCH_SMOKE=1): here they prove that the command works, not a figure.
set -u
cd "$(dirname "$0")/.."
export SOAK_SECONDS=${SOAK_SECONDS:-5} FUZZ_SECONDS=${FUZZ_SECONDS:-2} BENCH_SMOKE=${BENCH_SMOKE:-1}
LIMIT=${CMD_TIMEOUT:-300}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0 ran=0 skipped=0

covered() { # goals CI already runs on their own (and make clean, which
             # would pull the build out from under the commands after it)
  case "$1" in
    "make test"|"make memcheck"|"make sanitize"|"make docs"|"make linkcheck"|"make fuzz"|"make soak"|"make bench"|"make clean"|"make deps"|"make exercise-check") return 0 ;;
    "make day"[0-9]" test"|"make -C day"[0-9]" test"|"make tool-test"|"make install-test") return 0 ;; # parts of make test
    "make day"[0-9]" memcheck"|"make day"[0-9]" sanitize") return 0 ;;
    *" exercise"|"make exercise"*) return 0 ;; # an untouched exercise fails by design
  esac
  return 1
}
passed="$tmp/passed" # make commands that have passed here, one per line
touch "$passed"

# Extract: one file per unit (a block, or one inline command) under $tmp.
n=0
for readme in README.md day[0-9]/README.md; do
  awk -v out="$tmp/unit" -v src="$readme" -v start="$n" '
    function flush() { if (nb > 0) { f = sprintf("%s.%04d", out, ++u); print "# " src > f; for (i = 1; i <= nb; i++) print b[i] > f; close(f) } nb = 0 }
    BEGIN { u = start }
    /^```/ { if (inb) { flush(); inb = 0 } else { inb = 1; lang = substr($0, 4) } ; next }
    inb {
      if (lang == "diff" || lang == "c") next
      line = $0
      typed = sub(/^\$ /, "", line)
      if (line ~ /^(make |build\/day[0-9]\/[a-z]+( |$))/ || (typed && line ~ /^(truncate|ls) /)) {
        sub(/[ \t]+#.*$/, "", line); b[++nb] = line
      }
      next
    }
    {
      s = $0
      while (match(s, /`[^`]*`/)) { # each code span; keep the commands
        cmd = substr(s, RSTART + 1, RLENGTH - 2)
        s = substr(s, RSTART + RLENGTH)
        if (cmd !~ /^(make |build\/day[0-9]\/[a-z]+( |$))/) continue
        f = sprintf("%s.%04d", out, ++u); print "# " src > f; print cmd > f; close(f)
      }
    }
    END { print u > (out ".count") }
  ' "$readme"
  n=$(cat "$tmp/unit.count")
done

declare -A seen
for unit in "$tmp"/unit.[0-9]*; do
  src=$(head -n 1 "$unit" | cut -c3-)
  mapfile -t cmds < <(tail -n +2 "$unit")
  key=$(printf '%s;' "${cmds[@]}")
  [ -n "${seen[$key]:-}" ] && continue
  seen[$key]=1
  # placeholders such as dayN or FROM=dayA are not commands to run
  if printf '%s\n' "${cmds[@]}" | grep -qE 'dayN|day\[|dayA|dayB|GOAL|/NAME|BYTES|\.\.\.'; then continue; fi
  torun=0
  for c in "${cmds[@]}"; do
    if ! covered "$c" && ! grep -qxF -- "$c" "$passed"; then torun=1; fi
  done
  if [ $torun -eq 0 ]; then
    echo "covered by its own CI step or run already: $(IFS='|'; echo "${cmds[*]}" | sed 's/|/ ; /g')   ($src)"
    skipped=$((skipped + 1)); continue
  fi
  {
    echo 'set +e'
    for c in "${cmds[@]}"; do
      if [[ $c == make* ]] && { covered "$c" || grep -qxF -- "$c" "$passed"; }; then
        printf 'echo %q >>"$LOG"\n' "(covered or run already: $c)"
      elif [[ $c == make* ]]; then
        printf 'timeout %s %s >>"$LOG" 2>&1 || { echo "FAILED (status $?): %s"; exit 1; }\n' "$LIMIT" "$c" "$c"
        printf 'printf "%%s\\n" %q >>"%s"\n' "$c" "$passed"
      else
        printf '( timeout %s %s ) >>"$LOG" 2>&1; s=$?; if [ $s -ge 124 ]; then echo "FAILED (status $s: hung or killed): %s"; exit 1; fi\n' "$LIMIT" "$c" "$c"
      fi
    done
    echo 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; exit 0'
  } >"$unit.sh"
  printf 'run: %s   (%s)\n' "$(IFS='|'; echo "${cmds[*]}" | sed 's/|/ ; /g')" "$src"
  if [ -n "${DRY_RUN:-}" ]; then continue; fi
  t0=$SECONDS
  if ! LOG="$unit.log" bash "$unit.sh"; then
    tail -n 20 "$unit.log"; status=1
  fi
  echo "     took $((SECONDS - t0)) s"
  rm -f /dev/shm/queue /dev/shm/spmc_test_queue /dev/shm/mine 2>/dev/null
  ran=$((ran + 1))
done
echo "check_commands: $ran command groups run, $skipped covered by other CI steps"
exit $status
