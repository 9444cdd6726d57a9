// Layers without parameters: ReLU, max pooling, global average pooling, flatten, and the
// reorder to channels last.
#include <algorithm>
#include <limits>
#include <stdexcept>

#include "image_shape.hpp"
#include "normlab/layers.hpp"
#include "normlab/threads.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

template <class T>
class ReLU final : public Layer<T> {
 public:
  // Pointers in locals: stores through xarray::data() would make the compiler
  // reload the array's own pointer every iteration and not vectorize.
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    y_.resize(x.shape());
    const T* in = x.data();
    T* out = y_.data();
    const std::size_t n = x.size();
    parallel_for(n, n, [&](std::size_t first, std::size_t last) {
      for (std::size_t i = first; i < last; ++i) out[i] = in[i] > T(0) ? in[i] : T(0);
    });
    return y_;
  }
  // dx = dy where the output was positive.
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    dx_.resize(dy.shape());
    const T* y = y_.data();
    const T* grad = dy.data();
    T* out = dx_.data();
    const std::size_t n = dy.size();
    parallel_for(n, n, [&](std::size_t first, std::size_t last) {
      for (std::size_t i = first; i < last; ++i) {
        const T g = grad[i];  // loaded unconditionally: a select, not a branch on random signs
        out[i] = y[i] > T(0) ? g : T(0);
      }
    });
    return dx_;
  }
  std::string name() const override { return "relu"; }

 private:
  xt::xarray<T> y_, dx_;
};

template <class T>
class MaxPool2d final : public Layer<T> {
 public:
  MaxPool2d(std::size_t k, Layout layout) : k_(k), layout_(layout) {}

  // x: (N, C, H, W) -> y: (N, C, H/k, W/k), or channels last (N, H, W, C) -> (N, H/k, W/k, C);
  // remembers where each max came from.
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    const ImageShape in = x.dimension() == 4 ? image_shape(x.shape(), layout_) : ImageShape{};
    if (x.dimension() != 4 || in.height < k_ || in.width < k_)
      throw std::invalid_argument(name() + " needs input " + image_shape_text(layout_) +
                                  " with H, W >= " + std::to_string(k_) + ", got " +
                                  shape_text(x.shape()));
    in_shape_.assign(x.shape().begin(), x.shape().end());
    in_ = in;
    out_ = {in.batch, in.channels, in.height / k_, in.width / k_};
    y_.resize(out_.in(layout_));
    if (layout_ == Layout::nhwc)
      forward_channels_last(x.data());
    else
      forward_channels_first(x.data());
    return y_;
  }
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    dx_.resize(in_shape_);
    T* out = dx_.data();
    std::fill(out, out + dx_.size(), T(0));
    const T* grad = dy.data();
    if (layout_ == Layout::nhwc) {
      backward_channels_last(grad, out);
      return dx_;
    }
    const std::size_t* from = argmax_.data();
    for (std::size_t o = 0; o < dy.size(); ++o) out[from[o]] += grad[o];
    return dx_;
  }
  std::string name() const override { return "maxpool" + std::to_string(k_); }

 private:
  void forward_channels_first(const T* in) {
    const std::size_t planes = in_.batch * in_.channels, H = in_.height, W = in_.width;
    const std::size_t Ho = out_.height, Wo = out_.width;
    argmax_.resize(y_.size());
    T* out = y_.data();
    std::size_t* from = argmax_.data();
    parallel_for(planes, planes * H * W, [&](std::size_t first, std::size_t last) {
      for (std::size_t p = first; p < last; ++p)
        for (std::size_t oh = 0; oh < Ho; ++oh) {
          const std::size_t row = (p * H + oh * k_) * W;
          for (std::size_t ow = 0; ow < Wo; ++ow) {
            std::size_t best = row + ow * k_;
            T max = in[best];
            for (std::size_t i = 0; i < k_; ++i)
              for (std::size_t j = 0; j < k_; ++j) {
                // Selects, not branches: which value is largest is random.
                const std::size_t at = row + i * W + ow * k_ + j;
                const T value = in[at];
                const bool larger = value > max;  // first max wins ties
                max = larger ? value : max;
                best = larger ? at : best;
              }
            const std::size_t o = (p * Ho + oh) * Wo + ow;
            out[o] = max;
            from[o] = best;
          }
        }
    });
  }

  // The same windows, visited in the same order (so the same max wins a tie),
  // with the channels innermost. Each output keeps the number of its window's
  // tap (i * k + j) as 32 bits, the width of a float: the selects vectorize.
  void forward_channels_last(const T* in) {
    const std::size_t C = in_.channels, H = in_.height, W = in_.width;
    const std::size_t Ho = out_.height, Wo = out_.width, rows = in_.batch * Ho;  // rows: (n, oh)
    winning_tap_.resize(y_.size());
    T* out = y_.data();
    std::uint32_t* taps = winning_tap_.data();
    parallel_for(rows, rows * k_ * W * C, [&](std::size_t first, std::size_t last) {
      for (std::size_t r = first; r < last; ++r) {
        const std::size_t n = r / Ho, oh = r % Ho;
        for (std::size_t ow = 0; ow < Wo; ++ow) {
          // Not aliased: lets the compiler keep the running maxima in vector registers.
          T* __restrict__ max = out + (r * Wo + ow) * C;
          std::uint32_t* __restrict__ tap = taps + (r * Wo + ow) * C;
          const T* __restrict__ window = in + ((n * H + oh * k_) * W + ow * k_) * C;
          for (std::size_t c = 0; c < C; ++c) {
            max[c] = window[c];
            tap[c] = 0;
          }
          for (std::size_t i = 0; i < k_; ++i)
            for (std::size_t j = 0; j < k_; ++j) {
              const T* values = window + (i * W + j) * C;
              const std::uint32_t t = std::uint32_t(i * k_ + j);
              for (std::size_t c = 0; c < C; ++c) {
                // 0 or 1, and the tap by arithmetic: GCC branches on a select
                // of the tap, and vectorizes this.
                const T value = values[c], current = max[c];
                const std::uint32_t larger = value > current;  // first max wins ties
                max[c] = larger ? value : current;
                tap[c] += larger * (t - tap[c]);
              }
            }
        }
      }
    });
  }
  void backward_channels_last(const T* grad, T* dx) {
    const std::size_t C = in_.channels, H = in_.height, W = in_.width;
    const std::size_t Ho = out_.height, Wo = out_.width;
    const std::uint32_t* taps = winning_tap_.data();
    tap_offsets_.resize(k_ * k_);  // where each tap is in its window, as an index of x
    for (std::size_t t = 0; t < k_ * k_; ++t) tap_offsets_[t] = ((t / k_) * W + t % k_) * C;
    const std::size_t* offsets = tap_offsets_.data();
    for (std::size_t r = 0; r < in_.batch * Ho; ++r) {
      const std::size_t n = r / Ho, oh = r % Ho;
      for (std::size_t ow = 0; ow < Wo; ++ow) {
        T* window = dx + ((n * H + oh * k_) * W + ow * k_) * C;
        const std::size_t o = (r * Wo + ow) * C;
        for (std::size_t c = 0; c < C; ++c) window[offsets[taps[o + c]] + c] += grad[o + c];
      }
    }
  }

  std::size_t k_;
  Layout layout_;
  ImageShape in_{}, out_{};
  std::vector<std::size_t> in_shape_;
  std::vector<std::size_t> argmax_;         // channels first: x's index of each max
  std::vector<std::uint32_t> winning_tap_;  // channels last: i * k + j of each max
  std::vector<std::size_t> tap_offsets_;
  xt::xarray<T> y_, dx_;
};

