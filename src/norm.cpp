// The common Norm machinery: parameters, running state, and forward/backward
// through the engine. Concrete norms only supply describe() and prepare().
#include "normlab/norm.hpp"

#include <algorithm>
#include <stdexcept>

#include "shapes.hpp"

namespace normlab {

Mode parse_mode(const std::string& name) {
  if (name == "train") return Mode::train;
  if (name == "eval") return Mode::eval;
  throw std::invalid_argument("mode '" + name + "' is not known: use train or eval");
}

const char* to_string(Mode mode) {
  return mode == Mode::train ? "train" : "eval";
}

template <class T>
Norm<T>::Norm(nlohmann::json spec) : spec_(std::move(spec)) {}

template <class T>
void Norm<T>::prepare(const std::vector<std::size_t>&) {}

template <class T>
void Norm<T>::add_parameter(const std::string& name, xt::xarray<T> initial) {
  Parameter<T>& p = parameters_[name];
  p.grad = xt::zeros<T>(initial.shape());
  p.value = std::move(initial);
}

template <class T>
void Norm<T>::add_state(const std::string& name, xt::xarray<T> initial) {
  state_[name] = std::move(initial);
}

template <class T>
std::vector<std::string> Norm<T>::parameter_names() const {
  std::vector<std::string> names;
  for (const auto& entry : parameters_) names.push_back(entry.first);
  return names;
}

template <class T>
std::vector<std::string> Norm<T>::state_names() const {
  std::vector<std::string> names;
  for (const auto& entry : state_) names.push_back(entry.first);
  return names;
}

template <class T>
Parameter<T>& Norm<T>::parameter(const std::string& name) {
  return const_cast<Parameter<T>&>(static_cast<const Norm&>(*this).parameter(name));
}

template <class T>
const Parameter<T>& Norm<T>::parameter(const std::string& name) const {
  auto it = parameters_.find(name);
  if (it == parameters_.end())
    throw std::invalid_argument(
        type() + " norm has no parameter '" + name + "'" +
        (parameters_.empty() ? " (it has none yet: call prepare or forward)" : ""));
  return it->second;
}

template <class T>
const xt::xarray<T>& Norm<T>::state(const std::string& name) const {
  auto it = state_.find(name);
  if (it == state_.end())
    throw std::invalid_argument(type() + " norm has no running state '" + name + "'");
  return it->second;
}

template <class T>
void Norm<T>::set(const std::string& name, const xt::xarray<T>& value) {
  xt::xarray<T>* target = nullptr;
  if (auto p = parameters_.find(name); p != parameters_.end()) target = &p->second.value;
  if (auto s = state_.find(name); s != state_.end()) target = &s->second;
  if (!target) {
    std::string known;
    for (const auto& n : parameter_names()) known += " " + n;
    for (const auto& n : state_names()) known += " " + n;
    throw std::invalid_argument(type() + " norm has no parameter or state '" + name +
                                "' (it has:" + (known.empty() ? " none" : known) + ")");
  }
  if (value.shape() != target->shape())
    throw std::invalid_argument(name + " has shape " + shape_text(value.shape()) + " but " +
                                type() + " norm needs " + shape_text(target->shape()));
  *target = value;
  explicitly_set_[name] = true;
}

template <class T>
void Norm<T>::zero_grad() {
  for (auto& entry : parameters_) entry.second.grad.fill(T(0));
}

template <class T>
const xt::xarray<T>* Norm<T>::affine_pointer(const char* name) const {
  auto it = parameters_.find(name);
  return it == parameters_.end() ? nullptr : &it->second.value;
}

// Running statistics are per channel; a group maps to the channel it covers
// (groups are numbered chunk or sample * channels + channel). Groups spanning
// several channels (GroupNorm) have no running statistics.
namespace {
std::size_t channel_of_group(const NormDescription& d, std::size_t g) {
  return g % d.view.channels;
}

// Batch statistics of a channel: the average over the groups mapped to it
// (InstanceNorm averages its per-sample statistics, as PyTorch does; Ghost BN
// its virtual batches', as Keras does), the variance unbiased per group.
void channel_statistics(const NormDescription& d, const GroupStats& stats, BatchStatistics& batch) {
  const std::size_t channels = d.view.channels;
  const double count = double(d.group_size());
  const double unbiased = count / (count - 1);
  batch.mean.assign(channels, 0.0);
  batch.var.assign(channels, 0.0);
  const std::size_t per_channel = stats.mean.size() / channels;
  for (std::size_t g = 0; g < stats.mean.size(); ++g) {
    batch.mean[channel_of_group(d, g)] += stats.mean[g] / double(per_channel);
    batch.var[channel_of_group(d, g)] += stats.var[g] * unbiased / double(per_channel);
  }
}
}  // namespace

template <class T>
const BatchStatistics& Norm<T>::batch_statistics() const {
  if (last_batch_.mean.empty())
    throw std::logic_error(type() +
                           " norm has no batch statistics: they come from a train forward that "
                           "updates running statistics");
  return last_batch_;
}

template <class T>
void Norm<T>::update_running_stats(const NormDescription& d, const GroupStats& stats) {
  xt::xarray<T>& running_mean = state_.at("running_mean");
  xt::xarray<T>& running_var = state_.at("running_var");
  const std::size_t channels = d.view.channels;
  channel_statistics(d, stats, last_batch_);
  const std::vector<double>& batch_mean = last_batch_.mean;
  const std::vector<double>& batch_var = last_batch_.var;
  ++batches_tracked_;
  const nlohmann::json& momentum_spec = spec_.at("momentum");
  const double momentum =
      momentum_spec.is_null() ? 1.0 / double(batches_tracked_) : momentum_spec.get<double>();
  for (std::size_t c = 0; c < channels; ++c) {
    running_mean(c) = T((1 - momentum) * double(running_mean(c)) + momentum * batch_mean[c]);
    running_var(c) = T((1 - momentum) * double(running_var(c)) + momentum * batch_var[c]);
  }
}

template <class T>
void Norm<T>::running_group_stats(const NormDescription& d, GroupStats& stats) const {
  const xt::xarray<T>& running_mean = state_.at("running_mean");
  const xt::xarray<T>& running_var = state_.at("running_var");
  stats.resize(d.groups());
  for (std::size_t g = 0; g < d.groups(); ++g) {
    stats.mean[g] = double(running_mean(channel_of_group(d, g)));
    stats.var[g] = double(running_var(channel_of_group(d, g)));
  }
  finish_rstd(d, stats);
}

template <class T>
xt::xarray<T> Norm<T>::forward(const xt::xarray<T>& x, Mode mode) {
  owned_x_ = x;  // the caller may drop x before backward
  xt::xarray<T> y = xt::empty<T>(x.shape());
  forward(owned_x_, mode, y);
  return y;
}

template <class T>
void Norm<T>::forward(const xt::xarray<T>& x, Mode mode, xt::xarray<T>& y) {
  shape_.assign(x.shape().begin(), x.shape().end());
  prepare(shape_);
  const NormDescription d = describe(shape_, mode);
  if (y.shape() != x.shape()) y.resize(x.shape());
  const xt::xarray<T>* gamma_array = affine_pointer(scale_name());
  const xt::xarray<T>* beta_array = affine_pointer("beta");
  const T* gamma = gamma_array ? gamma_array->data() : nullptr;
  const T* beta = beta_array ? beta_array->data() : nullptr;

  if (d.statistics_given) {
    running_group_stats(d, saved_stats_);
    normalize_forward(x.data(), d, saved_stats_, gamma, beta, y.data());
  } else if (d.pooling == Pooling::per_outer_groups) {
    normalize_with_batch_stats(x.data(), d, saved_stats_, gamma, beta, y.data());
    observe_stats(d, saved_stats_);
    if (mode == Mode::train && d.tracks_running_stats) update_running_stats(d, saved_stats_);
  } else {
    compute_stats(x.data(), d, saved_stats_);
    observe_stats(d, saved_stats_);
    adjust_batch_stats(d, mode, saved_stats_);
    if (mode == Mode::train && d.tracks_running_stats) update_running_stats(d, saved_stats_);
    normalize_forward(x.data(), d, saved_stats_, gamma, beta, y.data());
  }
  saved_x_ = x.data();
  saved_description_ = d;
  has_forward_ = true;
}

template <class T>
xt::xarray<T> Norm<T>::backward(const xt::xarray<T>& dy) {
  xt::xarray<T> dx = xt::empty<T>(dy.shape());
  backward(dy, dx);
  return dx;
}

template <class T>
void Norm<T>::backward(const xt::xarray<T>& dy, xt::xarray<T>& dx) {
  if (!has_forward_) throw std::logic_error(type() + " norm: backward called before any forward");
  if (!std::equal(dy.shape().begin(), dy.shape().end(), shape_.begin(), shape_.end()))
    throw std::invalid_argument("gradient has shape " + shape_text(dy.shape()) +
                                " but the last forward input had shape " + shape_text(shape_));
  if (dx.shape() != dy.shape()) dx.resize(dy.shape());
  auto grad_pointer = [&](const char* name) -> T* {
    auto it = parameters_.find(name);
    return it == parameters_.end() ? nullptr : it->second.grad.data();
  };
  const xt::xarray<T>* gamma = affine_pointer(scale_name());
  normalize_backward(saved_x_, dy.data(), saved_description_, saved_stats_,
                     gamma ? gamma->data() : nullptr, dx.data(), grad_pointer(scale_name()),
                     grad_pointer("beta"));
}

template class Norm<float>;
template class Norm<double>;

}  // namespace normlab
