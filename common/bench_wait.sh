#!/usr/bin/env bash
# bench_wait.sh - the "waiting" table: what a reader costs while it waits,
# and how soon a message wakes it, for each day from day 6 on beside a pipe
# and a POSIX message queue, measured in the same run.
#
#   BUILD=build common/bench_wait.sh [--full-speed] day6 day7
#
# Arguments: the days that have a $BUILD/dayN/waitbench (common/waitbench.c
# built against that day's queue); the first is the reference of the
# ratios ("vs day6"). The pipe and mq rows use the last day's binary (they
# do not touch its queue). With --full-speed (what `make day7 bench` adds),
# first the throughput rows of each day (broadcast x1, share x1) with the
# futex calls each run made.
#
# Knobs (environment): IDLE_SECONDS=3, IDLE_ROUNDS=1 (an idle reader costs
#   the same every time: one round is enough, and each takes IDLE_SECONDS
#   per row), WAKE_COUNT=300 and WAKE_GAP_US=2000 (the writer's sleep before
#   each message), WAKE_ROUNDS=3, ROUNDS=5 and MESSAGES=2097152 (full
#   speed); BENCH_SMOKE=1: one small round of everything, the CI smoke run.
#
# Method, as in bench.sh: each round runs every row once, in order (a row's
# runs are never back to back); medians over the rounds; every ratio divides
# two medians of the same rounds. A run that exits non-zero fails the
# script.
set -u

BUILD=${BUILD:-build}
# median, c2c, num and ratio, shared with the other benchmark scripts.
. "$(dirname "$0")/bench_lib.sh"
full_speed=0
if [ "${1:-}" = --full-speed ]; then
    full_speed=1
    shift
fi
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
    IDLE_SECONDS=${IDLE_SECONDS:-1} WAKE_COUNT=${WAKE_COUNT:-20} WAKE_ROUNDS=${WAKE_ROUNDS:-1}
    ROUNDS=${ROUNDS:-1} MESSAGES=${MESSAGES:-20000}
