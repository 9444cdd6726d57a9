// Conv2d as im2col + GEMM on channels-last activations, x: (N, H, W, C_in).
// The patch matrix has one row per output position with the taps (i, j, c)
// along it, so each tap is C_in contiguous values of x, and the GEMM writes y
// as (N*P, C_out) rows: (N, H_out, W_out, C_out) as it is, with no reorder.
// The weight stays (C_out, C_in, k, k) for the optimizer; each forward copies
// it to (C_out, k, k, C_in), the taps' order, and dw is added back likewise.
#include <algorithm>

#include "conv2d.hpp"
#include "gemm.hpp"
#include "learned_weight.hpp"
#include "normlab/threads.hpp"

namespace normlab {
namespace {

// One sample's patches: rows[(oh*W_out + ow)*K + (i*k + j)*C + c] =
// x[oh*stride + i - pad][ow*stride + j - pad][c] (0 outside the image).
template <class T>
void im2col_channels_last(const T* x, const ConvGeometry& g, T* rows) {
  const std::size_t C = g.channels, k = g.kernel;
  for (std::size_t oh = 0; oh < g.out_height; ++oh)
    for (std::size_t ow = 0; ow < g.out_width; ++ow) {
      T* row = rows + (oh * g.out_width + ow) * g.patch();
      for (std::size_t i = 0; i < k; ++i) {
        const long h = long(oh * g.stride + i) - long(g.padding);
        for (std::size_t j = 0; j < k; ++j) {
          const long w = long(ow * g.stride + j) - long(g.padding);
          T* tap = row + (i * k + j) * C;
          if (h < 0 || h >= long(g.height) || w < 0 || w >= long(g.width)) {
            std::fill(tap, tap + C, T(0));
            continue;
          }
          const T* in = x + (std::size_t(h) * g.width + std::size_t(w)) * C;
          std::copy(in, in + C, tap);
        }
      }
    }
}

// The adjoint of im2col_channels_last: dx = the sum of the patches back in place.
template <class T>
void col2im_channels_last(const T* rows, const ConvGeometry& g, T* dx) {
  const std::size_t C = g.channels, k = g.kernel;
  std::fill(dx, dx + g.height * g.width * C, T(0));
  for (std::size_t oh = 0; oh < g.out_height; ++oh)
    for (std::size_t ow = 0; ow < g.out_width; ++ow) {
      const T* row = rows + (oh * g.out_width + ow) * g.patch();
      for (std::size_t i = 0; i < k; ++i) {
        const long h = long(oh * g.stride + i) - long(g.padding);
        if (h < 0 || h >= long(g.height)) continue;
        for (std::size_t j = 0; j < k; ++j) {
          const long w = long(ow * g.stride + j) - long(g.padding);
          if (w < 0 || w >= long(g.width)) continue;
          T* out = dx + (std::size_t(h) * g.width + std::size_t(w)) * C;
          const T* tap = row + (i * k + j) * C;
          for (std::size_t c = 0; c < C; ++c) out[c] += tap[c];
        }
      }
    }
}

template <class T>
class ChannelsLastConv2d final : public WeightedLayer<T> {
 public:
  ChannelsLastConv2d(std::size_t in, std::size_t out, std::size_t kernel, std::size_t stride,
                     std::size_t padding, bool bias, const WeightReparameterization& weight_norm)
      : WeightedLayer<T>({out, in, kernel, kernel}, bias, weight_norm),
        in_(in),
        out_(out),
        kernel_(kernel),
        stride_(stride),
        padding_(padding) {}

  // x: (N, H, W, C_in) -> y: (N, H_out, W_out, C_out)
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode mode) override {
    g_ = conv_geometry(name(), x, in_, kernel_, stride_, padding_, Layout::nhwc);
    // Shapes: rows (N*P, K) with K = k*k*C_in; taps (C_out, K); y (N*P, C_out) = rows * taps^T.
    const std::size_t n = g_.batch, K = g_.patch(), P = g_.pixels(), NP = n * P;
    check_one_gemm(name(), x, NP);
    const std::size_t sample = g_.height * g_.width * in_;
    rows_.resize({NP, K});
    parallel_for(n, K * NP, [&](std::size_t first, std::size_t last) {
      for (std::size_t s = first; s < last; ++s)
        im2col_channels_last(x.data() + s * sample, g_, rows_.data() + s * P * K);
    });
    to_tap_order(this->weight_.weight(mode));
    y_.resize({n, g_.out_height, g_.out_width, out_});
    gemm(false, true, int(NP), int(out_), int(K), T(1), rows_.data(), int(K), taps_.data(), int(K),
         T(0), y_.data(), int(out_), GemmSplit::rows);
    if (this->weight_.has_bias()) {
      const T* bias = this->weight_.bias();
      T* y = y_.data();
      for (std::size_t q = 0; q < NP; ++q)
        for (std::size_t o = 0; o < out_; ++o) y[q * out_ + o] += bias[o];
    }
    return y_;
  }

