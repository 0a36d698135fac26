# shellcheck shell=bash
# bench_lib.sh - shell functions shared by bench.sh, bench_knobs.sh,
# bench_records.sh and bench_wait.sh (sourced, not run). Needs BUILD set:
# c2c runs $BUILD/common/c2c; run() writes to $out, within RUN_TIMEOUT.

# run CMD...: run CMD with its stdout and stderr in $out, for RUN_TIMEOUT
# seconds at most (0: no limit; default 300); its exit status.
run() {
    local limit=${RUN_TIMEOUT:-300}
    if [ "$limit" != 0 ] && command -v timeout >/dev/null; then
        timeout "$limit" "$@" >"$out" 2>&1
    else
        "$@" >"$out" 2>&1
    fi
}

# median: the median of the numbers on stdin, one a line ("nan" if none).
median() {
    sort -n | awk '$1 != "" && $1 != "nan" { v[++n] = $1 }
        END { if (n == 0) print "nan"
              else printf "%.6f\n", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# middle: the range of the numbers on stdin with the lowest and the highest
# quarter of them (rounded down) left out, as "low high" ("nan nan" if
# none): of 9 numbers the 3rd to the 7th, of 7 the 2nd to the 6th.
middle() {
    sort -n | awk '$1 != "" && $1 != "nan" { v[++n] = $1 }
        END { if (n == 0) { print "nan nan"; exit }
              k = int((n - 1) / 4); printf "%.6f %.6f\n", v[1 + k], v[n - k] }'
}

# c2c: the core-to-core round trip now, in ns ("nan" if unknown): the median
# of three runs of 15 ms, so that a blip of one run does not count.
c2c() {
    local line
    for _ in 1 2 3; do
        line=$("$BUILD/common/c2c" 2>/dev/null) || line=nan
        echo "${line#c2c_ns=}"
    done | median | awk '{ print ($1 == "nan" ? "nan" : sprintf("%.1f", $1)) }'
}

# stable BEFORE AFTER: true when the two c2c figures are within 30%.
stable() {
    if [ "$1" = nan ] || [ "$2" = nan ]; then return 0; fi # one CPU: no drift
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= 1.3 * b && b <= 1.3 * a) }'
}

# num X DIVISOR FORMAT: X / DIVISOR printed with FORMAT, or "-" if X is nan.
num() {
    awk -v x="$1" -v d="$2" -v f="$3" 'BEGIN {
        if (x == "nan") print "-"; else printf f "\n", x / d }'
}

# ratio A B: A / B as "1.42x" (3 decimals below 0.1), or "-" if unknown.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "nan" || b == "nan" || b + 0 == 0) print "-"
        else printf (a / b < 0.1 ? "%.3fx\n" : "%.2fx\n"), a / b }'
}

# finish_runs FAILED FILE: the scripts' last word. FAILED 1: say so, show
# the failed runs' output (collected in FILE) and exit 1; else exit 0.
finish_runs() {
    if [ "$1" = 1 ]; then
        echo
        echo "FAILED runs (their output follows):"
        cat "$2"
        exit 1
    fi
    exit 0
}

# pick_rounds: from STABLE[1..ROUNDS] ("stable" or "unstable") and the
# c2c figures C2C_BEFORE/C2C_AFTER[1..ROUNDS], set used (the rounds whose
# medians are reported) and basis (what to say of it). The vCPUs of a
# small VM jump between levels of c2c (about 30, 100 and 500 ns here), and
# every figure moves with them, so a median over rounds of two levels
# mixes two machines: used is the largest set of stable rounds whose c2c
# lies within 30% of the lowest of them (the earliest such set on a tie),
# when it holds at least 3 rounds or all of them; else every round, with a
# warning. OTHER_LEVEL[r] is set for the stable rounds left out.
pick_rounds() {
    local r s best=() set lo hi
    OTHER_LEVEL=()
    for ((r = 1; r <= ROUNDS; r++)); do
        LEVEL[r]=$(awk -v a="${C2C_BEFORE[r]:-nan}" -v b="${C2C_AFTER[r]:-nan}" \
            'BEGIN { print (a == "nan" || b == "nan") ? "nan" : (a + b) / 2 }')
    done
    for ((s = 1; s <= ROUNDS; s++)); do
        [ "${STABLE[s]}" = stable ] || continue
        set=()
        for ((r = 1; r <= ROUNDS; r++)); do
            [ "${STABLE[r]}" = stable ] || continue
            # Without c2c figures (one CPU, or a script that keeps none)
            # every stable round is one level.
            if awk -v l="${LEVEL[s]}" -v x="${LEVEL[r]}" 'BEGIN {
                exit !(l == "nan" || x == "nan" || (x >= l && x <= 1.3 * l)) }'; then
                set+=("$r")
            fi
        done
        if [ ${#set[@]} -gt ${#best[@]} ]; then best=("${set[@]}"); fi
    done
    used=("${best[@]}")
    if [ ${#used[@]} -ge 3 ] || [ ${#used[@]} -eq "$ROUNDS" ]; then
        basis="medians of the ${#used[@]} stable rounds of $ROUNDS"
        for ((r = 1; r <= ROUNDS; r++)); do
            [ "${STABLE[r]}" = stable ] || continue
            case " ${used[*]} " in *" $r "*) ;; *) OTHER_LEVEL[r]=1 ;; esac
        done
        if [ ${#OTHER_LEVEL[@]} -gt 0 ]; then
            lo=$(for r in "${used[@]}"; do echo "${C2C_BEFORE[r]}"; echo "${C2C_AFTER[r]}"; done |
                sort -n | head -n 1)
            hi=$(for r in "${used[@]}"; do echo "${C2C_BEFORE[r]}"; echo "${C2C_AFTER[r]}"; done |
                sort -n | tail -n 1)
            basis+=" at one c2c level ($lo-$hi ns)"
        fi
    else
        basis="medians of ALL $ROUNDS rounds, only ${#used[@]} stable at one c2c level (the CPUs"
        basis+=" changed state during the run: trust the ratios more than the figures)"
        OTHER_LEVEL=()
        used=()
        for ((r = 1; r <= ROUNDS; r++)); do used+=("$r"); done
    fi
}

# show_rounds: the "Rounds:" lines of a report (after pick_rounds).
show_rounds() {
    local r
    echo "Rounds:    c2c before -> after (ns); $basis"
    for ((r = 1; r <= ROUNDS; r++)); do
        echo "           $r: ${C2C_BEFORE[r]} -> ${C2C_AFTER[r]}  ${STABLE[r]}${OTHER_LEVEL[r]:+, another c2c level: left out}"
    done
}
