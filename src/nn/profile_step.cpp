// Where a training step's time goes: each layer's forward and backward, the
// loss and the SGD update, timed over repeated steps on one batch.
#include <chrono>

#include "normlab/model.hpp"

namespace normlab {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

template <class T>
StepProfile profile_training_step(Model<T>& model, Sgd<T>& sgd, const xt::xarray<T>& x,
                                  const std::vector<std::uint8_t>& labels, std::size_t steps,
                                  double lr) {
  StepProfile profile;
  for (std::size_t i = 0; i < model.size(); ++i) profile.layers.push_back({model.layer(i).name()});
  xt::xarray<T> dlogits;
  // Step 0 is a warm-up (first-touch allocations, caches); steps 1..steps are timed.
  for (std::size_t step = 0; step <= steps; ++step) {
    const double weight = step == 0 ? 0.0 : 1.0 / double(steps);
    const Clock::time_point start = Clock::now();
    sgd.zero_grad();
    const xt::xarray<T>* h = &x;
    for (std::size_t i = 0; i < model.size(); ++i) {
      const Clock::time_point t = Clock::now();
      h = &model.layer(i).forward(*h, Mode::train);
      profile.layers[i].forward_seconds += weight * seconds_since(t);
    }
    Clock::time_point t = Clock::now();
    softmax_cross_entropy(*h, labels, dlogits);
    profile.loss_seconds += weight * seconds_since(t);
    const xt::xarray<T>* g = &dlogits;
    for (std::size_t i = model.size(); i-- > 0;) {
      t = Clock::now();
      g = &model.layer(i).backward(*g);
      profile.layers[i].backward_seconds += weight * seconds_since(t);
    }
    t = Clock::now();
    sgd.step(lr);
    profile.update_seconds += weight * seconds_since(t);
    profile.step_seconds += weight * seconds_since(start);
  }
  return profile;
}

template StepProfile profile_training_step<float>(Model<float>&, Sgd<float>&,
                                                  const xt::xarray<float>&,
                                                  const std::vector<std::uint8_t>&, std::size_t,
                                                  double);
template StepProfile profile_training_step<double>(Model<double>&, Sgd<double>&,
                                                   const xt::xarray<double>&,
                                                   const std::vector<std::uint8_t>&, std::size_t,
                                                   double);

}  // namespace normlab
