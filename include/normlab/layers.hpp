// The training stack's layers: each a forward and a backward over row-major
// xtensor arrays, shapes in comments. Outputs are buffers owned by the layer
// (valid until its next call), so a training step allocates nothing once warm.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include "normlab/norm.hpp"

namespace normlab {

// A learned tensor of a layer, as the optimizer sees it.
template <class T>
struct ParameterRef {
  std::string name;
  xt::xarray<T>* value;
  xt::xarray<T>* grad;
};

template <class T>
class Layer {
 public:
  virtual ~Layer() = default;
  virtual const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode mode) = 0;
  // dx for the last forward; adds into the parameter gradients.
  virtual const xt::xarray<T>& backward(const xt::xarray<T>& dy) = 0;
  // Only the parameter gradients, when nothing needs dx (a model's first
  // layer): layers that can skip computing dx do.
  virtual void backward_parameters_only(const xt::xarray<T>& dy) { backward(dy); }
  virtual std::vector<ParameterRef<T>> parameters() { return {}; }
  // The layer's norm, if it has one (activation norm or weight norm).
  virtual Norm<T>* norm() { return nullptr; }
  // Every norm the layer holds: norm(), or those of the layers inside it (a
  // residual join's shortcut).
  virtual std::vector<Norm<T>*> norms() {
    if (Norm<T>* n = norm()) return {n};
    return {};
  }
  // He-normal weights (fan_in, ReLU gain sqrt(2)) and zero biases; layers
  // without weights do nothing. Norms keep gamma 1, beta 0; a weight norm's g
  // is set from v on the first forward, so w == v at start.
  virtual void initialize(std::mt19937_64&) {}
  virtual std::string name() const = 0;
};

// How a conv or linear layer's weight is reparameterized: not at all, or by a
// registered weight norm applied to each output slice of the learned v (its
// type: "weight", WeightNorm, w = g * v / ||v||; "weight_centering", w = v -
// mean(v), which MABN pairs with). A bool says WeightNorm or nothing.
struct WeightReparameterization {
  std::string type;  // empty: none
  WeightReparameterization(bool weight_norm = false) : type(weight_norm ? "weight" : "") {}
  WeightReparameterization(std::string norm_type) : type(std::move(norm_type)) {}
  WeightReparameterization(const char* norm_type) : type(norm_type) {}  // not the bool one
  explicit operator bool() const { return !type.empty(); }
};

// y[n, o, i, j] = sum_{c, p, q} w[o, c, p, q] * x[n, c, i*stride + p - pad, j*stride + q - pad]
// + b[o]; x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out). With weight_norm, w is that
// reparameterization of the learned v (and WeightNorm's g is learned too). Computed by
// conv_backend() (float32) or im2col (float64). With Layout::nhwc, x and y are channels last, (N,
// H, W, C), and so are dy and dx; w stays (C_out, C_in, k, k). How float32 convolutions are
// computed: oneDNN's convolution primitives (when the build found libdnnl-dev) or im2col + OpenBLAS
// GEMM. The environment variable NORMLAB_CONV=onednn|im2col chooses when a layer is made; by
// default oneDNN when available. float64 always uses im2col.
enum class ConvBackend { im2col, onednn };
ConvBackend conv_backend();
bool onednn_available();

template <class T>
std::unique_ptr<Layer<T>> make_conv2d(std::size_t in_channels, std::size_t out_channels,
                                      std::size_t kernel, std::size_t stride, std::size_t padding,
                                      bool bias, const WeightReparameterization& weight_norm,
                                      Layout layout = Layout::nchw);

// y = x w^T + b; x: (N, in) -> y: (N, out). With weight_norm as in conv2d.
template <class T>
std::unique_ptr<Layer<T>> make_linear(std::size_t in_features, std::size_t out_features, bool bias,
                                      const WeightReparameterization& weight_norm);

template <class T>
std::unique_ptr<Layer<T>> make_relu();

// Non-overlapping k x k max pooling: (N, C, H, W) -> (N, C, H/k, W/k); with Layout::nhwc
// (N, H, W, C) -> (N, H/k, W/k, C).
template <class T>
std::unique_ptr<Layer<T>> make_max_pool2d(std::size_t kernel, Layout layout = Layout::nchw);

// (N, C, H, W) -> (N, C): the mean over H and W; with Layout::nhwc from (N, H, W, C).
template <class T>
std::unique_ptr<Layer<T>> make_global_avg_pool(Layout layout = Layout::nchw);

// (N, C, H, W) -> (N, H, W, C): the same activations stored channels last. A
// channels-last model starts with it, so it takes the images as datasets hold them.
template <class T>
std::unique_ptr<Layer<T>> make_channels_last();

// (N, ...) -> (N, prod(...)).
template <class T>
std::unique_ptr<Layer<T>> make_flatten();

// A residual connection y = f(x) + s(x) in a layer stack: put `fork` in front
// of the layers of f and `join` after them. The fork passes x on unchanged; the
// join adds s(x), where s is `shortcut` applied in order (no layers: the
// identity). Backward, the fork adds the shortcut's gradient to f's.
template <class T>
struct ResidualLayers {
  std::unique_ptr<Layer<T>> fork, join;
};
template <class T>
ResidualLayers<T> make_residual(std::vector<std::unique_ptr<Layer<T>>> shortcut);

// An activation norm (any Norm but weight) as a layer.
template <class T>
std::unique_ptr<Layer<T>> make_norm_layer(std::unique_ptr<Norm<T>> norm);

// Mean softmax cross-entropy over the batch; fills dlogits with dLoss/dlogits.
// logits: (N, classes), labels: N values in [0, classes).
template <class T>
double softmax_cross_entropy(const xt::xarray<T>& logits, const std::vector<std::uint8_t>& labels,
                             xt::xarray<T>& dlogits);

}  // namespace normlab
