# plot_records.gp - the records chart of `make bench` (day 8), drawn by
# `make plot`. Input: infile, made by common/plot.sh from
# build/bench/records.csv (the medians of common/bench_records.sh): one
# block per channel, in the order of `kinds`, each line "size gib_per_s",
# blocks separated by two blank lines (the mixed sizes are left out: no
# one size). Output: docs/records.svg, GiB/s of payload against the record
# size, both on log scales.
set terminal svg size 900,520 font "sans,12" background rgb "white"
set title machine_title noenhanced
set xlabel "record size, bytes (log scale)"
set ylabel "GiB/s of payload (median; log scale)"
set logscale xy 2
set format x "%.0f"
set grid xtics ytics
set key bottom right
kinds = "zerocopy copy pipe seqpacket memcpy"
plot for [i=1:words(kinds)] infile index (i - 1) using 1:2 \
     with linespoints linewidth 2 pointtype 7 title word(kinds, i)
