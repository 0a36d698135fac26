# plot.gp - the throughput chart of `make bench`, drawn by `make plot`.
# Input: build/bench/medians.csv (row,mode,msgs_per_s,mib_per_s), one line
# per row of the table; output: docs/throughput.svg.
set terminal svg size 900,520 font "sans,12" background rgb "white"
set datafile separator ","
set title machine_title noenhanced
set ylabel "million 64-byte messages per second (median)"
set style data histograms
set style fill solid 0.85 border -1
set boxwidth 0.75
set grid ytics
set xtics rotate by -35 noenhanced
set key off
set yrange [0:*]
plot infile using ($3/1e6):xtic(stringcolumn(1).(stringcolumn(2) eq "thread" ? " (thread)" : "")) \
     every ::1 linecolor rgb "#3b6ea8", \
     '' using 0:($3/1e6):(sprintf("%.1f", $3/1e6)) every ::1 with labels offset 0,0.7 notitle
