// Conv2d as im2col + GEMM: the whole batch's patches side by side in one
// matrix, so each direction is one large GEMM (per-sample GEMMs of a 7x7 image
// are too small for OpenBLAS to run fast), with one cheap reorder of y and dy
// between (C, N, P) and (N, C, P).
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "conv2d.hpp"
#include "gemm.hpp"
#include "image_shape.hpp"
#include "learned_weight.hpp"
#include "normlab/threads.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

// The output columns ow whose input column ow*stride + j - pad lies inside
// [0, width): [first, last).
struct ValidColumns {
  std::size_t first, last;
};
ValidColumns valid_columns(const ConvGeometry& g, std::size_t j) {
  const long shift = long(j) - long(g.padding);  // input column of ow = 0
  const long stride = long(g.stride), width = long(g.width), count = long(g.out_width);
  long first = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
  long last = width - shift <= 0 ? 0 : (width - shift + stride - 1) / stride;
  first = std::min(first, count);
  last = std::max(first, std::min(last, count));
  return {std::size_t(first), std::size_t(last)};
}

// One sample's patches as columns of a matrix whose rows are `ld` apart:
// cols[((c*k + i)*k + j)*ld + oh*W_out + ow] = x[c][oh*stride + i - pad][ow*stride + j - pad]
// (0 outside the image). With ld = N*P, the samples sit side by side and one
// GEMM serves the whole batch.
template <class T>
void im2col(const T* x, const ConvGeometry& g, T* cols, std::size_t ld) {
  for (std::size_t c = 0; c < g.channels; ++c)
    for (std::size_t i = 0; i < g.kernel; ++i)
      for (std::size_t j = 0; j < g.kernel; ++j) {
        const ValidColumns valid = valid_columns(g, j);
        T* row = cols + ((c * g.kernel + i) * g.kernel + j) * ld;
        for (std::size_t oh = 0; oh < g.out_height; ++oh) {
          const long h = long(oh * g.stride + i) - long(g.padding);
          T* out = row + oh * g.out_width;
          if (h < 0 || h >= long(g.height)) {
            std::fill(out, out + g.out_width, T(0));
            continue;
          }
          // Output column ow reads input column ow * stride + j - pad: >= 0 on [first, last).
          const T* in = x + (c * g.height + std::size_t(h)) * g.width;
          std::fill(out, out + valid.first, T(0));
          if (g.stride == 1 && valid.first < valid.last)  // a contiguous run: memcpy
            std::copy(in + (valid.first + j - g.padding), in + (valid.last + j - g.padding),
                      out + valid.first);
          else
            for (std::size_t ow = valid.first; ow < valid.last; ++ow)
              out[ow] = in[ow * g.stride + j - g.padding];
          std::fill(out + valid.last, out + g.out_width, T(0));
        }
      }
}

// The adjoint of im2col: dx = the sum of the patches in cols back in place.
template <class T>
void col2im(const T* cols, std::size_t ld, const ConvGeometry& g, T* dx) {
  std::fill(dx, dx + g.channels * g.height * g.width, T(0));
  for (std::size_t c = 0; c < g.channels; ++c)
    for (std::size_t i = 0; i < g.kernel; ++i)
      for (std::size_t j = 0; j < g.kernel; ++j) {
        const ValidColumns valid = valid_columns(g, j);
        const T* row = cols + ((c * g.kernel + i) * g.kernel + j) * ld;
        for (std::size_t oh = 0; oh < g.out_height; ++oh) {
          const long h = long(oh * g.stride + i) - long(g.padding);
          if (h < 0 || h >= long(g.height)) continue;
          T* out = dx + (c * g.height + std::size_t(h)) * g.width;
          const T* in = row + oh * g.out_width;
          if (g.stride == 1 && valid.first < valid.last) {  // contiguous: vectorizes
            T* to = out + (valid.first + j - g.padding);
            const T* from = in + valid.first;
            for (std::size_t k = 0; k < valid.last - valid.first; ++k) to[k] += from[k];
          } else {
            for (std::size_t ow = valid.first; ow < valid.last; ++ow)
              out[ow * g.stride + j - g.padding] += in[ow];
          }
        }
      }
}

template <class T>
class Conv2d final : public WeightedLayer<T> {
 public:
  Conv2d(std::size_t in, std::size_t out, std::size_t kernel, std::size_t stride,
         std::size_t padding, bool bias, const WeightReparameterization& weight_norm)
      : WeightedLayer<T>({out, in, kernel, kernel}, bias, weight_norm),
        in_(in),
        out_(out),
        kernel_(kernel),
        stride_(stride),
        padding_(padding) {}

