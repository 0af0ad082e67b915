# gnuplot engine-cycles-2026-12-01.gp > engine-cycles-2026-12-01.svg
set terminal svg size 900,420 font "sans,11" background rgb "white"
set title "moat engine, cycles per packet per path (lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "TSC cycles / packet"
set yrange [0:*]
set xtics rotate by -30 scale 0
set key top right
set grid ytics
plot "engine-cycles-2026-12-01.dat" using 2:xtic(1) title "before (93eff06, 2026-11-30)" lc rgb "#9aa5b1", \
     "" using 3 title "after (2026-12-01)" lc rgb "#1f6feb"