template <class T>
class GlobalAvgPool final : public Layer<T> {
 public:
  explicit GlobalAvgPool(Layout layout) : layout_(layout) {}

  // x: (N, C, H, W) or channels last (N, H, W, C) -> y: (N, C). Each mean is
  // summed in double over H x W in the same order in both layouts.
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    if (x.dimension() != 4)
      throw std::invalid_argument(name() + " needs input " + image_shape_text(layout_) + ", got " +
                                  shape_text(x.shape()));
    in_shape_.assign(x.shape().begin(), x.shape().end());
    const ImageShape in = image_shape(x.shape(), layout_);
    const std::size_t C = in.channels, S = in.height * in.width;
    y_.resize({in.batch, C});
    const T* from = x.data();
    T* to = y_.data();
    if (layout_ == Layout::nhwc) {
      sums_.resize(C);
      for (std::size_t n = 0; n < in.batch; ++n) {
        std::fill(sums_.begin(), sums_.end(), 0.0);
        for (std::size_t s = 0; s < S; ++s)
          for (std::size_t c = 0; c < C; ++c) sums_[c] += double(from[(n * S + s) * C + c]);
        for (std::size_t c = 0; c < C; ++c) to[n * C + c] = T(sums_[c] / double(S));
      }
      return y_;
    }
    for (std::size_t p = 0; p < in.batch * C; ++p) {
      double sum = 0;
      for (std::size_t s = 0; s < S; ++s) sum += double(from[p * S + s]);
      to[p] = T(sum / double(S));
    }
    return y_;
  }
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    dx_.resize(in_shape_);
    const ImageShape in = image_shape(in_shape_, layout_);
    const std::size_t C = in.channels, S = in.height * in.width;
    const T* grad = dy.data();
    T* out = dx_.data();
    if (layout_ == Layout::nhwc) {
      for (std::size_t n = 0; n < in.batch; ++n)
        for (std::size_t s = 0; s < S; ++s)
          for (std::size_t c = 0; c < C; ++c) out[(n * S + s) * C + c] = grad[n * C + c] / T(S);
      return dx_;
    }
    for (std::size_t p = 0; p < dy.size(); ++p) std::fill_n(out + p * S, S, T(grad[p] / T(S)));
    return dx_;
  }
  std::string name() const override { return "global_avg_pool"; }

 private:
  Layout layout_;
  std::vector<std::size_t> in_shape_;
  std::vector<double> sums_;  // per channel, reused
  xt::xarray<T> y_, dx_;
};

