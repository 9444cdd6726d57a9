// normlab/files.hpp: checked writes, atomic replacement, appends that never
// leave half a record, and all-or-nothing output folders.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "normlab/files.hpp"
#include "test_helpers.hpp"

using normlab::test::error_of;
using normlab::test::read_file;
using normlab::test::ScratchDir;
using normlab::test::write_bytes;
namespace fs = std::filesystem;

namespace {

// Files in this process may grow to `bytes` while it lives; writes beyond
// fail with EFBIG instead of raising SIGXFSZ (as on a disk that fills up).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &previous_);
    rlimit limit = previous_;
    limit.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &previous_);
    std::signal(SIGXFSZ, previous_handler_);
  }

 private:
  rlimit previous_{};
  void (*previous_handler_)(int) = nullptr;
};

}  // namespace

TEST_CASE("files: write_file names the file and the system's reason, and leaves nothing") {
  const ScratchDir dir;
  const std::string missing = dir / "no/such/dir/file.txt";
  const std::string message =
      error_of<std::runtime_error>([&] { normlab::write_file(missing, "x"); });
  CHECK(message.find(missing + ": cannot write file") != std::string::npos);
  CHECK(message.find(std::strerror(ENOENT)) != std::string::npos);

  const std::string big = dir / "big.txt";
  {
    const FileSizeLimit limit(100);
    const std::string full =
        error_of<std::runtime_error>([&] { normlab::write_file(big, std::string(500, 'a')); });
    CHECK(full.find(big + ": write failed") != std::string::npos);
    CHECK(full.find(std::strerror(EFBIG)) != std::string::npos);
  }
  CHECK_FALSE(fs::exists(big));  // the partial file is removed
}

TEST_CASE("files: replace_file leaves the old file whole when the new one cannot be written") {
  const ScratchDir dir;
  const std::string path = dir / "table.md";
  normlab::replace_file(path, "old\n");
  CHECK(read_file(path) == "old\n");
  normlab::replace_file(path, "new\n");
  CHECK(read_file(path) == "new\n");
  {
    const FileSizeLimit limit(100);
    CHECK(error_of<std::runtime_error>([&] {
            normlab::replace_file(path, std::string(500, 'b'));
          }).find(std::strerror(EFBIG)) != std::string::npos);
  }
  CHECK(read_file(path) == "new\n");
  for (const auto& entry : fs::directory_iterator(dir.path()))  // no temporary file left
    CHECK(entry.path().filename() == "table.md");
}

TEST_CASE("files: an append that fails part way cuts the file back to its last whole record") {
  const ScratchDir dir;
  const std::string path = dir / "results.jsonl";
  normlab::append_to_file(path, "{\"cell\": 1}\n");
  normlab::append_to_file(path, "{\"cell\": 2}\n");
  const std::string before = read_file(path);
  {
    const FileSizeLimit limit(before.size() + 10);  // room for 10 of the 200 bytes
    const std::string message = error_of<std::runtime_error>(
        [&] { normlab::append_to_file(path, std::string(199, 'c') + "\n"); });
    CHECK(message.find(path + ": cannot append") != std::string::npos);
    CHECK(message.find(std::strerror(EFBIG)) != std::string::npos);
  }
  CHECK(read_file(path) == before);
  normlab::append_to_file(path, "{\"cell\": 3}\n");  // and the log goes on
  CHECK(read_file(path) == before + "{\"cell\": 3}\n");
}

TEST_CASE("files: StagedOutput moves all files in at commit, or none, naming DIR in errors") {
  const ScratchDir dir;
  const std::string out = dir / "out";
  {
    normlab::StagedOutput staged(out);
    staged.write("a.txt", [](const std::string& p) { normlab::write_file(p, "a"); });
    CHECK_FALSE(fs::exists(out + "/a.txt"));  // staged, not yet in DIR
    const std::string message = error_of<std::runtime_error>(
        [&] { staged.run([&] { normlab::write_file(staged.path("sub/b.txt"), "b"); }); });
    CHECK(message.find(out + "/sub/b.txt: cannot write file") != std::string::npos);
    CHECK(message.find("nothing was written") != std::string::npos);
    CHECK(message.find(".staging") == std::string::npos);
  }
  CHECK_FALSE(fs::exists(out));  // never committed: the folder it made is gone

  fs::create_directories(out);
  write_bytes(out + "/keep.txt", "");
  {
    normlab::StagedOutput staged(out);
    staged.write("a.txt", [](const std::string& p) { normlab::write_file(p, "a"); });
    staged.commit();
  }
  CHECK(read_file(out + "/a.txt") == "a");
  CHECK(fs::exists(out + "/keep.txt"));
  std::size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(out)) entries += entry.exists();
  CHECK(entries == 2);  // no staging folder left behind
}
