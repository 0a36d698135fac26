#!/usr/bin/env bash
# bench_records.sh - day 8's records of any length, in one table of medians:
# day 8 read in place (zero-copy), day 8's copying calls, a pipe and a
# SOCK_SEQPACKET socket pair, from a writer process to a reader process
# (build/day8/records), beside one core copying the same bytes (memcpy),
# and day 7's fixed-size queue at 64 bytes. `make bench` ends with it.
#
#   BUILD=build common/bench_records.sh
#
# Knobs (environment): ROUNDS=3; BENCH_SMOKE=1: one round of few records
# (the CI smoke run: every row runs and checks its records).
#
# Method: as bench.sh. Each round runs every row once (sizes in order,
# kinds in order: a row's runs are never back to back), between two
# measurements of the core-to-core round trip; medians over the rounds
# (only the stable ones, when at least 3 are). Every record is checked
# (length, sequence number, a checksum of every byte where the reader has
# it); a run that fails fails the script.
set -u
BUILD=${BUILD:-build}
. "$(dirname "$0")/bench_lib.sh"
ROUNDS=${ROUNDS:-3}
SCALE=1
if [ "${BENCH_SMOKE:-0}" = 1 ]; then ROUNDS=1 SCALE=64; fi
SIZES=(16 64 256 1024 4096 16384 65536 mixed)
KINDS=(zerocopy copy pipe seqpacket memcpy)

for p in "$BUILD/day8/records" "$BUILD/day7/benchmark" "$BUILD/common/c2c"; do
    if [ ! -x "$p" ]; then
        echo "bench_records.sh: $p is missing (run: make day7 day8 tools)" >&2
        exit 1
    fi
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spmc-records.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
failed=0

# records SIZE: how many records a run moves: about 128 MiB, 8192 to 2^21.
records() {
    local size=$1 n
    [ "$size" = mixed ] && size=2056 # the mean of 16..4096
    n=$((134217728 / size))
    [ $n -gt 2097152 ] && n=2097152
    [ $n -lt 8192 ] && n=8192
    echo $((n / SCALE))
}

fail() {
    failed=1
    echo "bench_records.sh: $1 FAILED (exit status $2)" >&2
    { echo "== $1: exit status $2"; cat "$out"; } >>"$tmp/failures"
}


cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
echo "== records of any length (day 8): writer and reader processes, every byte checked"
echo "CPU:       ${cpu:-unknown}; rounds: $ROUNDS; about 128 MiB of records per run"

declare -A RPS GIB D7 # [kind,size,round], [round]
C2C_BEFORE=() C2C_AFTER=() STABLE=()
for ((r = 1; r <= ROUNDS; r++)); do
    before=$(c2c)
    for size in "${SIZES[@]}"; do
        n=$(records "$size")
        for kind in "${KINDS[@]}"; do
            run "$BUILD/day8/records" --kind "$kind" --size "$size" --records "$n"
            status=$?
            if [ $status -ne 0 ]; then
                fail "$kind $size, round $r" $status
                continue
            fi
            IFS=, read -r _ _ _ _ _ rps gib < <(grep '^records,' "$out" | tail -n 1)
            RPS[$kind,$size,$r]=$rps GIB[$kind,$size,$r]=$gib
        done
        if [ "$size" = 64 ]; then # day 7's fixed-size queue, same records, same round
            run "$BUILD/day7/benchmark" --mode process --fanout broadcast --consumers 1 \
                --size 64 --capacity 4096 --messages "$n" --csv --runs 1
            status=$?
            if [ $status -ne 0 ]; then
                fail "day7 64, round $r" $status
            else
                D7[$r]=$(awk -F, 'NF == 10 && $9 ~ /^[0-9.]+$/ { l = $9 } END { print l }' "$out")
            fi
        fi
    done
    after=$(c2c)
    C2C_BEFORE[r]=$before C2C_AFTER[r]=$after
    if stable "$before" "$after"; then STABLE[r]=stable; else STABLE[r]=unstable; fi
    echo "bench_records: round $r/$ROUNDS: c2c $before -> $after ns (${STABLE[r]})" >&2
done

pick_rounds
show_rounds

# med ARRAY KIND SIZE: the median over the rounds used.
med() {
    local -n arr=$1
    local r
    for r in "${used[@]}"; do
        if [ -n "${arr[$2,$3,$r]:-}" ]; then echo "${arr[$2,$3,$r]}"; fi
    done | median
}

echo
printf '%-7s %17s %17s %17s %17s %9s %9s %10s\n' size "zero-copy" "copy" "pipe" \
    "seqpacket" memcpy "zc/pipe" "zc/memcpy"
printf '%-7s %17s %17s %17s %17s %9s %9s %10s\n' bytes "M rec/s  GiB/s" "M rec/s  GiB/s" \
    "M rec/s  GiB/s" "M rec/s  GiB/s" "GiB/s" "rec/s" "GiB/s"
mkdir -p "$BUILD/bench"
csv=$BUILD/bench/records.csv
echo "size,kind,records_per_s,gib_per_s" >"$csv"
for size in "${SIZES[@]}"; do
    line=$(printf '%-7s' "$size")
    for kind in zerocopy copy pipe seqpacket; do
        rps=$(med RPS "$kind" "$size") gib=$(med GIB "$kind" "$size")
        line+=$(printf ' %9s %7s' "$(num "$rps" 1e6 %.3f)" "$(num "$gib" 1 %.2f)")
        echo "$size,$kind,$rps,$gib" >>"$csv"
    done
    mgib=$(med GIB memcpy "$size")
    echo "$size,memcpy,$(med RPS memcpy "$size"),$mgib" >>"$csv"
    line+=$(printf ' %9s %9s %10s' "$(num "$mgib" 1 %.2f)" \
        "$(ratio "$(med RPS zerocopy "$size")" "$(med RPS pipe "$size")")" \
        "$(ratio "$(med GIB zerocopy "$size")" "$mgib")")
    echo "$line"
done
d7=$(for r in "${used[@]}"; do [ -n "${D7[$r]:-}" ] && echo "${D7[$r]}"; done | median)
zc64=$(med RPS zerocopy 64)
echo "  day 7 at 64 bytes (fixed-size messages, copied in and out), same rounds:" \
    "$(num "$d7" 1e6 %.3f) M msgs/s; day 8 zero-copy at 64 bytes: $(ratio "$zc64" "$d7") of it"
echo "  (mixed: lengths 16-4096, a fixed seed; memcpy: one core copying the same records"
echo "   between two buffers the size of the ring; rec/s and GiB/s count payload bytes)"

finish_runs "$failed" "$tmp/failures"
