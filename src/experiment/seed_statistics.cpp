#include "seed_statistics.hpp"

#include <cmath>

namespace normlab {

double t_quantile_975(std::size_t df) {
  // Exact to the 3 decimals of the usual tables for df = 1..30; beyond, the
  // Cornish-Fisher expansion around the normal quantile (error < 1e-4).
  static const double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                                 2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                                 2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                                 2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
  if (df == 0) return NAN;
  if (df <= 30) return table[df - 1];
  const double z = 1.959963984540054, v = double(df);
  const double z3 = z * z * z, z5 = z3 * z * z;
  return z + (z3 + z) / (4 * v) + (5 * z5 + 16 * z3 + 3 * z) / (96 * v * v);
}

SeedSummary summarize(const std::vector<double>& values) {
  SeedSummary s;
  s.n = values.size();
  if (s.n == 0) {
    s.mean = s.stddev = s.ci95 = NAN;
    return s;
  }
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / double(s.n);
  if (s.n < 2) {
    s.stddev = s.ci95 = NAN;
    return s;
  }
  double squares = 0;  // two passes: the values are few and close together
  for (double v : values) squares += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(squares / double(s.n - 1));
  s.ci95 = t_quantile_975(s.n - 1) * s.stddev / std::sqrt(double(s.n));
  return s;
}

std::vector<double> paired_differences(const std::vector<double>& a,
                                       const std::vector<std::uint64_t>& seeds_a,
                                       const std::vector<double>& b,
                                       const std::vector<std::uint64_t>& seeds_b) {
  std::vector<double> differences;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < b.size(); ++j)
      if (seeds_a[i] == seeds_b[j]) differences.push_back(a[i] - b[j]);
  return differences;
}

}  // namespace normlab
