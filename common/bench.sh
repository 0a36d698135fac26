#!/usr/bin/env bash
# bench.sh - what `make bench` runs: every day's benchmark next to the
# "ceiling" ring and the kernel channels a user would pick instead, in one
# table of medians.
#
#   BUILD=build CC=cc CFLAGS_SHOWN="-O2 -g" common/bench.sh day3 day4 day5
#
# Arguments: the days that have a $BUILD/dayN/benchmark. Knobs (environment):
#   ROUNDS=9 MESSAGES=2097152 SIZE=64 CAPACITY=1024 LAT_COUNT=100000
#   LAT_ROUNDS=3, MQ_MESSAGES=MESSAGES/8 (a POSIX message queue moves only
#   ~0.2 M msgs/s between two CPUs), RUN_TIMEOUT=300 (seconds per run, 0: none)
#   BENCH_SMOKE=1: one small round that only proves every row runs and passes
#   its message checks (the CI smoke run).
#
# Method. The machines are small shared VMs. Ours has two CPUs that are
# sometimes "near" (a cache line goes there and back in ~63 ns) and sometimes
# "far" (~300 ns), and every shared-memory figure drops about 3x when far.
# So each round runs every row once, in order (A B C ... A B C: a row's runs
# are never back to back), between two measurements of that round trip
# (build/common/c2c, median of 3). A round whose c2c figures differ by >30%
# is unstable. The medians use the largest set of stable rounds at one c2c
# level (within 30% of each other) when it holds at least 3 rounds
# (pick_rounds, in bench_lib.sh): a stable round at another level is left out.
# "vs ceiling" pairs each run with the ceiling: every row's run comes between
# two ceiling runs (C R1 C R2 C ...), and its ratio is its figure over the
# mean of those two; the column is the median of a row's ratios over the
# rounds used. The guest's speed can change within a round (the ceiling
# moved 47 -> 90 M msgs/s between two rounds of one run), so a ratio of the
# rows' medians compared runs up to a round apart; a paired run is a few
# hundred milliseconds away. The ceiling's own row is its first run of the
# round. Every run, with its pair, is in $BUILD/bench/rounds.csv.
# A run that exits non-zero (a message check failed) fails the script.
#
# shellcheck disable=SC2034 # MSGS, CONS, P50... are read through series()
set -u

BUILD=${BUILD:-build}
# median, c2c, stable, num and ratio, shared with the other benchmark scripts.
. "$(dirname "$0")/bench_lib.sh"
CC=${CC:-cc}
CFLAGS_SHOWN=${CFLAGS_SHOWN:--O2 -g}
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
    MESSAGES=${MESSAGES:-20000} ROUNDS=${ROUNDS:-1}
    LAT_COUNT=${LAT_COUNT:-2000} LAT_ROUNDS=${LAT_ROUNDS:-1}
fi
ROUNDS=${ROUNDS:-9}
MESSAGES=${MESSAGES:-2097152}
SIZE=${SIZE:-64}
CAPACITY=${CAPACITY:-1024}
LAT_COUNT=${LAT_COUNT:-100000}
LAT_ROUNDS=${LAT_ROUNDS:-3}
MQ_MESSAGES=${MQ_MESSAGES:-$((MESSAGES / 8 > 0 ? MESSAGES / 8 : 1))}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
days=("$@")

for tool in c2c ceiling baseline; do
    if [ ! -x "$BUILD/common/$tool" ]; then
        echo "bench.sh: $BUILD/common/$tool is missing (run: make tools)" >&2
        exit 1
    fi
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spmc-bench.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out # output of the last run
failed=0

# ---------------------------------------------------------------------------
# Helpers: running one program, statistics, formatting.
# ---------------------------------------------------------------------------

# run CMD...: see bench_lib.sh.

# fail LABEL STATUS: remember that a run failed; its output is shown at the end.
fail() {
    failed=1
    echo "bench.sh: $1 FAILED (exit status $2)" >&2
    { echo "== $1: exit status $2"; cat "$out"; } >>"$tmp/failures"
}


# series ARRAY KEY ROUNDS...: the values ARRAY[KEY,round] that exist, one a line.
series() {
    local -n arr=$1
    local key=$2 r
    shift 2
    for r in "$@"; do
        if [ -n "${arr[$key,$r]:-}" ]; then echo "${arr[$key,$r]}"; fi
    done
}




