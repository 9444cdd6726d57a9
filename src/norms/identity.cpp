// "none": the identity, y = x. A config's baseline without normalization is a
// norm like the others, so configs, models and tests treat it by its traits
// (identity: models leave it out and keep the layer's bias) instead of by its
// name. On its own (apply, bench) the engine runs it as a map without
// statistics or affine: mean 0, rstd 1, y = x exactly.
#include <algorithm>

#include "channel_norm.hpp"

namespace normlab {
namespace {

struct IdentityOptions {
  Layout layout = Layout::nchw;

  static const OptionSchema<IdentityOptions>& schema() {
    static const auto s = [] {
      OptionSchema<IdentityOptions> s;
      return layout_option(s);
    }();
    return s;
  }
};

template <class T>
class Identity final : public NormWithOptions<T, IdentityOptions> {
 public:
  Identity(std::string type, const IdentityOptions& options, std::size_t)
      : NormWithOptions<T, IdentityOptions>(std::move(type), options) {
    this->set_layout(options.layout);
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    if (shape.empty())
      throw std::invalid_argument(this->type() + " norm needs an input of shape (N, ...), got " +
                                  shape_text(shape));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d;
    const std::size_t rest = std::min<std::size_t>(2, shape.size());
    d.view = {shape[0], shape.size() > 1 ? shape[1] : 1, product(shape, rest, shape.size())};
    d.centered = false;
    d.scaled = false;  // neither: no statistics, y = x
    return d;
  }
};

}  // namespace

void register_identity(NormRegistry& registry) {
  register_norm<Identity>(
      registry, NormDefinition<IdentityOptions>{"none", "No normalization: the identity, y = x",
                                                [](const IdentityOptions&) {
                                                  NormTraits t;
                                                  t.identity = true;
                                                  t.channels_last = true;
                                                  return t;
                                                }});
}

}  // namespace normlab
