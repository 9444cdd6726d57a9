#include "seed_statistics.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <boost/math/distributions/students_t.hpp>

namespace normlab {

double t_quantile(double probability, double df) {
  if (!(df > 0) || !(probability > 0 && probability < 1)) return NAN;
  return boost::math::quantile(boost::math::students_t_distribution<double>(df), probability);
}

double t_quantile_975(std::size_t df) {
  return df == 0 ? NAN : t_quantile(0.975, double(df));
}

double t_two_sided_p(double t, double df) {
  if (!(df > 0) || std::isnan(t)) return NAN;
  if (std::isinf(t)) return 0.0;
  return 2 * boost::math::cdf(boost::math::complement(
                 boost::math::students_t_distribution<double>(df), std::fabs(t)));
}

std::vector<double> holm_adjusted(const std::vector<double>& p) {
  // Sort ascending; the k-th smallest (0-based) of m is scaled by m - k, and
  // the running maximum keeps the adjusted values in the same order.
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < p.size(); ++i)
    if (!std::isnan(p[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return p[a] < p[b]; });
  std::vector<double> adjusted(p.size(), NAN);
  const std::size_t m = order.size();
  double running = 0;
  for (std::size_t k = 0; k < m; ++k) {
    running = std::max(running, std::min(1.0, double(m - k) * p[order[k]]));
    adjusted[order[k]] = running;
  }
  return adjusted;
}

SeedSummary summarize(const std::vector<double>& values) {
  SeedSummary s;
  s.n = values.size();
  if (s.n == 0) {
    s.mean = s.stddev = s.ci95 = s.p_value = NAN;
    return s;
  }
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / double(s.n);
  if (s.n < 2) {
    s.stddev = s.ci95 = s.p_value = NAN;
    return s;
  }
  double squares = 0;  // two passes: the values are few and close together
  for (double v : values) squares += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(squares / double(s.n - 1));
  const double standard_error = s.stddev / std::sqrt(double(s.n));
  s.ci95 = t_quantile_975(s.n - 1) * standard_error;
  // Equal values: no spread, so the mean is 0 for certain or not 0 for certain.
  s.p_value = standard_error > 0 ? t_two_sided_p(s.mean / standard_error, double(s.n - 1))
                                 : (s.mean == 0 ? 1.0 : 0.0);
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

double chance_error(std::size_t classes) {
  return classes == 0 ? NAN : 1.0 - 1.0 / double(classes);
}

RunOutcome run_outcome(bool diverged, double test_error, std::size_t classes) {
  if (diverged || !std::isfinite(test_error)) return RunOutcome::diverged;
  // The slack keeps an error of exactly 0.85 (ten classes) on the failed side
  // whatever the rounding of 1 - 1/10 - 0.05.
  return test_error + 1e-9 >= chance_error(classes) - kFailedMargin ? RunOutcome::failed
                                                                    : RunOutcome::succeeded;
}

}  // namespace normlab
