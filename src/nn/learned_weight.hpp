// The weight of a conv or linear layer: plain, or reparameterized by a weight
// norm (WeightNorm, w = g * v / ||v|| per output row; weight centering,
// w = v - mean(v)), plus an optional bias.
#pragma once

#include <cmath>
#include <random>
#include <xtensor/xbuilder.hpp>

#include "normlab/layers.hpp"

namespace normlab {

// The weight norm every reparameterized layer builds (WeightNorm, or MABN's
// weight centering): one row per output (dim 0). Model building refuses a spec
// asking for anything else (model.cpp).
inline nlohmann::json layer_weight_norm_spec(const std::string& type = "weight") {
  return {{"type", type}, {"dim", 0}};
}

template <class T>
class LearnedWeight {
 public:
  // shape: (out, ...) -- the first dimension is the output.
  LearnedWeight(std::vector<std::size_t> shape, bool bias,
                const WeightReparameterization& weight_norm)
      : v_(xt::zeros<T>(shape)), dv_(xt::zeros<T>(shape)) {
    if (bias) {
      bias_ = xt::zeros<T>({shape[0]});
      dbias_ = xt::zeros<T>({shape[0]});
    }
    if (weight_norm) {
      weight_norm_ = make_norm<T>(layer_weight_norm_spec(weight_norm.type), shape[0]);
      dw_ = xt::zeros<T>(shape);
    }
  }

  // He-normal: std = sqrt(2 / fan_in), fan_in = elements per output row.
  void initialize(std::mt19937_64& rng) {
    const double fan_in = double(v_.size() / v_.shape(0));
    std::normal_distribution<double> normal(0.0, std::sqrt(2.0 / fan_in));
    for (T& value : v_) value = T(normal(rng));
    if (has_bias()) bias_.fill(T(0));
  }

  // The weight to use in this forward.
  const xt::xarray<T>& weight(Mode mode) {
    if (!weight_norm_) return v_;
    weight_norm_->forward(v_, mode, w_);
    return w_;
  }
  // The weight of the last forward.
  const xt::xarray<T>& last_weight() const { return weight_norm_ ? w_ : v_; }

  // Where the layer accumulates dL/dw during backward.
  xt::xarray<T>& weight_grad() {
    if (capture_) {
      capture_->resize(v_.shape());
      capture_->fill(T(0));
      return *capture_;
    }
    if (!weight_norm_) return dv_;
    dw_.fill(T(0));
    return dw_;
  }
  // After the layer has filled weight_grad(): carry it to v and g.
  void finish_backward() {
    if (capture_ || !weight_norm_) return;
    weight_norm_->backward(dw_, dv_step_);
    dv_ += dv_step_;
  }
  // Between these, a backward writes dL/dw (of the weight itself, not v or g)
  // to `dweight` and its bias gradient nowhere: the parameter gradients stay.
  void begin_capture(xt::xarray<T>& dweight) {
    capture_ = &dweight;
    // Its contents are never read: sized once, not cleared.
    if (has_bias() && bias_scratch_.shape() != bias_.shape()) bias_scratch_.resize(bias_.shape());
  }
  void end_capture() { capture_ = nullptr; }

  bool has_bias() const { return bias_.dimension() != 0; }  // a default xarray is 0-d, size 1
  T* bias() { return bias_.data(); }
  T* bias_grad() { return capture_ ? bias_scratch_.data() : dbias_.data(); }
  Norm<T>* norm() { return weight_norm_.get(); }

  void append_parameters(std::vector<ParameterRef<T>>& out) {
    out.push_back({weight_norm_ ? "v" : "weight", &v_, &dv_});
    if (weight_norm_)
      for (const std::string& name : weight_norm_->parameter_names()) {  // WeightNorm's g
        Parameter<T>& p = weight_norm_->parameter(name);
        out.push_back({name, &p.value, &p.grad});
      }
    if (has_bias()) out.push_back({"bias", &bias_, &dbias_});
  }

 private:
  xt::xarray<T> v_, dv_;
  xt::xarray<T> bias_, dbias_;
  std::unique_ptr<Norm<T>> weight_norm_;
  xt::xarray<T> w_, dw_, dv_step_;
  xt::xarray<T>* capture_ = nullptr;  // set between begin_capture and end_capture
  xt::xarray<T> bias_scratch_;
};

// A conv or linear layer: everything about its learned weight is shared.
// It is the PrecedingLayer of the norm after it.
template <class T>
class WeightedLayer : public Layer<T>, public PrecedingLayer<T> {
 public:
  WeightedLayer(std::vector<std::size_t> weight_shape, bool bias,
                const WeightReparameterization& weight_norm)
      : weight_(std::move(weight_shape), bias, weight_norm) {}
  std::vector<ParameterRef<T>> parameters() override {
    std::vector<ParameterRef<T>> out;
    weight_.append_parameters(out);
    return out;
  }
  Norm<T>* norm() override { return weight_.norm(); }
  void initialize(std::mt19937_64& rng) override { weight_.initialize(rng); }
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) final {
    backward_pass(dy, /*input_gradient=*/true);
    return dx_;
  }
  void backward_parameters_only(const xt::xarray<T>& dy) final {
    backward_pass(dy, /*input_gradient=*/false);
  }
  const xt::xarray<T>& last_weight() const final { return weight_.last_weight(); }
  void weight_gradient(const xt::xarray<T>& dy, xt::xarray<T>& dweight) final {
    weight_.begin_capture(dweight);
    try {
      backward_pass(dy, /*input_gradient=*/false);
    } catch (...) {
      weight_.end_capture();
      throw;
    }
    weight_.end_capture();
  }

 protected:
  // Adds into the parameter gradients; with input_gradient also writes dx_
  // (a model's first trainable layer skips it: nothing uses it).
  virtual void backward_pass(const xt::xarray<T>& dy, bool input_gradient) = 0;
  LearnedWeight<T> weight_;
  xt::xarray<T> dx_;
};

}  // namespace normlab
