// Models built from a name and a norm spec, and the SGD optimizer.
#pragma once

#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "normlab/distributed.hpp"
#include "normlab/layers.hpp"

namespace normlab {

// A stack of layers applied in order.
template <class T>
class Model {
 public:
  void add(std::unique_ptr<Layer<T>> layer) {
    if (first_trainable_ == layers_.size() && layer->parameters().empty()) ++first_trainable_;
    layers_.push_back(std::move(layer));
  }
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode mode);
  // Layers [first, last) applied to x (x itself when first == last); with
  // first = 0 it gives the activations entering layer `last`, for probes.
  const xt::xarray<T>& forward_range(const xt::xarray<T>& x, Mode mode, std::size_t first,
                                     std::size_t last);
  std::size_t size() const { return layers_.size(); }
  Layer<T>& layer(std::size_t i) { return *layers_.at(i); }
  void backward(const xt::xarray<T>& dlogits);
  std::vector<ParameterRef<T>> parameters();
  // Every norm in the model, activation and weight norms alike.
  std::vector<Norm<T>*> norms();
  void initialize(std::uint64_t seed);
  void zero_grad();
  // "conv3x3(1->16) -> group_norm -> relu -> ..."
  std::string summary() const;

 private:
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  // The first layer with parameters: backward stops there, since no gradient
  // before it is used (the layers in front, such as flatten, have none).
  std::size_t first_trainable_ = 0;
};

// Architectures: "cnn3", "mlp2" and the ResNets "resnetD[_wW]" (see README and
// docs/experiments.md). norm_spec is a norm spec
// object as in `normlab apply` ({"type": "none"}: no norm); for "weight" the conv and
// hidden linear weights are weight-normalized. activation_layout nhwc runs
// cnn3's and a ResNet's activations channels last, (N, H, W, C): it still takes (N, 1, 28, 28)
// images and gives the same logits up to the order of floating-point sums.
// Throws std::invalid_argument for an unknown model, a norm that does not fit
// it, a norm without a channels-last form in an nhwc model, and mlp2 in nhwc
// (its activations have no spatial dimensions).
template <class T>
Model<T> build_model(const std::string& architecture, const nlohmann::json& norm_spec,
                     Layout activation_layout = Layout::nchw);

// The named models: cnn3, mlp2 and the ResNet presets resnet8 and resnet20
// (any resnetD[_wW] is a model too).
std::vector<std::string> model_names();

// A ResNet's size from its name: "resnet20" (depth 20, width 16), "resnet8_w4"
// (depth 8, first-stage width 4). Depth is 6n + 2 (n blocks per stage).
// Nullopt for a name not starting with "resnet"; std::invalid_argument for a
// malformed one or a depth that is not 6n + 2.
struct ResNetSize {
  std::size_t depth = 20, width = 16;
};
std::optional<ResNetSize> resnet_size(const std::string& name);

// Whether a model's activations have spatial dimensions (cnn3, the ResNets) or
// not (mlp2); std::invalid_argument naming the choices for an unknown model.
bool model_is_convolutional(const std::string& name);

// The traits of a model's norm choice (the registry's), after checking that
// the models can honour its options.
NormTraits model_norm_traits(const nlohmann::json& norm_spec);

// SGD with momentum and weight decay on every parameter (PyTorch's update:
// d = grad + wd * p; buf = momentum * buf + d; p -= lr * buf).
template <class T>
class Sgd {
 public:
  Sgd(std::vector<ParameterRef<T>> parameters, double momentum, double weight_decay);
  void step(double lr);
  void zero_grad();

 private:
  std::vector<ParameterRef<T>> parameters_;
  std::vector<xt::xarray<T>> velocity_;
  double momentum_, weight_decay_;
  bool first_step_ = true;
};

// The mean time of one training step, split by where it goes: each layer's
// forward and backward (in model order), the loss, the SGD update, and the
// whole step (which also holds zero_grad and the timer calls). One warm-up
// step, then `steps` timed steps on the same batch.
struct StepProfile {
  struct Layer {
    std::string name;
    double forward_seconds = 0, backward_seconds = 0;
  };
  std::vector<Layer> layers;
  double loss_seconds = 0, update_seconds = 0, step_seconds = 0;
};
template <class T>
StepProfile profile_training_step(Model<T>& model, Sgd<T>& sgd, const xt::xarray<T>& x,
                                  const std::vector<std::uint8_t>& labels, std::size_t steps,
                                  double lr);

// Data-parallel training: replaces every gradient in `parameters` by its mean
// over the ranks of `group`, and likewise the `extra` values (a step's loss),
// with one all-reduce of one buffer. Every rank gets the same values.
template <class T>
void average_gradients(const std::vector<ParameterRef<T>>& parameters, Communicator& group,
                       double* extra = nullptr, std::size_t extra_count = 0);

}  // namespace normlab
