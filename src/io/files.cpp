// Checked, synced writes; atomic replacement; all-or-nothing output folders.
#include "normlab/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "io/safe_open.hpp"

namespace normlab {

namespace fs = std::filesystem;

namespace {

std::string errno_text(int code = errno) {
  return std::strerror(code);
}

// fsync, except on what cannot be synced (a device such as /dev/full, a pipe).
bool sync_descriptor(int fd) {
  struct stat info;
  if (::fstat(fd, &info) != 0) return false;
  if (!S_ISREG(info.st_mode) && !S_ISDIR(info.st_mode)) return true;
  return ::fsync(fd) == 0 || errno == EINVAL;  // EINVAL: a file system without fsync
}

// Syncs a folder, so that a rename inside it survives a crash.
void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // the rename happened; only its durability is unknown
  sync_descriptor(fd);
  ::close(fd);
}

// Removes the staging folders ".staging-PID-XXXXXX" of `dir` whose process
// has ended (killed before it could clean up). Links are not followed.
void remove_abandoned_staging(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(".staging-", 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + 9, nullptr, 10);
    std::error_code ignored;
    if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH &&
        fs::is_directory(it->symlink_status(ignored)))
      fs::remove_all(it->path(), ignored);
  }
}

}  // namespace

// A planted link at `path` is refused, not written through.
FileWriter::FileWriter(std::string path) : path_(std::move(path)) {
  const int fd = open_no_follow(path_, O_WRONLY | O_CREAT | O_TRUNC, "write file");
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    const std::string reason = errno_text();
    ::close(fd);
    throw std::runtime_error(path_ + ": cannot write file (" + reason + ")");
  }
}

FileWriter::~FileWriter() {
  if (file_) {  // an error or an exception left it open: drop what was written
    std::fclose(file_);
    remove_partial();
  }
}

void FileWriter::write(const void* data, std::size_t bytes) {
  if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes)
    throw std::runtime_error(path_ + ": write failed (" + errno_text() + ")");
}

void FileWriter::close() {
  if (std::fflush(file_) != 0 || !sync_descriptor(::fileno(file_)))
    throw std::runtime_error(path_ + ": write failed (" + errno_text() + ")");
  std::FILE* file = file_;
  file_ = nullptr;
  if (std::fclose(file) != 0) {
    const std::string reason = errno_text();
    remove_partial();
    throw std::runtime_error(path_ + ": closing failed (" + reason + ")");
  }
}

void FileWriter::remove_partial() const {
  std::error_code ec;
  if (fs::is_regular_file(path_, ec)) fs::remove(path_, ec);
}

void write_file(const std::string& path, const std::string& text) {
  FileWriter file(path);
  file.write(text.data(), text.size());
  file.close();
}

void replace_file(const std::string& path, const std::string& text) {
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0 && S_ISLNK(existing.st_mode))
    throw std::runtime_error(planted_link_message(path));
  // A new file under an unpredictable name (mkostemp: O_CREAT | O_EXCL), so
  // that nothing planted in the folder is written through.
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot write file (" + errno_text() + ")");
  (void)!::fchmod(fd, 0644);  // mkostemp makes it 0600; the file is no secret
  ::close(fd);
  write_file(tmp, text);  // on error FileWriter removes tmp
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw std::runtime_error(path + ": cannot replace (" + ec.message() + ")");
  }
  sync_folder(fs::path(path).parent_path());
}

void append_to_file(const std::string& path, const std::string& text) {
  const int fd = open_no_follow(path, O_WRONLY | O_APPEND | O_CREAT, "append");
  struct stat before {};
  bool ok = ::fstat(fd, &before) == 0;
  for (std::size_t done = 0; ok && done < text.size();) {
    const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    ok = wrote > 0;
    if (wrote == 0) errno = ENOSPC;  // no progress: treat as full
    if (ok) done += std::size_t(wrote);
  }
  ok = ok && sync_descriptor(fd);
  const int reason = errno;
  if (!ok && S_ISREG(before.st_mode)) (void)!::ftruncate(fd, before.st_size);
  if (::close(fd) != 0 && ok)
    throw std::runtime_error(path + ": cannot append (" + errno_text() + ")");
  if (!ok) throw std::runtime_error(path + ": cannot append (" + errno_text(reason) + ")");
}

StagedOutput::StagedOutput(const fs::path& dir) : dir_(dir) {
  std::error_code ec;
  const fs::file_status status = fs::status(dir_, ec);
  if (fs::exists(status) && !fs::is_directory(status))
    throw std::runtime_error(dir_.string() +
                             ": exists and is not a directory (choose another --out)");
  created_dir_ = fs::create_directories(dir_, ec);
  if (ec)
    throw std::runtime_error(dir_.string() + ": cannot create directory (" + ec.message() + ")");
  remove_abandoned_staging(dir_);
  // An unpredictable name (mkdtemp), so that nothing planted is written through.
  std::string staging = (dir_ / (".staging-" + std::to_string(::getpid()) + "-XXXXXX")).string();
  if (!::mkdtemp(staging.data())) {
    const std::string reason = errno_text();
    if (created_dir_) fs::remove(dir_, ec);
    throw std::runtime_error(dir_.string() + ": cannot write there (" + reason + ")");
  }
  staging_ = staging;
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

void StagedOutput::run(const std::function<void()>& work) {
  try {
    work();
  } catch (const std::exception& e) {
    std::string message = e.what();
    const std::string staged = staging_.string(), final_dir = dir_.string();
    for (std::size_t at = message.find(staged); at != std::string::npos;
         at = message.find(staged, at + final_dir.size()))
      message.replace(at, staged.size(), final_dir);
    throw std::runtime_error(message + "; " + unchanged_note());
  }
}

void StagedOutput::write(const std::string& name,
                         const std::function<void(const std::string&)>& write) {
  run([&] { write(path(name)); });
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
  for (const fs::path& name : names) {  // first: nothing is moved when one is refused
    const fs::path target = dir_ / name;
    if (fs::is_symlink(fs::symlink_status(target, ec)))
      throw std::runtime_error(planted_link_message(target.string()) + "; " + unchanged_note());
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
  sync_folder(dir_);
  committed_ = true;
}

}  // namespace normlab
