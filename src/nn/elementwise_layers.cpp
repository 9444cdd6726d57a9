// Layers without parameters: ReLU, max pooling, global average pooling, flatten.
#include <algorithm>
#include <limits>
#include <stdexcept>

#include "engine/thread_pool.hpp"
#include "normlab/layers.hpp"
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
  explicit MaxPool2d(std::size_t k) : k_(k) {}

  // x: (N, C, H, W) -> y: (N, C, H/k, W/k); remembers where each max came from.
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    if (x.dimension() != 4 || x.shape(2) < k_ || x.shape(3) < k_)
      throw std::invalid_argument(name() + " needs input (N, C, H, W) with H, W >= " +
                                  std::to_string(k_) + ", got " + shape_text(x.shape()));
    in_shape_ = {x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
    const std::size_t planes = x.shape(0) * x.shape(1), H = x.shape(2), W = x.shape(3);
    const std::size_t Ho = H / k_, Wo = W / k_;
    y_.resize({x.shape(0), x.shape(1), Ho, Wo});
    argmax_.resize(y_.size());
    const T* in = x.data();
    T* out = y_.data();
    std::size_t* from = argmax_.data();
    parallel_for(planes, x.size(), [&](std::size_t first, std::size_t last) {
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
    return y_;
  }
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    dx_.resize(in_shape_);
    T* out = dx_.data();
    std::fill(out, out + dx_.size(), T(0));
    const T* grad = dy.data();
    const std::size_t* from = argmax_.data();
    for (std::size_t o = 0; o < dy.size(); ++o) out[from[o]] += grad[o];
    return dx_;
  }
  std::string name() const override { return "maxpool" + std::to_string(k_); }

 private:
  std::size_t k_;
  std::vector<std::size_t> in_shape_, argmax_;
  xt::xarray<T> y_, dx_;
};

template <class T>
class GlobalAvgPool final : public Layer<T> {
 public:
  // x: (N, C, H, W) -> y: (N, C)
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    if (x.dimension() != 4)
      throw std::invalid_argument(name() + " needs input (N, C, H, W), got " +
                                  shape_text(x.shape()));
    in_shape_ = {x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
    const std::size_t planes = x.shape(0) * x.shape(1), S = x.shape(2) * x.shape(3);
    y_.resize({x.shape(0), x.shape(1)});
    for (std::size_t p = 0; p < planes; ++p) {
      double sum = 0;
      for (std::size_t s = 0; s < S; ++s) sum += double(x.data()[p * S + s]);
      y_.data()[p] = T(sum / double(S));
    }
    return y_;
  }
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    dx_.resize(in_shape_);
    const std::size_t S = in_shape_[2] * in_shape_[3];
    for (std::size_t p = 0; p < dy.size(); ++p)
      std::fill_n(dx_.data() + p * S, S, T(dy.data()[p] / T(S)));
    return dx_;
  }
  std::string name() const override { return "global_avg_pool"; }

 private:
  std::vector<std::size_t> in_shape_;
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
std::unique_ptr<Layer<T>> make_max_pool2d(std::size_t kernel) {
  return std::make_unique<MaxPool2d<T>>(kernel);
}
template <class T>
std::unique_ptr<Layer<T>> make_global_avg_pool() {
  return std::make_unique<GlobalAvgPool<T>>();
}
template <class T>
std::unique_ptr<Layer<T>> make_flatten() {
  return std::make_unique<Flatten<T>>();
}
template <class T>
std::unique_ptr<Layer<T>> make_norm_layer(std::unique_ptr<Norm<T>> norm) {
  return std::make_unique<NormLayer<T>>(std::move(norm));
}

#define NORMLAB_INSTANTIATE_LAYERS(T)                                 \
  template std::unique_ptr<Layer<T>> make_relu<T>();                  \
  template std::unique_ptr<Layer<T>> make_max_pool2d<T>(std::size_t); \
  template std::unique_ptr<Layer<T>> make_global_avg_pool<T>();       \
  template std::unique_ptr<Layer<T>> make_flatten<T>();               \
  template std::unique_ptr<Layer<T>> make_norm_layer<T>(std::unique_ptr<Norm<T>>);
NORMLAB_INSTANTIATE_LAYERS(float)
NORMLAB_INSTANTIATE_LAYERS(double)

}  // namespace normlab