  // x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out)
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode mode) override {
    g_ = conv_geometry(name(), x, in_, kernel_, stride_, padding_);
    // Shapes: x (N, C_in, H, W); cols (K, N*P) with K = C_in*k*k and P = H_out*W_out;
    // w (C_out, K); y_cols (C_out, N*P) = w * cols; y (N, C_out, P).
    const std::size_t n = x.shape(0), K = g_.patch(), P = g_.pixels(), NP = n * P;
    check_one_gemm(name(), x, NP);
    cols_.resize({K, NP});
    parallel_for(n, K * NP, [&](std::size_t first, std::size_t last) {
      for (std::size_t s = first; s < last; ++s)
        im2col(x.data() + s * in_ * g_.height * g_.width, g_, cols_.data() + s * P, NP);
    });
    const xt::xarray<T>& w = this->weight_.weight(mode);
    y_cols_.resize({out_, NP});
    gemm(false, false, int(out_), int(NP), int(K), T(1), w.data(), int(K), cols_.data(), int(NP),
         T(0), y_cols_.data(), int(NP));
    // (C_out, N, P) -> (N, C_out, P), adding the bias on the way.
    y_.resize({n, out_, g_.out_height, g_.out_width});
    const T* from = y_cols_.data();
    T* to = y_.data();
    parallel_for(n, out_ * NP, [&](std::size_t first, std::size_t last) {
      for (std::size_t s = first; s < last; ++s)
        for (std::size_t o = 0; o < out_; ++o) {
          const T bias = this->weight_.has_bias() ? this->weight_.bias()[o] : T(0);
          const T* src = from + o * NP + s * P;
          T* dst = to + (s * out_ + o) * P;
          for (std::size_t p = 0; p < P; ++p) dst[p] = src[p] + bias;
        }
    });
    last_weight_ = &w;
    return y_;
  }

  std::string name() const override { return conv_name(kernel_, in_, out_); }

 private:
  void backward_pass(const xt::xarray<T>& dy, bool input_gradient) override {
    // Shapes: dy (N, C_out, P) -> dy_cols (C_out, N*P); dw (C_out, K) += dy_cols * cols^T;
    // dcols (K, N*P) = w^T * dy_cols, then col2im per sample into dx (N, C_in, H, W).
    const std::size_t n = dy.shape(0), K = g_.patch(), P = g_.pixels(), NP = n * P;
    dy_cols_.resize({out_, NP});
    const T* from = dy.data();
    T* to = dy_cols_.data();
    parallel_for(n, out_ * NP, [&](std::size_t first, std::size_t last) {
      for (std::size_t s = first; s < last; ++s)
        for (std::size_t o = 0; o < out_; ++o)
          std::copy(from + (s * out_ + o) * P, from + (s * out_ + o + 1) * P, to + o * NP + s * P);
    });
    if (this->weight_.has_bias())
      for (std::size_t o = 0; o < out_; ++o) {
        T sum = 0;
        for (std::size_t q = 0; q < NP; ++q) sum += to[o * NP + q];
        this->weight_.bias_grad()[o] += sum;
      }
    xt::xarray<T>& dw = this->weight_.weight_grad();
    gemm(false, true, int(out_), int(K), int(NP), T(1), dy_cols_.data(), int(NP), cols_.data(),
         int(NP), T(1), dw.data(), int(K));
    if (input_gradient) {
      dcols_.resize({K, NP});
      gemm(true, false, int(K), int(NP), int(out_), T(1), last_weight_->data(), int(K),
           dy_cols_.data(), int(NP), T(0), dcols_.data(), int(NP));
      this->dx_.resize({n, in_, g_.height, g_.width});
      parallel_for(n, K * NP, [&](std::size_t first, std::size_t last) {
        for (std::size_t s = first; s < last; ++s)
          col2im(dcols_.data() + s * P, NP, g_, this->dx_.data() + s * in_ * g_.height * g_.width);
      });
    }
    this->weight_.finish_backward();
  }

  std::size_t in_, out_, kernel_, stride_, padding_;
  ConvGeometry g_{};
  const xt::xarray<T>* last_weight_ = nullptr;
  xt::xarray<T> cols_, y_cols_, y_, dy_cols_, dcols_;
};

}  // namespace

std::string conv_name(std::size_t kernel, std::size_t in, std::size_t out) {
  return "conv" + std::to_string(kernel) + "x" + std::to_string(kernel) + "(" + std::to_string(in) +
         "->" + std::to_string(out) + ")";
}

