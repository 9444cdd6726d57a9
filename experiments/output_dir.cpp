#include "output_dir.hpp"

#include <unistd.h>
#include <stdexcept>
#include <system_error>

namespace normlab::cli {

namespace fs = std::filesystem;

StagedOutput::StagedOutput(const fs::path& dir) : dir_(dir) {
  std::error_code ec;
  if (fs::exists(dir_) && !fs::is_directory(dir_))
    throw std::runtime_error(dir_.string() +
                             ": exists and is not a directory (choose another --out)");
  created_dir_ = fs::create_directories(dir_, ec);
  if (ec)
    throw std::runtime_error(dir_.string() + ": cannot create directory (" + ec.message() + ")");
  staging_ = dir_ / (".staging-" + std::to_string(::getpid()));
  fs::create_directory(staging_, ec);
  if (ec) throw std::runtime_error(dir_.string() + ": cannot write there (" + ec.message() + ")");
}

StagedOutput::~StagedOutput() {
  std::error_code ec;
  fs::remove_all(staging_, ec);
  if (!committed_ && created_dir_) fs::remove(dir_, ec);  // only if we made it and it is empty
}

std::string StagedOutput::path(const std::string& name) const {
  return (staging_ / name).string();
}

void StagedOutput::commit() {
  for (const auto& entry : fs::directory_iterator(staging_))
    fs::rename(entry.path(), dir_ / entry.path().filename());
  committed_ = true;
}

}  // namespace normlab::cli
