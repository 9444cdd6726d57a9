// Batch Renormalization (Ioffe 2017): BatchNorm whose normalized value is
// corrected towards the running statistics in training, xhat * r + d, with
//   r = clip(sigma_B / sigma, 1/rmax, rmax),  d = clip((mu_B - mu) / sigma, -dmax, dmax),
// sigma = sqrt(running_var + eps), r and d constant in backward. rmax and dmax
// ramp linearly from 1 and 0 over the first warmup_steps train forwards.
#include <algorithm>
#include <cmath>
#include <xtensor/xbuilder.hpp>

#include "norms.hpp"

#include "channel_norm.hpp"

namespace normlab {
namespace {

template <class T>
class BatchRenorm final : public ChannelNorm<T> {
 public:
  BatchRenorm(const nlohmann::json& spec, std::size_t channels)
      : ChannelNorm<T>(spec, channels, /*tracks_by_default=*/true) {
    // Train forwards so far: the position in the warm-up.
    this->add_state("num_batches_tracked", xt::zeros<T>({std::size_t{1}}));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->batch_description(shape, mode);
    this->require_values_to_train(d, shape, mode);
    return d;
  }

  // r and d from the running statistics before this batch updates them.
  void adjust_batch_stats(const NormDescription& d, Mode mode, GroupStats& stats) override {
    if (mode != Mode::train) return;
    xt::xarray<T>& steps = this->mutable_state("num_batches_tracked");
    const nlohmann::json& spec = this->spec_;
    const double warmup = spec.at("warmup_steps").template get<double>();
    const double done = warmup > 0 ? std::min(1.0, double(steps(0)) / warmup) : 1.0;
    const double rmax = 1 + (spec.at("rmax").template get<double>() - 1) * done;
    const double dmax = spec.at("dmax").template get<double>() * done;
    const xt::xarray<T>& running_mean = this->state("running_mean");
    const xt::xarray<T>& running_var = this->state("running_var");
    stats.r.resize(d.groups());
    stats.d.resize(d.groups());
    for (std::size_t c = 0; c < d.groups(); ++c) {  // one group per channel
      const double sigma = std::sqrt(double(running_var(c)) + d.eps);
      stats.r[c] = std::clamp(1 / (stats.rstd[c] * sigma), 1 / rmax, rmax);
      stats.d[c] = std::clamp((stats.mean[c] - double(running_mean(c))) / sigma, -dmax, dmax);
    }
    steps(0) += T(1);
  }
};

}  // namespace

template <class T>
std::unique_ptr<Norm<T>> make_batch_renorm(const nlohmann::json& spec, std::size_t channels) {
  return std::make_unique<BatchRenorm<T>>(spec, channels);
}
NORMLAB_INSTANTIATE_MAKER(make_batch_renorm)

}  // namespace normlab
