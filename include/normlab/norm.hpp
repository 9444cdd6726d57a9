// The common interface of every normalization layer.
#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xtensor/xarray.hpp>

#include "normlab/engine.hpp"
#include "normlab/registry.hpp"

namespace normlab {

// train: statistics come from the batch and running state is updated.
// eval: norms with running state use it (and treat it as constant in backward).
enum class Mode { train, eval };

Mode parse_mode(const std::string& name);  // "train" | "eval"
const char* to_string(Mode mode);

// The order of an activation's dimensions: channels first, (N, C, ...) as
// PyTorch's default, or channels last, (N, ..., C) as PyTorch's channels_last
// and oneDNN's nhwc. A norm's spec chooses it ("layout"); the statistics,
// parameters and results are the same, only the memory order differs.
enum class Layout { nchw, nhwc };

Layout parse_layout(const std::string& name);  // "nchw" | "nhwc"
const char* to_string(Layout layout);

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

// The conv or linear layer whose output a norm normalizes, for a norm whose
// statistics follow that layer's weight (Cross-Iteration BN compensates the
// statistics of earlier steps for how the weight moved since). Models connect
// it when the norm's traits have reads_preceding_layer.
template <class T>
class PrecedingLayer {
 public:
  virtual ~PrecedingLayer() = default;
  // The weight of its last forward, (out, ...): row c makes output channel c.
  virtual const xt::xarray<T>& last_weight() const = 0;
  // d sum(dy * output) / d weight for the last forward's input (dy in the
  // output's shape and layout), written to dweight; the layer's own
  // gradients are left as they are.
  virtual void weight_gradient(const xt::xarray<T>& dy, xt::xarray<T>& dweight) = 0;
};

// A normalization layer. Concrete norms only describe how elements are grouped
// (see NormDescription) and, where they need to, hook into the engine's phases;
// all arithmetic happens in the shared engine.
//
// Forward: describe the input; then either take the given statistics (eval
// with running statistics) or reduce -> combine_stats -> finish; then
// observe_stats (running statistics); then apply. A norm without a combine
// hook gets the engine's fused calls, which do the same with x read once.
// Backward: reduce -> combine_gradients -> apply, fused likewise.
//
// T is float, double or bfloat16 (normlab/bfloat16.hpp). With bfloat16, x, y,
// dy, dx, the parameters, their gradients and the running state are all
// bfloat16, as a PyTorch module after .to(torch.bfloat16); the arithmetic is
// float or double inside (the engine's, and the norm's own in double), and
// each stored value is rounded once, to nearest even.
//
// Thread safety: one Norm object is used by one thread at a time (its forward
// saves state for its backward); different objects may be used from different
// threads. Builds without NDEBUG check it: a second thread entering a Norm
// that is in use throws std::logic_error. The engine's own threads
// (set_num_threads) are internal to each call.
template <class T>
class Norm {
 public:
  explicit Norm(std::string type);
  virtual ~Norm() = default;
  Norm(const Norm&) = delete;
  Norm& operator=(const Norm&) = delete;

  // y for x. Train mode uses batch statistics and updates running state.
  // Keeps a copy of x for backward().
  xt::xarray<T> forward(const xt::xarray<T>& x, Mode mode);
  // Allocation-free variant (y is resized only if its shape differs). It keeps
  // a reference to x, not a copy: x must stay alive and unchanged until the
  // backward() that follows, as the activations of a network do (the
  // allocating forward above copies x instead). y must not be x: in-place
  // forward is refused with std::invalid_argument, since backward needs x.
  void forward(const xt::xarray<T>& x, Mode mode, xt::xarray<T>& y);

  // dx for the last forward; adds the parameter gradients to Parameter::grad.
  xt::xarray<T> backward(const xt::xarray<T>& dy);
  void backward(const xt::xarray<T>& dy, xt::xarray<T>& dx);

  // Learned parameters by name: "gamma", "beta" (WeightNorm: "g"; FRN also
  // "tau"; EvoNorm-S0 also "v").
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
  // The shape is the input's, in the norm's layout. The built-in norms
  // override prepare_shape instead; a norm of your own may override either.
  virtual void prepare(const std::vector<std::size_t>& shape);
  Layout layout() const { return layout_; }

  // The full spec with every option resolved (as resolve_spec); make_norm(to_json())
  // rebuilds it.
  virtual nlohmann::json to_json() const;
  const std::string& type() const { return type_; }
  // What this norm is, with its options (as norm_traits(to_json()), without
  // the JSON). The base, for a norm of your own: its parameter and state
  // names, every flag false.
  virtual NormTraits traits() const;

