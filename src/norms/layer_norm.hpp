// LayerNorm and RMSNorm: one group per sample, over normalized_shape (default:
// all dims but the first), or over (C, H, W) with a per-channel affine
// (channel_affine). RMSNorm is the same grouping without centering.
#pragma once

#include <limits>
#include <optional>
#include <stdexcept>
#include <xtensor/xbuilder.hpp>

#include "registry.hpp"
#include "shapes.hpp"

namespace normlab {

struct RowNormOptions {
  std::optional<double> eps;  // null (RMSNorm): the data type's machine epsilon
  bool affine = true;
  std::optional<std::vector<std::size_t>> normalized_shape;  // null: fixed by the first input
  bool channel_affine = false;
  Layout layout = Layout::nchw;  // nhwc: with channel_affine only
};

// A normalized_shape given in a spec sizes gamma and beta before any input is
// seen, so its element count is checked (overflow, and a bound far above any
// real layer) before anything is allocated.
inline void check_spec_parameter_count(const std::vector<std::size_t>& normalized_shape) {
  constexpr std::size_t kMaxElements = std::size_t(1) << 24;
  std::size_t count = 1;
  for (std::size_t d : normalized_shape)
    if (__builtin_mul_overflow(count, d, &count) || count > kMaxElements)
      throw std::invalid_argument(
          "norm spec: normalized_shape " + shape_text(normalized_shape) + " has more than " +
          std::to_string(kMaxElements) +
          " elements per sample (gamma and beta would be allocated for all of them); use a "
          "smaller shape, or channel_affine for parameters per channel");
}

// The schema both share, with eps as `eps_entry` adds it.
template <class Options>
OptionSchema<Options> row_norm_schema(void (*eps_entry)(OptionSchema<Options>&)) {
  OptionSchema<Options> s;
  eps_entry(s);
  s.boolean("affine", &Options::affine, "learned gamma (and beta when centered)")
      .shape_or_null("normalized_shape", &Options::normalized_shape, "all dims but the first",
                     "the trailing dims normalized together")
      .boolean("channel_affine", &Options::channel_affine,
               "normalize over all dims but N with gamma, beta per channel (after a conv)")
      .template choice<Layout>(
          "layout", &Options::layout, {{"nchw", Layout::nchw}, {"nhwc", Layout::nhwc}},
          "with channel_affine: channels at dimension 1, (N, C, H, W), or last, (N, H, W, C)",
          /*written_when_default=*/false)
      .check([](const Options& o) {
        if (o.layout == Layout::nhwc && !o.channel_affine)
          throw std::invalid_argument(
              "norm spec: layout nhwc needs channel_affine (gamma and beta per channel); a "
              "normalized_shape is the trailing dimensions whatever their order");
        if (o.normalized_shape) check_spec_parameter_count(*o.normalized_shape);
        if (o.channel_affine && o.normalized_shape)
          throw std::invalid_argument(
              "norm spec: channel_affine normalizes over all dims but the first; drop "
              "normalized_shape");
      });
  return s;
}

// In a model: per-channel affine after a convolution, the layer's features
// after a linear layer.
template <class Options>
void fit_row_norm(Options& o, std::size_t channels, bool spatial) {
  if (spatial)
    o.channel_affine = true;
  else if (!o.normalized_shape)
    o.normalized_shape = std::vector<std::size_t>{channels};
}

template <class T, class Options>
class RowNorm final : public NormWithOptions<T, Options> {
 public:
  RowNorm(std::string type, const Options& options, std::size_t channels)
      : NormWithOptions<T, Options>(std::move(type), options) {
    this->set_layout(options.layout);
    if (this->options_.normalized_shape)
      create_affine(*this->options_.normalized_shape);
    else if (this->options_.channel_affine && channels)
      create_affine({channels});
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    const std::string name = this->type() + " norm";
    if (this->options_.channel_affine) {
      if (shape.size() < 2)
        throw std::invalid_argument(
            name + " with channel_affine needs an input of shape (N, C, ...), got " +
            shape_text(shape));
      if (this->options_.affine && !this->has_parameter("gamma")) create_affine({shape[1]});
      if (this->has_parameter("gamma") && this->parameter("gamma").value.size() != shape[1])
        throw std::invalid_argument(name + " has " +
                                    std::to_string(this->parameter("gamma").value.size()) +
                                    " channels but the input has shape " + shape_text(shape));
      return;
    }
    if (!this->options_.normalized_shape) {
      // Default: everything but the first dimension, fixed by the first input.
      if (shape.size() < 2)
        throw std::invalid_argument(name + " needs an input of shape (N, ...), got " +
                                    shape_text(shape));
      this->options_.normalized_shape = std::vector<std::size_t>(shape.begin() + 1, shape.end());
      create_affine(*this->options_.normalized_shape);
    }
    const std::vector<std::size_t>& normalized = *this->options_.normalized_shape;
    const std::size_t k = normalized.size();
    if (shape.size() < k || !std::equal(normalized.begin(), normalized.end(), shape.end() - k))
      throw std::invalid_argument(name + " normalizes over the trailing shape " +
                                  shape_text(normalized) + " but the input has shape " +
                                  shape_text(shape));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d;
    d.pooling = Pooling::per_outer_groups;
    d.centered = Options::centered;
    d.eps = this->options_.eps ? *this->options_.eps : double(std::numeric_limits<T>::epsilon());
    const bool affine = this->options_.affine;
    if (this->options_.channel_affine) {
      d.view = {shape[0], shape[1], product(shape, 2, shape.size())};
      d.channels_per_group = shape[1];
      d.affine = affine ? Affine::per_channel : Affine::none;
    } else {
      const std::size_t k = this->options_.normalized_shape->size();
      d.view = {product(shape, 0, shape.size() - k), 1,
                product(shape, shape.size() - k, shape.size())};
      d.channels_per_group = 1;
      d.affine = affine ? Affine::elementwise : Affine::none;
    }
    d.has_shift = affine && Options::centered;
    return d;
  }

 private:
  void create_affine(const std::vector<std::size_t>& affine_shape) {
    if (!this->options_.affine) return;
    this->add_parameter("gamma", xt::ones<T>(affine_shape));
    if (Options::centered) this->add_parameter("beta", xt::zeros<T>(affine_shape));
  }
};

// Traits of a per-sample norm.
inline NormTraits row_norm_traits(const RowNormOptions& o, bool centered) {
  NormTraits t;
  t.channels_last = o.channel_affine;  // a normalized_shape is trailing dims in either order
  t.torch_peer = true;                 // F.layer_norm, or a composite of torch ops
  if (o.affine)
    t.parameters =
        centered ? std::vector<std::string>{"gamma", "beta"} : std::vector<std::string>{"gamma"};
  return t;
}

}  // namespace normlab
