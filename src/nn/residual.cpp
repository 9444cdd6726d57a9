// A residual connection inside a layer stack: y = f(x) + s(x), where f is the
// layers between the fork and the join and s is the shortcut (the identity, or
// a strided 1x1 conv and its norm when f changes the shape).
//
// Keeping the model a flat stack (rather than a block layer holding its own
// layers) lets forward_range, the probe and the step profile see every layer
// of f as a layer of the model.
#include <stdexcept>

#include "normlab/layers.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

// What the fork and the join of one connection share. Pointers, not copies:
// x is the output buffer of the layer in front of the fork (or the model's
// input), which stays unchanged until that layer's next forward, after the
// join; likewise ds is a buffer of the join's or of the layer after it.
template <class T>
struct ResidualLink {
  const xt::xarray<T>* x = nullptr;   // the fork's input, (N, ...)
  const xt::xarray<T>* ds = nullptr;  // dL/dx through the shortcut, (N, ...)
};

template <class T>
class ResidualFork final : public Layer<T> {
 public:
  explicit ResidualFork(std::shared_ptr<ResidualLink<T>> link) : link_(std::move(link)) {}

  // x: (N, ...) -> y = x, kept for the join.
  const xt::xarray<T>& forward(const xt::xarray<T>& x, Mode) override {
    link_->x = &x;
    link_->ds = nullptr;
    return x;
  }
  // dy: (N, ...), the gradient through f -> dx = dy + ds (ds from the join's backward).
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    if (!link_->ds) throw std::logic_error("residual_fork: backward before the join's backward");
    const xt::xarray<T>& ds = *link_->ds;
    if (ds.shape() != dy.shape())
      throw std::logic_error("residual_fork: shortcut gradient " + shape_text(ds.shape()) +
                             " against " + shape_text(dy.shape()));
    dx_.resize(dy.shape());
    const T *a = dy.data(), *b = ds.data();
    T* out = dx_.data();
    for (std::size_t i = 0, n = dy.size(); i < n; ++i) out[i] = a[i] + b[i];
    return dx_;
  }
  std::string name() const override { return "residual_fork"; }

 private:
  std::shared_ptr<ResidualLink<T>> link_;
  xt::xarray<T> dx_;
};

template <class T>
class ResidualJoin final : public Layer<T> {
 public:
  ResidualJoin(std::shared_ptr<ResidualLink<T>> link,
               std::vector<std::unique_ptr<Layer<T>>> shortcut)
      : link_(std::move(link)), shortcut_(std::move(shortcut)) {}

  // h = f(x): (N, ...) -> y = h + s(x), of h's shape.
  const xt::xarray<T>& forward(const xt::xarray<T>& h, Mode mode) override {
    if (!link_->x) throw std::logic_error(name() + ": forward before the fork's forward");
    const xt::xarray<T>* s = link_->x;
    for (auto& layer : shortcut_) s = &layer->forward(*s, mode);
    if (s->shape() != h.shape())
      throw std::invalid_argument(name() + ": the block gives " + shape_text(h.shape()) +
                                  " and the shortcut " + shape_text(s->shape()) +
                                  " (a shape change needs a projection shortcut)");
    y_.resize(h.shape());
    const T *a = h.data(), *b = s->data();
    T* out = y_.data();
    for (std::size_t i = 0, n = h.size(); i < n; ++i) out[i] = a[i] + b[i];
    return y_;
  }
  // dy: (N, ...) -> dh = dy; ds = dy back through the shortcut, for the fork.
  const xt::xarray<T>& backward(const xt::xarray<T>& dy) override {
    const xt::xarray<T>* g = &dy;
    for (std::size_t i = shortcut_.size(); i-- > 0;) g = &shortcut_[i]->backward(*g);
    link_->ds = g;
    return dy;
  }
  std::vector<ParameterRef<T>> parameters() override {
    std::vector<ParameterRef<T>> all;
    for (auto& layer : shortcut_)
      for (auto& p : layer->parameters())
        all.push_back({"shortcut." + layer->name() + "." + p.name, p.value, p.grad});
    return all;
  }
  // The join is not itself a norm layer (norm() stays null: the probe looks
  // for norms at the model's own layer positions); its shortcut's norms are
  // still the model's, for running-state saves and precise BN.
  std::vector<Norm<T>*> norms() override {
    std::vector<Norm<T>*> all;
    for (auto& layer : shortcut_)
      for (Norm<T>* n : layer->norms()) all.push_back(n);
    return all;
  }
  void initialize(std::mt19937_64& rng) override {
    for (auto& layer : shortcut_) layer->initialize(rng);
  }
  std::string name() const override {
    std::string text;
    for (const auto& layer : shortcut_) text += (text.empty() ? "" : " -> ") + layer->name();
    return "residual_add(" + (text.empty() ? "identity" : text) + ")";
  }

 private:
  std::shared_ptr<ResidualLink<T>> link_;
  std::vector<std::unique_ptr<Layer<T>>> shortcut_;
  xt::xarray<T> y_;
};

}  // namespace

template <class T>
ResidualLayers<T> make_residual(std::vector<std::unique_ptr<Layer<T>>> shortcut) {
  auto link = std::make_shared<ResidualLink<T>>();
  return {std::make_unique<ResidualFork<T>>(link),
          std::make_unique<ResidualJoin<T>>(link, std::move(shortcut))};
}

template ResidualLayers<float> make_residual<float>(std::vector<std::unique_ptr<Layer<float>>>);
template ResidualLayers<double> make_residual<double>(std::vector<std::unique_ptr<Layer<double>>>);

}  // namespace normlab
