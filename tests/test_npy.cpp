// The .npy reader and writer: round trips, hand-written files (Fortran order,
// other dtypes, format 2.0), and the errors for bad files.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::random_normal;
using normlab::test::read_file;
using normlab::test::ScratchDir;
using normlab::test::write_bytes;

namespace {

// The raw bytes of some values, as a little-endian machine stores them.
template <class V>
std::string raw(const std::vector<V>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(V));
}

// An .npy file written by hand: magic, version, header length, the dict
// padded to a multiple of 64 bytes, then `data` as given.
void write_npy_by_hand(const std::string& path, const std::string& dict, const std::string& data,
                       int major = 1) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += char(major);
  bytes += '\0';
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  for (std::size_t i = 0; i < length_bytes; ++i) bytes += char((header.size() >> (8 * i)) & 0xff);
  write_bytes(path, bytes + header + data);
}

std::string runtime_error_of_load(const std::string& path) {
  return error_of<std::runtime_error>([&] { load_npy<double>(path); });
}

}  // namespace

TEST_CASE_TEMPLATE("npy round trip: 1-D, 0-d, 4-D and more", T, float, double) {
  const ScratchDir dir;
  std::mt19937_64 rng(11);
  const DType dtype = sizeof(T) == 4 ? DType::float32 : DType::float64;
  const std::vector<std::vector<std::size_t>> shapes = {{7}, {}, {2, 3, 4, 5}, {1}, {3, 1}, {0, 4}};
  for (const auto& shape : shapes) {
    CAPTURE(shape.size());
    const std::string path = dir / "x.npy";
    const xt::xarray<T> x = random_normal<T>(rng, shape);
    save_npy<T>(path, x);
    CHECK(npy_dtype(path) == dtype);
    const xt::xarray<T> back = load_npy<T>(path);
    CHECK(back.dimension() == shape.size());
    CHECK(back.shape() == x.shape());
    CHECK(back == x);  // bit for bit

    // A header numpy accepts: version 1.0, data aligned to 64 bytes.
    const std::string bytes = read_file(path);
    REQUIRE(bytes.size() > 10);
    CHECK(bytes.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) == 0);
    const std::size_t header_length = std::size_t(static_cast<unsigned char>(bytes[8])) |
                                      (std::size_t(static_cast<unsigned char>(bytes[9])) << 8);
    CHECK((10 + header_length) % 64 == 0);
    CHECK(bytes.size() == 10 + header_length + x.size() * sizeof(T));
    const std::string header = bytes.substr(10, header_length);
    CHECK(header.back() == '\n');
    check_mentions(
        header, {sizeof(T) == 4 ? "'descr': '<f4'" : "'descr': '<f8'", "'fortran_order': False"});
  }
  // Python's spelling of the shapes.
  save_npy<T>(dir / "v.npy", xt::xarray<T>::from_shape({7}));
  check_mentions(read_file(dir / "v.npy"), {"'shape': (7,)"});
  save_npy<T>(dir / "s.npy", xt::xarray<T>(T(2.5)));
  check_mentions(read_file(dir / "s.npy"), {"'shape': ()"});
  CHECK(load_npy<T>(dir / "s.npy")() == T(2.5));
  save_npy<T>(dir / "m.npy", xt::xarray<T>::from_shape({2, 3}));
  check_mentions(read_file(dir / "m.npy"), {"'shape': (2, 3)"});
}

TEST_CASE("npy: Fortran-order files load row-major") {
  const ScratchDir dir;
  // Column-major (2, 3): memory order x[0,0], x[1,0], x[0,1], x[1,1], ...
  write_npy_by_hand(dir / "f.npy", "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                    raw(std::vector<double>{0, 3, 1, 4, 2, 5}));
  CHECK(load_npy<double>(dir / "f.npy") == xt::xarray<double>{{0, 1, 2}, {3, 4, 5}});

  // (2, 3, 4) float32: x[i, j, k] sits at i + 2 j + 6 k.
  std::vector<float> memory(24);
  for (std::size_t i = 0; i < 24; ++i) memory[i] = float(i);
  write_npy_by_hand(dir / "f3.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }",
                    raw(memory));
  const xt::xarray<float> x = load_npy<float>(dir / "f3.npy");
  REQUIRE(x.shape() == std::vector<std::size_t>{2, 3, 4});
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) CHECK(x(i, j, k) == float(i + 2 * j + 6 * k));
}

