// Model: a layer stack; build_model: cnn3 and mlp2 with a norm of choice.
#include "normlab/model.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "learned_weight.hpp"
#include "normlab/registry.hpp"

namespace normlab {

template <class T>
const xt::xarray<T>& Model<T>::forward(const xt::xarray<T>& x, Mode mode) {
  return forward_range(x, mode, 0, layers_.size());
}

template <class T>
const xt::xarray<T>& Model<T>::forward_range(const xt::xarray<T>& x, Mode mode, std::size_t first,
                                             std::size_t last) {
  if (first > last || last > layers_.size())
    throw std::out_of_range("forward_range: layers [" + std::to_string(first) + ", " +
                            std::to_string(last) + ") of a model with " +
                            std::to_string(layers_.size()));
  const xt::xarray<T>* h = &x;
  for (std::size_t i = first; i < last; ++i) h = &layers_[i]->forward(*h, mode);
  return *h;
}

template <class T>
void Model<T>::backward(const xt::xarray<T>& dlogits) {
  const xt::xarray<T>* g = &dlogits;
  for (std::size_t i = layers_.size(); i-- > first_trainable_ + 1;) g = &layers_[i]->backward(*g);
  if (first_trainable_ < layers_.size())  // dx in front of it is not used
    layers_[first_trainable_]->backward_parameters_only(*g);
}

template <class T>
std::vector<ParameterRef<T>> Model<T>::parameters() {
  std::vector<ParameterRef<T>> all;
  for (auto& layer : layers_)
    for (auto& p : layer->parameters())
      all.push_back({layer->name() + "." + p.name, p.value, p.grad});
  return all;
}

template <class T>
std::vector<Norm<T>*> Model<T>::norms() {
  std::vector<Norm<T>*> all;
  for (auto& layer : layers_)
    for (Norm<T>* n : layer->norms()) all.push_back(n);
  return all;
}

template <class T>
void Model<T>::initialize(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (auto& layer : layers_) layer->initialize(rng);
}

template <class T>
void Model<T>::zero_grad() {
  for (auto& p : parameters()) p.grad->fill(T(0));
}

template <class T>
std::string Model<T>::summary() const {
  std::string text;
  for (const auto& layer : layers_) text += (text.empty() ? "" : " -> ") + layer->name();
  return text;
}

namespace {

// How the chosen norm enters a conv or hidden linear layer of `channels` outputs.
struct NormPlan {
  nlohmann::json spec;
  NormTraits traits;
  std::string architecture;
  Layout layout = Layout::nchw;  // of the model's activations

