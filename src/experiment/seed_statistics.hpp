// Summaries of a few values, one per seed: mean, standard deviation and a 95%
// confidence interval for the mean from Student's t distribution, and the
// same for paired differences (two norms trained with the same seeds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace normlab {

struct SeedSummary {
  std::size_t n = 0;
  double mean = 0;
  double stddev = 0;  // sample standard deviation (n - 1); NaN for n < 2
  double ci95 =
      0;  // half width of the 95% interval: t(0.975, n - 1) * stddev / sqrt(n); NaN for n < 2
};

// NaN mean for no values.
SeedSummary summarize(const std::vector<double>& values);

// The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1).
double t_quantile_975(std::size_t df);

// a[i] - b[j] for each seed present in both (seeds_a[i] == seeds_b[j]).
std::vector<double> paired_differences(const std::vector<double>& a,
                                       const std::vector<std::uint64_t>& seeds_a,
                                       const std::vector<double>& b,
                                       const std::vector<std::uint64_t>& seeds_b);

}  // namespace normlab
