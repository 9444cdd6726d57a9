// SyncBatchNorm over the ranks of mpirun against BatchNorm on the whole batch
// in one process, and data-parallel training steps against one process.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>
#include <xtensor/xview.hpp>

#include "normlab/normlab.hpp"

using namespace normlab;
using Array = xt::xarray<double>;

namespace {

Array normal(std::mt19937_64& rng, const std::vector<std::size_t>& shape, double mean,
             double stddev) {
  std::normal_distribution<double> dist(mean, stddev);
  Array a = Array::from_shape(shape);
  for (double& v : a) v = dist(rng);
  return a;
}

// Largest |a - b| / (|b| + max|b|), as the golden tests judge arrays.
double scaled_error(const Array& a, const Array& b) {
  REQUIRE(a.shape() == b.shape());
  double scale = 1e-300, worst = 0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a.flat(i) - b.flat(i)) / (std::abs(b.flat(i)) + scale));
  return worst;
}

// An array in data type T (rounded once) and back in double (exactly).
template <class T>
xt::xarray<T> as(const Array& a) {
  xt::xarray<T> out = xt::xarray<T>::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) out.flat(i) = nearest<T>(a.flat(i));
  return out;
}
template <class T>
Array widened(const xt::xarray<T>& a) {
  Array out = Array::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) out.flat(i) = double(a.flat(i));
  return out;
}

// Samples [first, first + count) of x along dimension 0.
Array rows(const Array& x, std::size_t first, std::size_t count) {
  return xt::view(x, xt::range(first, first + count));
}

// Rank r's share of a batch: `counts[r]` consecutive samples, in rank order.
struct Shard {
  std::size_t first, count;
};
Shard shard_of(const std::vector<std::size_t>& counts, int rank) {
  std::size_t first = 0;
  for (int r = 0; r < rank; ++r) first += counts[std::size_t(r)];
  return {first, counts[std::size_t(rank)]};
}

// Forward, backward and running statistics of sync_batch on this rank's shard
// and of batch on the whole input, over `steps` train steps, in data type T:
// every array within `tolerance` (scaled error).
template <class T = double>
void check_against_batch(const std::vector<std::size_t>& counts,
                         const std::vector<std::size_t>& sample_shape, double tolerance = 1e-12) {
  const auto world = world_communicator();
  REQUIRE(int(counts.size()) == world->size());
  std::size_t total = 0;
  for (std::size_t c : counts) total += c;
  std::vector<std::size_t> shape = {total};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  const std::size_t channels = sample_shape[0];
  const Shard mine = shard_of(counts, world->rank());

  auto whole = make_norm<T>({{"type", "batch"}}, channels);
  std::unique_ptr<Norm<T>> sync;
  {
    CommunicatorScope scope(world);
    sync = make_norm<T>({{"type", "sync_batch"}}, channels);
  }
  std::mt19937_64 rng(17);  // the same draws on every rank
  const Array gamma = normal(rng, {channels}, 1.0, 0.5), beta = normal(rng, {channels}, 0, 1);
  for (auto* norm : {whole.get(), sync.get()}) {
    norm->set("gamma", as<T>(gamma));
    norm->set("beta", as<T>(beta));
  }
  for (int step = 0; step < 3; ++step) {
    CAPTURE(step);
    const Array x = widened(as<T>(normal(rng, shape, 3.0 + step, 2.0)));
    const Array dy = widened(as<T>(normal(rng, shape, 0.4, 1.5)));
    whole->zero_grad();
    sync->zero_grad();
    const Array y_whole = widened(whole->forward(as<T>(x), Mode::train));
    const Array dx_whole = widened(whole->backward(as<T>(dy)));
    const Array y = widened(sync->forward(as<T>(rows(x, mine.first, mine.count)), Mode::train));
    const Array dx = widened(sync->backward(as<T>(rows(dy, mine.first, mine.count))));
    CHECK(scaled_error(y, rows(y_whole, mine.first, mine.count)) < tolerance);
    CHECK(scaled_error(dx, rows(dx_whole, mine.first, mine.count)) < tolerance);
    // Parameter gradients are per rank (data-parallel training averages them):
    // their sum over the ranks is the whole batch's.
    for (const char* name : {"gamma", "beta"}) {
      CAPTURE(name);
      Array grad = widened(sync->parameter(name).grad);
      world->all_reduce_sum(grad.data(), grad.size());
      CHECK(scaled_error(grad, widened(whole->parameter(name).grad)) < tolerance);
    }
    for (const char* name : {"running_mean", "running_var"}) {
      CAPTURE(name);
      CHECK(scaled_error(widened(sync->state(name)), widened(whole->state(name))) < tolerance);
    }
  }
  // Eval is BatchNorm's, with the (identical) running statistics.
  const xt::xarray<T> x = as<T>(normal(rng, shape, 1.0, 1.0));
  CHECK(scaled_error(widened(sync->forward(x, Mode::eval)),
                     widened(whole->forward(x, Mode::eval))) < tolerance);
}

