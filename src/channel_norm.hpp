// Shared by the norms whose parameters and running state are per channel
// (dimension 1 of an (N, C, ...) input): BatchNorm, InstanceNorm, GroupNorm.
#pragma once

#include <stdexcept>
#include <xtensor/xbuilder.hpp>

#include "normlab/norm.hpp"
#include "shapes.hpp"

namespace normlab {

template <class T>
class ChannelNorm : public Norm<T> {
 public:
  ChannelNorm(nlohmann::json spec, std::size_t channels) : Norm<T>(std::move(spec)) {
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
    const bool track = this->spec_.value("track_running_stats", false);
    d.tracks_running_stats = track;
    d.statistics_given = track && mode == Mode::eval;
  }
  std::size_t channels() const { return channels_; }

 private:
  void create(std::size_t channels) {
    channels_ = channels;
    if (this->spec_.at("affine").template get<bool>()) {
      this->add_parameter("gamma", xt::ones<T>({channels}));
      this->add_parameter("beta", xt::zeros<T>({channels}));
    }
    if (this->spec_.value("track_running_stats", false)) {
      this->add_state("running_mean", xt::zeros<T>({channels}));
      this->add_state("running_var", xt::ones<T>({channels}));
    }
  }
  std::size_t channels_ = 0;
};

}  // namespace normlab