# ---------------------------------------------------------------------------
# The rows of the table: a name, a mode, a program and its options.
# ---------------------------------------------------------------------------
ROW_NAME=() ROW_MODE=() ROW_BIN=() ROW_ARGS=()
# add_row NAME MODE PROGRAM "OPTIONS" (options: words without spaces)
add_row() {
    ROW_NAME+=("$1") ROW_MODE+=("$2") ROW_BIN+=("$3") ROW_ARGS+=("$4")
}
opts="--size $SIZE --capacity $CAPACITY --csv --runs 1"

add_row ceiling process "$BUILD/common/ceiling" "--mode process --messages $MESSAGES $opts"
# The same ring storing head after every message, as a queue's writer must (it
# cannot know which push is the last of a burst), its reader looking at head
# whenever it has caught up: what publishing at once costs when nothing else
# is done about it (the days' readers pace their looks: day5/README.md).
add_row "ceiling at once" process "$BUILD/common/ceiling" \
    "--mode process --publish-every 1 --messages $MESSAGES $opts"
for d in "${days[@]}"; do
    b=$BUILD/$d/benchmark
    if [ ! -x "$b" ]; then
        echo "bench.sh: $b is missing (run: make $d)" >&2
        exit 1
    fi
    if "$b" --help 2>/dev/null | grep -q -- --fanout; then
        # The first fan-out day gets all four rows; later days (which add
        # robustness, not fan-out) the two that show their hot-path cost.
        fanout_rows=("broadcast 1" "share 1" "share 3" "broadcast 2")
        [ -n "${first_fanout:-}" ] && fanout_rows=("broadcast 1" "share 1")
        first_fanout=${first_fanout:-$d}
        for f in "${fanout_rows[@]}"; do
            read -r fanout k <<<"$f"
            add_row "$d $fanout x$k" process "$b" \
                "--mode process --fanout $fanout --consumers $k --messages $MESSAGES $opts"
        done
    else
        add_row "$d" process "$b" "--mode process --messages $MESSAGES $opts"
    fi
    case $d in # days 3 and 4 are also measured with two threads of one process
    day3 | day4) add_row "$d" thread "$b" "--mode thread --messages $MESSAGES $opts" ;;
    esac
done
for k in pipe socket; do
    add_row $k process "$BUILD/common/baseline" "--kind $k --mode process --messages $MESSAGES $opts"
done
add_row mq process "$BUILD/common/baseline" "--kind mq --mode process --messages $MQ_MESSAGES $opts"

# ---------------------------------------------------------------------------
# Heading.
# ---------------------------------------------------------------------------
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
ncpu=$(awk '/^processor/ { n++ } END { print n + 0 }' /proc/cpuinfo 2>/dev/null)
echo "== make bench: the days' queues, the ceiling ring and the kernel channels"
echo "CPU:       ${cpu:-unknown} ($ncpu CPUs)"
echo "Compiler:  $($CC --version 2>/dev/null | head -n 1), flags $CFLAGS_SHOWN"
echo "Messages:  $SIZE bytes, capacity $CAPACITY, $MESSAGES per run" \
    "(mq: $MQ_MESSAGES), rounds: $ROUNDS"

