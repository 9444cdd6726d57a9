// Batch Renormalization (Ioffe 2017): BatchNorm whose normalized value is
// corrected towards the running statistics in training, xhat * r + d, with
//   r = clip(sigma_B / sigma, 1/rmax, rmax),  d = clip((mu_B - mu) / sigma, -dmax, dmax),
// sigma = sqrt(running_var + eps), r and d constant in backward. rmax and dmax
// ramp linearly from 1 and 0 over the first warmup_steps train forwards.
#include <algorithm>
#include <cmath>

#include "channel_norm.hpp"

namespace normlab {
namespace {

struct BatchRenormOptions : ChannelOptions {
  // The paper's final rmax and dmax, reached after warmup_steps train forwards.
  double rmax = 3.0;
  double dmax = 5.0;
  long long warmup_steps = 1000;

  static const OptionSchema<BatchRenormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<BatchRenormOptions> s;
      s.number("eps", &BatchRenormOptions::eps, {0}, "added to the variance before the square root")
          .number("momentum", &BatchRenormOptions::momentum, {0, 1},
                  "weight of each batch in the running statistics (r and d need them)")
          .boolean("affine", &BatchRenormOptions::affine, "learned gamma and beta per channel")
          .number("rmax", &BatchRenormOptions::rmax, {1}, "largest r = sigma_B / sigma")
          .number("dmax", &BatchRenormOptions::dmax, {0}, "largest |d| = |mu_B - mu| / sigma")
          .integer("warmup_steps", &BatchRenormOptions::warmup_steps, 0,
                   "train forwards over which rmax and dmax open from 1 and 0");
      return layout_option(s);
    }();
    return s;
  }
};

template <class T>
class BatchRenorm final : public ChannelNorm<T, BatchRenormOptions> {
 public:
  BatchRenorm(std::string type, const BatchRenormOptions& options, std::size_t channels)
      : ChannelNorm<T, BatchRenormOptions>(std::move(type), options, channels, /*tracks=*/true) {
    // Train forwards so far: the position in the warm-up.
    this->add_state("num_batches_tracked", xt::zeros<T>({std::size_t{1}}));
    steps_ = &this->mutable_state("num_batches_tracked");  // looked up once: no string per forward
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    return this->batch_description_to_train(shape, mode);
  }

  // r and d from the running statistics before this batch updates them.
  bool combines_stats() const override { return true; }
  void combine_stats(const NormDescription& d, Mode mode, GroupStats& stats) override {
    if (mode != Mode::train) return;
    const BatchRenormOptions& o = this->options_;
    xt::xarray<T>& steps = *steps_;
    const double warmup = double(o.warmup_steps);
    const double done = warmup > 0 ? std::min(1.0, steps_count_.value(steps) / warmup) : 1.0;
    const double rmax = 1 + (o.rmax - 1) * done;
    const double dmax = o.dmax * done;
    const xt::xarray<T>& running_mean = this->state("running_mean");
    const xt::xarray<T>& running_var = this->state("running_var");
    stats.r.resize(d.groups());
    stats.d.resize(d.groups());
    for (std::size_t c = 0; c < d.groups(); ++c) {  // one group per channel
      const double sigma = std::sqrt(double(running_var(c)) + d.eps);
      const double sigma_batch = std::sqrt(stats.var[c] + d.eps);
      stats.r[c] = std::clamp(sigma_batch / sigma, 1 / rmax, rmax);
      stats.d[c] = std::clamp((stats.mean[c] - double(running_mean(c))) / sigma, -dmax, dmax);
    }
    steps_count_.increment(steps);
  }

 private:
  xt::xarray<T>* steps_;  // the state num_batches_tracked (set() assigns in place)
  StepCount<T> steps_count_;
};

}  // namespace

void register_batch_renorm(NormRegistry& registry) {
  register_norm<BatchRenorm>(
      registry,
      NormDefinition<BatchRenormOptions>{
          "batch_renorm",
          "Batch Renormalization: BatchNorm corrected towards the running statistics (r, d)",
          [](const BatchRenormOptions& o) {
            NormTraits t;
            t.train_uses_state = true;  // r and d move with the running statistics
            t.channels_last = true;
            t.batch_statistics = true;
            channel_names(t, o.affine, /*running=*/true);
            t.state.push_back("num_batches_tracked");
            return t;
          }});
}

}  // namespace normlab
