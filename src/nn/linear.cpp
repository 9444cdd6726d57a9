// Linear: y = x w^T + b as one GEMM over the batch. The GEMMs are xt::blas::gemm
// on views of the layer's matrices, without copies (gemm_matrices in gemm.hpp).
#include <stdexcept>

#include "gemm.hpp"
#include "learned_weight.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

template <class T>
class Linear final : public WeightedLayer<T> {
 public:
  Linear(std::size_t in, std::size_t out, bool bias, const WeightReparameterization& weight_norm)
      : WeightedLayer<T>({out, in}, bias, weight_norm), in_(in), out_(out) {}

  // x: (N, in) -> y: (N, out)
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode mode) override {
    if (x.dimension() != 2 || x.shape(1) != in_)
      throw std::invalid_argument(name() + " needs input (N, " + std::to_string(in_) + "), got " +
                                  shape_text(x.shape()));
    const std::size_t n = x.shape(0);
    y_.resize({n, out_});
    const xt::xarray<T>& w = this->weight_.weight(mode);
    gemm_matrices(false, true, n, out_, in_, T(1), x.data(), w.data(), T(0), y_.data());
    if (this->weight_.has_bias())
      for (std::size_t s = 0; s < n; ++s)
        for (std::size_t o = 0; o < out_; ++o) y_(s, o) += this->weight_.bias()[o];
    last_x_ = &x;
    last_weight_ = &w;
    return y_;
  }

  std::string name() const override {
    return "linear(" + std::to_string(in_) + "->" + std::to_string(out_) + ")";
  }

 private:
  void backward_pass(const xt::xarray<T>& dy, bool input_gradient) override {
    const std::size_t n = dy.shape(0);
    // dw (out x in) += dy^T (out x N) * x (N x in)
    xt::xarray<T>& dw = this->weight_.weight_grad();
    gemm_matrices(true, false, out_, in_, n, T(1), dy.data(), last_x_->data(), T(1), dw.data());
    if (this->weight_.has_bias())
      for (std::size_t s = 0; s < n; ++s)
        for (std::size_t o = 0; o < out_; ++o) this->weight_.bias_grad()[o] += dy(s, o);
    if (input_gradient) {  // dx (N x in) = dy (N x out) * w (out x in)
      this->dx_.resize({n, in_});
      gemm_matrices(false, false, n, in_, out_, T(1), dy.data(), last_weight_->data(), T(0),
                    this->dx_.data());
    }
    this->weight_.finish_backward();
  }

  std::size_t in_, out_;
  const xt::xarray<T>* last_x_ = nullptr;  // the previous layer's output buffer
  const xt::xarray<T>* last_weight_ = nullptr;
  xt::xarray<T> y_;
};

}  // namespace

template <class T>
std::unique_ptr<Layer<T>> make_linear(std::size_t in_features, std::size_t out_features, bool bias,
                                      const WeightReparameterization& weight_norm) {
  return std::make_unique<Linear<T>>(in_features, out_features, bias, weight_norm);
}
template std::unique_ptr<Layer<float>> make_linear<float>(std::size_t, std::size_t, bool,
                                                          const WeightReparameterization&);
template std::unique_ptr<Layer<double>> make_linear<double>(std::size_t, std::size_t, bool,
                                                            const WeightReparameterization&);

}  // namespace normlab
