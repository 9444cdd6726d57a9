# 'learning-rate search: validation error'
# Written by normlab report; `gnuplot study_fashion_mlp_lr_search.gp` in this folder redraws study_fashion_mlp_lr_search.svg and study_fashion_mlp_lr_search.png.
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
  set output "study_fashion_mlp_lr_search." . fmt
  set multiplot layout 1,5 title 'learning-rate search: validation error'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'B=64'
  set xlabel 'log2 of the learning-rate multiplier'
  set ylabel 'validation error (%)'
  set xrange [*:*]
  set xtics autofreq
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [*:*]
  plot 'study_fashion_mlp_lr_search.dat' index 0 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_lr_search.dat' index 1 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_lr_search.dat' index 2 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_lr_search.dat' index 3 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_lr_search.dat' index 4 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_lr_search.dat' index 5 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_lr_search.dat' index 6 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_lr_search.dat' index 7 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#17becf' title 'ghost V=4', \
       'study_fashion_mlp_lr_search.dat' index 8 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_lr_search.dat' index 9 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_lr_search.dat' index 10 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_lr_search.dat' index 11 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_lr_search.dat' index 12 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_lr_search.dat' index 13 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'B=16'
  set xlabel 'log2 of the learning-rate multiplier'
  set ylabel 'validation error (%)'
  set xrange [*:*]
  set xtics autofreq
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [*:*]
  plot 'study_fashion_mlp_lr_search.dat' index 14 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_lr_search.dat' index 15 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_lr_search.dat' index 16 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_lr_search.dat' index 17 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_lr_search.dat' index 18 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_lr_search.dat' index 19 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_lr_search.dat' index 20 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_lr_search.dat' index 21 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#17becf' title 'ghost V=4', \
       'study_fashion_mlp_lr_search.dat' index 22 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_lr_search.dat' index 23 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_lr_search.dat' index 24 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_lr_search.dat' index 25 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_lr_search.dat' index 26 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_lr_search.dat' index 27 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'B=8'
  set xlabel 'log2 of the learning-rate multiplier'
  set ylabel 'validation error (%)'
  set xrange [*:*]
  set xtics autofreq
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [*:*]
  plot 'study_fashion_mlp_lr_search.dat' index 28 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_lr_search.dat' index 29 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_lr_search.dat' index 30 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_lr_search.dat' index 31 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_lr_search.dat' index 32 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_lr_search.dat' index 33 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_lr_search.dat' index 34 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_lr_search.dat' index 35 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#17becf' title 'ghost V=4', \
       'study_fashion_mlp_lr_search.dat' index 36 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_lr_search.dat' index 37 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_lr_search.dat' index 38 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_lr_search.dat' index 39 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_lr_search.dat' index 40 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_lr_search.dat' index 41 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'B=4'
  set xlabel 'log2 of the learning-rate multiplier'
  set ylabel 'validation error (%)'
  set xrange [*:*]
  set xtics autofreq
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [*:*]
  plot 'study_fashion_mlp_lr_search.dat' index 42 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_lr_search.dat' index 43 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_lr_search.dat' index 44 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_lr_search.dat' index 45 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_lr_search.dat' index 46 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_lr_search.dat' index 47 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_lr_search.dat' index 48 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_lr_search.dat' index 49 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_lr_search.dat' index 50 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_lr_search.dat' index 51 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_lr_search.dat' index 52 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_lr_search.dat' index 53 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_lr_search.dat' index 54 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'B=2'
  set xlabel 'log2 of the learning-rate multiplier'
  set ylabel 'validation error (%)'
  set xrange [*:*]
  set xtics autofreq
  set offsets 0, 0, graph 0.04, graph 0.04
  set yrange [*:*]
  plot 'study_fashion_mlp_lr_search.dat' index 55 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_lr_search.dat' index 56 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_lr_search.dat' index 57 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_lr_search.dat' index 58 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_lr_search.dat' index 59 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_lr_search.dat' index 60 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_lr_search.dat' index 61 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_lr_search.dat' index 62 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_lr_search.dat' index 63 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_lr_search.dat' index 64 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_lr_search.dat' index 65 using 1:2 with linespoints lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_lr_search.dat' index 66 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_lr_search.dat' index 67 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset multiplot
  unset output
}