  // The layer in front of this norm (not owned; it must outlive the norm's
  // use). Only norms whose traits have reads_preceding_layer read it.
  void connect_preceding_layer(PrecedingLayer<T>* layer) { preceding_layer_ = layer; }
  PrecedingLayer<T>* preceding_layer() const { return preceding_layer_; }

 protected:
  // What prepare() does, for the input's shape with its channels at
  // dimension 1, (N, C, ...), whatever the layout. describe() gets that shape
  // too: forward describes a channels-last input as the same norm on its
  // channels-first form, then turns the description to the channels-last
  // view (the engine's channels_last).
  virtual void prepare_shape(const std::vector<std::size_t>& shape);
  // What the engine needs to know about an input of this shape. Throws
  // std::invalid_argument when the shape does not fit the norm.
  virtual NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const = 0;
  // Set by norms whose options have a layout.
  void set_layout(Layout layout) { layout_ = layout; }

  // Name of the scale parameter the engine multiplies by ("gamma"; WeightNorm "g").
  virtual const char* scale_name() const { return "gamma"; }
  // Name of the parameter a swish or tanh numerator reads as v ("v"; DyT "alpha").
  virtual const char* numerator_parameter_name() const { return "v"; }

  // ---- Hooks into the engine's phases ----
  // True when combine_stats must run between reduce and finish (the fused
  // forward is then not used); combine_stats may merge or replace the
  // statistics, or set the correction r, d. It runs on every forward that
  // reduces statistics from x.
  virtual bool combines_stats() const { return false; }
  virtual void combine_stats(const NormDescription&, Mode, GroupStats&) {}
  // True when combine_gradients must run between the backward's reduce and
  // apply; it may merge the per-group sums (not the parameter sums).
  virtual bool combines_gradients() const { return false; }
  virtual void combine_gradients(const NormDescription&, GradientSums&) {}
  // The statistics of a description with statistics_given (eval with running
  // statistics). The base has none and throws std::logic_error.
  virtual void given_stats(const NormDescription&, GroupStats&) const;
  // Sees the final statistics of every forward that reduced them, before they
  // are applied (running statistics; WeightNorm's initial g).
  virtual void observe_stats(const NormDescription&, Mode, const GroupStats&) {}

  void add_parameter(const std::string& name, xt::xarray<T> initial);
  void add_state(const std::string& name, xt::xarray<T> initial);
  bool has_parameter(const std::string& name) const { return parameters_.count(name) != 0; }
  bool has_state(const std::string& name) const { return state_.count(name) != 0; }
  xt::xarray<T>& mutable_state(const std::string& name) { return state_.at(name); }
  // True once the parameter was given by set(); lets WeightNorm initialize g from v.
  bool was_set(const std::string& name) const { return explicitly_set_.count(name) != 0; }
  // What batch_statistics() returns; norms with running statistics fill it.
  BatchStatistics last_batch_;
  // The input of the forward in progress (valid in combine_stats).
  const xt::xarray<T>& current_input() const { return *current_input_; }

 private:
  NormParameters<T> engine_parameters() const;
  void add_parameter_sums(const ParameterSums& sums);

  std::string type_;
  std::map<std::string, Parameter<T>> parameters_;
  std::map<std::string, xt::xarray<T>> state_;
  std::map<std::string, bool> explicitly_set_;

  Layout layout_ = Layout::nchw;
  std::vector<std::size_t> shape_;           // of the last input; reused to avoid allocating
  std::vector<std::size_t> channels_first_;  // shape_ as (N, C, ...)

  // Saved by forward for backward: the input (see forward), its description
  // and statistics. owned_x_ holds the copy the allocating forward makes.
  const T* saved_x_ = nullptr;
  const xt::xarray<T>* current_input_ = nullptr;
  PrecedingLayer<T>* preceding_layer_ = nullptr;
  xt::xarray<T> owned_x_;
  NormDescription saved_description_{};
  GroupStats saved_stats_;
  GradientSums gradient_sums_;  // reused by every backward
  bool has_forward_ = false;
  std::atomic<bool> in_use_{false};  // checked in builds without NDEBUG
};

// Builds a norm from its JSON spec, for T float, double or bfloat16. `channels` is the size of
// dimension 1 of the activations (WeightNorm: of dimension `dim` of the weight); 0 leaves it to be
// taken from the first input where the norm allows that. The spec's "type" is one of norm_types();
// `normlab list norms` shows each type's keys.
template <class T>
std::unique_ptr<Norm<T>> make_norm(const nlohmann::json& spec, std::size_t channels);

}  // namespace normlab
