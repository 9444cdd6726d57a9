// IDX reader (the MNIST file format), gzipped or plain: zlib's gzread passes
// plain files through unchanged, so one code path serves both.
#include <zlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "normlab/data.hpp"

namespace normlab {
namespace {

constexpr std::uint32_t kImageMagic = 2051;  // 0x00000803: u8 elements, 3 dimensions
constexpr std::uint32_t kLabelMagic = 2049;  // 0x00000801: u8 elements, 1 dimension
constexpr std::size_t kChunk = 1 << 20;      // bytes decompressed per gzread call

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (!file_)
      fail(path,
           std::string("cannot open (") + (errno ? std::strerror(errno) : "out of memory") + ")");
  }
  ~GzFile() { gzclose(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to `size` bytes into `out`; fewer only at the end of the data.
  std::size_t read(unsigned char* out, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      const int got = gzread(file_, out + done, unsigned(std::min(size - done, kChunk)));
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        fail(path_,
             std::string("read error: ") + (code == Z_ERRNO ? std::strerror(errno) : message));
      }
      if (got == 0) break;
      done += std::size_t(got);
    }
    return done;
  }

  // Streams up to `size` bytes through consume(bytes, n, offset) in chunks;
  // returns how many there were.
  template <class Consume>
  std::size_t stream(std::size_t size, Consume&& consume) {
    std::vector<unsigned char> chunk(std::min(size, kChunk));
    std::size_t done = 0;
    while (done < size) {
      const std::size_t got = read(chunk.data(), std::min(size - done, kChunk));
      consume(chunk.data(), got, done);
      done += got;
      if (got == 0) break;
    }
    return done;
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

std::uint32_t big_endian(const unsigned char* b) {
  return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) |
         std::uint32_t(b[3]);
}

// Reads the magic and the dimension sizes that follow it.
std::vector<std::size_t> read_header(GzFile& file, const std::string& path, std::uint32_t magic,
                                     const char* kind) {
  unsigned char head[4];
  if (file.read(head, 4) < 4) fail(path, std::string("not an IDX ") + kind + " file (too short)");
  const std::uint32_t found = big_endian(head);
  const std::size_t rank = magic & 0xff;
  if (found != magic) {
    std::string problem = std::string("not an IDX ") + kind + " file (magic " +
                          std::to_string(found) + ", expected " + std::to_string(magic) + ")";
    // Right element type (u8), wrong rank, e.g. the label file passed as images.
    if ((found >> 8) == (magic >> 8))
      problem += ": it holds a " + std::to_string(found & 0xff) + "-dimensional array, " + kind +
                 " files have " + std::to_string(rank);
    fail(path, problem);
  }
  std::vector<unsigned char> raw(4 * rank);
  const std::size_t got = file.read(raw.data(), raw.size());
  if (got < raw.size())
    fail(path, "truncated: expected " + std::to_string(4 + raw.size()) + " bytes of header, got " +
                   std::to_string(4 + got));
  std::vector<std::size_t> dims(rank);
  for (std::size_t i = 0; i < rank; ++i) dims[i] = big_endian(&raw[4 * i]);
  return dims;
}

// Whether the file can hold `bytes` of data: deflate expands at most 1032:1,
// so a header claiming more is corrupt and must not size an allocation.
bool can_hold(const std::string& path, std::size_t bytes) {
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  return ec || bytes / 1032 <= size;
}

// Reads `expected` body bytes into out[i] = convert(byte), or only counts
// them when out is null (a header the file cannot hold); throws if fewer arrive.
template <class T, class Convert>
void read_body(GzFile& file, const std::string& path, std::size_t expected, const char* what,
               T* out, Convert convert) {
  const std::size_t got =
      file.stream(expected, [&](const unsigned char* bytes, std::size_t n, std::size_t offset) {
        if (out)
          for (std::size_t i = 0; i < n; ++i) out[offset + i] = convert(bytes[i]);
      });
  if (got < expected)
    fail(path, "truncated: expected " + std::to_string(expected) + " bytes of " + what + ", got " +
                   std::to_string(got));
}

// Large fresh buffers fault in one 4 KiB page at a time, which costs more
// than decompressing into them on some VMs; ask for transparent huge pages.
void advise_huge_pages(void* data, std::size_t bytes) {
#ifdef MADV_HUGEPAGE
  const std::uintptr_t page = 1 << 21;
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) & ~(page - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data, (void)bytes;
#endif
}

// Each dimension is below 2^32; images are at most 65535 pixels a side, and
// the product of all three must fit the signed sizes xtensor uses.
void check_image_dims(const std::string& path, const std::vector<std::size_t>& dims) {
  const std::size_t count = dims[0], rows = dims[1], cols = dims[2];
  if (rows == 0 || cols == 0 || rows > 65535 || cols > 65535)
    fail(path, "implausible image size " + std::to_string(rows) + "x" + std::to_string(cols) +
                   " in the header (each side must be 1 to 65535 pixels)");
  if (count > std::size_t(PTRDIFF_MAX) / sizeof(float) / (rows * cols))
    fail(path, "implausible image dimensions in the header");
}

void check_same_count(const std::string& images_path, std::size_t images,
                      const std::string& labels_path, std::size_t labels) {
  if (images != labels)
    throw std::runtime_error(images_path + " has " + std::to_string(images) + " images but " +
                             labels_path + " has " + std::to_string(labels) + " labels");
}

}  // namespace