// This rank's values equal every other rank's.
bool same_on_every_rank(const std::vector<double>& values) {
  const auto world = world_communicator();
  std::vector<double> all(values.size() * std::size_t(world->size()));
  world->all_gather(values.data(), values.size(), all.data());
  for (int r = 1; r < world->size(); ++r)
    if (!std::equal(values.begin(), values.end(), all.begin() + std::ptrdiff_t(r * values.size())))
      return false;
  return true;
}

}  // namespace

TEST_CASE("mpi: communicator basics over the world") {
  const auto world = world_communicator();
  REQUIRE(world->size() >= 2);
  const int rank = world->rank(), size = world->size();
  std::vector<double> v = {double(rank), 1.0};
  world->all_reduce_sum(v.data(), v.size());
  CHECK(v[0] == size * (size - 1) / 2);
  CHECK(v[1] == size);
  std::vector<double> all(2 * std::size_t(size));
  const double mine[2] = {double(rank), -double(rank)};
  world->all_gather(mine, 2, all.data());
  for (int r = 0; r < size; ++r) CHECK(all[2 * std::size_t(r)] == r);
  std::string text = rank == 0 ? "from rank 0" : "";
  world->broadcast(text, 0);
  CHECK(text == "from rank 0");
  // Groups: even and odd ranks.
  const auto group = world->split(rank % 2, rank);
  CHECK(group->rank() == rank / 2);
  CHECK(group->size() == (size + 1 - rank % 2) / 2);
  // Point to point: every rank sends its rank to rank 0.
  if (rank != 0) world->send(0, 7, std::to_string(rank));
  if (rank == 0) {
    int sum = 0;
    for (int i = 1; i < size; ++i) {
      const auto m = world->receive(true);
      REQUIRE(m.has_value());
      CHECK(m->tag == 7);
      CHECK(std::stoi(m->bytes) == m->from);
      sum += m->from;
    }
    CHECK(sum == size * (size - 1) / 2);
    CHECK_FALSE(world->receive(false).has_value());
  }
  world->barrier();
}

TEST_CASE("mpi: all_reduce_sum is the rank-order sum, bit for bit, on every rank") {
  const auto world = world_communicator();
  const std::size_t size = std::size_t(world->size());
  // Values whose sum depends on the order of the additions.
  const auto value = [](std::size_t rank, std::size_t i) {
    return (rank % 2 ? 1e16 : 1.0) * (rank + 1) + 0.1 * double(i) * (rank % 3 ? -1 : 1);
  };
  // Lengths below, at and above the number of ranks (uneven parts, empty parts).
  for (std::size_t n : {std::size_t(1), size - 1, size, size + 1, std::size_t(1001)}) {
    CAPTURE(n);
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = value(std::size_t(world->rank()), i);
    world->all_reduce_sum(v.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      double expected = value(0, i);
      for (std::size_t r = 1; r < size; ++r) expected += value(r, i);
      CHECK(v[i] == expected);
    }
  }
}

