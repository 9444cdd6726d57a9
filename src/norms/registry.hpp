// How a norm type joins the registry. Each file src/norms/NAME.cpp (other than
// the framework's norm.cpp and registry.cpp) defines
//
//   void register_NAME(NormRegistry& registry);
//
// and CMake lists those files, so adding a norm is adding one file. See
// docs/engine.md, "Adding a norm".
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "normlab/bfloat16.hpp"
#include "normlab/norm.hpp"
#include "normlab/registry.hpp"
#include "options.hpp"

namespace normlab {

// Builds a norm of one data type from its spec.
template <class T>
using NormFactory =
    std::function<std::unique_ptr<Norm<T>>(const nlohmann::json& spec, std::size_t channels)>;

template <class... T>
struct DataTypes {
  template <template <class> class Of>
  using Each = std::tuple<Of<T>...>;
};
// The data types every norm is built for (make_norm<T>): float and double, and
// bfloat16 storage with float or double arithmetic inside.
using NormDataTypes = DataTypes<float, double, bfloat16>;

// One registered type, with its typed options erased behind the JSON boundary.
struct NormRegistration {
  NormInfo info;
  std::function<nlohmann::json(const nlohmann::json& spec)> resolve;
  std::function<NormTraits(const nlohmann::json& spec)> traits;
  std::function<nlohmann::json(const nlohmann::json& spec, std::size_t channels, bool spatial)>
      layer_spec;
  NormDataTypes::Each<NormFactory> make;  // one factory per data type

  template <class T>
  std::unique_ptr<Norm<T>> make_norm(const nlohmann::json& spec, std::size_t channels) const {
    return std::get<NormFactory<T>>(make)(spec, channels);
  }
};

class NormRegistry {
 public:
  void add(NormRegistration entry);
  const NormRegistration& find(const std::string& type) const;  // throws listing the names
  const std::vector<NormRegistration>& entries() const { return entries_; }

 private:
  std::vector<NormRegistration> entries_;
};

// The registry with every built-in norm.
const NormRegistry& norm_registry();

// A registered norm type in its typed form. Options is a struct whose default
// member values are the defaults, with a static `schema()`; NormClass<T> is
// constructed from (std::string type, const Options&, std::size_t channels).
template <class Options>
struct NormDefinition {
  const char* type;
  const char* summary;
  // What the norm is with these options.
  std::function<NormTraits(const Options&)> traits;
  // The options one model layer of `channels` outputs uses (e.g. fewer groups
  // than channels); may throw std::invalid_argument naming why the norm does
  // not fit there. Empty: the options as given.
  std::function<void(Options&, std::size_t channels, bool spatial)> fit_layer = nullptr;
};

// The factory of NormClass<T> for each data type.
template <template <class> class NormClass, class Options, class Parse, class... T>
NormDataTypes::Each<NormFactory> factories(const std::string& type, Parse parse,
                                           std::function<NormTraits(const Options&)> traits,
                                           DataTypes<T...>) {
  return {NormFactory<T>([=](const nlohmann::json& spec, std::size_t channels) {
    auto norm = std::make_unique<NormClass<T>>(type, parse(spec), channels);
    norm->set_traits_function(traits);
    return std::unique_ptr<Norm<T>>(std::move(norm));
  })...};
}

template <template <class> class NormClass, class Options>
void register_norm(NormRegistry& registry, const NormDefinition<Options>& definition) {
  const std::string type = definition.type;
  auto parse = [type](const nlohmann::json& spec) { return Options::schema().parse(type, spec); };
  auto traits = definition.traits;
  auto fit = definition.fit_layer;
  NormRegistration entry;
  entry.info = {type, definition.summary, Options::schema().describe(), traits(Options{})};
  entry.resolve = [=](const nlohmann::json& spec) {
    return Options::schema().to_json(type, parse(spec));
  };
  entry.traits = [=](const nlohmann::json& spec) { return traits(parse(spec)); };
  entry.layer_spec = [=](const nlohmann::json& spec, std::size_t channels, bool spatial) {
    Options options = parse(spec);
    if (!spatial && traits(options).needs_spatial)
      throw std::invalid_argument("norm '" + type +
                                  "' needs spatial dimensions and a layer without them has none");
    if (fit) fit(options, channels, spatial);
    Options::schema().validate(options);
    return Options::schema().to_json(type, options);
  };
  entry.make = factories<NormClass, Options>(type, parse, traits, NormDataTypes{});
  registry.add(std::move(entry));
}

// A norm that keeps its options typed and writes them back as its spec.
template <class T, class Options>
class NormWithOptions : public Norm<T> {
 public:
  NormWithOptions(std::string type, Options options)
      : Norm<T>(std::move(type)), options_(std::move(options)) {
    Options::schema().validate(options_);
  }
  nlohmann::json to_json() const override {
    return Options::schema().to_json(this->type(), options_);
  }
  // The registered traits of the options as they are now (a LayerNorm's
  // normalized_shape is fixed by its first input).
  NormTraits traits() const override {
    return traits_of_ ? traits_of_(options_) : Norm<T>::traits();
  }
  // Set by register_norm: the definition's traits.
  void set_traits_function(std::function<NormTraits(const Options&)> traits_of) {
    traits_of_ = std::move(traits_of);
  }

 protected:
  Options options_;

 private:
  std::function<NormTraits(const Options&)> traits_of_;
};

}  // namespace normlab
