// Conv2d as im2col + GEMM, one GEMM per sample so outputs land in (N, C, H, W)
// order without a transpose.
#include <stdexcept>

#include "gemm.hpp"
#include "learned_weight.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

struct ConvGeometry {
  std::size_t channels, height, width, kernel, stride, padding, out_height, out_width;
  std::size_t patch() const { return channels * kernel * kernel; }  // K: rows of cols
  std::size_t pixels() const { return out_height * out_width; }     // P: columns of cols
};

// cols[(c*k + i)*k + j][oh*W_out + ow] = x[c][oh*stride + i - pad][ow*stride + j - pad] (0 outside)
template <class T>
void im2col(const T* x, const ConvGeometry& g, T* cols) {
  for (std::size_t c = 0; c < g.channels; ++c)
    for (std::size_t i = 0; i < g.kernel; ++i)
      for (std::size_t j = 0; j < g.kernel; ++j) {
        T* row = cols + ((c * g.kernel + i) * g.kernel + j) * g.pixels();
        for (std::size_t oh = 0; oh < g.out_height; ++oh) {
          const long h = long(oh * g.stride + i) - long(g.padding);
          T* out = row + oh * g.out_width;
          if (h < 0 || h >= long(g.height)) {
            std::fill(out, out + g.out_width, T(0));
            continue;
          }
          const T* in = x + (c * g.height + std::size_t(h)) * g.width;
          for (std::size_t ow = 0; ow < g.out_width; ++ow) {
            const long w = long(ow * g.stride + j) - long(g.padding);
            out[ow] = (w < 0 || w >= long(g.width)) ? T(0) : in[w];
          }
        }
      }
}

// The adjoint of im2col: dx += scatter of dcols.
template <class T>
void col2im(const T* cols, const ConvGeometry& g, T* dx) {
  std::fill(dx, dx + g.channels * g.height * g.width, T(0));
  for (std::size_t c = 0; c < g.channels; ++c)
    for (std::size_t i = 0; i < g.kernel; ++i)
      for (std::size_t j = 0; j < g.kernel; ++j) {
        const T* row = cols + ((c * g.kernel + i) * g.kernel + j) * g.pixels();
        for (std::size_t oh = 0; oh < g.out_height; ++oh) {
          const long h = long(oh * g.stride + i) - long(g.padding);
          if (h < 0 || h >= long(g.height)) continue;
          T* out = dx + (c * g.height + std::size_t(h)) * g.width;
          const T* in = row + oh * g.out_width;
          for (std::size_t ow = 0; ow < g.out_width; ++ow) {
            const long w = long(ow * g.stride + j) - long(g.padding);
            if (w >= 0 && w < long(g.width)) out[w] += in[ow];
          }
        }
      }
}

template <class T>
class Conv2d final : public WeightedLayer<T> {
 public:
  Conv2d(std::size_t in, std::size_t out, std::size_t kernel, std::size_t stride,
         std::size_t padding, bool bias, bool weight_norm)
      : WeightedLayer<T>({out, in, kernel, kernel}, bias, weight_norm),
        in_(in),
        out_(out),
        kernel_(kernel),
        stride_(stride),
        padding_(padding) {}

  // x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out)
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode mode) override {
    if (x.dimension() != 4 || x.shape(1) != in_)
      throw std::invalid_argument(name() + " needs input (N, " + std::to_string(in_) +
                                  ", H, W), got " + shape_text(x.shape()));
    if (x.shape(2) + 2 * padding_ < kernel_ || x.shape(3) + 2 * padding_ < kernel_)
      throw std::invalid_argument(name() + ": input " + shape_text(x.shape()) +
                                  " is smaller than the kernel");
    g_ = {in_,
          x.shape(2),
          x.shape(3),
          kernel_,
          stride_,
          padding_,
          (x.shape(2) + 2 * padding_ - kernel_) / stride_ + 1,
          (x.shape(3) + 2 * padding_ - kernel_) / stride_ + 1};
    const std::size_t n = x.shape(0), K = g_.patch(), P = g_.pixels();
    cols_.resize({n, K, P});
    y_.resize({n, out_, g_.out_height, g_.out_width});
    const xt::xarray<T>& w = this->weight_.weight(mode);
    for (std::size_t s = 0; s < n; ++s) {
      T* cols = cols_.data() + s * K * P;
      T* y = y_.data() + s * out_ * P;
      im2col(x.data() + s * in_ * g_.height * g_.width, g_, cols);
      gemm(false, false, int(out_), int(P), int(K), T(1), w.data(), int(K), cols, int(P), T(0), y,
           int(P));
      if (this->weight_.has_bias())
        for (std::size_t o = 0; o < out_; ++o)
          for (std::size_t p = 0; p < P; ++p) y[o * P + p] += this->weight_.bias()[o];
    }
    last_weight_ = &w;
    return y_;
  }

  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    const std::size_t n = dy.shape(0), K = g_.patch(), P = g_.pixels();
    dx_.resize({n, in_, g_.height, g_.width});
    dcols_.resize({K, P});
    xt::xarray<T>& dw = this->weight_.weight_grad();
    for (std::size_t s = 0; s < n; ++s) {
      const T* dys = dy.data() + s * out_ * P;
      // dw (O x K) += dy[s] (O x P) * cols[s]^T (P x K)
      gemm(false, true, int(out_), int(K), int(P), T(1), dys, int(P), cols_.data() + s * K * P,
           int(P), T(1), dw.data(), int(K));
      if (this->weight_.has_bias())
        for (std::size_t o = 0; o < out_; ++o) {
          T sum = 0;
          for (std::size_t p = 0; p < P; ++p) sum += dys[o * P + p];
          this->weight_.bias_grad()[o] += sum;
        }
      // dcols (K x P) = w^T (K x O) * dy[s] (O x P), then back to image layout.
      gemm(true, false, int(K), int(P), int(out_), T(1), last_weight_->data(), int(K), dys, int(P),
           T(0), dcols_.data(), int(P));
      col2im(dcols_.data(), g_, dx_.data() + s * in_ * g_.height * g_.width);
    }
    this->weight_.finish_backward();
    return dx_;
  }

  std::string name() const override {
    return "conv" + std::to_string(kernel_) + "x" + std::to_string(kernel_) + "(" +
           std::to_string(in_) + "->" + std::to_string(out_) + ")";
  }

 private:
  std::size_t in_, out_, kernel_, stride_, padding_;
  ConvGeometry g_{};
  const xt::xarray<T>* last_weight_ = nullptr;
  xt::xarray<T> cols_, y_, dcols_, dx_;
};

}  // namespace

template <class T>
std::unique_ptr<Layer<T>> make_conv2d(std::size_t in_channels, std::size_t out_channels,
                                      std::size_t kernel, std::size_t stride, std::size_t padding,
                                      bool bias, bool weight_norm) {
  return std::make_unique<Conv2d<T>>(in_channels, out_channels, kernel, stride, padding, bias,
                                     weight_norm);
}
template std::unique_ptr<Layer<float>> make_conv2d<float>(std::size_t, std::size_t, std::size_t,
                                                          std::size_t, std::size_t, bool, bool);
template std::unique_ptr<Layer<double>> make_conv2d<double>(std::size_t, std::size_t, std::size_t,
                                                            std::size_t, std::size_t, bool, bool);

}  // namespace normlab
