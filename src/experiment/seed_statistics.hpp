// Summaries of a few values, one per seed: mean, standard deviation and a 95%
// confidence interval for the mean from Student's t distribution (exact
// quantiles, boost::math), the same for paired differences (two norms trained
// with the same seeds) with Holm's correction over a table of them, and the
// rule that tells a failed run from a successful one. scripts/seed_stats.py
// implements the same, number for number.
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
  // Two-sided p-value of the one-sample t test of mean == 0 (what a paired
  // difference asks); NaN for n < 2.
  double p_value = 0;
};

// NaN mean for no values.
SeedSummary summarize(const std::vector<double>& values);

// The `probability` quantile of Student's t with `df` degrees of freedom
// (exact: boost::math); NaN outside 0 < probability < 1 or for df <= 0.
double t_quantile(double probability, double df);
// t_quantile(0.975, df): the 95% interval's factor (NaN for df == 0).
double t_quantile_975(std::size_t df);
// P(|T| >= |t|) for T of Student's t with `df` degrees of freedom.
double t_two_sided_p(double t, double df);

// Holm's step-down adjustment of a family of p-values: the k-th smallest of m
// (k from 0) becomes max over j <= k of min(1, (m - j) p_(j)); rejecting where
// the adjusted value is below alpha controls the family-wise error at alpha.
// NaN entries (comparisons with one seed) are left NaN and not counted in m.
std::vector<double> holm_adjusted(const std::vector<double>& p);

// a[i] - b[j] for each seed present in both (seeds_a[i] == seeds_b[j]).
std::vector<double> paired_differences(const std::vector<double>& a,
                                       const std::vector<std::uint64_t>& seeds_a,
                                       const std::vector<double>& b,
                                       const std::vector<std::uint64_t>& seeds_b);

// How a run ended. `diverged`: a non-finite training loss (or no test error);
// `failed`: it finished, but its test error is at or near chance, at least
// chance_error(classes) - kFailedMargin (0.85 for ten classes); `succeeded`
// otherwise. Tables average the succeeded runs and count the other two.
enum class RunOutcome { succeeded, diverged, failed };
constexpr double kFailedMargin = 0.05;
double chance_error(std::size_t classes);  // 1 - 1/classes
RunOutcome run_outcome(bool diverged, double test_error, std::size_t classes);

}  // namespace normlab
