// The common Norm machinery: parameters, running state, and forward/backward
// through the engine's phases. Concrete norms supply describe(), prepare()
// and the hooks they need.
#include "normlab/norm.hpp"

#include <algorithm>
#include <stdexcept>

#include "shapes.hpp"
#include "storage.hpp"

namespace normlab {
namespace {

// Marks a Norm in use for a call; in builds without NDEBUG, a second thread
// entering the same Norm throws instead of corrupting its saved state.
class UseGuard {
 public:
  UseGuard(std::atomic<bool>& in_use, const std::string& type) : in_use_(in_use) {
#ifndef NDEBUG
    if (in_use_.exchange(true))
      throw std::logic_error(type +
                             " norm used from two threads at once: a Norm object is not "
                             "thread-safe (use one object per thread)");
    owns_ = true;
#else
    (void)type;
#endif
  }
  ~UseGuard() {
    if (owns_) in_use_ = false;
  }

 private:
  std::atomic<bool>& in_use_;
  bool owns_ = false;
};

}  // namespace

Mode parse_mode(const std::string& name) {
  if (name == "train") return Mode::train;
  if (name == "eval") return Mode::eval;
  throw std::invalid_argument("mode '" + name + "' is not known: use train or eval");
}

const char* to_string(Mode mode) {
  return mode == Mode::train ? "train" : "eval";
}

Layout parse_layout(const std::string& name) {
  if (name == "nchw") return Layout::nchw;
  if (name == "nhwc") return Layout::nhwc;
  throw std::invalid_argument("layout '" + name +
                              "' is not known: use nchw (channels first) or nhwc (channels last)");
}

const char* to_string(Layout layout) {
  return layout == Layout::nchw ? "nchw" : "nhwc";
}

namespace {

// (N, S..., C) -> (N, C, S...); other layouts and ranks below 3 as they are.
void channels_first_shape(Layout layout, const std::vector<std::size_t>& shape,
                          std::vector<std::size_t>& out) {
  out = shape;
  if (layout == Layout::nhwc && shape.size() >= 3) {
    out[1] = shape.back();
    std::copy(shape.begin() + 1, shape.end() - 1, out.begin() + 2);
  }
}

// A shape error of a channels-last input names the input as given, too.
[[noreturn]] void rethrow_channels_last(const std::invalid_argument& e,
                                        const std::vector<std::size_t>& shape,
                                        const std::vector<std::size_t>& channels_first) {
  throw std::invalid_argument(std::string(e.what()) + " (layout nhwc: the input " +
                              shape_text(shape) + " read as " + shape_text(channels_first) + ")");
}

}  // namespace

template <class T>
Norm<T>::Norm(std::string type) : type_(std::move(type)) {}

template <class T>
nlohmann::json Norm<T>::to_json() const {
  return {{"type", type_}};
}

template <class T>
NormTraits Norm<T>::traits() const {
  NormTraits t;
  t.parameters = parameter_names();
  t.state = state_names();
  t.running_state = !t.state.empty();
  return t;
}

template <class T>
void Norm<T>::given_stats(const NormDescription&, GroupStats&) const {
  throw std::logic_error(type_ +
                         " norm: its description asks for given statistics, but it has none");
}

template <class T>
void Norm<T>::prepare_shape(const std::vector<std::size_t>&) {}

template <class T>
void Norm<T>::prepare(const std::vector<std::size_t>& shape) {
  if (layout_ == Layout::nchw) return prepare_shape(shape);
  channels_first_shape(layout_, shape, channels_first_);
  try {
    prepare_shape(channels_first_);
  } catch (const std::invalid_argument& e) {
    rethrow_channels_last(e, shape, channels_first_);
  }
}

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
const BatchStatistics& Norm<T>::batch_statistics() const {
  if (last_batch_.mean.empty())
    throw std::logic_error(type() +
                           " norm has no batch statistics: they come from a train forward that "
                           "updates running statistics");
  return last_batch_;
}

template <class T>
NormParameters<T> Norm<T>::engine_parameters() const {
  auto value = [&](const char* name) -> const T* {
    auto it = parameters_.find(name);
    return it == parameters_.end() ? nullptr : it->second.value.data();
  };
  return {value(scale_name()), value("beta"), value("tau"), value(numerator_parameter_name())};
}

template <class T>
void Norm<T>::add_parameter_sums(const ParameterSums& sums) {
  auto add = [&](const char* name, const std::vector<double>& sum) {
    auto it = parameters_.find(name);
    if (it == parameters_.end() || sum.empty()) return;
    T* grad = it->second.grad.data();
    for (std::size_t p = 0; p < sum.size(); ++p) add_rounded(grad[p], sum[p]);
  };
  add(scale_name(), sums.gamma);
  add("beta", sums.beta);
  add("tau", sums.tau);
  add(numerator_parameter_name(), sums.v);
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
  const UseGuard guard(in_use_, type_);
  if (&x == &y || (x.size() > 0 && x.data() == y.data()))
    throw std::invalid_argument(type_ +
                                " norm: forward in place (y is x) is not supported: backward "
                                "needs x; pass another array for y");
  has_forward_ = false;  // until this forward succeeds: backward must not mix two of them
  shape_.assign(x.shape().begin(), x.shape().end());
  prepare(shape_);
  channels_first_shape(layout_, shape_, channels_first_);
  NormDescription d;
  try {
    d = describe(channels_first_, mode);
    if (layout_ == Layout::nhwc && shape_.size() >= 3) d = channels_last(d);
  } catch (const std::invalid_argument& e) {
    if (layout_ == Layout::nchw) throw;
    rethrow_channels_last(e, shape_, channels_first_);
  }
  d.validate();
  if (y.shape() != x.shape()) y.resize(x.shape());
  const NormParameters<T> params = engine_parameters();
  GroupStats& stats = saved_stats_;
  const T* input = x.data();

  if (d.statistics_given) {
    given_stats(d, stats);
    apply_stats(input, d, stats, params, y.data());
  } else if (!combines_stats() && d.pooling == Pooling::per_outer_groups) {
    // Contiguous groups: statistics and normalize in one pass over x.
    normalize_with_batch_stats(input, d, stats, params, y.data());
    observe_stats(d, mode, stats);
  } else {
    reduce_stats(input, d, stats);
    current_input_ = &x;
    combine_stats(d, mode, stats);
    finish_stats(d, stats);
    observe_stats(d, mode, stats);
    apply_stats(input, d, stats, params, y.data());
  }
  saved_x_ = input;
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
  const UseGuard guard(in_use_, type_);
  if (!has_forward_)
    throw std::logic_error(type() +
                           " norm: backward called before any forward (or after one that failed)");
  if (!std::equal(dy.shape().begin(), dy.shape().end(), shape_.begin(), shape_.end()))
    throw std::invalid_argument("gradient has shape " + shape_text(dy.shape()) +
                                " but the last forward input had shape " + shape_text(shape_));
  if (dx.shape() != dy.shape()) dx.resize(dy.shape());
  const NormParameters<T> params = engine_parameters();
  const NormDescription& d = saved_description_;
  if (combines_gradients()) {
    reduce_gradients(saved_x_, dy.data(), d, saved_stats_, params, gradient_sums_);
    combine_gradients(d, gradient_sums_);
    apply_gradients(saved_x_, dy.data(), d, saved_stats_, params, gradient_sums_, dx.data());
  } else {
    normalize_backward(saved_x_, dy.data(), d, saved_stats_, params, gradient_sums_, dx.data());
  }
  add_parameter_sums(gradient_sums_.parameters);
}

template class Norm<float>;
template class Norm<double>;
template class Norm<bfloat16>;

}  // namespace normlab
