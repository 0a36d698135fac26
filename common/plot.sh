#!/usr/bin/env bash
# plot.sh - docs/throughput.svg from the last `make bench`: one bar per row
# of its table (BUILD/bench/medians.csv), titled with this machine's CPU.
# Run by `make plot`, which runs `make bench` first if there is no table.
# Environment: BUILD (build directory).
set -euo pipefail
csv="${BUILD:-build}/bench/medians.csv"
[ -f "$csv" ] || { echo "plot: no $csv: run make bench first" >&2; exit 1; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
title="make bench, ${cpu:-unknown CPU}, $(nproc) CPUs, 64-byte messages, two processes"
gnuplot -e "infile='$csv'; machine_title='$title'" docs/plot.gp > docs/throughput.svg
echo "plot: wrote docs/throughput.svg from $csv"
