#include "safe_open.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace normlab {

namespace {

// One read(2) of up to `bytes`, retried on EINTR; throws naming the file.
std::size_t read_some(int fd, char* into, std::size_t bytes, const std::string& path) {
  for (;;) {
    const ssize_t got = ::read(fd, into, bytes);
    if (got >= 0) return std::size_t(got);
    if (errno != EINTR)
      throw std::runtime_error(path + ": cannot read (" + std::strerror(errno) + ")");
  }
}

// A directory is named as one ("is a directory, not a config file").
void refuse_directory(int fd, const std::string& path, const std::string& what) {
  struct stat info {};
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) {
    ::close(fd);
    throw std::runtime_error(path + ": is a directory, not a " + what);
  }
}

}  // namespace

std::string planted_link_message(const std::string& path) {
  return path +
         ": is a symbolic link; normlab does not write or read through links in its folders "
         "(remove it)";
}

int open_no_follow(const std::string& path, int flags, const std::string& doing, int mode) {
  const int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd >= 0) return fd;
  const int error = errno;
  struct stat info {};
  // ELOOP is what O_NOFOLLOW gives for a link; O_EXCL gives EEXIST for one.
  if ((error == ELOOP || error == EEXIST) && ::lstat(path.c_str(), &info) == 0 &&
      S_ISLNK(info.st_mode))
    throw std::runtime_error(planted_link_message(path));
  throw std::runtime_error(path + ": cannot " + doing + " (" + std::strerror(error) + ")");
}

std::string read_bounded(const std::string& path, std::size_t max_bytes, const std::string& what,
                         bool follow_links) {
  int fd = -1;
  if (follow_links) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw std::runtime_error(path + ": cannot open " + what + " (" + std::strerror(errno) + ")");
  } else {
    fd = open_no_follow(path, O_RDONLY, "open " + what);
  }
  refuse_directory(fd, path, what);
  std::string text;
  char piece[1 << 16];
  try {
    for (;;) {
      const std::size_t got = read_some(fd, piece, sizeof piece, path);
      if (got == 0) break;
      if (text.size() + got > max_bytes)
        throw std::runtime_error(path + ": larger than " + std::to_string(max_bytes) +
                                 " bytes, the limit for a " + what);
      text.append(piece, got);
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return text;
}

BoundedLines::BoundedLines(const std::string& path, std::size_t max_line, const std::string& what)
    : path_(path), what_(what), max_line_(max_line) {
  fd_ = open_no_follow(path, O_RDONLY, "open " + what);
  refuse_directory(fd_, path, what);
}

BoundedLines::~BoundedLines() {
  if (fd_ >= 0) ::close(fd_);
}

bool BoundedLines::fill() {
  if (end_) return false;
  if (start_ > 0) {  // drop what was handed out
    buffer_.erase(0, start_);
    start_ = 0;
  }
  char piece[1 << 16];
  const std::size_t got = read_some(fd_, piece, sizeof piece, path_);
  if (got == 0) {
    end_ = true;
    return false;
  }
  buffer_.append(piece, got);
  return true;
}

bool BoundedLines::next(std::string& line, bool& ended_with_newline) {
  std::size_t searched = start_;
  for (;;) {
    const std::size_t newline = buffer_.find('\n', searched);
    if (newline != std::string::npos && newline - start_ <= max_line_) {
      line.assign(buffer_, start_, newline - start_);
      start_ = newline + 1;
      ++line_number_;
      ended_with_newline = true;
      return true;
    }
    if (buffer_.size() - start_ > max_line_)
      throw std::runtime_error(path_ + ": line " + std::to_string(line_number_ + 1) +
                               ": longer than " + std::to_string(max_line_) +
                               " bytes, the limit for a line of a " + what_);
    const std::size_t unread = buffer_.size() - start_;  // holds no newline
    if (!fill()) {
      if (start_ >= buffer_.size()) return false;
      line.assign(buffer_, start_, std::string::npos);
      start_ = buffer_.size();
      ++line_number_;
      ended_with_newline = false;
      return true;
    }
    searched = start_ + unread;  // fill() moved the unread part to the front
  }
}

}  // namespace normlab
