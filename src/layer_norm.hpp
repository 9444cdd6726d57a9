// LayerNorm: one group per sample, over normalized_shape (default: all dims
// but the first). RMSNorm is the same grouping without centering.
#pragma once

#include "normlab/norm.hpp"

namespace normlab {

template <class T>
class LayerNorm : public Norm<T> {
 public:
  LayerNorm(nlohmann::json spec, std::size_t channels, bool centered = true);
  void prepare(const std::vector<std::size_t>& shape) override;

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override;

 private:
  void create_affine(const std::vector<std::size_t>& affine_shape);
  double eps() const;
  bool centered_;
  bool channel_affine_;
  std::vector<std::size_t> normalized_shape_;  // empty until known
};

}  // namespace normlab
