#include "output_dir.hpp"

#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace normlab::cli {

namespace fs = std::filesystem;

StagedOutput::StagedOutput(const fs::path& dir) : dir_(dir) {
  std::error_code ec;
  const fs::file_status status = fs::status(dir_, ec);
  if (fs::exists(status) && !fs::is_directory(status))
    throw std::runtime_error(dir_.string() +
                             ": exists and is not a directory (choose another --out)");
  created_dir_ = fs::create_directories(dir_, ec);
  if (ec)
    throw std::runtime_error(dir_.string() + ": cannot create directory (" + ec.message() + ")");
  staging_ = dir_ / (".staging-" + std::to_string(::getpid()));
  fs::remove_all(staging_, ec);  // left by an earlier process of this id that was killed
  ec.clear();
  fs::create_directory(staging_, ec);
  if (ec) {
    if (created_dir_) fs::remove(dir_, ec);
    throw std::runtime_error(dir_.string() + ": cannot write there (" + ec.message() + ")");
  }
}

StagedOutput::~StagedOutput() {
  std::error_code ec;
  fs::remove_all(staging_, ec);
  if (!committed_ && created_dir_) fs::remove(dir_, ec);  // only if we made it and it is empty
}

std::string StagedOutput::path(const std::string& name) const {
  return (staging_ / name).string();
}

std::string StagedOutput::unchanged_note() const {
  return created_dir_ ? "nothing was written" : dir_.string() + " was left unchanged";
}

void StagedOutput::write(const std::string& name,
                         const std::function<void(const std::string&)>& write) {
  const std::string staged = path(name);
  try {
    write(staged);
  } catch (const std::exception& e) {
    std::string message = e.what();
    const std::string final_path = (dir_ / name).string();
    for (std::size_t at = message.find(staged); at != std::string::npos;
         at = message.find(staged, at + final_path.size()))
      message.replace(at, staged.size(), final_path);
    throw std::runtime_error(message + "; " + unchanged_note());
  }
}

void StagedOutput::commit() {
  std::error_code ec;
  std::vector<fs::path> names;
  for (fs::directory_iterator it(staging_, ec), end; !ec && it != end; it.increment(ec))
    names.push_back(it->path().filename());
  if (ec)
    throw std::runtime_error(staging_.string() + ": cannot list the staged files (" + ec.message() +
                             "); " + unchanged_note());
  const fs::path backup = staging_ / ".replaced";
  // Each step that was done, to undo in reverse order on failure.
  struct Step {
    fs::path from, to;
  };
  std::vector<Step> done;
  auto undo = [&] {
    std::error_code ignored;
    for (auto step = done.rbegin(); step != done.rend(); ++step)
      fs::rename(step->to, step->from, ignored);
  };
  auto move = [&](const fs::path& from, const fs::path& to, const fs::path& shown) {
    std::error_code move_ec;
    fs::rename(from, to, move_ec);
    if (move_ec) {
      undo();
      throw std::runtime_error(shown.string() + ": cannot move the output into place (" +
                               move_ec.message() + "); " + unchanged_note());
    }
    done.push_back({from, to});
  };
  if (!names.empty()) {
    fs::create_directory(backup, ec);
    if (ec)
      throw std::runtime_error(dir_.string() + ": cannot write there (" + ec.message() + "); " +
                               unchanged_note());
  }
  for (const fs::path& name : names) {
    const fs::path target = dir_ / name;
    const fs::file_status status = fs::symlink_status(target, ec);
    if (fs::is_directory(status)) {
      undo();
      throw std::runtime_error(target.string() +
                               ": is a directory, where the output file goes (move it away); " +
                               unchanged_note());
    }
    if (fs::exists(status)) move(target, backup / name, target);  // kept until all succeeded
    move(staging_ / name, target, target);
  }
  committed_ = true;
}

void write_text_file(const std::string& path, const std::string& text) {
  FILE* file = std::fopen(path.c_str(), "w");
  if (!file) throw std::runtime_error(path + ": cannot write file (" + std::strerror(errno) + ")");
  const bool written =
      std::fwrite(text.data(), 1, text.size(), file) == text.size() && std::fflush(file) == 0;
  const int write_errno = errno;
  if (std::fclose(file) != 0 || !written)
    throw std::runtime_error(path + ": write failed (" +
                             std::strerror(written ? errno : write_errno) + ")");
}

}  // namespace normlab::cli