fi
IDLE_SECONDS=${IDLE_SECONDS:-3}
IDLE_ROUNDS=${IDLE_ROUNDS:-1}
WAKE_COUNT=${WAKE_COUNT:-300}
WAKE_GAP_US=${WAKE_GAP_US:-2000}
WAKE_ROUNDS=${WAKE_ROUNDS:-3}
ROUNDS=${ROUNDS:-5}
MESSAGES=${MESSAGES:-2097152}
days=("$@")
if [ ${#days[@]} -eq 0 ]; then
    echo "bench_wait.sh: name the days to compare (e.g. day6 day7)" >&2
    exit 2
fi
last=${days[${#days[@]} - 1]}
for d in "${days[@]}"; do
    for b in "$BUILD/$d/waitbench" "$BUILD/$d/benchmark"; do
        if [ ! -x "$b" ]; then
            echo "bench_wait.sh: $b is missing (run: make $d bench)" >&2
            exit 1
        fi
    done
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spmc-wait.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
failed=0

# run CMD...: run CMD (60 s at most) with its output in $out; 0 if it passed.
run() {
    if timeout 60 "$@" >"$out" 2>&1; then return 0; fi
    failed=1
    { echo "== $*: failed"; cat "$out"; } >>"$tmp/failures"
    echo "bench_wait.sh: $* FAILED" >&2
    return 1
}

# csv KIND: the last line of $out that starts with KIND, (empty if none).
csv() {
    grep "^$1," "$out" | tail -n 1
}


# The rows: a label, a program and its --via.
ROW=() BIN=() VIA=()
for d in "${days[@]}"; do
    ROW+=("$d queue") BIN+=("$BUILD/$d/waitbench") VIA+=(queue)
done
ROW+=(pipe) BIN+=("$BUILD/$last/waitbench") VIA+=(pipe)
ROW+=(mq) BIN+=("$BUILD/$last/waitbench") VIA+=(mq)

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
echo "== waiting: ${days[*]} beside a pipe and a POSIX mq"
echo "CPU:       ${cpu:-unknown} ($(nproc) CPUs); c2c now $(c2c) ns"

# ---------------------------------------------------------------------------
# Full speed (--full-speed): throughput, and the futex calls it made.
# ---------------------------------------------------------------------------
if [ $full_speed = 1 ]; then
    declare -A RATE FPROD FCONS
    FS_ROW=()
    for d in "${days[@]}"; do
        for f in broadcast share; do FS_ROW+=("$d $f"); done
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        for i in "${!FS_ROW[@]}"; do
            read -r d f <<<"${FS_ROW[i]}"
            run "$BUILD/$d/benchmark" --mode process --fanout "$f" --messages "$MESSAGES" \
                --csv --runs 1 || continue
            RATE[$i,$r]=$(awk -F, 'NF == 10 && $9 ~ /^[0-9.]+$/ { v = $9 } END { print v }' "$out")
            line=$(grep '^# futex,' "$out" | tail -n 1)
            if [ -n "$line" ]; then
                IFS=, read -r _ FPROD[$i,$r] FCONS[$i,$r] <<<"$line"
            fi
        done
        echo "bench_wait: full-speed round $r/$ROUNDS done" >&2
    done
    echo
    echo "Full speed: --mode process, 64-byte messages, capacity 1024, $MESSAGES per run," \
        "medians of $ROUNDS rounds"
    printf '%-22s %9s %8s %22s\n' row "M msgs/s" "vs ${days[0]}" "futex calls (w / r)"
    declare -A REF
    for i in "${!FS_ROW[@]}"; do
        read -r d f <<<"${FS_ROW[i]}"
        med=$(for ((r = 1; r <= ROUNDS; r++)); do echo "${RATE[$i,$r]:-nan}"; done | median)
        [ "$d" = "${days[0]}" ] && REF[$f]=$med
        calls=-
        if [ -n "${FPROD[$i,1]:-}" ]; then
            calls="$(for ((r = 1; r <= ROUNDS; r++)); do echo "${FPROD[$i,$r]:-nan}"; done |
                median | awk '{ printf "%.0f", $1 }') / $(for ((r = 1; r <= ROUNDS; r++)); do
                echo "${FCONS[$i,$r]:-nan}"; done | median | awk '{ printf "%.0f", $1 }')"
        fi
        printf '%-22s %9s %8s %22s\n' "$d $f x1" "$(num "$med" 1e6 %.2f)" \
            "$(ratio "$med" "${REF[$f]:-nan}")" "$calls"
    done
    echo "  (futex calls: the producer's, then the consumer's, sleeps plus wakes in one run"
    echo "   of $MESSAGES messages: system calls left on the fast path, medians)"
fi

# ---------------------------------------------------------------------------
# Idle: a reader blocked on an empty channel.
# ---------------------------------------------------------------------------
declare -A CPU_S VOL INVOL
for ((r = 1; r <= IDLE_ROUNDS; r++)); do
    for i in "${!ROW[@]}"; do
        [ "${VIA[i]}" = mq ] && continue # the same kernel sleep as a pipe's
        run "${BIN[i]}" --what idle --via "${VIA[i]}" --seconds "$IDLE_SECONDS" || continue
        IFS=, read -r _ _ _ _ CPU_S[$i,$r] VOL[$i,$r] INVOL[$i,$r] <<<"$(csv idle)"
    done
done
echo
echo "Idle: one reader blocked ${IDLE_SECONDS} s on an empty channel (getrusage of its" \
    "process), medians of $IDLE_ROUNDS round(s)"
printf '%-14s %10s %11s %11s %12s\n' row "CPU s" "wake-ups" "preempted" "CPU vs ${days[0]}"
cpu_ref=nan
for i in "${!ROW[@]}"; do
    [ "${VIA[i]}" = mq ] && continue
    med() { local -n a=$1; for ((r = 1; r <= IDLE_ROUNDS; r++)); do echo "${a[$i,$r]:-nan}"; done | median; }
    c=$(med CPU_S)
    [ $i = 0 ] && cpu_ref=$c
    printf '%-14s %10s %11s %11s %12s\n' "${ROW[i]}" "$(num "$c" 1 %.4f)" \
        "$(num "$(med VOL)" 1 %.0f)" "$(num "$(med INVOL)" 1 %.0f)" "$(ratio "$c" "$cpu_ref")"
done
echo "  (wake-ups: voluntary context switches, each a return from sleep; preempted:"
echo "   involuntary ones)"

# ---------------------------------------------------------------------------
# Wake-up latency: the writer sleeps, then sends one message with its clock.
# ---------------------------------------------------------------------------
declare -A P50 P99
for ((r = 1; r <= WAKE_ROUNDS; r++)); do
    for i in "${!ROW[@]}"; do
        run "${BIN[i]}" --what wakeup --via "${VIA[i]}" --count "$WAKE_COUNT" \
            --gap-us "$WAKE_GAP_US" || continue
        IFS=, read -r _ _ _ _ P50[$i,$r] P99[$i,$r] <<<"$(csv wakeup)"
    done
    echo "bench_wait: wake-up round $r/$WAKE_ROUNDS done" >&2
done
echo
echo "Wake-up: the writer sleeps $WAKE_GAP_US us, then sends one message carrying its clock;" \
    "delay to the reader, $WAKE_COUNT per run, medians of $WAKE_ROUNDS rounds"
printf '%-14s %10s %10s %12s\n' row "p50 us" "p99 us" "p50 vs pipe"
pipe_p50=nan
for i in "${!ROW[@]}"; do
    if [ "${VIA[i]}" = pipe ]; then
        pipe_p50=$(for ((r = 1; r <= WAKE_ROUNDS; r++)); do echo "${P50[$i,$r]:-nan}"; done | median)
    fi
done
for i in "${!ROW[@]}"; do
    p50=$(for ((r = 1; r <= WAKE_ROUNDS; r++)); do echo "${P50[$i,$r]:-nan}"; done | median)
    p99=$(for ((r = 1; r <= WAKE_ROUNDS; r++)); do echo "${P99[$i,$r]:-nan}"; done | median)
    printf '%-14s %10s %10s %12s\n' "${ROW[i]}" "$(num "$p50" 1e3 %.1f)" "$(num "$p99" 1e3 %.1f)" \
        "$(ratio "$p50" "$pipe_p50")"
done

finish_runs "$failed" "$tmp/failures"
