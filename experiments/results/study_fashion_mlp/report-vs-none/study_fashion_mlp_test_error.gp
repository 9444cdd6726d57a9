# 'study_fashion_mlp (mlp2, fashion-mnist): test error vs batch size'
# Written by normlab report; `gnuplot study_fashion_mlp_test_error.gp` in this folder redraws study_fashion_mlp_test_error.svg and study_fashion_mlp_test_error.png.
set encoding utf8
do for [fmt in "svg png"] {
  if (fmt eq "svg") {
    set terminal svg size 1500,540 dynamic noenhanced font "sans,13" background rgb "white"
  } else {
    if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
      set terminal pngcairo size 1500,540 noenhanced font "sans,11"
    } else {
      set terminal png size 1500,540 noenhanced
    }
  }
  set output "study_fashion_mlp_test_error." . fmt
  set multiplot layout 1,2 title 'study_fashion_mlp (mlp2, fashion-mnist): test error vs batch size'
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
  set xrange [83.2:1.538461538]
  set xtics (2, 4, 8, 16, 64)
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [0:100]
  plot 'study_fashion_mlp_test_error.dat' index 0 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_test_error.dat' index 1 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_test_error.dat' index 2 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_test_error.dat' index 3 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_test_error.dat' index 4 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_test_error.dat' index 5 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_test_error.dat' index 6 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_test_error.dat' index 7 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#17becf' title 'ghost V=4', \
       'study_fashion_mlp_test_error.dat' index 8 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_test_error.dat' index 9 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_test_error.dat' index 10 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_test_error.dat' index 11 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_test_error.dat' index 12 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_test_error.dat' index 13 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'zoom: error up to 22%'
  set xlabel 'batch size B (log2 scale)'
  set ylabel 'test error (%)'
  set logscale x 2
  set xrange [83.2:1.538461538]
  set xtics (2, 4, 8, 16, 64)
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [9:22]
  plot 'study_fashion_mlp_test_error.dat' index 14 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_test_error.dat' index 15 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_test_error.dat' index 16 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_test_error.dat' index 17 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_test_error.dat' index 18 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_test_error.dat' index 19 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_test_error.dat' index 20 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_test_error.dat' index 21 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#17becf' title 'ghost V=4', \
       'study_fashion_mlp_test_error.dat' index 22 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_test_error.dat' index 23 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_test_error.dat' index 24 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_test_error.dat' index 25 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_test_error.dat' index 26 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_test_error.dat' index 27 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset multiplot
  unset output
}