  std::string name() const override { return conv_name(kernel_, in_, out_); }

 private:
  void backward_pass(const xt::xarray<T>& dy, bool input_gradient) override {
    // Shapes: dy (N*P, C_out); dtaps (C_out, K) = dy^T * rows, added to dw in
    // (C_out, C_in, k, k) order; drows (N*P, K) = dy * taps, then col2im per sample.
    const std::size_t n = g_.batch, K = g_.patch(), P = g_.pixels(), NP = n * P;
    const T* grad = dy.data();
    if (this->weight_.has_bias()) {
      T* db = this->weight_.bias_grad();
      for (std::size_t q = 0; q < NP; ++q)
        for (std::size_t o = 0; o < out_; ++o) db[o] += grad[q * out_ + o];
    }
    dtaps_.resize({out_, K});
    gemm(true, false, int(out_), int(K), int(NP), T(1), grad, int(out_), rows_.data(), int(K), T(0),
         dtaps_.data(), int(K));
    add_from_tap_order(this->weight_.weight_grad());
    if (input_gradient) {
      drows_.resize({NP, K});
      gemm(false, false, int(NP), int(K), int(out_), T(1), grad, int(out_), taps_.data(), int(K),
           T(0), drows_.data(), int(K), GemmSplit::rows);
      this->dx_.resize({n, g_.height, g_.width, in_});
      const std::size_t sample = g_.height * g_.width * in_;
      parallel_for(n, K * NP, [&](std::size_t first, std::size_t last) {
        for (std::size_t s = first; s < last; ++s)
          col2im_channels_last(drows_.data() + s * P * K, g_, this->dx_.data() + s * sample);
      });
    }
    this->weight_.finish_backward();
  }

  // taps_[o][i][j][c] = w[o][c][i][j]
  void to_tap_order(const xt::xarray<T>& w) {
    taps_.resize({out_, kernel_, kernel_, in_});
    const std::size_t kk = kernel_ * kernel_;
    for (std::size_t o = 0; o < out_; ++o)
      for (std::size_t c = 0; c < in_; ++c)
        for (std::size_t t = 0; t < kk; ++t)
          taps_.data()[(o * kk + t) * in_ + c] = w.data()[(o * in_ + c) * kk + t];
  }
  // dw[o][c][i][j] += dtaps_[o][i][j][c]
  void add_from_tap_order(xt::xarray<T>& dw) const {
    const std::size_t kk = kernel_ * kernel_;
    for (std::size_t o = 0; o < out_; ++o)
      for (std::size_t c = 0; c < in_; ++c)
        for (std::size_t t = 0; t < kk; ++t)
          dw.data()[(o * in_ + c) * kk + t] += dtaps_.data()[(o * kk + t) * in_ + c];
  }

  std::size_t in_, out_, kernel_, stride_, padding_;
  ConvGeometry g_{};
  xt::xarray<T> rows_, taps_, y_, dtaps_, drows_;
};

}  // namespace

template <class T>
std::unique_ptr<Layer<T>> make_channels_last_im2col_conv2d(
    std::size_t in, std::size_t out, std::size_t kernel, std::size_t stride, std::size_t padding,
    bool bias, const WeightReparameterization& weight_norm) {
  return std::make_unique<ChannelsLastConv2d<T>>(in, out, kernel, stride, padding, bias,
                                                 weight_norm);
}

template std::unique_ptr<Layer<float>> make_channels_last_im2col_conv2d<float>(
    std::size_t, std::size_t, std::size_t, std::size_t, std::size_t, bool,
    const WeightReparameterization&);
template std::unique_ptr<Layer<double>> make_channels_last_im2col_conv2d<double>(
    std::size_t, std::size_t, std::size_t, std::size_t, std::size_t, bool,
    const WeightReparameterization&);

}  // namespace normlab
