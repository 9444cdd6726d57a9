// The common interface of every normalization layer.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xtensor/xarray.hpp>

#include "normlab/engine.hpp"

namespace normlab {

// train: statistics come from the batch and running state is updated.
// eval: norms with running state use it (and treat it as constant in backward).
enum class Mode { train, eval };

Mode parse_mode(const std::string& name);  // "train" | "eval"
const char* to_string(Mode mode);

// A learned tensor and the gradient accumulated into it by backward().
template <class T>
struct Parameter {
  xt::xarray<T> value;
  xt::xarray<T> grad;
};

// A batch's statistics as the running statistics take them, per channel: the
// mean and the unbiased variance, each averaged over the channel's groups
// (Ghost BN's virtual batches, InstanceNorm's samples).
struct BatchStatistics {
  std::vector<double> mean, var;
};

// A normalization layer. Concrete norms only describe how elements are grouped
// (see NormDescription); all arithmetic happens in the shared engine.
template <class T>
class Norm {
 public:
  explicit Norm(nlohmann::json spec);
  virtual ~Norm() = default;
  Norm(const Norm&) = delete;
  Norm& operator=(const Norm&) = delete;

  // y for x. Train mode uses batch statistics and updates running state.
  // Keeps a copy of x for backward().
  xt::xarray<T> forward(const xt::xarray<T>& x, Mode mode);
  // Allocation-free variant (y is resized only if its shape differs). It keeps
  // a reference to x, not a copy: x must stay alive and unchanged until the
  // backward() that follows, as the activations of a network do.
  void forward(const xt::xarray<T>& x, Mode mode, xt::xarray<T>& y);

  // dx for the last forward; adds the parameter gradients to Parameter::grad.
  xt::xarray<T> backward(const xt::xarray<T>& dy);
  void backward(const xt::xarray<T>& dy, xt::xarray<T>& dx);

  // Learned parameters by name: "gamma", "beta" (WeightNorm: "g").
  std::vector<std::string> parameter_names() const;
  Parameter<T>& parameter(const std::string& name);
  const Parameter<T>& parameter(const std::string& name) const;
  // Running statistics by name: "running_mean", "running_var".
  std::vector<std::string> state_names() const;
  const xt::xarray<T>& state(const std::string& name) const;
  // Sets a parameter or a running statistic; the shape must match.
  void set(const std::string& name, const xt::xarray<T>& value);
  void zero_grad();
  // The statistics the last train forward fed into the running statistics
  // ("precise BN" averages them over many batches). Throws std::logic_error
  // when no train forward updated running statistics yet.
  const BatchStatistics& batch_statistics() const;

  // Creates the parameters and state that depend on the input shape (forward
  // calls it too); throws std::invalid_argument when the shape does not fit.
  virtual void prepare(const std::vector<std::size_t>& shape);

  // The full spec with every default resolved; make_norm(to_json()) rebuilds it.
  const nlohmann::json& to_json() const { return spec_; }
  std::string type() const { return spec_.at("type").get<std::string>(); }

 protected:
  // What the engine needs to know about an input of this shape. Throws
  // std::invalid_argument when the shape does not fit the norm.
  virtual NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const = 0;

  // Name of the scale parameter the engine multiplies by ("gamma"; WeightNorm "g").
  virtual const char* scale_name() const { return "gamma"; }
  // Sees the statistics of each train or eval forward that computed them.
  virtual void observe_stats(const NormDescription&, const GroupStats&) {}
  // Then may set the constant correction stats.r, stats.d (Batch Renorm) from
  // the norm's state, before the running statistics take this batch. Only for
  // per_channel pooling: per_outer_groups norms are normalized in the same pass
  // as their statistics (normalize_with_batch_stats).
  virtual void adjust_batch_stats(const NormDescription&, Mode, GroupStats&) {}

  void add_parameter(const std::string& name, xt::xarray<T> initial);
  void add_state(const std::string& name, xt::xarray<T> initial);
  bool has_parameter(const std::string& name) const { return parameters_.count(name) != 0; }
  bool has_state(const std::string& name) const { return state_.count(name) != 0; }
  xt::xarray<T>& mutable_state(const std::string& name) { return state_.at(name); }
  // True once the parameter was given by set(); lets WeightNorm initialize g from v.
  bool was_set(const std::string& name) const { return explicitly_set_.count(name) != 0; }
  nlohmann::json spec_;

 private:
  const xt::xarray<T>* affine_pointer(const char* name) const;
  void update_running_stats(const NormDescription& d, const GroupStats& stats);
  void running_group_stats(const NormDescription& d, GroupStats& stats) const;

  std::map<std::string, Parameter<T>> parameters_;
  std::map<std::string, xt::xarray<T>> state_;
  std::map<std::string, bool> explicitly_set_;
  std::size_t batches_tracked_ = 0;
  BatchStatistics last_batch_;

  std::vector<std::size_t> shape_;  // of the last input; reused to avoid allocating

  // Saved by forward for backward: the input (see forward), its description
  // and statistics. owned_x_ holds the copy the allocating forward makes.
  const T* saved_x_ = nullptr;
  xt::xarray<T> owned_x_;
  NormDescription saved_description_{};
  GroupStats saved_stats_;
  bool has_forward_ = false;
};

// Builds a norm from its JSON spec. `channels` is the size of dimension 1 of
// the activations (WeightNorm: of dimension `dim` of the weight); 0 leaves it
// to be taken from the first input where the norm allows that.
// Spec keys: type (batch | layer | instance | group | weight | rms | ghost |
// batch_renorm), eps, momentum (number, or null for a cumulative average),
// affine, track_running_stats, groups, normalized_shape, channel_affine, dim,
// virtual_batch_size (ghost), rmax, dmax, warmup_steps (batch_renorm).
template <class T>
std::unique_ptr<Norm<T>> make_norm(const nlohmann::json& spec, std::size_t channels);

// Names accepted in a spec's "type".
std::vector<std::string> norm_types();

}  // namespace normlab
