// Shared by the norms whose parameters and running state are per channel
// (dimension 1 of an (N, C, ...) input): BatchNorm, InstanceNorm, GroupNorm,
// Ghost BatchNorm, Batch Renormalization, FRN, EvoNorm-S0.
#pragma once

#include <cstring>
#include <optional>
#include <stdexcept>
#include <xtensor/xbuilder.hpp>

#include "normlab/bfloat16.hpp"

#include "registry.hpp"
#include "shapes.hpp"

namespace normlab {

// The options per-channel norms share; each type's schema names the ones it
// has and its struct may change the defaults.
struct ChannelOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // null: cumulative average
  bool affine = true;
  bool track_running_stats = true;
  Layout layout = Layout::nchw;
};

// The "layout" key: where an input's channels are (written only when nhwc).
template <class Options>
OptionSchema<Options>& layout_option(OptionSchema<Options>& schema) {
  return schema.template choice<Layout>(
      "layout", &Options::layout, {{"nchw", Layout::nchw}, {"nhwc", Layout::nhwc}},
      "channels at dimension 1, (N, C, H, W), or last, (N, H, W, C)",
      /*written_when_default=*/false);
}

// The schema entries of ChannelOptions: eps and affine always; momentum and
// track_running_stats for types with optional running statistics.
template <class Options>
OptionSchema<Options>& channel_options(OptionSchema<Options>& schema, bool optional_running) {
  schema.number("eps", &Options::eps, {0}, "added to the variance before the square root");
  if (optional_running)
    schema
        .number_or_null("momentum", &Options::momentum, {0, 1}, "cumulative average",
                        "weight of each batch in the running statistics")
        .boolean("affine", &Options::affine, "learned gamma and beta per channel")
        .boolean("track_running_stats", &Options::track_running_stats,
                 "keep running statistics and use them in eval");
  else
    schema.boolean("affine", &Options::affine, "learned gamma and beta per channel");
  return layout_option(schema);
}

// Parameter and state names of a per-channel norm, for its traits.
inline void channel_names(NormTraits& traits, bool affine, bool running) {
  if (affine) traits.parameters = {"gamma", "beta"};
  if (running) traits.state = {"running_mean", "running_var"};
  traits.running_state = running;
}

// C must split into `groups` groups (GroupNorm, EvoNorm-S0).
inline void require_channel_groups(const std::string& type, std::size_t channels,
                                   std::size_t groups) {
  if (channels % groups != 0)
    throw std::invalid_argument(type + " norm: " + std::to_string(channels) +
                                " channels do not split into " + std::to_string(groups) +
                                " groups (C % G must be 0; choose groups dividing C)");
}

// The running state num_batches_tracked: a count of train forwards, kept as a
// T array of one value (as PyTorch's buffer), which set() and state() see.
// bfloat16 holds integers exactly only up to 256 (8 significant bits), so the
// count itself is kept here, in double, and the state holds it rounded to T;
// a value put into the state from outside (set(): a loaded model, apply's
// --param) becomes the count. For float and double the state and the count
// are the same number (for float up to 2^24 forwards).
template <class T>
class StepCount {
 public:
  // The count so far.
  double value(const xt::xarray<T>& state) {
    if (std::memcmp(&state(0), &written_, sizeof(T)) != 0) count_ = double(state(0));
    return count_;
  }
  // Counts one more train forward; returns the new count.
  double increment(xt::xarray<T>& state) {
    count_ = value(state) + 1;
    state(0) = written_ = nearest<T>(count_);
    return count_;
  }

 private:
  double count_ = 0;
  T written_ = nearest<T>(0.0);  // what the state held when this last looked
};

template <class T, class Options>
class ChannelNorm : public NormWithOptions<T, Options> {
 public:
  // `tracks`: whether this norm keeps running statistics.
  ChannelNorm(std::string type, const Options& options, std::size_t channels, bool tracks)
      : NormWithOptions<T, Options>(std::move(type), options), tracks_(tracks) {
    this->set_layout(options.layout);
    if (channels) create(channels);
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    if (shape.size() < 2)
      throw std::invalid_argument(this->type() + " norm needs an input of shape (N, C, ...), got " +
                                  shape_text(shape));
    if (!channels_) create(shape[1]);
    if (shape[1] != channels_)
      throw std::invalid_argument(this->type() + " norm has " + std::to_string(channels_) +
                                  " channels but the input has shape " + shape_text(shape));
  }

