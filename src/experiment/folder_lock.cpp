#include "folder_lock.hpp"

#include "io/safe_open.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace normlab {

FolderLock::FolderLock(const std::filesystem::path& dir) : path_(dir / ".normlab.lock") {
  fd_ = open_no_follow(path_.string(), O_RDWR | O_CREAT, "create the folder's lock file");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char holder[32] = {};
    const ssize_t got = ::pread(fd_, holder, sizeof holder - 1, 0);
    ::close(fd_);
    fd_ = -1;
    if (error == EWOULDBLOCK)
      throw std::runtime_error(
          dir.string() + " is in use by another normlab run" +
          (got > 0 ? " (PID " + std::string(holder, std::size_t(got)) + ")" : std::string()) +
          ": wait for it to finish, or give this run another --out");
    throw std::runtime_error(path_.string() + ": cannot lock (" + std::strerror(error) + ")");
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 ||
      ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    throw std::runtime_error(path_.string() + ": cannot write the lock file (" +
                             std::strerror(errno) + ")");
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

void FolderLock::remove() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());
  ::close(fd_);
  fd_ = -1;
}

}  // namespace normlab
