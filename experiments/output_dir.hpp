// Writes a command's output files all-or-nothing: files go to a hidden
// staging folder inside DIR and are moved into DIR only by commit().
#pragma once

#include <filesystem>
#include <string>

namespace normlab::cli {

class StagedOutput {
 public:
  explicit StagedOutput(const std::filesystem::path& dir);
  ~StagedOutput();  // removes whatever was not committed
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;

  // Where to write `name` before commit.
  std::string path(const std::string& name) const;
  void commit();

 private:
  std::filesystem::path dir_;
  std::filesystem::path staging_;
  bool created_dir_ = false;
  bool committed_ = false;
};

}  // namespace normlab::cli
