// Softmax cross-entropy, stable through the log-sum-exp with the max removed.
#include <cmath>
#include <stdexcept>

#include "normlab/layers.hpp"

namespace normlab {

template <class T>
double softmax_cross_entropy(const xt::xarray<T>& logits, const std::vector<std::uint8_t>& labels,
                             xt::xarray<T>& dlogits) {
  const std::size_t n = logits.shape(0), classes = logits.shape(1);
  if (labels.size() != n)
    throw std::invalid_argument("softmax_cross_entropy: " + std::to_string(labels.size()) +
                                " labels for " + std::to_string(n) + " rows of logits");
  for (std::size_t s = 0; s < n; ++s)  // a label past the logits would read past the row
    if (labels[s] >= classes)
      throw std::invalid_argument("softmax_cross_entropy: label " + std::to_string(labels[s]) +
                                  " of sample " + std::to_string(s) + " is not below the " +
                                  std::to_string(classes) + " outputs of the model");
  dlogits.resize(logits.shape());
  double total = 0;
  for (std::size_t s = 0; s < n; ++s) {
    const T* row = logits.data() + s * classes;
    T* grad = dlogits.data() + s * classes;
    double max = double(row[0]);
    for (std::size_t k = 1; k < classes; ++k) max = std::max(max, double(row[k]));
    double sum = 0;
    for (std::size_t k = 0; k < classes; ++k) sum += std::exp(double(row[k]) - max);
    const double log_sum = std::log(sum) + max;
    total += log_sum - double(row[labels[s]]);
    // d(mean loss)/dlogit = (softmax - onehot) / N
    for (std::size_t k = 0; k < classes; ++k)
      grad[k] = T((std::exp(double(row[k]) - log_sum) - (k == labels[s] ? 1.0 : 0.0)) / double(n));
  }
  return total / double(n);
}

template double softmax_cross_entropy<float>(const xt::xarray<float>&,
                                             const std::vector<std::uint8_t>&, xt::xarray<float>&);
template double softmax_cross_entropy<double>(const xt::xarray<double>&,
                                              const std::vector<std::uint8_t>&,
                                              xt::xarray<double>&);

}  // namespace normlab
