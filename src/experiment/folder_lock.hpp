// One writer per results folder: an exclusive flock on DIR/.normlab.lock,
// held for the lifetime of the object and released by the kernel when the
// process ends, however it ends.
#pragma once

#include <filesystem>

namespace normlab {

class FolderLock {
 public:
  // Takes the lock or throws std::runtime_error naming the folder and the
  // process that holds it (its PID is written in the lock file).
  explicit FolderLock(const std::filesystem::path& dir);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

  // Unlocks and deletes the lock file (for a folder being taken back).
  void remove();

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace normlab