 protected:
  // [N, C, prod(spatial)] with per-channel affine when the options ask for it.
  NormDescription channel_description(const std::vector<std::size_t>& shape) const {
    NormDescription d;
    d.view = {shape[0], shape[1], product(shape, 2, shape.size())};
    d.eps = this->options_.eps;
    d.affine = this->options_.affine ? Affine::per_channel : Affine::none;
    d.has_shift = this->options_.affine;
    return d;
  }
  // Eval uses the running statistics where they are tracked; train updates them.
  void use_running_stats(NormDescription& d, Mode mode) const {
    d.tracks_running_stats = tracks_;
    d.statistics_given = tracks_ && mode == Mode::eval;
  }
  // BatchNorm's grouping: per channel over the batch and spatial positions.
  NormDescription batch_description(const std::vector<std::size_t>& shape, Mode mode) const {
    NormDescription d = channel_description(shape);
    d.pooling = Pooling::per_channel;
    use_running_stats(d, mode);
    return d;
  }
  // Batch statistics of a single value are undefined (zero variance).
  void require_values_to_train(const NormDescription& d, const std::vector<std::size_t>& shape,
                               Mode mode) const {
    if (mode != Mode::train || d.group_size() >= 2) return;
    const bool ghost = d.outer_chunk != 0;
    throw std::invalid_argument(this->type() + " norm needs more than one value per channel" +
                                (ghost ? " in each virtual batch" : "") +
                                " when training, got input shape " + shape_text(shape) +
                                (ghost ? " (use a virtual_batch_size larger than 1 or eval mode)"
                                       : " (use a batch larger than 1 or eval mode)"));
  }
  // batch_description for a norm whose training needs batch statistics.
  NormDescription batch_description_to_train(const std::vector<std::size_t>& shape,
                                             Mode mode) const {
    NormDescription d = batch_description(shape, mode);
    require_values_to_train(d, shape, mode);
    return d;
  }
  // Per-channel norms without spatial positions have one value per group.
  void require_spatial(const std::vector<std::size_t>& shape, Mode mode) const {
    if (product(shape, 2, shape.size()) >= 2) return;
    throw std::invalid_argument(
        this->type() + " norm needs more than one spatial element per channel" +
        (mode == Mode::train ? " when training" : "") + ", got input shape " + shape_text(shape) +
        " (use an (N, C, H, W) or (N, C, L) input)");
  }
  std::size_t channels() const { return channels_; }

  // Running statistics, per channel: each group maps to the channel it covers
  // (groups are numbered chunk or sample * channels + channel).
  void given_stats(const NormDescription& d, GroupStats& stats) const override {
    const xt::xarray<T>& running_mean = this->state("running_mean");
    const xt::xarray<T>& running_var = this->state("running_var");
    stats.resize(d.groups());
    stats.count = double(d.group_size());
    for (std::size_t g = 0; g < d.groups(); ++g) {
      stats.mean[g] = double(running_mean(g % d.view.channels));
      stats.var[g] = double(running_var(g % d.view.channels));
    }
    finish_stats(d, stats);
  }
  void observe_stats(const NormDescription& d, Mode mode, const GroupStats& stats) override {
    if (mode == Mode::train && d.tracks_running_stats) update_running_stats(d, stats);
  }

 private:
  void create(std::size_t channels) {
    channels_ = channels;
    if (this->options_.affine) {
      this->add_parameter("gamma", xt::ones<T>({channels}));
      this->add_parameter("beta", xt::zeros<T>({channels}));
    }
    if (tracks_) {
      this->add_state("running_mean", xt::zeros<T>({channels}));
      this->add_state("running_var", xt::ones<T>({channels}));
    }
  }

  // A channel's batch statistics: the average over its groups (InstanceNorm
  // averages its per-sample statistics, as PyTorch does; Ghost BN its virtual
  // batches', as Keras does), each variance unbiased with the group's count
  // (after combine: the count over every process).
  void update_running_stats(const NormDescription& d, const GroupStats& stats) {
    const std::size_t channels = d.view.channels;
    const double unbiased = stats.count / (stats.count - 1);
    const std::size_t per_channel = stats.mean.size() / channels;
    BatchStatistics& batch = this->last_batch_;
    batch.mean.assign(channels, 0.0);
    batch.var.assign(channels, 0.0);
    for (std::size_t g = 0; g < stats.mean.size(); ++g) {
      batch.mean[g % channels] += stats.mean[g] / double(per_channel);
      batch.var[g % channels] += stats.var[g] * unbiased / double(per_channel);
    }
    ++batches_tracked_;
    const double momentum =
        this->options_.momentum ? *this->options_.momentum : 1.0 / double(batches_tracked_);
    xt::xarray<T>& running_mean = this->mutable_state("running_mean");
    xt::xarray<T>& running_var = this->mutable_state("running_var");
    for (std::size_t c = 0; c < channels; ++c) {
      running_mean(c) =
          nearest<T>((1 - momentum) * double(running_mean(c)) + momentum * batch.mean[c]);
      running_var(c) =
          nearest<T>((1 - momentum) * double(running_var(c)) + momentum * batch.var[c]);
    }
  }

  std::size_t channels_ = 0;
  bool tracks_ = false;
  std::size_t batches_tracked_ = 0;
};

}  // namespace normlab
