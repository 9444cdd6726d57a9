// Shared by the norms whose parameters and running state are per channel
// (dimension 1 of an (N, C, ...) input): BatchNorm, InstanceNorm, GroupNorm,
// Ghost BatchNorm, Batch Renormalization.
#pragma once

#include <stdexcept>
#include <xtensor/xbuilder.hpp>

#include "normlab/norm.hpp"
#include "shapes.hpp"

namespace normlab {

template <class T>
class ChannelNorm : public Norm<T> {
 public:
  // `tracks_by_default`: running statistics for a spec without a
  // track_running_stats key (Batch Renorm always has them).
  ChannelNorm(nlohmann::json spec, std::size_t channels, bool tracks_by_default = false)
      : Norm<T>(std::move(spec)) {
    tracks_ = this->spec_.value("track_running_stats", tracks_by_default);
    if (channels) create(channels);
  }

  void prepare(const std::vector<std::size_t>& shape) override {
    if (shape.size() < 2)
      throw std::invalid_argument(this->type() + " norm needs an input of shape (N, C, ...), got " +
                                  shape_text(shape));
    if (!channels_) create(shape[1]);
    if (shape[1] != channels_)
      throw std::invalid_argument(this->type() + " norm has " + std::to_string(channels_) +
                                  " channels but the input has shape " + shape_text(shape));
  }

 protected:
  // [N, C, prod(spatial)] with per-channel affine when the spec asks for it.
  NormDescription channel_description(const std::vector<std::size_t>& shape) const {
    NormDescription d;
    d.view = {shape[0], shape[1], product(shape, 2, shape.size())};
    d.eps = this->spec_.at("eps").template get<double>();
    const bool affine = this->spec_.at("affine").template get<bool>();
    d.affine = affine ? Affine::per_channel : Affine::none;
    d.has_shift = affine;
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
  std::size_t channels() const { return channels_; }

 private:
  void create(std::size_t channels) {
    channels_ = channels;
    if (this->spec_.at("affine").template get<bool>()) {
      this->add_parameter("gamma", xt::ones<T>({channels}));
      this->add_parameter("beta", xt::zeros<T>({channels}));
    }
    if (tracks_) {
      this->add_state("running_mean", xt::zeros<T>({channels}));
      this->add_state("running_var", xt::ones<T>({channels}));
    }
  }
  std::size_t channels_ = 0;
  bool tracks_ = false;
};

}  // namespace normlab
