// A small .npy reader and writer with errors that name the file and the problem.
// The reader trusts nothing in a file: every length in the header is checked
// against the file's size before anything of that length is allocated, and the
// shape's arithmetic is checked for overflow.
#include "normlab/npy.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <xtensor/xadapt.hpp>
#include <xtensor/xbuilder.hpp>

#include "normlab/files.hpp"

namespace normlab {
namespace {

// numpy itself refuses headers over 10000 bytes unless told otherwise; a
// float32/float64 header of 64 dimensions needs under 2 KiB.
constexpr std::size_t kMaxHeaderBytes = 65536;
constexpr std::size_t kMaxDimensions = 64;  // numpy 2's NPY_MAXDIMS

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
  std::size_t data_offset = 0;
  std::size_t file_size = 0;
};

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

// A file that starts as an .npy but whose header or data do not hold together.
[[noreturn]] void damaged(const std::string& path, const std::string& problem) {
  fail(path, problem +
                 "; the file is damaged or was not written by numpy.save: save the array "
                 "again");
}

// The value text after 'key': in the header dict.
std::string header_value(const std::string& path, const std::string& dict, const std::string& key) {
  const std::size_t at = dict.find("'" + key + "'");
  if (at == std::string::npos) damaged(path, "not a valid .npy file (header lacks '" + key + "')");
  std::size_t colon = dict.find(':', at);
  if (colon == std::string::npos) damaged(path, "not a valid .npy file (malformed header)");
  std::size_t start = colon + 1;
  while (start < dict.size() && dict[start] == ' ') ++start;
  return dict.substr(start);
}

// "(4, 0, 3)" -> {4, 0, 3}: decimal sizes only, each and their product in range.
std::vector<std::size_t> parse_shape(const std::string& path, const std::string& text) {
  const auto bad = [&](const std::string& why) {
    damaged(path, "not a valid .npy file (bad shape in the header: " + why + ")");
  };
  if (text.empty() || text[0] != '(') bad("expected a tuple such as (4, 3)");
  const std::size_t close = text.find(')');
  if (close == std::string::npos) bad("no closing parenthesis");
  std::vector<std::size_t> shape;
  std::size_t i = 1;
  const auto skip_spaces = [&] {
    while (i < close && text[i] == ' ') ++i;
  };
  skip_spaces();
  while (i < close) {
    if (text[i] < '0' || text[i] > '9') bad("sizes must be non-negative integers");
    std::size_t size = 0;
    for (; i < close && text[i] >= '0' && text[i] <= '9'; ++i)
      if (__builtin_mul_overflow(size, std::size_t(10), &size) ||
          __builtin_add_overflow(size, std::size_t(text[i] - '0'), &size))
        bad("a size does not fit in 64 bits");
    shape.push_back(size);
    if (shape.size() > kMaxDimensions)
      bad("more than " + std::to_string(kMaxDimensions) + " dimensions");
    skip_spaces();
    if (i < close && text[i] != ',') bad("sizes must be separated by commas");
    ++i;  // past the comma
    skip_spaces();
  }
  return shape;
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

NpyHeader read_header(const std::string& path, std::istream& in) {
  NpyHeader h;
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  in.seekg(0, std::ios::beg);
  if (end < 0 || !in) fail(path, "cannot read file (not a regular file?)");
  h.file_size = std::size_t(end);

  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    fail(path, "not a .npy file (no \\x93NUMPY magic): save arrays with numpy.save");
  const int major = static_cast<unsigned char>(magic[6]);
  std::size_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) damaged(path, "truncated .npy header");
    header_len = b[0] | (std::size_t(b[1]) << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) damaged(path, "truncated .npy header");
    header_len =
        b[0] | (std::size_t(b[1]) << 8) | (std::size_t(b[2]) << 16) | (std::size_t(b[3]) << 24);
  } else {
    fail(path, "unsupported .npy format version " + std::to_string(major));
  }
  const std::size_t prefix = major == 1 ? 10 : 12;
  // Checked before the header is allocated: a damaged length must not make us
  // allocate (or read) gigabytes.
  if (header_len > h.file_size - prefix)
    damaged(path, "truncated .npy header: it claims " + std::to_string(header_len) +
                      " bytes but the file has " + std::to_string(h.file_size - prefix) +
                      " after the length field");
  if (header_len > kMaxHeaderBytes)
    damaged(path, "not a valid .npy file (header of " + std::to_string(header_len) +
                      " bytes; a float32/float64 array needs under " +
                      std::to_string(kMaxHeaderBytes) + ")");
  std::string dict(header_len, '\0');
  if (header_len > 0 && !in.read(&dict[0], std::streamsize(header_len)))
    damaged(path, "truncated .npy header");

