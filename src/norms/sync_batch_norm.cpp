// SyncBatchNorm: BatchNorm whose training statistics span every rank of a
// communicator (data-parallel training, where each rank holds a few samples).
//   forward:  each rank reduces per channel (count, mean, M2); the triples of
//             all ranks are gathered and merged exactly, in rank order (Chan's
//             formula), so ranks may hold different counts;
//   backward: the per-channel sums of dxhat and dxhat * xhat are summed over
//             the ranks, and dx uses the global count.
// Running statistics take the global unbiased variance: identical on every
// rank. Eval is BatchNorm's. On one rank it is BatchNorm, bit for bit (no
// hook runs). The communicator is the one current on the building thread
// (normlab/distributed.hpp).
#include <vector>

#include "channel_norm.hpp"
#include "normlab/distributed.hpp"

namespace normlab {
namespace {

struct SyncBatchNormOptions : ChannelOptions {
  static const OptionSchema<SyncBatchNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<SyncBatchNormOptions> s;
      return channel_options(s, /*optional_running=*/true);
    }();
    return s;
  }
};

template <class T>
class SyncBatchNorm final : public ChannelNorm<T, SyncBatchNormOptions> {
 public:
  SyncBatchNorm(std::string type, const SyncBatchNormOptions& options, std::size_t channels)
      : ChannelNorm<T, SyncBatchNormOptions>(type, options, channels, options.track_running_stats),
        communicator_(current_communicator()) {
    require_mpi(type + " norm");
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->batch_description(shape, mode);
    // With other ranks, one local value per channel is fine: combine_stats
    // checks the global count.
    if (communicator_->size() == 1) this->require_values_to_train(d, shape, mode);
    return d;
  }

  bool combines_stats() const override { return communicator_->size() > 1; }
  void combine_stats(const NormDescription& d, Mode, GroupStats& stats) override {
    if (communicator_->size() == 1) return;  // BatchNorm's statistics, bit for bit
    const std::size_t channels = d.groups(), ranks = std::size_t(communicator_->size());
    // Per rank: count, then each channel's mean and M2 (2C + 1 values).
    local_.resize(2 * channels + 1);
    local_[0] = stats.count;
    for (std::size_t c = 0; c < channels; ++c) {
      local_[1 + c] = stats.mean[c];
      local_[1 + channels + c] = stats.var[c] * stats.count;
    }
    all_.resize(local_.size() * ranks);
    communicator_->all_gather(local_.data(), local_.size(), all_.data());
    double total = 0;
    for (std::size_t c = 0; c < channels; ++c) {
      double count = 0, mean = 0, m2 = 0;
      for (std::size_t r = 0; r < ranks; ++r) {
        const double* rank = all_.data() + r * local_.size();
        const double n = rank[0];
        if (n == 0) continue;
        const double merged = count + n, delta = rank[1 + c] - mean;
        mean += delta * (n / merged);
        m2 += rank[1 + channels + c] + delta * delta * (count * n / merged);
        count = merged;
      }
      stats.mean[c] = mean;
      stats.var[c] = m2 / count;
      total = count;
    }
    stats.count = total;
    if (total < 2)
      throw std::invalid_argument(this->type() +
                                  " norm needs more than one value per channel over all ranks "
                                  "when training, got " +
                                  std::to_string(std::size_t(total)));
  }

  bool combines_gradients() const override { return communicator_->size() > 1; }
  void combine_gradients(const NormDescription&, GradientSums& sums) override {
    // 2C values: sum(dxhat) and sum(dxhat * xhat) per channel.
    const std::size_t channels = sums.sum_dxhat.size();
    local_.resize(2 * channels);
    std::copy(sums.sum_dxhat.begin(), sums.sum_dxhat.end(), local_.begin());
    std::copy(sums.sum_dxhat_xhat.begin(), sums.sum_dxhat_xhat.end(), local_.begin() + channels);
    communicator_->all_reduce_sum(local_.data(), local_.size());
    std::copy(local_.begin(), local_.begin() + channels, sums.sum_dxhat.begin());
    std::copy(local_.begin() + channels, local_.end(), sums.sum_dxhat_xhat.begin());
  }

 private:
  std::shared_ptr<Communicator> communicator_;
  std::vector<double> local_, all_;  // reused: no allocation per step
};

}  // namespace

void register_sync_batch_norm(NormRegistry& registry) {
  register_norm<SyncBatchNorm>(
      registry,
      NormDefinition<SyncBatchNormOptions>{
          "sync_batch",
          "SyncBatchNorm: BatchNorm with statistics over every rank of the data-parallel group",
          [](const SyncBatchNormOptions& o) {
            NormTraits t;
            t.channels_last = true;
            t.needs_mpi = true;  // torch's SyncBatchNorm has no CPU path: no peer
            t.batch_statistics = true;
            channel_names(t, o.affine, o.track_running_stats);
            return t;
          }});
}

}  // namespace normlab
