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
records="${BUILD:-build}/bench/records.csv"
if [ -f "$records" ]; then # day 8's records of any length
  title="make bench, ${cpu:-unknown CPU}, records of any length, two processes"
  blocks=$(mktemp)
  for k in zerocopy copy pipe seqpacket memcpy; do # one block per channel
    awk -F, -v k="$k" '$2 == k && $1 != "mixed" { print $1, $4 }' "$records"
    printf '\n\n'
  done >"$blocks"
  gnuplot -e "infile='$blocks'; machine_title='$title'" docs/plot_records.gp > docs/records.svg
  rm -f "$blocks"
  echo "plot: wrote docs/records.svg from $records"
fi
