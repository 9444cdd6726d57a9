# 'train-mode vs eval-mode output: fresh mlp2 (seed 0)'
# Written by normlab report; `gnuplot remedies_fashion_mlp_probe_gap.gp` in this folder redraws remedies_fashion_mlp_probe_gap.svg and remedies_fashion_mlp_probe_gap.png.
set encoding utf8
do for [fmt in "svg png"] {
  if (fmt eq "svg") {
    set terminal svg size 1000,540 dynamic noenhanced font "sans,13" background rgb "white"
  } else {
    if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
      set terminal pngcairo size 1000,540 noenhanced font "sans,11"
    } else {
      set terminal png size 1000,540 noenhanced
    }
  }
  set output "remedies_fashion_mlp_probe_gap." . fmt
  set multiplot layout 1,1 title 'train-mode vs eval-mode output: fresh mlp2 (seed 0)'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title '‖y_train − y_eval‖ / ‖y_eval‖ per layer, eval with the population statistics'
  set xlabel 'batch size B (log2 scale)'
  set ylabel 'relative L2 gap (log scale)'
  set logscale x 2
  set xrange [83.2:1.538461538]
  set xtics (2, 4, 8, 16, 32, 64)
  set logscale y
  set autoscale yfix
  set offsets 0, 0, graph 0.05, graph 0.05
  set ytics (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100)
  set yrange [*:*]
  plot 'remedies_fashion_mlp_probe_gap.dat' index 0 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'batch · layer 1', \
       'remedies_fashion_mlp_probe_gap.dat' index 1 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch · layer 2', \
       'remedies_fashion_mlp_probe_gap.dat' index 2 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'batch_renorm · layer 1', \
       'remedies_fashion_mlp_probe_gap.dat' index 3 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch_renorm · layer 2', \
       'remedies_fashion_mlp_probe_gap.dat' index 4 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'ghost V=4 · layer 1', \
       'remedies_fashion_mlp_probe_gap.dat' index 5 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'ghost V=4 · layer 2'
  unset multiplot
  unset output
}