  // No norm after the layer ("none"), or one inside its weight: the layer keeps its bias.
  bool bias() const { return traits.identity || traits.reparameterizes_weight; }
  // The norm itself when it is a weight norm, or the one its activation norm
  // asks for in front of it (MABN's weight centering).
  WeightReparameterization weight_norm() const {
    if (traits.reparameterizes_weight) return spec["type"].get<std::string>();
    return traits.preceding_weight;
  }
  bool activation_norm() const { return !bias(); }
  // The registry adapts the spec to the layer (GroupNorm's groups, LayerNorm's
  // shape); a channels-last model then gives a spatial layer's norm its layout.
  nlohmann::json for_layer(std::size_t channels, bool spatial) const {
    try {
      nlohmann::json fitted = layer_spec(spec, channels, spatial);
      if (spatial && layout == Layout::nhwc) fitted["layout"] = to_string(layout);
      return fitted;
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(e.what()) + " (in " + architecture + ")");
    }
  }
};

// The model's activations are in `layout`, so its norms must be too: a norm
// type without a "layout" option has no channels-last form, and a spec's own
// "layout" must agree with the model's.
void check_norm_layout(const nlohmann::json& spec, const std::string& architecture, Layout layout) {
  const std::string type = spec["type"].get<std::string>();
  if (spec.contains("layout") && spec["layout"] != to_string(layout))
    throw std::invalid_argument("norm '" + type + "': \"layout\": " + spec["layout"].dump() +
                                " in its spec, but the " + architecture + " activations are " +
                                to_string(layout) +
                                " (the model sets its norms' layout: drop \"layout\" from the "
                                "norm spec and choose the model's activation layout instead)");
  if (layout == Layout::nchw) return;
  const std::vector<NormOption>& options = norm_info(type).options;
  const bool has_layout = std::any_of(options.begin(), options.end(),
                                      [](const NormOption& o) { return o.key == "layout"; });
  if (!has_layout)
    throw std::invalid_argument("norm '" + type + "' has no channels-last (nhwc) form, so " +
                                architecture +
                                " cannot run it with nhwc activations: use the nchw layout with "
                                "it, or a norm with a \"layout\" option (normlab list norms)");
}

// A reparameterized layer builds layer_weight_norm_spec(type); an option that
// asks for something else would be accepted and ignored, so it is refused.
void check_weight_norm_options(const nlohmann::json& norm_spec, const std::string& architecture) {
  const nlohmann::json given = resolve_spec(norm_spec),
                       built = resolve_spec(layer_weight_norm_spec(given["type"]));
  for (const auto& [key, value] : given.items())
    if (!built.contains(key) || built[key] != value)
      throw std::invalid_argument(
          "norm '" + given["type"].get<std::string>() + "': \"" + key + "\": " + value.dump() +
          " cannot be honoured: " +
          (architecture.empty() ? std::string("the models") : architecture) +
          " weight-normalize each layer's weight as " + built.dump() +
          " (one g per output); drop \"" + key + "\" from the spec");
}

NormPlan plan_norm(const nlohmann::json& norm_spec, const std::string& architecture = "",
                   Layout layout = Layout::nchw) {
  if (!norm_spec.is_object() || !norm_spec.contains("type") || !norm_spec["type"].is_string())
    throw std::invalid_argument("norm: expected an object with a \"type\", got " +
                                norm_spec.dump());
  // Rejects unknown types and keys early, naming them.
  NormPlan plan{norm_spec, norm_traits(norm_spec), architecture, layout};
  // A norm that is the weight's own reparameterization (not one that asks for
  // another in front of it, as mabn does) is built with the layer's spec.
  if (plan.traits.reparameterizes_weight) check_weight_norm_options(norm_spec, architecture);
  return plan;
}

// The norm layer after `front`, the conv or linear layer whose outputs it
// normalizes; connected to it when the norm reads that layer (Cross-Iteration BN).
template <class T>
std::unique_ptr<Layer<T>> make_norm_after(Layer<T>& front, const NormPlan& plan,
                                          std::size_t channels, bool spatial) {
  std::unique_ptr<Norm<T>> norm = make_norm<T>(plan.for_layer(channels, spatial), channels);
  if (plan.traits.reads_preceding_layer) {
    auto* layer = dynamic_cast<PrecedingLayer<T>*>(&front);
    if (!layer)
      throw std::logic_error("norm '" + norm->type() + "' follows " + front.name() +
                             ", which has no weight to read");
    norm->connect_preceding_layer(layer);
  }
  return make_norm_layer<T>(std::move(norm));
}

// The norm of a block after `front` and its activation: a ReLU, unless the
// norm is one (FRN with its TLU, EvoNorm-S0), as their papers use them.
template <class T>
void add_norm_and_activation(Model<T>& model, Layer<T>& front, const NormPlan& plan,
                             std::size_t channels, bool spatial) {
  if (plan.activation_norm()) model.add(make_norm_after(front, plan, channels, spatial));
  if (!plan.traits.includes_activation) model.add(make_relu<T>());
}

// Adds a layer and returns it, for the norm that follows it.
template <class T>
Layer<T>& add_layer(Model<T>& model, std::unique_ptr<Layer<T>> layer) {
  Layer<T>& added = *layer;
  model.add(std::move(layer));
  return added;
}

template <class T>
void add_conv_block(Model<T>& model, const NormPlan& plan, std::size_t in, std::size_t out) {
  Layer<T>& conv = add_layer(
      model, make_conv2d<T>(in, out, 3, 1, 1, plan.bias(), plan.weight_norm(), plan.layout));
  add_norm_and_activation(model, conv, plan, out, /*spatial=*/true);
}

// The norm after a convolution that no ReLU follows (the second of a residual
// block, and the projection shortcut's): the norm alone.
template <class T>
void add_norm(std::vector<std::unique_ptr<Layer<T>>>& layers, Layer<T>& front, const NormPlan& plan,
              std::size_t channels) {
  if (plan.activation_norm()) layers.push_back(make_norm_after(front, plan, channels, true));
}

// A basic residual block, in -> out channels at `stride`:
//   x (N, in, H, W) -> conv3x3/stride -> norm -> relu -> conv3x3 -> norm -> (N, out, H', W')
//   y = relu(that + s(x)), s = identity, or conv1x1/stride -> norm when the shape changes.
template <class T>
void add_basic_block(Model<T>& model, const NormPlan& plan, std::size_t in, std::size_t out,
                     std::size_t stride) {
  std::vector<std::unique_ptr<Layer<T>>> shortcut;
  if (in != out || stride != 1) {
    shortcut.push_back(
        make_conv2d<T>(in, out, 1, stride, 0, plan.bias(), plan.weight_norm(), plan.layout));
    add_norm(shortcut, *shortcut.back(), plan, out);
  }
  ResidualLayers<T> residual = make_residual<T>(std::move(shortcut));
  model.add(std::move(residual.fork));
  Layer<T>& first = add_layer(
      model, make_conv2d<T>(in, out, 3, stride, 1, plan.bias(), plan.weight_norm(), plan.layout));
  add_norm_and_activation(model, first, plan, out, /*spatial=*/true);
  Layer<T>& second = add_layer(
      model, make_conv2d<T>(out, out, 3, 1, 1, plan.bias(), plan.weight_norm(), plan.layout));
  std::vector<std::unique_ptr<Layer<T>>> second_norm;
  add_norm(second_norm, second, plan, out);
  for (auto& layer : second_norm) model.add(std::move(layer));
  model.add(std::move(residual.join));
  model.add(make_relu<T>());
}

// ResNet for 28x28 images (the CIFAR ResNets of He et al. 2016, section 4.2):
// (N,1,28,28) -> stem conv3x3 1->w, norm, relu -> stage 1: n blocks of width w at 28x28 ->
// stage 2: n blocks of 2w, the first at stride 2, 14x14 -> stage 3: n blocks of 4w, 7x7 ->
// global average pool (N,4w) -> linear 10. depth = 6n + 2 layers with weights.
template <class T>
void add_resnet(Model<T>& model, const NormPlan& plan, const ResNetSize& size) {
  if (plan.layout == Layout::nhwc) model.add(make_channels_last<T>());
  const std::size_t w = size.width, blocks = (size.depth - 2) / 6;
  Layer<T>& stem =
      add_layer(model, make_conv2d<T>(1, w, 3, 1, 1, plan.bias(), plan.weight_norm(), plan.layout));
  add_norm_and_activation(model, stem, plan, w, /*spatial=*/true);
  std::size_t channels = w;
  for (std::size_t stage = 0; stage < 3; ++stage) {
    const std::size_t width = w << stage;
    for (std::size_t b = 0; b < blocks; ++b) {
      add_basic_block(model, plan, channels, width, stage > 0 && b == 0 ? 2 : 1);
      channels = width;
    }
  }
  model.add(make_global_avg_pool<T>(plan.layout));
  model.add(make_linear<T>(channels, 10, true, false));
}

template <class T>
void add_hidden_linear(Model<T>& model, const NormPlan& plan, std::size_t in, std::size_t out) {
  Layer<T>& linear = add_layer(model, make_linear<T>(in, out, plan.bias(), plan.weight_norm()));
  add_norm_and_activation(model, linear, plan, out, /*spatial=*/false);
}

}  // namespace