std::size_t count_idx_samples(const std::string& images_path, const std::string& labels_path) {
  GzFile images(images_path);
  const auto dims = read_header(images, images_path, kImageMagic, "image");
  check_image_dims(images_path, dims);
  GzFile labels(labels_path);
  const std::size_t count = read_header(labels, labels_path, kLabelMagic, "label")[0];
  check_same_count(images_path, dims[0], labels_path, count);
  return count;
}

IdxSummary summarize_idx(const std::string& images_path, const std::string& labels_path) {
  IdxSummary summary;
  GzFile images(images_path);
  const auto dims = read_header(images, images_path, kImageMagic, "image");
  check_image_dims(images_path, dims);
  summary.count = dims[0];
  summary.rows = dims[1];
  summary.cols = dims[2];
  GzFile labels(labels_path);
  const std::size_t count = read_header(labels, labels_path, kLabelMagic, "label")[0];
  check_same_count(images_path, dims[0], labels_path, count);
  unsigned char top = 0;  // the labels are streamed, not kept
  const std::size_t got =
      labels.stream(count, [&](const unsigned char* bytes, std::size_t n, std::size_t) {
        for (std::size_t i = 0; i < n; ++i) top = std::max(top, bytes[i]);
      });
  if (got < count)
    fail(labels_path, "truncated: expected " + std::to_string(count) + " bytes of labels, got " +
                          std::to_string(got));
  summary.classes = std::max<std::size_t>(10, std::size_t(top) + 1);  // as load_idx
  return summary;
}

Dataset load_idx(const std::string& images_path, const std::string& labels_path) {
  Dataset data;
  {
    GzFile file(images_path);
    const auto dims = read_header(file, images_path, kImageMagic, "image");
    check_image_dims(images_path, dims);
    const std::size_t count = dims[0], rows = dims[1], cols = dims[2];
    const std::size_t total = count * rows * cols;
    float scaled[256];  // u8 / 255, exactly as the division rounds it
    for (int v = 0; v < 256; ++v) scaled[v] = float(v) / 255.0f;
    const bool plausible = can_hold(images_path, total);
    if (plausible) {
      data.images = xt::xarray<float>::from_shape({count, 1, rows, cols});
      advise_huge_pages(data.images.data(), total * sizeof(float));
    }
    read_body(file, images_path, total, "pixels", plausible ? data.images.data() : nullptr,
              [&](unsigned char v) { return scaled[v]; });
  }
  {
    GzFile file(labels_path);
    const std::size_t count = read_header(file, labels_path, kLabelMagic, "label")[0];
    check_same_count(images_path, data.images.shape()[0], labels_path, count);
    const bool plausible = can_hold(labels_path, count);
    if (plausible) data.labels.resize(count);
    read_body(file, labels_path, count, "labels", plausible ? data.labels.data() : nullptr,
              [](unsigned char v) { return std::uint8_t(v); });
  }
  // The MNIST family has 10 classes; a file with larger labels widens that.
  const std::size_t top =
      data.labels.empty() ? 0 : *std::max_element(data.labels.begin(), data.labels.end());
  data.classes = std::max<std::size_t>(10, top + 1);
  return data;
}

}  // namespace normlab
