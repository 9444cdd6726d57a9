// What the two convolution backends share: the geometry of a call, checked
// against the input, and the layer's name. make_conv2d (normlab/layers.hpp)
// picks the backend (see conv2d.cpp).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "normlab/layers.hpp"

namespace normlab {

struct ConvGeometry {
  std::size_t batch, channels, height, width, kernel, stride, padding, out_height, out_width;
  std::size_t patch() const { return channels * kernel * kernel; }  // K: one output's inputs
  std::size_t pixels() const { return out_height * out_width; }     // P: outputs per plane
};

// "conv3x3(16->32)".
std::string conv_name(std::size_t kernel, std::size_t in, std::size_t out);

// The geometry of x (N, in, H, W), or (N, H, W, in) channels last, through
// this kernel, stride and padding; throws std::invalid_argument naming the
// layer when x does not fit.
template <class T>
ConvGeometry conv_geometry(const std::string& name, const xt::xarray<T>& x, std::size_t in,
                           std::size_t kernel, std::size_t stride, std::size_t padding,
                           Layout layout = Layout::nchw);

// The im2col layers make one GEMM of the whole batch, whose dimensions BLAS
// takes as int: throws std::invalid_argument naming the layer when x has more
// output positions (N * H_out * W_out) than that.
template <class T>
void check_one_gemm(const std::string& name, const xt::xarray<T>& x, std::size_t positions);

// im2col + GEMM through OpenBLAS: any T, any machine; the channels-last form is
// conv2d_channels_last.cpp.
template <class T>
std::unique_ptr<Layer<T>> make_im2col_conv2d(std::size_t in, std::size_t out, std::size_t kernel,
                                             std::size_t stride, std::size_t padding, bool bias,
                                             const WeightReparameterization& weight_norm,
                                             Layout layout);
template <class T>
std::unique_ptr<Layer<T>> make_channels_last_im2col_conv2d(
    std::size_t in, std::size_t out, std::size_t kernel, std::size_t stride, std::size_t padding,
    bool bias, const WeightReparameterization& weight_norm);

#ifdef NORMLAB_HAVE_ONEDNN
// oneDNN's convolution primitives (float32; built when libdnnl-dev is found).
std::unique_ptr<Layer<float>> make_onednn_conv2d(std::size_t in, std::size_t out,
                                                 std::size_t kernel, std::size_t stride,
                                                 std::size_t padding, bool bias,
                                                 const WeightReparameterization& weight_norm,
                                                 Layout layout);
#endif

}  // namespace normlab