template <class T>
ConvGeometry conv_geometry(const std::string& name, const xt::xarray<T>& x, std::size_t in,
                           std::size_t kernel, std::size_t stride, std::size_t padding,
                           Layout layout) {
  const std::string wanted = layout == Layout::nhwc ? "(N, H, W, " + std::to_string(in) + ")"
                                                    : "(N, " + std::to_string(in) + ", H, W)";
  if (x.dimension() != 4 || image_shape(x.shape(), layout).channels != in)
    throw std::invalid_argument(name + " needs input " + wanted + ", got " + shape_text(x.shape()));
  const ImageShape s = image_shape(x.shape(), layout);
  if (s.height + 2 * padding < kernel || s.width + 2 * padding < kernel)
    throw std::invalid_argument(name + ": input " + shape_text(x.shape()) +
                                " is smaller than the kernel");
  return {s.batch,
          in,
          s.height,
          s.width,
          kernel,
          stride,
          padding,
          (s.height + 2 * padding - kernel) / stride + 1,
          (s.width + 2 * padding - kernel) / stride + 1};
}

template <class T>
void check_one_gemm(const std::string& name, const xt::xarray<T>& x, std::size_t positions) {
  if (positions > std::size_t(std::numeric_limits<int>::max()))
    throw std::invalid_argument(name + ": input " + shape_text(x.shape()) +
                                " has too many output positions for one GEMM (use a smaller "
                                "batch)");
}

template <class T>
std::unique_ptr<Layer<T>> make_im2col_conv2d(std::size_t in, std::size_t out, std::size_t kernel,
                                             std::size_t stride, std::size_t padding, bool bias,
                                             const WeightReparameterization& weight_norm,
                                             Layout layout) {
  if (layout == Layout::nhwc)
    return make_channels_last_im2col_conv2d<T>(in, out, kernel, stride, padding, bias, weight_norm);
  return std::make_unique<Conv2d<T>>(in, out, kernel, stride, padding, bias, weight_norm);
}

ConvBackend conv_backend() {
  const char* asked = std::getenv("NORMLAB_CONV");
  const std::string name = asked ? asked : "";
  if (name == "im2col") return ConvBackend::im2col;
  if (name == "onednn") {
    if (!onednn_available())
      throw std::invalid_argument(
          "NORMLAB_CONV=onednn: this build of normlab has no oneDNN (install libdnnl-dev and "
          "rebuild: scripts/setup does both), or unset NORMLAB_CONV");
    return ConvBackend::onednn;
  }
  if (!name.empty())
    throw std::invalid_argument("NORMLAB_CONV=" + name + ": use im2col or onednn, or unset it");
  return onednn_available() ? ConvBackend::onednn : ConvBackend::im2col;
}

bool onednn_available() {
#ifdef NORMLAB_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

template <class T>
std::unique_ptr<Layer<T>> make_conv2d(std::size_t in_channels, std::size_t out_channels,
                                      std::size_t kernel, std::size_t stride, std::size_t padding,
                                      bool bias, const WeightReparameterization& weight_norm,
                                      Layout layout) {
  // Asked in every build, so a misspelt NORMLAB_CONV is refused with or without oneDNN.
  [[maybe_unused]] const ConvBackend backend = conv_backend();
#ifdef NORMLAB_HAVE_ONEDNN
  // oneDNN computes in float32; float64 (the gradient checks) stays on im2col.
  if constexpr (std::is_same_v<T, float>)
    if (backend == ConvBackend::onednn)
      return make_onednn_conv2d(in_channels, out_channels, kernel, stride, padding, bias,
                                weight_norm, layout);
#endif
  return make_im2col_conv2d<T>(in_channels, out_channels, kernel, stride, padding, bias,
                               weight_norm, layout);
}

#define NORMLAB_INSTANTIATE_CONV(T)                                                             \
  template ConvGeometry conv_geometry<T>(const std::string&, const xt::xarray<T>&, std::size_t, \
                                         std::size_t, std::size_t, std::size_t, Layout);        \
  template void check_one_gemm<T>(const std::string&, const xt::xarray<T>&, std::size_t);       \
  template std::unique_ptr<Layer<T>> make_im2col_conv2d<T>(                                     \
      std::size_t, std::size_t, std::size_t, std::size_t, std::size_t, bool,                    \
      const WeightReparameterization&, Layout);                                                 \
  template std::unique_ptr<Layer<T>> make_conv2d<T>(std::size_t, std::size_t, std::size_t,      \
                                                    std::size_t, std::size_t, bool,             \
                                                    const WeightReparameterization&, Layout);
NORMLAB_INSTANTIATE_CONV(float)
NORMLAB_INSTANTIATE_CONV(double)

}  // namespace normlab
