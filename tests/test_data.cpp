// The data module: IDX reading (plain and gzipped) with its errors, the
// synthetic set, and the seeded index helpers.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>
#include <xtensor/xview.hpp>

#include "normlab/data.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::ScratchDir;

namespace {

using Bytes = std::vector<unsigned char>;

// An IDX file's bytes: big-endian magic, dimension sizes, then the body.
Bytes idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const Bytes& body) {
  Bytes out;
  auto put = [&out](std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back((unsigned char)(v >> shift));
  };
  put(magic);
  for (std::uint32_t d : dims) put(d);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

void write_file(const std::string& path, const Bytes& bytes, bool gzipped) {
  if (gzipped) {
    gzFile file = gzopen(path.c_str(), "wb");
    REQUIRE(file != nullptr);
    REQUIRE(gzwrite(file, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
    REQUIRE(gzclose(file) == Z_OK);
  } else {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    REQUIRE(out.good());
  }
}

// Three 2x3 images with pixel values 0, 1, ..., 17 (the last one 255) and labels 4, 0, 9.
struct SmallIdx {
  Bytes pixels;
  Bytes labels = {4, 0, 9};
  SmallIdx() {
    for (int i = 0; i < 18; ++i) pixels.push_back((unsigned char)(i == 17 ? 255 : i));
  }
  Bytes images_file() const { return idx_bytes(2051, {3, 2, 3}, pixels); }
  Bytes labels_file() const { return idx_bytes(2049, {3}, labels); }
};

std::string load_error(const std::string& images, const std::string& labels) {
  return error_of<std::runtime_error>([&] { load_idx(images, labels); });
}

// The fraction of `test` that the nearest class mean of `train` labels correctly.
double nearest_mean_accuracy(const Dataset& train, const Dataset& test) {
  const std::size_t pixels = train.images.size() / train.size();
  std::vector<double> means(train.classes * pixels, 0.0);
  std::vector<std::size_t> counts(train.classes, 0);
  for (std::size_t i = 0; i < train.size(); ++i) {
    const float* x = train.images.data() + i * pixels;
    for (std::size_t p = 0; p < pixels; ++p) means[train.labels[i] * pixels + p] += x[p];
    ++counts[train.labels[i]];
  }
  for (std::size_t c = 0; c < train.classes; ++c)
    for (std::size_t p = 0; p < pixels; ++p) means[c * pixels + p] /= double(counts[c]);
  std::size_t correct = 0;
  for (std::size_t i = 0; i < test.size(); ++i) {
    const float* x = test.images.data() + i * pixels;
    std::size_t best = 0;
    double best_distance = INFINITY;
    for (std::size_t c = 0; c < train.classes; ++c) {
      double d = 0;
      for (std::size_t p = 0; p < pixels; ++p) d += std::pow(x[p] - means[c * pixels + p], 2);
      if (d < best_distance) best_distance = d, best = c;
    }
    correct += best == test.labels[i];
  }
  return double(correct) / double(test.size());
}

}  // namespace

TEST_CASE("load_idx reads plain and gzipped IDX files alike") {
  ScratchDir dir;
  const SmallIdx small;
  for (bool gzipped : {false, true}) {
    CAPTURE(gzipped);
    const std::string images = dir / (gzipped ? "img.gz" : "img"),
                      labels = dir / (gzipped ? "lab.gz" : "lab");
    write_file(images, small.images_file(), gzipped);
    write_file(labels, small.labels_file(), gzipped);
    const Dataset data = load_idx(images, labels);
    REQUIRE(data.images.shape() == std::vector<std::size_t>{3, 1, 2, 3});
    CHECK(data.labels == std::vector<std::uint8_t>{4, 0, 9});
    CHECK(data.size() == 3);
    CHECK(data.classes == 10);
    CHECK(data.images(0, 0, 0, 0) == 0.0f);
    CHECK(data.images(1, 0, 1, 2) == 11.0f / 255.0f);  // pixel 11: second image, row 1, col 2
    CHECK(data.images(2, 0, 1, 2) == 1.0f);            // 255
  }
}

TEST_CASE("load_idx widens classes past 10 when a label needs it") {
  ScratchDir dir;
  SmallIdx small;
  small.labels = {3, 12, 1};
  write_file(dir / "img", small.images_file(), false);
  write_file(dir / "lab", small.labels_file(), true);
  CHECK(load_idx(dir / "img", dir / "lab").classes == 13);
}

TEST_CASE("load_idx names the file and the problem") {
  ScratchDir dir;
  const SmallIdx small;
  const std::string images = dir / "img", labels = dir / "lab";
  write_file(images, small.images_file(), true);
  write_file(labels, small.labels_file(), false);

  SUBCASE("missing file") {
    check_mentions(load_error(dir / "nope.gz", labels), {dir / "nope.gz", "cannot open"});
    check_mentions(load_error(images, dir / "nolabels"), {dir / "nolabels", "cannot open"});
  }
  SUBCASE("labels given as images, images as labels") {
    CHECK(load_error(labels, images) ==
          labels +
              ": not an IDX image file (magic 2049, expected 2051): it holds a 1-dimensional "
              "array, image files have 3");
    write_file(dir / "img2", small.images_file(), false);
    check_mentions(
        load_error(images, dir / "img2"),
        {dir / "img2" + ": not an IDX label file (magic 2051, expected 2049)", "3-dimensional"});
  }
  SUBCASE("not IDX at all") {
    write_file(dir / "text", {'h', 'e', 'l', 'l', 'o', '\n'}, false);
    check_mentions(load_error(dir / "text", labels),
                   {dir / "text", "not an IDX image file (magic 1751477356, expected 2051)"});
    write_file(dir / "short", {0, 0}, true);
    check_mentions(load_error(dir / "short", labels), {dir / "short", "not an IDX image file"});
  }
  SUBCASE("images of rank other than 3") {
    write_file(dir / "rank4", idx_bytes(2052, {3, 1, 2, 3}, small.pixels), false);
    check_mentions(load_error(dir / "rank4", labels),
                   {dir / "rank4", "not an IDX image file (magic 2052, expected 2051)",
                    "4-dimensional array, image files have 3"});
  }
  SUBCASE("truncated pixels, plain and gzipped") {
    Bytes cut = small.images_file();
    cut.resize(cut.size() - 5);
    for (bool gzipped : {false, true}) {
      write_file(dir / "cut", cut, gzipped);
      CHECK(load_error(dir / "cut", labels) ==
            dir / "cut" + ": truncated: expected 18 bytes of pixels, got 13");
    }
  }
  SUBCASE("truncated header") {
    write_file(dir / "cut", idx_bytes(2051, {3, 2}, {}), false);
    check_mentions(load_error(dir / "cut", labels), {dir / "cut", "truncated"});
  }
  SUBCASE("truncated labels") {
    write_file(dir / "cut", idx_bytes(2049, {3}, {1, 2}), true);
    CHECK(load_error(images, dir / "cut") ==
          dir / "cut" + ": truncated: expected 3 bytes of labels, got 2");
  }
  SUBCASE("a gzip stream cut short") {
    write_file(dir / "full.gz", small.images_file(), true);
    std::ifstream in(dir / "full.gz", std::ios::binary);
    Bytes gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    gz.resize(gz.size() / 2);
    write_file(dir / "half.gz", gz, false);
    check_mentions(load_error(dir / "half.gz", labels), {dir / "half.gz", "truncated"});
  }
  SUBCASE("image and label counts differ") {
    write_file(dir / "lab2", idx_bytes(2049, {2}, {1, 2}), false);
    CHECK(load_error(images, dir / "lab2") ==
          images + " has 3 images but " + dir / "lab2" + " has 2 labels");
  }
  SUBCASE("a corrupt header claiming huge sizes fails without allocating them") {
    write_file(dir / "huge", idx_bytes(2051, {4000000000u, 60000, 60000}, small.pixels), false);
    check_mentions(load_error(dir / "huge", labels), {dir / "huge", "implausible"});
    write_file(dir / "big", idx_bytes(2051, {40000, 60000, 60000}, small.pixels), false);
    check_mentions(load_error(dir / "big", labels), {dir / "big", "got 18"});  // truncated
  }
  // Found by tests/fuzz/fuzz_idx: no images, but sides whose product overflowed
  // xtensor's signed strides (undefined behaviour).
  SUBCASE("image sides of 0 or beyond 65535 pixels are refused") {
    write_file(dir / "wide", idx_bytes(2051, {0, 4294967295u, 4279697408u}, {}), false);
    check_mentions(load_error(dir / "wide", labels),
                   {dir / "wide", "implausible image size 4294967295x4279697408", "1 to 65535"});
    write_file(dir / "flat", idx_bytes(2051, {3, 0, 2}, {}), false);
    check_mentions(load_error(dir / "flat", labels), {dir / "flat", "0x2"});
  }
}

TEST_CASE("synthetic data: shape, range, balance, determinism") {
  const Dataset a = make_synthetic(1000, 10, 7);
  REQUIRE(a.images.shape() == std::vector<std::size_t>{1000, 1, 28, 28});
  REQUIRE(a.size() == 1000);
  CHECK(a.classes == 10);
  CHECK(*std::min_element(a.images.begin(), a.images.end()) >= 0.0f);
  CHECK(*std::max_element(a.images.begin(), a.images.end()) <= 1.0f);

  std::vector<std::size_t> counts(10, 0);
  for (std::uint8_t label : a.labels) ++counts.at(label);
  for (std::size_t c : counts) CHECK(c == 100);
  CHECK(a.labels != std::vector<std::uint8_t>(a.labels.size(), a.labels[0]));  // not constant

  const Dataset again = make_synthetic(1000, 10, 7);
  CHECK(again.labels == a.labels);
  CHECK(again.images == a.images);
  const Dataset other = make_synthetic(1000, 10, 8);
  CHECK(other.images != a.images);

  // A smaller set from the same seed is a prefix: train and test can be carved out of one seed.
  const Dataset prefix = make_synthetic(333, 10, 7);
  CHECK(prefix.labels == std::vector<std::uint8_t>(a.labels.begin(), a.labels.begin() + 333));
  CHECK(prefix.images == select(a, first_k(1000, 333)).images);

  // Pinned values: the generator must not drift between platforms or versions. (Pixels go
  // through libm's log, cos and exp, hence a tolerance rather than bit equality.)
  CHECK(std::vector<int>(a.labels.begin(), a.labels.begin() + 10) ==
        std::vector<int>{2, 4, 1, 6, 3, 5, 7, 0, 8, 9});
  CHECK(a.images(0, 0, 0, 0) == doctest::Approx(0.215640143).epsilon(1e-6));
  CHECK(a.images(0, 0, 24, 7) == doctest::Approx(0.856027961).epsilon(1e-6));

  CHECK_THROWS_AS(make_synthetic(10, 0, 1), std::invalid_argument);
  CHECK_THROWS_AS(make_synthetic(10, 257, 1), std::invalid_argument);
}

TEST_CASE("synthetic data is learnable but not trivial: nearest class mean") {
  const Dataset all = make_synthetic(4000, 10, 2024);
  const auto order = permutation(all.size(), 1);
  const Dataset train = select(all, std::vector<std::size_t>(order.begin(), order.begin() + 3000));
  const Dataset test = select(all, std::vector<std::size_t>(order.begin() + 3000, order.end()));
  const double accuracy = nearest_mean_accuracy(train, test);
  INFO("nearest-class-mean accuracy on synthetic data: " << accuracy);
  CHECK(accuracy > 0.5);   // chance is 0.1
  CHECK(accuracy < 0.97);  // noise, shifts and distractors keep it imperfect
}

TEST_CASE("permutation and random_k: seeded Fisher-Yates") {
  const auto p = permutation(1000, 5);
  CHECK(p == permutation(1000, 5));
  CHECK(p != permutation(1000, 6));
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) REQUIRE(sorted[i] == i);
  std::size_t fixed = 0;
  for (std::size_t i = 0; i < p.size(); ++i) fixed += p[i] == i;
  CHECK(fixed < 10);  // a shuffle, not the identity (expected about 1)
  // Pinned: the same shuffle on every platform.
  CHECK(permutation(10, 42) == std::vector<std::size_t>{2, 1, 3, 7, 8, 9, 4, 0, 6, 5});

  CHECK(permutation(0, 1).empty());
  CHECK(permutation(1, 1) == std::vector<std::size_t>{0});

  const auto k = random_k(1000, 50, 5);
  CHECK(k == std::vector<std::size_t>(p.begin(), p.begin() + 50));
  CHECK(first_k(5, 3) == std::vector<std::size_t>{0, 1, 2});
  check_mentions(error_of<std::invalid_argument>([] { first_k(5, 6); }), {"6", "5"});
  check_mentions(error_of<std::invalid_argument>([] { random_k(5, 6, 1); }), {"6", "5"});
}

TEST_CASE("select and standardize") {
  const Dataset data = make_synthetic(20, 4, 3);
  const Dataset picked = select(data, {5, 0, 5});
  REQUIRE(picked.images.shape() == std::vector<std::size_t>{3, 1, 28, 28});
  CHECK(picked.classes == 4);
  CHECK(picked.labels == std::vector<std::uint8_t>{data.labels[5], data.labels[0], data.labels[5]});
  CHECK(xt::view(picked.images, 1) == xt::view(data.images, 0));
  CHECK(xt::view(picked.images, 2) == xt::view(data.images, 5));
  CHECK(select(data, {}).images.shape() == std::vector<std::size_t>{0, 1, 28, 28});
  check_mentions(error_of<std::out_of_range>([&] { select(data, {1, 20}); }), {"20", "20 samples"});

  Dataset copy = data;
  standardize(copy, 0.5f, 0.25f);
  CHECK(copy.images(3, 0, 10, 11) == doctest::Approx((data.images(3, 0, 10, 11) - 0.5) / 0.25));
  CHECK_THROWS_AS(standardize(copy, 0.0f, 0.0f), std::invalid_argument);
}

TEST_CASE("Fashion-MNIST test set, when installed") {
  const std::filesystem::path root = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(root / "t10k-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: " << root << " not present");
    return;
  }
  const Dataset data = load_idx((root / "t10k-images-idx3-ubyte.gz").string(),
                                (root / "t10k-labels-idx1-ubyte.gz").string());
  REQUIRE(data.images.shape() == std::vector<std::size_t>{10000, 1, 28, 28});
  CHECK(data.classes == 10);
  CHECK(*std::max_element(data.labels.begin(), data.labels.end()) == 9);
  double sum = 0;
  for (float v : data.images) sum += v;
  CHECK(sum / double(data.images.size()) == doctest::Approx(0.2868).epsilon(0.005));
  std::vector<std::size_t> counts(10, 0);
  for (std::uint8_t label : data.labels) ++counts[label];
  for (std::size_t c : counts) CHECK(c == 1000);
}
