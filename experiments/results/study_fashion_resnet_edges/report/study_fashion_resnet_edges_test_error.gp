# 'study_fashion_resnet_edges (resnet8_w8, fashion-mnist): test error vs batch size'
# Written by normlab report; `gnuplot study_fashion_resnet_edges_test_error.gp` in this folder redraws study_fashion_resnet_edges_test_error.svg and study_fashion_resnet_edges_test_error.png.
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
  set output "study_fashion_resnet_edges_test_error." . fmt
  set multiplot layout 1,1 title 'study_fashion_resnet_edges (resnet8_w8, fashion-mnist): test error vs batch size'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'all cells (mean over seeds, bars: 95% CI; diverged seeds left out)'
  set xlabel 'batch size B (log2 scale)'
  set ylabel 'test error (%)'
  set logscale x 2
  set xrange [2.6:1.538461538]
  set xtics (2)
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [0:100]
  plot 'study_fashion_resnet_edges_test_error.dat' index 0 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'batch', \
       'study_fashion_resnet_edges_test_error.dat' index 1 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'group', \
       'study_fashion_resnet_edges_test_error.dat' index 2 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'batch frozen=true'
  unset multiplot
  unset output
}