# ---------------------------------------------------------------------------
# Throughput rounds.
# ---------------------------------------------------------------------------
declare -A MSGS MIB CONS # [row,round] and, per consumer, [row,consumer,round]
declare -A FUTW FUTR     # [row,round]: day 7 on, the futex calls of the writer, of the readers
declare -A PAIRC         # [row,round]: the ceiling run just before that row's run
# pair_run ROW ROUND: a ceiling run into PAIRC[ROW,ROUND] (see "Method").
pair_run() {
    # shellcheck disable=SC2086 # the options are split into words on purpose
    run "${ROW_BIN[0]}" ${ROW_ARGS[0]}
    local status=$?
    if [ $status -ne 0 ]; then
        fail "ceiling (paired with row $1), round $2" $status
        return
    fi
    local line
    line=$(awk -F, 'NF == 10 && $9 ~ /^[0-9.]+$/ { l = $0 } END { print l }' "$out")
    IFS=, read -r _ _ _ _ _ _ _ _ PAIRC[$1,$2] _ <<<"$line"
}
# round_ratios ROW ROUNDS...: ROW's runs each against the mean of the
# ceiling runs just before and just after it, a ratio a line.
round_ratios() {
    local i=$1 r
    shift
    for r in "$@"; do
        [ -n "${MSGS[$i,$r]:-}" ] && [ -n "${PAIRC[$i,$r]:-}" ] &&
            [ -n "${PAIRC[$((i + 1)),$r]:-}" ] || continue
        awk -v x="${MSGS[$i,$r]}" -v a="${PAIRC[$i,$r]}" -v b="${PAIRC[$((i + 1)),$r]}" \
            'BEGIN { printf "%.6f\n", x / ((a + b) / 2) }'
    done
}
# vs_ceiling ROW ROUNDS...: the median of those ratios.
vs_ceiling() {
    round_ratios "$@" | median
}
NCONS=()                 # [row]: consumers that reported their own rate
C2C_BEFORE=() C2C_AFTER=() STABLE=()
for ((r = 1; r <= ROUNDS; r++)); do
    start=$SECONDS
    before=$(c2c)
    for i in "${!ROW_NAME[@]}"; do
        # The paired ceiling run just before this row (after row 0, which
        # is the ceiling's own run).
        if [ "$i" -gt 0 ]; then pair_run "$i" "$r"; fi
        label="${ROW_NAME[i]} (${ROW_MODE[i]}), round $r"
        # shellcheck disable=SC2086 # the options are split into words on purpose
        run "${ROW_BIN[i]}" ${ROW_ARGS[i]}
        status=$?
        if [ $status -ne 0 ]; then
            fail "$label" $status
            continue
        fi
        # The run's line: day,mode,fanout,consumers,msg_size,capacity,
        # messages,seconds,msgs_per_s,mib_per_s.
        line=$(awk -F, 'NF == 10 && $9 ~ /^[0-9.]+$/ { l = $0 } END { print l }' "$out")
        if [ -z "$line" ]; then
            fail "$label: no CSV line" 0
            continue
        fi
        IFS=, read -r _ _ _ _ _ _ _ _ msgs mib <<<"$line"
        MSGS[$i,$r]=$msgs MIB[$i,$r]=$mib
        # A fan-out run may add one line per consumer: "# consumer,K,MSGS_PER_S".
        while IFS=, read -r _ k rate; do
            CONS[$i,$k,$r]=$rate
            if [ "$k" -ge "${NCONS[i]:-0}" ]; then NCONS[i]=$((k + 1)); fi
        done < <(grep '^# *consumer,[0-9][0-9]*,' "$out")
        # Day 7 on: "# futex,WRITER_CALLS,READERS_CALLS".
        line=$(grep '^# futex,' "$out" | tail -n 1)
        if [ -n "$line" ]; then IFS=, read -r _ FUTW[$i,$r] FUTR[$i,$r] <<<"$line"; fi
    done
    pair_run "${#ROW_NAME[@]}" "$r" # the one after the last row
    after=$(c2c)
    C2C_BEFORE[r]=$before C2C_AFTER[r]=$after
    if stable "$before" "$after"; then STABLE[r]=stable; else STABLE[r]=unstable; fi
    echo "bench: round $r/$ROUNDS: c2c $before -> $after ns (${STABLE[r]})," \
        "$((SECONDS - start)) s" >&2
done

# The rounds whose medians we report (used, basis).
pick_rounds

