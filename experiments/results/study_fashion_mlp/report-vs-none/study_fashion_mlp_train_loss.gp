# 'study_fashion_mlp (mlp2, fashion-mnist): training loss'
# Written by normlab report; `gnuplot study_fashion_mlp_train_loss.gp` in this folder redraws study_fashion_mlp_train_loss.svg and study_fashion_mlp_train_loss.png.
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
  set output "study_fashion_mlp_train_loss." . fmt
  set multiplot layout 1,2 title 'study_fashion_mlp (mlp2, fashion-mnist): training loss'
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
  plot 'study_fashion_mlp_train_loss.dat' index 0 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_train_loss.dat' index 1 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_train_loss.dat' index 2 using 1:2 with lines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_train_loss.dat' index 3 using 1:2 with lines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_train_loss.dat' index 4 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_train_loss.dat' index 5 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_train_loss.dat' index 6 using 1:2 with lines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_train_loss.dat' index 7 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_train_loss.dat' index 8 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_train_loss.dat' index 9 using 1:2 with lines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_train_loss.dat' index 10 using 1:2 with lines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_train_loss.dat' index 11 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_train_loss.dat' index 12 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'B = 64'
  set xlabel 'epoch'
  set ylabel 'train loss (log scale)'
  set xrange [*:*]
  set xtics autofreq
  set logscale y
  set autoscale yfix
  set offsets 0, 0, graph 0.05, graph 0.05
  set ytics (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100)
  set yrange [*:*]
  plot 'study_fashion_mlp_train_loss.dat' index 13 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'none', \
       'study_fashion_mlp_train_loss.dat' index 14 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch', \
       'study_fashion_mlp_train_loss.dat' index 15 using 1:2 with lines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'layer', \
       'study_fashion_mlp_train_loss.dat' index 16 using 1:2 with lines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'group', \
       'study_fashion_mlp_train_loss.dat' index 17 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'rms', \
       'study_fashion_mlp_train_loss.dat' index 18 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'weight', \
       'study_fashion_mlp_train_loss.dat' index 19 using 1:2 with lines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch_renorm', \
       'study_fashion_mlp_train_loss.dat' index 20 using 1:2 with lines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#17becf' title 'ghost V=4', \
       'study_fashion_mlp_train_loss.dat' index 21 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#7f7f7f' title 'evonorm_s0', \
       'study_fashion_mlp_train_loss.dat' index 22 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#bcbd22' title 'switchable', \
       'study_fashion_mlp_train_loss.dat' index 23 using 1:2 with lines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#1f77b4' title 'mabn', \
       'study_fashion_mlp_train_loss.dat' index 24 using 1:2 with lines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#d62728' title 'cross_iteration_batch', \
       'study_fashion_mlp_train_loss.dat' index 25 using 1:2 with lines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#2ca02c' title 'dyt', \
       'study_fashion_mlp_train_loss.dat' index 26 using 1:2 with lines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch frozen=true'
  unset multiplot
  unset output
}