TEST_CASE("mpi: sync_batch over the ranks equals batch on the concatenated input (float64)") {
  const std::size_t ranks = std::size_t(world_communicator()->size());
  SUBCASE("equal shards, (N, C, H, W)") {
    check_against_batch(std::vector<std::size_t>(ranks, 2), {3, 4, 5});
  }
  SUBCASE("unequal shards, (N, C, L)") {
    std::vector<std::size_t> counts;
    for (std::size_t r = 0; r < ranks; ++r) counts.push_back(r + 1);
    check_against_batch(counts, {4, 7});
  }
  // One sample per rank, as in detection with one image per GPU. (With two
  // ranks on (N, C) that would be two values per channel, where BatchNorm's
  // output is +-1 whatever x is and dx is pure rounding noise.)
  SUBCASE("one sample per rank, (N, C, L)") {
    check_against_batch(std::vector<std::size_t>(ranks, 1), {4, 6});
  }
  SUBCASE("two samples per rank, (N, C)") {
    check_against_batch(std::vector<std::size_t>(ranks, 2), {5});
  }
}

// bfloat16: the same path (the ranks exchange the double statistics and sums);
// sync and whole differ in the last bits of their sums, so each output may be
// rounded to the neighbouring bfloat16 (2^-8 of the array's largest value in
// the scaled error), and the sum of the ranks' rounded gradients has a
// rounding per rank (2^-7 allowed for everything).
TEST_CASE("mpi: sync_batch over the ranks equals batch on the concatenated input (bfloat16)") {
  const std::size_t ranks = std::size_t(world_communicator()->size());
  check_against_batch<bfloat16>(std::vector<std::size_t>(ranks, 2), {3, 4, 5}, 0x1p-7);
  std::vector<std::size_t> counts;
  for (std::size_t r = 0; r < ranks; ++r) counts.push_back(r + 1);
  check_against_batch<bfloat16>(counts, {4, 7}, 0x1p-7);
}

TEST_CASE("mpi: a data-parallel step of R ranks x B equals one process at R*B (float64)") {
  const auto world = world_communicator();
  const std::size_t ranks = std::size_t(world->size()), batch = 3;
  std::mt19937_64 rng(5);
  const Array images = normal(rng, {ranks * batch, 1, 28, 28}, 0.2, 1.0);
  std::vector<std::uint8_t> labels(ranks * batch);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = std::uint8_t((i * 7) % 10);

  for (const char* architecture : {"mlp2", "cnn3"}) {
    CAPTURE(architecture);
    // One process, BatchNorm over the whole batch.
    Model<double> whole = build_model<double>(architecture, {{"type", "batch"}});
    whole.initialize(11);
    Sgd<double> whole_sgd(whole.parameters(), 0.9, 5e-4);
    // R ranks, SyncBatchNorm, each on its B samples.
    Model<double> model = [&] {
      CommunicatorScope scope(world);
      return build_model<double>(architecture, {{"type", "sync_batch"}});
    }();
    model.initialize(11);
    Sgd<double> sgd(model.parameters(), 0.9, 5e-4);
    const std::size_t first = std::size_t(world->rank()) * batch;
    const Array mine = rows(images, first, batch);
    const std::vector<std::uint8_t> my_labels(labels.begin() + std::ptrdiff_t(first),
                                              labels.begin() + std::ptrdiff_t(first + batch));
    for (int step = 0; step < 2; ++step) {
      CAPTURE(step);
      Array dlogits;
      whole_sgd.zero_grad();
      const double whole_loss =
          softmax_cross_entropy(whole.forward(images, Mode::train), labels, dlogits);
      whole.backward(dlogits);
      whole_sgd.step(0.05);
      sgd.zero_grad();
      double loss = softmax_cross_entropy(model.forward(mine, Mode::train), my_labels, dlogits);
      model.backward(dlogits);
      average_gradients(model.parameters(), *world, &loss, 1);
      sgd.step(0.05);
      CHECK(loss == doctest::Approx(whole_loss).epsilon(1e-12));
      const auto a = model.parameters(), b = whole.parameters();
      REQUIRE(a.size() == b.size());
      std::vector<double> weights;
      for (std::size_t i = 0; i < a.size(); ++i) {
        CAPTURE(a[i].name);
        CHECK(scaled_error(*a[i].value, *b[i].value) < 1e-12);
        weights.insert(weights.end(), a[i].value->begin(), a[i].value->end());
      }
      // Every rank holds exactly the same weights.
      CHECK(same_on_every_rank(weights));
    }
  }
}