TEST_CASE("npy: format version 2.0 and keys in another order") {
  const ScratchDir dir;
  write_npy_by_hand(dir / "v2.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                    raw(std::vector<double>{1.5, -2, 4}), 2);
  CHECK(load_npy<double>(dir / "v2.npy") == xt::xarray<double>{1.5, -2, 4});
  write_npy_by_hand(dir / "o.npy", "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
                    raw(std::vector<float>{1, 2}));
  CHECK(npy_dtype(dir / "o.npy") == DType::float32);
  CHECK(load_npy<float>(dir / "o.npy") == xt::xarray<float>{1, 2});
}

TEST_CASE("npy errors: missing file, not an npy, other dtypes, truncated data") {
  const ScratchDir dir;
  const std::string missing = dir / "missing.npy";
  check_mentions(runtime_error_of_load(missing), {missing, "cannot open file"});
  check_mentions(error_of<std::runtime_error>([&] { npy_dtype(missing); }),
                 {missing, "cannot open file"});

  // Random bytes, and an empty file.
  std::mt19937_64 rng(5);
  std::string noise(300, '\0');
  for (char& c : noise) c = char(rng() & 0xff);
  noise[0] = 'P';  // not the magic by chance
  write_bytes(dir / "noise.npy", noise);
  check_mentions(runtime_error_of_load(dir / "noise.npy"), {"noise.npy", "not a .npy file"});
  check_mentions(error_of<std::runtime_error>([&] { npy_dtype(dir / "noise.npy"); }),
                 {"not a .npy file"});
  write_bytes(dir / "empty.npy", "");
  check_mentions(runtime_error_of_load(dir / "empty.npy"), {"not a .npy file"});

  // int32 and big-endian float64: not supported, and the message says what is.
  write_npy_by_hand(dir / "int.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
                    raw(std::vector<std::int32_t>{1, 2, 3}));
  for (const std::string& message :
       {runtime_error_of_load(dir / "int.npy"),
        error_of<std::runtime_error>([&] { npy_dtype(dir / "int.npy"); }),
        error_of<std::runtime_error>([&] { load_npy<float>(dir / "int.npy"); })})
    check_mentions(message, {"int.npy", "unsupported dtype '<i4'", "float32 or float64"});
  write_npy_by_hand(dir / "big.npy", "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
                    std::string(8, '\0'));
  check_mentions(runtime_error_of_load(dir / "big.npy"), {"unsupported dtype '>f8'"});

  // The other float type than asked for.
  save_npy<double>(dir / "f8.npy", xt::xarray<double>{1.0, 2.0});
  check_mentions(error_of<std::runtime_error>([&] { load_npy<float>(dir / "f8.npy"); }),
                 {"f8.npy", "holds float64 data where float32 is needed"});
  save_npy<float>(dir / "f4.npy", xt::xarray<float>{1.0f});
  check_mentions(runtime_error_of_load(dir / "f4.npy"),
                 {"holds float32 data where float64 is needed"});

  // Fewer values than the shape promises, and a header cut short.
  write_npy_by_hand(dir / "short.npy",
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 5), }",
                    raw(std::vector<double>(10, 1.0)));
  check_mentions(runtime_error_of_load(dir / "short.npy"), {"short.npy", "truncated", "20 values"});
  write_bytes(dir / "cut.npy", std::string("\x93NUMPY\x01\x00\x76\x00{'descr': '<f8'", 25));
  check_mentions(runtime_error_of_load(dir / "cut.npy"), {"cut.npy", "truncated .npy header"});
  write_npy_by_hand(dir / "noshape.npy", "{'descr': '<f8', 'fortran_order': False, }", "");
  check_mentions(runtime_error_of_load(dir / "noshape.npy"), {"header lacks 'shape'"});
  write_bytes(dir / "v9.npy", std::string("\x93NUMPY\x09\x00\x00\x00", 10));
  check_mentions(runtime_error_of_load(dir / "v9.npy"), {"unsupported .npy format version 9"});

  // Writing into a directory that does not exist.
  check_mentions(error_of<std::runtime_error>(
                     [&] { save_npy<double>(dir / "no/such/dir/x.npy", xt::xarray<double>{1.0}); }),
                 {"no/such/dir/x.npy", "cannot write file"});
}
