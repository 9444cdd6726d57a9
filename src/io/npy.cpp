// A small .npy reader and writer with errors that name the file and the problem.
#include "normlab/npy.hpp"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <xtensor/xadapt.hpp>
#include <xtensor/xbuilder.hpp>

namespace normlab {
namespace {

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
  std::size_t data_offset = 0;
};

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

// The value text after 'key': in the header dict.
std::string header_value(const std::string& path, const std::string& dict, const std::string& key) {
  const std::size_t at = dict.find("'" + key + "'");
  if (at == std::string::npos) fail(path, "not a valid .npy file (header lacks '" + key + "')");
  std::size_t colon = dict.find(':', at);
  if (colon == std::string::npos) fail(path, "not a valid .npy file (malformed header)");
  std::size_t start = colon + 1;
  while (start < dict.size() && dict[start] == ' ') ++start;
  return dict.substr(start);
}

NpyHeader read_header(const std::string& path, std::istream& in) {
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    fail(path, "not a .npy file (no \\x93NUMPY magic): save arrays with numpy.save");
  const int major = static_cast<unsigned char>(magic[6]);
  std::size_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) fail(path, "truncated .npy header");
    header_len = b[0] | (std::size_t(b[1]) << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) fail(path, "truncated .npy header");
    header_len =
        b[0] | (std::size_t(b[1]) << 8) | (std::size_t(b[2]) << 16) | (std::size_t(b[3]) << 24);
  } else {
    fail(path, "unsupported .npy format version " + std::to_string(major));
  }
  std::string dict(header_len, '\0');
  if (!in.read(&dict[0], std::streamsize(header_len))) fail(path, "truncated .npy header");

  NpyHeader h;
  h.data_offset = (major == 1 ? 10 : 12) + header_len;
  const std::string descr = header_value(path, dict, "descr");
  if (descr.size() < 2 || descr[0] != '\'') fail(path, "not a valid .npy file (bad descr)");
  h.descr = descr.substr(1, descr.find('\'', 1) - 1);
  h.fortran_order = header_value(path, dict, "fortran_order").rfind("True", 0) == 0;
  const std::string shape = header_value(path, dict, "shape");
  if (shape.empty() || shape[0] != '(') fail(path, "not a valid .npy file (bad shape)");
  std::istringstream dims(shape.substr(1, shape.find(')') - 1));
  std::string item;
  while (std::getline(dims, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    h.shape.push_back(std::stoull(item));
  }
  return h;
}

DType dtype_of(const std::string& path, const std::string& descr) {
  if (descr == "<f4" || descr == "=f4") return DType::float32;
  if (descr == "<f8" || descr == "=f8") return DType::float64;
  fail(path, "unsupported dtype '" + descr +
                 "': normlab reads float32 or float64 (convert with x.astype(numpy.float32))");
}

std::ifstream open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file (does it exist?)");
  return in;
}

}  // namespace

DType npy_dtype(const std::string& path) {
  std::ifstream in = open(path);
  return dtype_of(path, read_header(path, in).descr);
}

template <class T>
xt::xarray<T> load_npy(const std::string& path) {
  std::ifstream in = open(path);
  const NpyHeader h = read_header(path, in);
  const DType want = sizeof(T) == 4 ? DType::float32 : DType::float64;
  if (dtype_of(path, h.descr) != want)
    fail(path, std::string("holds ") + (want == DType::float32 ? "float64" : "float32") +
                   " data where " + (want == DType::float32 ? "float32" : "float64") +
                   " is needed");
  std::size_t count = 1;
  for (std::size_t d : h.shape) count *= d;
  std::vector<T> data(count);
  in.read(reinterpret_cast<char*>(data.data()), std::streamsize(count * sizeof(T)));
  if (std::size_t(in.gcount()) != count * sizeof(T))
    fail(path, "truncated: the header promises " + std::to_string(count) + " values");
  if (!h.fortran_order) return xt::adapt(data, h.shape);
  // Fortran order: adapt with column-major layout, then copy to row-major.
  auto column_major = xt::adapt<xt::layout_type::dynamic>(data.data(), count, xt::no_ownership(),
                                                          h.shape, xt::layout_type::column_major);
  return xt::xarray<T>(column_major);
}

template <class T>
void save_npy(const std::string& path, const xt::xarray<T>& x) {
  std::string dict = std::string("{'descr': '") + (sizeof(T) == 4 ? "<f4" : "<f8") +
                     "', 'fortran_order': False, 'shape': (";
  for (std::size_t d : x.shape()) dict += std::to_string(d) + ", ";
  if (x.dimension() > 1) dict.erase(dict.size() - 2);  // (3,) keeps its comma
  if (x.dimension() == 1) dict.erase(dict.size() - 1);
  dict += "), }";
  // Pad with spaces so that the data starts on a 64-byte boundary.
  const std::size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) fail(path, "cannot write file (does the directory exist?)");
  const std::uint16_t len = static_cast<std::uint16_t>(dict.size());
  out.write("\x93NUMPY\x01\x00", 8);
  const char len_bytes[2] = {char(len & 0xff), char(len >> 8)};
  out.write(len_bytes, 2);
  out.write(dict.data(), std::streamsize(dict.size()));
  xt::xarray<T> contiguous = x;  // row-major copy
  out.write(reinterpret_cast<const char*>(contiguous.data()),
            std::streamsize(x.size() * sizeof(T)));
  if (!out) fail(path, "write failed");
}

template xt::xarray<float> load_npy<float>(const std::string&);
template xt::xarray<double> load_npy<double>(const std::string&);
template void save_npy<float>(const std::string&, const xt::xarray<float>&);
template void save_npy<double>(const std::string&, const xt::xarray<double>&);

}  // namespace normlab