# ---------------------------------------------------------------------------
# Latency rounds: c2c, then each day's round trip.
# ---------------------------------------------------------------------------
declare -A P50 P99 P999 LC2C # [day,round]; LC2C: the c2c figure just before that run
lat_c2c=()
lat_rounds=()
for ((r = 1; r <= LAT_ROUNDS; r++)); do
    [ ${#days[@]} -gt 0 ] || break
    lat_rounds+=("$r")
    for d in "cache line" "one line" ceiling "${days[@]}"; do
        # The c2c round trip just before each row's run: the guest can
        # move between "near" and "far" within a round.
        LC2C[$d,$r]=$(c2c)
        lat_c2c+=("${LC2C[$d,$r]}")
        bin=$BUILD/$d/benchmark
        [ "$d" = ceiling ] && bin=$BUILD/common/ceiling
        if [ "$d" = "cache line" ]; then
            run "$BUILD/common/c2c" --timed
        elif [ "$d" = "one line" ]; then
            run "$BUILD/common/ceiling" --latency --in-slot --mode process --count "$LAT_COUNT" \
                --size $((SIZE < 56 ? SIZE : 56)) --capacity "$CAPACITY" --csv
        else
            run "$bin" --latency --mode process --count "$LAT_COUNT" \
                --size "$SIZE" --capacity "$CAPACITY" --csv
        fi
        status=$?
        if [ $status -ne 0 ]; then
            fail "$d latency, round $r" $status
            continue
        fi
        # latency,day,mode,size,count,p50,p99,p999,max
        line=$(awk -F, '$1 == "latency" && NF == 9 { l = $0 } END { print l }' "$out")
        if [ -z "$line" ]; then
            fail "$d latency, round $r: no latency line" 0
            continue
        fi
        IFS=, read -r _ _ _ _ _ p50 p99 p999 _ <<<"$line"
        P50[$d,$r]=$p50 P99[$d,$r]=$p99 P999[$d,$r]=$p999
    done
    echo "bench: latency round $r/$LAT_ROUNDS done" >&2
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
show_rounds

MED=() NRUNS=() VSC=()
ref_day3=nan ref_at_once=nan
for i in "${!ROW_NAME[@]}"; do
    MED[i]=$(series MSGS "$i" "${used[@]}" | median)
    NRUNS[i]=$(series MSGS "$i" "${used[@]}" | grep -c .)
    VSC[i]=1
    [ "$i" -eq 0 ] || VSC[i]=$(vs_ceiling "$i" "${used[@]}")
    if [ "${ROW_NAME[i]} ${ROW_MODE[i]}" = "day3 process" ]; then ref_day3=${MED[i]}; fi
    if [ "${ROW_NAME[i]}" = "ceiling at once" ]; then ref_at_once=${VSC[i]}; fi
done

echo
printf '%-20s %-8s %9s %9s %8s %10s %5s\n' row mode "M msgs/s" "MiB/s" \
    "vs day3" "vs ceiling" runs
for i in "${!ROW_NAME[@]}"; do
    printf '%-20s %-8s %9s %9s %8s %10s %5s\n' "${ROW_NAME[i]}" "${ROW_MODE[i]}" \
        "$(num "${MED[i]}" 1e6 %.2f)" \
        "$(num "$(series MIB "$i" "${used[@]}" | median)" 1 %.1f)" \
        "$(ratio "${MED[i]}" "$ref_day3")" "$(ratio "${VSC[i]}" 1)" \
        "${NRUNS[i]}"
done

# The one-reader rows against the ceiling that publishes at once.
line=""
for i in "${!ROW_NAME[@]}"; do
    case ${ROW_NAME[i]} in
    *" x1") line+=" ${ROW_NAME[i]% x1} $(ratio "${VSC[i]}" "$ref_at_once")," ;;
    esac
done
if [ -n "$line" ]; then
    echo "  x1 rows vs ceiling at once:${line%,}"
    echo "  (ceiling at once: the ceiling ring storing head after every message, as a queue's"
    echo "   writer must, read by a reader that looks whenever it has caught up; its \"vs"
    echo "   ceiling\" is what that costs here. The days' readers pace their looks instead)"
fi

# How far apart the rounds of one row are: a difference between two rows
# smaller than this is not one the run can show.
line=""
for i in "${!ROW_NAME[@]}"; do
    case ${ROW_NAME[i]} in
    *" x1")
        read -r lo hi < <(round_ratios "$i" "${used[@]}" | middle)
        if [ "$lo" = nan ]; then span=-; else span="$(ratio "$lo" 1 | tr -d x)-$(ratio "$hi" 1)"; fi
        line+=" ${ROW_NAME[i]% x1} $span," ;;
    esac
done
if [ -n "$line" ]; then
    echo "  x1 rows vs ceiling, spread of their rounds:${line%,}"
    echo "  (each round's ratio, the lowest and highest quarter of the rounds left out:"
    echo "   two rows whose ranges overlap are not told apart by this run)"
fi

# The medians as CSV, for `make plot` (docs/plot.gp).
mkdir -p "$BUILD/bench"
{
    echo "row,mode,msgs_per_s,mib_per_s"
    for i in "${!ROW_NAME[@]}"; do
        echo "${ROW_NAME[i]},${ROW_MODE[i]},${MED[i]},$(series MIB "$i" "${used[@]}" | median)"
    done
} >"$BUILD/bench/medians.csv"

