# 'batch statistics vs population statistics: resnet8_w8 trained as batch/B32/seed0 (test error 11.78%)'
# Written by normlab report; `gnuplot study_fashion_resnet_probe_batch_B32_batch_stats.gp` in this folder redraws study_fashion_resnet_probe_batch_B32_batch_stats.svg and study_fashion_resnet_probe_batch_B32_batch_stats.png.
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
  set output "study_fashion_resnet_probe_batch_B32_batch_stats." . fmt
  set multiplot layout 1,2 title 'batch statistics vs population statistics: resnet8_w8 trained as batch/B32/seed0 (test error 11.78%)'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'batch mean: RMS over channels of |μ_B − μ| / σ'
  set xlabel 'batch size B (log2 scale)'
  set ylabel 'relative error (log scale)'
  set logscale x 2
  set xrange [41.6:1.538461538]
  set xtics (2, 4, 8, 32)
  set logscale y
  set autoscale yfix
  set offsets 0, 0, graph 0.05, graph 0.05
  set ytics (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100)
  set yrange [*:*]
  plot 0.2185363486/sqrt(x) with lines dt 2 lw 1.5 lc rgb 'black' title '∝ 1/√B (0.22/√B)', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 0 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'batch · layer 1', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 1 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch · layer 2', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 2 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'batch · layer 3', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 3 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch · layer 4', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 4 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'batch · layer 5', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 5 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'batch · layer 6', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 6 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch · layer 7'
  unset logscale
  unset label
  set grid
  set offsets 0, 0, 0, 0
  set autoscale
  set ytics autofreq
  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle height 0.6
  set title 'batch variance: RMS over channels of |σ²_B − σ²| / σ²'
  set xlabel 'batch size B (log2 scale)'
  set ylabel 'relative error (log scale)'
  set logscale x 2
  set xrange [41.6:1.538461538]
  set xtics (2, 4, 8, 32)
  set logscale y
  set autoscale yfix
  set offsets 0, 0, graph 0.05, graph 0.05
  set ytics (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100)
  set yrange [*:*]
  plot 0.3485181723/sqrt(x) with lines dt 2 lw 1.5 lc rgb 'black' title '∝ 1/√B (0.35/√B)', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 7 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#1f77b4' title 'batch · layer 1', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 8 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#d62728' title 'batch · layer 2', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 9 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#2ca02c' title 'batch · layer 3', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 10 using 1:2:3 with yerrorlines lw 2 pt 11 ps 1.1 dt 1 lc rgb '#ff7f0e' title 'batch · layer 4', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 11 using 1:2:3 with yerrorlines lw 2 pt 5 ps 1.1 dt 1 lc rgb '#9467bd' title 'batch · layer 5', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 12 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.1 dt 1 lc rgb '#8c564b' title 'batch · layer 6', \
       'study_fashion_resnet_probe_batch_B32_batch_stats.dat' index 13 using 1:2:3 with yerrorlines lw 2 pt 9 ps 1.1 dt 1 lc rgb '#e377c2' title 'batch · layer 7'
  unset multiplot
  unset output
}