template <class T>
class ChannelsLast final : public Layer<T> {
 public:
  // x: (N, C, H, W) -> y: (N, H, W, C)
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    if (x.dimension() != 4)
      throw std::invalid_argument(name() + " needs input (N, C, H, W), got " +
                                  shape_text(x.shape()));
    in_ = image_shape(x.shape(), Layout::nchw);
    y_.resize(in_.in(Layout::nhwc));
    permute(x.data(), y_.data(), /*to_channels_last=*/true);
    return y_;
  }
  // dy: (N, H, W, C) -> dx: (N, C, H, W)
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    dx_.resize(in_.in(Layout::nchw));
    permute(dy.data(), dx_.data(), /*to_channels_last=*/false);
    return dx_;
  }
  std::string name() const override { return "to_channels_last"; }

 private:
  void permute(const T* from, T* to, bool to_channels_last) const {
    const std::size_t C = in_.channels, S = in_.height * in_.width;
    parallel_for(in_.batch, in_.batch * C * S, [&](std::size_t first, std::size_t last) {
      for (std::size_t n = first; n < last; ++n)
        for (std::size_t c = 0; c < C; ++c)
          for (std::size_t s = 0; s < S; ++s) {
            const std::size_t first_index = (n * C + c) * S + s, last_index = (n * S + s) * C + c;
            if (to_channels_last)
              to[last_index] = from[first_index];
            else
              to[first_index] = from[last_index];
          }
    });
  }

  ImageShape in_{};  // channels first
  xt::xarray<T> y_, dx_;
};

template <class T>
class Flatten final : public Layer<T> {
 public:
  // x: (N, ...) -> y: (N, prod(...))
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    in_shape_.assign(x.shape().begin(), x.shape().end());
    y_.resize({x.shape(0), x.size() / x.shape(0)});
    std::copy(x.data(), x.data() + x.size(), y_.data());
    return y_;
  }
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    dx_.resize(in_shape_);
    std::copy(dy.data(), dy.data() + dy.size(), dx_.data());
    return dx_;
  }
  std::string name() const override { return "flatten"; }

 private:
  std::vector<std::size_t> in_shape_;
  xt::xarray<T> y_, dx_;
};

template <class T>
class NormLayer final : public Layer<T> {
 public:
  explicit NormLayer(std::unique_ptr<Norm<T>> norm) : norm_(std::move(norm)) {}
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode mode) override {
    norm_->forward(x, mode, y_);
    return y_;
  }
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    norm_->backward(dy, dx_);
    return dx_;
  }
  std::vector<ParameterRef<T>> parameters() override {
    std::vector<ParameterRef<T>> out;
    for (const std::string& name : norm_->parameter_names()) {
      Parameter<T>& p = norm_->parameter(name);
      out.push_back({name, &p.value, &p.grad});
    }
    return out;
  }
  Norm<T>* norm() override { return norm_.get(); }
  std::string name() const override { return norm_->type() + "_norm"; }

 private:
  std::unique_ptr<Norm<T>> norm_;
  xt::xarray<T> y_, dx_;
};

}  // namespace

template <class T>
std::unique_ptr<Layer<T>> make_relu() {
  return std::make_unique<ReLU<T>>();
}
template <class T>
std::unique_ptr<Layer<T>> make_max_pool2d(std::size_t kernel, Layout layout) {
  return std::make_unique<MaxPool2d<T>>(kernel, layout);
}
template <class T>
std::unique_ptr<Layer<T>> make_global_avg_pool(Layout layout) {
  return std::make_unique<GlobalAvgPool<T>>(layout);
}
template <class T>
std::unique_ptr<Layer<T>> make_channels_last() {
  return std::make_unique<ChannelsLast<T>>();
}
template <class T>
std::unique_ptr<Layer<T>> make_flatten() {
  return std::make_unique<Flatten<T>>();
}
template <class T>
std::unique_ptr<Layer<T>> make_norm_layer(std::unique_ptr<Norm<T>> norm) {
  return std::make_unique<NormLayer<T>>(std::move(norm));
}

#define NORMLAB_INSTANTIATE_LAYERS(T)                                         \
  template std::unique_ptr<Layer<T>> make_relu<T>();                          \
  template std::unique_ptr<Layer<T>> make_max_pool2d<T>(std::size_t, Layout); \
  template std::unique_ptr<Layer<T>> make_global_avg_pool<T>(Layout);         \
  template std::unique_ptr<Layer<T>> make_channels_last<T>();                 \
  template std::unique_ptr<Layer<T>> make_flatten<T>();                       \
  template std::unique_ptr<Layer<T>> make_norm_layer<T>(std::unique_ptr<Norm<T>>);
NORMLAB_INSTANTIATE_LAYERS(float)
NORMLAB_INSTANTIATE_LAYERS(double)

}  // namespace normlab