std::vector<std::string> model_names() {
  return {"cnn3", "mlp2", "resnet8", "resnet20"};
}

namespace {
const char* const kModelChoices = "use cnn3, mlp2, or resnetD[_wW] such as resnet8, resnet20";
constexpr std::size_t kMaxResNetDepth = 110, kMaxResNetWidth = 256;

// Digits only, no sign or leading zero, at most 4 of them.
bool small_number(const std::string& text, std::size_t& value) {
  if (text.empty() || text.size() > 4 || text[0] == '0') return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  value = std::stoul(text);
  return true;
}
}  // namespace

std::optional<ResNetSize> resnet_size(const std::string& name) {
  if (name.rfind("resnet", 0) != 0) return std::nullopt;
  const std::string rest = name.substr(6);
  const std::size_t w = rest.find("_w");
  ResNetSize size;
  const bool ok = small_number(rest.substr(0, w), size.depth) &&
                  (w == std::string::npos || small_number(rest.substr(w + 2), size.width));
  if (!ok)
    throw std::invalid_argument("unknown model '" + name +
                                "': a ResNet is resnetD or resnetD_wW, D the depth (6n + 2: 8, "
                                "14, 20, ...) and W the width of the first stage (default 16); " +
                                kModelChoices);
  if (size.depth < 8 || (size.depth - 2) % 6 != 0)
    throw std::invalid_argument("model '" + name + "': the depth of a ResNet is 6n + 2 (8, 14, " +
                                "20, 26, 32, ...), got " + std::to_string(size.depth));
  // Bounds that keep a typo from asking for gigabytes of weights (ResNet-110 is
  // the deepest CIFAR ResNet of the paper).
  if (size.depth > kMaxResNetDepth || size.width > kMaxResNetWidth)
    throw std::invalid_argument("model '" + name + "': a ResNet here has depth at most " +
                                std::to_string(kMaxResNetDepth) + " and width at most " +
                                std::to_string(kMaxResNetWidth));
  return size;
}

bool model_is_convolutional(const std::string& name) {
  if (name == "mlp2") return false;
  if (name == "cnn3" || resnet_size(name)) return true;
  throw std::invalid_argument("unknown model '" + name + "' (" + kModelChoices + ")");
}

NormTraits model_norm_traits(const nlohmann::json& norm_spec) {
  return plan_norm(norm_spec).traits;
}

