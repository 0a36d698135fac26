#!/usr/bin/env bash
# bench_knobs.sh - what `make day4 bench` runs: day 3, day 4 with one of its
# two changes undone, and day 4, in one table, to show which change matters
# on this machine.
#
#   BUILD=build CC=cc CFLAGS_SHOWN="-O2 -g" common/bench_knobs.sh
#
# The four programs (the Makefile builds them):
#   day 3                   $BUILD/day3/benchmark
#   day 4 orders only       $BUILD/day4/benchmark-orders  (-DSPMC_ALIGN=0)
#   day 4 alignment only    $BUILD/day4/benchmark-align   (-DSPMC_SEQ_CST=1)
#   day 4                   $BUILD/day4/benchmark
# Knobs (environment): ROUNDS=7 MESSAGES=2097152 SIZE=64 CAPACITY=1024,
#   RUN_TIMEOUT=60 (seconds per run, 0: none); BENCH_SMOKE=1: one small
#   round that only proves every row runs and passes its message checks.
#
# Method, as in bench.sh: each round runs every row once (A B C D A B C D:
# a row's runs are never back to back), between two measurements of the
# core-to-core round trip ($BUILD/common/c2c, median of 3). A round whose
# two c2c figures differ by more than 30% is unstable; the medians use the
# largest set of at least 3 stable rounds at one c2c level (pick_rounds, in
# bench_lib.sh). Each ratio divides a median by
# day 3's median of the same mode and the same rounds. A run that exits
# non-zero (a message check failed) fails the script.
set -u

BUILD=${BUILD:-build}
# median, c2c and stable, shared with the other benchmark script.
. "$(dirname "$0")/bench_lib.sh"
CC=${CC:-cc}
CFLAGS_SHOWN=${CFLAGS_SHOWN:--O2 -g}
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
    MESSAGES=${MESSAGES:-20000} ROUNDS=${ROUNDS:-1}
fi
ROUNDS=${ROUNDS:-7}
MESSAGES=${MESSAGES:-2097152}
SIZE=${SIZE:-64}
CAPACITY=${CAPACITY:-1024}
RUN_TIMEOUT=${RUN_TIMEOUT:-60}

NAMES=("day 3 (seq_cst, packed)" "day 4 orders only" "day 4 alignment only" "day 4")
BINS=("$BUILD/day3/benchmark" "$BUILD/day4/benchmark-orders"
      "$BUILD/day4/benchmark-align" "$BUILD/day4/benchmark")
MODES=(process thread)

for b in "${BINS[@]}" "$BUILD/common/c2c"; do
    if [ ! -x "$b" ]; then
        echo "bench_knobs.sh: $b is missing (run: make day4 bench)" >&2
        exit 1
    fi
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spmc-knobs.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out # output of the last run
failed=0

# run CMD...: see bench_lib.sh.




cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
ncpu=$(awk '/^processor/ { n++ } END { print n + 0 }' /proc/cpuinfo 2>/dev/null)

# ---------------------------------------------------------------------------
# Rounds: every mode and variant once per round; MSGS[mode,variant,round].
# ---------------------------------------------------------------------------
declare -A MSGS
C2C=() STABLE=()
for ((r = 1; r <= ROUNDS; r++)); do
    start=$SECONDS
    before=$(c2c)
    for m in "${MODES[@]}"; do
        for v in "${!NAMES[@]}"; do
            label="${NAMES[v]} ($m), round $r"
            run "${BINS[v]}" --mode "$m" --messages "$MESSAGES" --size "$SIZE" \
                --capacity "$CAPACITY" --csv --runs 1
            status=$?
            # day,mode,fanout,consumers,msg_size,capacity,messages,seconds,msgs_per_s,mib_per_s
            line=$(awk -F, 'NF == 10 && $9 ~ /^[0-9.]+$/ { l = $0 } END { print l }' "$out")
            if [ $status -ne 0 ] || [ -z "$line" ]; then
                failed=1
                echo "bench_knobs.sh: $label FAILED (exit status $status)" >&2
                { echo "== $label: exit status $status"; cat "$out"; } >>"$tmp/failures"
                continue
            fi
            IFS=, read -r _ _ _ _ _ _ _ _ msgs _ <<<"$line"
            MSGS[$m,$v,$r]=$msgs
        done
    done
    after=$(c2c)
    C2C+=("$before" "$after")
    C2C_BEFORE[r]=$before C2C_AFTER[r]=$after
    if stable "$before" "$after"; then STABLE[r]=stable; else STABLE[r]=unstable; fi
    echo "bench: round $r/$ROUNDS: c2c $before -> $after ns (${STABLE[r]})," \
        "$((SECONDS - start)) s" >&2
done

pick_rounds # (used, basis: see bench_lib.sh)

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
echo "== make day4 bench: which of day 4's two changes matters on this machine"
echo "CPU:       ${cpu:-unknown} ($ncpu CPUs), c2c $(printf '%s\n' "${C2C[@]}" | median |
    awk '{ print ($1 == "nan" ? "unknown" : sprintf("%.0f ns", $1)) }') (median of the rounds)"
echo "Compiler:  $($CC --version 2>/dev/null | head -n 1), flags $CFLAGS_SHOWN;" \
    "orders only: -DSPMC_ALIGN=0, alignment only: -DSPMC_SEQ_CST=1"
echo "Messages:  $SIZE bytes, capacity $CAPACITY, $MESSAGES per run; $basis"
for m in "${MODES[@]}"; do
    echo
    printf '%-28s %-8s %-24s %s\n' variant mode "M msgs/s (median of ${#used[@]})" "x day 3"
    ref=nan
    for v in "${!NAMES[@]}"; do
        med=$(for r in "${used[@]}"; do echo "${MSGS[$m,$v,$r]:-nan}"; done | median)
        [ "$v" = 0 ] && ref=$med
        printf '%-28s %-8s %-24s %s\n' "${NAMES[v]}" "$m" \
            "$(num "$med" 1e6 %.2f)" "$(ratio "$med" "$ref")"
    done
done

finish_runs "$failed" "$tmp/failures"
