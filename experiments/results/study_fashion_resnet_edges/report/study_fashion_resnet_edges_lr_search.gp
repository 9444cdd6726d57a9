# 'learning-rate search: validation error'
# Written by normlab report; `gnuplot study_fashion_resnet_edges_lr_search.gp` in this folder redraws study_fashion_resnet_edges_lr_search.svg and study_fashion_resnet_edges_lr_search.png.
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
  set output "study_fashion_resnet_edges_lr_search." . fmt
  set multiplot layout 1,1 title 'learning-rate search: validation error'
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
  plot 'study_fashion_resnet_edges_lr_search.dat' index 0 using 1:2 with linespoints lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'batch', \
       'study_fashion_resnet_edges_lr_search.dat' index 1 using 1:2 with linespoints lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'group', \
       'study_fashion_resnet_edges_lr_search.dat' index 2 using 1:2 with linespoints lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'batch frozen=true'
  unset multiplot
  unset output
}
