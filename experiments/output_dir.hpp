// Writes a command's output files all-or-nothing: files go to a hidden
// staging folder inside DIR and are moved into DIR only by commit(). A write
// that fails, or a commit that cannot move every file, leaves DIR as it was
// (or absent, when this object created it).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace normlab::cli {

class StagedOutput {
 public:
  explicit StagedOutput(const std::filesystem::path& dir);
  ~StagedOutput();  // removes whatever was not committed
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;

  // Where to write `name` before commit.
  std::string path(const std::string& name) const;
  // Calls write(path(name)); an exception from it is rethrown as
  // std::runtime_error naming DIR/name rather than the staging path, adding
  // that DIR was left unchanged.
  void write(const std::string& name, const std::function<void(const std::string&)>& write);
  // Moves every staged file into DIR, replacing files of the same names. If
  // one cannot be moved, those already moved are put back (and the files they
  // replaced restored) before it throws.
  void commit();

 private:
  std::string unchanged_note() const;
  std::filesystem::path dir_;
  std::filesystem::path staging_;
  bool created_dir_ = false;
  bool committed_ = false;
};

// Writes `text` to `path`, checking the write, flush and close; errors name
// the path with the system's reason (strerror).
void write_text_file(const std::string& path, const std::string& text);

}  // namespace normlab::cli