template <class T>
Model<T> build_model(const std::string& architecture, const nlohmann::json& norm_spec,
                     Layout activation_layout) {
  if (!model_is_convolutional(architecture) && activation_layout == Layout::nhwc)
    throw std::invalid_argument(
        "mlp2 has no channels-last (nhwc) form: its activations are (N, features), the same in "
        "both layouts; build it with the nchw layout, or use cnn3 or a resnet");
  const NormPlan plan = plan_norm(norm_spec, architecture, activation_layout);
  if (plan.activation_norm()) check_norm_layout(norm_spec, architecture, activation_layout);
  Model<T> model;
  if (architecture == "cnn3") {
    // (N,1,28,28) -> conv 16 -> pool -> (N,16,14,14) -> conv 32 -> pool -> (N,32,7,7) -> conv 64
    // -> global average pool (N,64) -> linear 10. Channels last, the images are reordered
    // to (N,28,28,1) first and every activation up to the pool is (N, H, W, C).
    if (activation_layout == Layout::nhwc) model.add(make_channels_last<T>());
    add_conv_block(model, plan, 1, 16);
    model.add(make_max_pool2d<T>(2, activation_layout));
    add_conv_block(model, plan, 16, 32);
    model.add(make_max_pool2d<T>(2, activation_layout));
    add_conv_block(model, plan, 32, 64);
    model.add(make_global_avg_pool<T>(activation_layout));
    model.add(make_linear<T>(64, 10, true, false));
  } else if (architecture == "mlp2") {
    if (plan.traits.needs_spatial)
      throw std::invalid_argument("norm '" + plan.spec["type"].get<std::string>() +
                                  "' needs spatial extent and mlp2 has none: use it with cnn3");
    // (N,1,28,28) -> flatten (N,784) -> linear 256 -> linear 256 -> linear 10
    model.add(make_flatten<T>());
    add_hidden_linear(model, plan, 784, 256);
    add_hidden_linear(model, plan, 256, 256);
    model.add(make_linear<T>(256, 10, true, false));
  } else {
    add_resnet(model, plan, *resnet_size(architecture));  // the only other kind left
  }
  return model;
}

template <class T>
Sgd<T>::Sgd(std::vector<ParameterRef<T>> parameters, double momentum, double weight_decay)
    : parameters_(std::move(parameters)), momentum_(momentum), weight_decay_(weight_decay) {
  for (const auto& p : parameters_) velocity_.push_back(xt::zeros<T>(p.value->shape()));
}

template <class T>
void Sgd<T>::step(double lr) {
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    T* value = parameters_[i].value->data();
    const T* grad = parameters_[i].grad->data();
    T* velocity = velocity_[i].data();
    const std::size_t n = parameters_[i].value->size();
    const T wd = T(weight_decay_), rate = T(lr);
    const T m = first_step_ ? T(0) : T(momentum_);  // PyTorch: the first buffer is d itself
    for (std::size_t k = 0; k < n; ++k) {
      const T d = grad[k] + wd * value[k];
      velocity[k] = m * velocity[k] + d;
      value[k] -= rate * velocity[k];
    }
  }
  first_step_ = false;
}

template <class T>
void Sgd<T>::zero_grad() {
  for (auto& p : parameters_) p.grad->fill(T(0));
}

template <class T>
void average_gradients(const std::vector<ParameterRef<T>>& parameters, Communicator& group,
                       double* extra, std::size_t extra_count) {
  if (group.size() == 1) return;
  static thread_local std::vector<double> buffer;  // reused: no allocation per step
  std::size_t total = extra_count;
  for (const auto& p : parameters) total += p.grad->size();
  buffer.resize(total);
  std::size_t at = 0;
  for (const auto& p : parameters)
    for (T g : *p.grad) buffer[at++] = double(g);
  std::copy(extra, extra + extra_count, buffer.begin() + std::ptrdiff_t(at));
  group.all_reduce_sum(buffer.data(), total);
  const double ranks = double(group.size());
  at = 0;
  for (const auto& p : parameters)
    for (T& g : *p.grad) g = T(buffer[at++] / ranks);
  for (std::size_t i = 0; i < extra_count; ++i) extra[i] = buffer[at + i] / ranks;
}

template class Model<float>;
template class Model<double>;
template Model<float> build_model<float>(const std::string&, const nlohmann::json&, Layout);
template Model<double> build_model<double>(const std::string&, const nlohmann::json&, Layout);
template class Sgd<float>;
template class Sgd<double>;
template void average_gradients<float>(const std::vector<ParameterRef<float>>&, Communicator&,
                                       double*, std::size_t);
template void average_gradients<double>(const std::vector<ParameterRef<double>>&, Communicator&,
                                        double*, std::size_t);

}  // namespace normlab
