# 'study_fashion_resnet_edges (resnet8_w8, fashion-mnist): training loss'
# Written by normlab report; `gnuplot study_fashion_resnet_edges_train_loss.gp` in this folder redraws study_fashion_resnet_edges_train_loss.svg and study_fashion_resnet_edges_train_loss.png.
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
  set output "study_fashion_resnet_edges_train_loss." . fmt
  set multiplot layout 1,1 title 'study_fashion_resnet_edges (resnet8_w8, fashion-mnist): training loss'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'B = 2'
  set xlabel 'epoch'
  set ylabel 'train loss (log scale)'
  set xrange [*:*]
  set xtics autofreq
  set logscale y
  set autoscale yfix
  set offsets 0, 0, graph 0.05, graph 0.05
  set ytics (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100)
  set yrange [*:*]
  plot 'study_fashion_resnet_edges_train_loss.dat' index 0 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'batch', \
       'study_fashion_resnet_edges_train_loss.dat' index 1 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'group', \
       'study_fashion_resnet_edges_train_loss.dat' index 2 using 1:2 with lines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'batch frozen=true'
  unset multiplot
  unset output
}