# Every run's figure, with the paired ceiling runs before and after it, for
# a look at the spread.
{
    echo "row,mode,round,msgs_per_s,ceiling_before,ceiling_after"
    for i in "${!ROW_NAME[@]}"; do
        for ((r = 1; r <= ROUNDS; r++)); do
            [ -z "${MSGS[$i,$r]:-}" ] ||
                echo "${ROW_NAME[i]},${ROW_MODE[i]},$r,${MSGS[$i,$r]},${PAIRC[$i,$r]:-},${PAIRC[$((i + 1)),$r]:-}"
        done
    done
} >"$BUILD/bench/rounds.csv"

# The fan-out rows whose consumers reported their own rates.
for i in "${!NCONS[@]}"; do
    line="  ${ROW_NAME[i]}, each consumer (M msgs/s):"
    for ((k = 0; k < NCONS[i]; k++)); do
        line+=" #$k $(num "$(series CONS "$i,$k" "${used[@]}" | median)" 1e6 %.2f)"
    done
    echo "$line"
done
[ ${#NCONS[@]} -eq 0 ] ||
    echo "  (each consumer's own median over the rounds: in work-sharing they need not add up to the row)"
for i in "${!ROW_NAME[@]}"; do
    [ -n "$(series FUTW "$i" "${used[@]}")" ] || continue
    echo "  ${ROW_NAME[i]}: futex calls in a run of $MESSAGES messages, producer $(num \
        "$(series FUTW "$i" "${used[@]}" | median)" 1 %.0f), consumers $(num \
        "$(series FUTR "$i" "${used[@]}" | median)" 1 %.0f) (medians)"
done

# per_c2c DAY: the median over the latency rounds of DAY's p50 over the c2c
# figure measured just before that run.
per_c2c() {
    local r
    for r in "${lat_rounds[@]}"; do
        [ -n "${P50[$1,$r]:-}" ] || continue
        awk -v p="${P50[$1,$r]}" -v c="${LC2C[$1,$r]}" \
            'BEGIN { if (c != "nan" && c > 0) printf "%.6f\n", p / c }'
    done | median
}

if [ ${#days[@]} -gt 0 ]; then
    c2c_med=$(printf '%s\n' "${lat_c2c[@]}" | median)
    echo
    lat_ceiling=$(series P50 ceiling "${lat_rounds[@]}" | median)
    echo "Latency:   round trip, --mode process, $LAT_COUNT per run, medians of" \
        "$LAT_ROUNDS rounds; c2c median $(num "$c2c_med" 1 %.1f) ns" \
        "($(printf '%s\n' "${lat_c2c[@]}" | sort -n | head -n 1)-$(printf '%s\n' "${lat_c2c[@]}" | sort -n | tail -n 1))"
    echo "           p50/c2c: each run against the c2c figure measured just before it"
    printf '%-20s %9s %9s %9s %8s %12s\n' day "p50 ns" "p99 ns" "p99.9 ns" "p50/c2c" \
        "p50/ceiling"
    for d in "cache line" "one line" ceiling "${days[@]}"; do
        p50=$(series P50 "$d" "${lat_rounds[@]}" | median)
        printf '%-20s %9s %9s %9s %8s %12s\n' "$d" "$(num "$p50" 1 %.0f)" \
            "$(num "$(series P99 "$d" "${lat_rounds[@]}" | median)" 1 %.0f)" \
            "$(num "$(series P999 "$d" "${lat_rounds[@]}" | median)" 1 %.0f)" \
            "$(ratio "$(per_c2c "$d")" 1)" "$(ratio "$p50" "$lat_ceiling")"
    done
    echo "  (cache line: the c2c probe's one line, each round trip timed with the" \
        "same two clock reads as the rows below; the floor of this table)"
    echo "  (one line: a ring with no head, each message of $((SIZE < 56 ? SIZE : 56)) bytes and its" \
        "sequence word in one line: the floor of any queue that publishes in the slot)"
    echo "  (ceiling: the same head-and-slot ring publishing each message at once:" \
        "two lines each way, the floor of the days' design; c2c moves one line)"
fi

finish_runs "$failed" "$tmp/failures"
