# 'comm_share_fashion_mlp (mlp2, fashion-mnist): test error vs batch size'
# Written by normlab report; `gnuplot comm_share_fashion_mlp_test_error.gp` in this folder redraws comm_share_fashion_mlp_test_error.svg and comm_share_fashion_mlp_test_error.png.
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
  set output "comm_share_fashion_mlp_test_error." . fmt
  set multiplot layout 1,1 title 'comm_share_fashion_mlp (mlp2, fashion-mnist): test error vs batch size'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'all cells (diverged cells left out)'
  set xlabel 'batch size B (log2 scale)'
  set ylabel 'test error (%)'
  set logscale x 2
  set xrange [10.4:1.538461538]
  set xtics (2, 8)
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [*:*]
  plot 'comm_share_fashion_mlp_test_error.dat' index 0 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'sync_batch R=2'
  unset multiplot
  unset output
}