  h.data_offset = prefix + header_len;
  const std::string descr = header_value(path, dict, "descr");
  const std::size_t descr_end = descr.find('\'', 1);
  if (descr.size() < 2 || descr[0] != '\'' || descr_end == std::string::npos)
    damaged(path, "not a valid .npy file (bad descr)");
  h.descr = descr.substr(1, descr_end - 1);
  const std::string fortran = header_value(path, dict, "fortran_order");
  if (fortran.rfind("True", 0) == 0)
    h.fortran_order = true;
  else if (fortran.rfind("False", 0) != 0)
    damaged(path, "not a valid .npy file (fortran_order is neither True nor False)");
  h.shape = parse_shape(path, header_value(path, dict, "shape"));
  return h;
}

DType dtype_of(const std::string& path, const std::string& descr) {
  if (descr == "<f4" || descr == "=f4") return DType::float32;
  if (descr == "<f8" || descr == "=f8") return DType::float64;
  fail(path, "unsupported dtype '" + descr +
                 "': normlab reads float32 or float64 (convert with x.astype(numpy.float32))");
}

std::ifstream open(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory, not a .npy file");
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
  std::size_t count = 1, bytes = 0;
  for (std::size_t d : h.shape)
    if (__builtin_mul_overflow(count, d, &count))
      damaged(path, "not a valid .npy file (shape " + shape_text(h.shape) +
                        " has more values than fit in 64 bits)");
  if (__builtin_mul_overflow(count, sizeof(T), &bytes))
    damaged(path, "not a valid .npy file (shape " + shape_text(h.shape) +
                      " needs more bytes than fit in 64 bits)");
  // With a zero size there are no values, but xtensor still multiplies the
  // other sizes into signed strides: their product must fit too.
  std::size_t nonzero = 1;
  for (std::size_t d : h.shape)
    if (__builtin_mul_overflow(nonzero, std::max<std::size_t>(d, 1), &nonzero) ||
        nonzero > std::size_t(PTRDIFF_MAX) / sizeof(T))
      damaged(path, "not a valid .npy file (shape " + shape_text(h.shape) +
                        ": its sizes other than 0 multiply to more than fits in 63 bits)");
  // Checked before the array is allocated: the file must hold what the shape promises.
  const std::size_t available = h.file_size - h.data_offset;
  if (available < bytes)
    damaged(path, "truncated: the header promises " + std::to_string(count) + " values (shape " +
                      shape_text(h.shape) + ", " + std::to_string(bytes) +
                      " bytes) but the file has " + std::to_string(available) + " bytes of data");
  if (available > bytes)
    damaged(path, "not a valid .npy file: " + std::to_string(available - bytes) +
                      " bytes after the data that shape " + shape_text(h.shape) +
                      " describes (damaged header?)");
  std::vector<T> data(count);
  in.read(reinterpret_cast<char*>(data.data()), std::streamsize(bytes));
  if (std::size_t(in.gcount()) != bytes)
    damaged(path, "truncated: the header promises " + std::to_string(count) + " values");
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
  if (dict.size() > std::numeric_limits<std::uint16_t>::max())
    fail(path, "cannot write: " + std::to_string(x.dimension()) +
                   " dimensions make a header too long for format 1.0");
  const xt::xarray<T> contiguous = x;  // row-major copy, before the file is created
  FileWriter out(path);
  const std::uint16_t len = static_cast<std::uint16_t>(dict.size());
  out.write("\x93NUMPY\x01\x00", 8);
  const char len_bytes[2] = {char(len & 0xff), char(len >> 8)};
  out.write(len_bytes, 2);
  out.write(dict.data(), dict.size());
  out.write(contiguous.data(), x.size() * sizeof(T));
  out.close();
}

template xt::xarray<float> load_npy<float>(const std::string&);
template xt::xarray<double> load_npy<double>(const std::string&);
template void save_npy<float>(const std::string&, const xt::xarray<float>&);
template void save_npy<double>(const std::string&, const xt::xarray<double>&);

}  // namespace normlab
