// Writing result files so that a failure never leaves a half-written one:
// every step is checked (errors name the file and carry the system's reason,
// e.g. "No space left on device"), and data reaches the disk (fsync) before
// it replaces anything.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

namespace normlab {

// A file written in pieces: open, write(...) any number of times, close().
// Every write, the flush, the fsync and the close are checked and throw
// std::runtime_error naming the file. Until close() succeeds, destruction
// removes the partial file (only a regular file: the path may be /dev/full).
class FileWriter {
 public:
  explicit FileWriter(std::string path);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  void write(const void* data, std::size_t bytes);
  void close();  // flush, fsync (regular files), close

 private:
  void remove_partial() const;
  std::string path_;
  std::FILE* file_;
};

// Writes `text` to `path` through a FileWriter.
void write_file(const std::string& path, const std::string& text);

// Replaces `path` by `text` atomically: writes path.tmp, syncs it, renames it
// over `path` and syncs the folder. A reader sees the old file or the new one,
// never a mix; on error `path` is left as it was.
void replace_file(const std::string& path, const std::string& text);

// Appends `text` to `path` (created if missing) and syncs it. If the write
// fails part way (a full disk), the file is cut back to its old length, so a
// log of records never ends in half a record.
void append_to_file(const std::string& path, const std::string& text);

// A command's output files, all or nothing: they are written to a hidden
// staging folder inside DIR and moved into DIR only by commit(). A write that
// fails, or a commit that cannot move every file, leaves DIR as it was (or
// absent, when this object created it).
class StagedOutput {
 public:
  explicit StagedOutput(const std::filesystem::path& dir);
  ~StagedOutput();  // removes whatever was not committed
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;

  // Where to write `name` before commit (the staging folder holds it).
  std::string path(const std::string& name) const;
  const std::filesystem::path& staging_dir() const { return staging_; }
  // Runs work(); an exception from it is rethrown as std::runtime_error
  // naming DIR rather than the staging folder, adding that DIR was left unchanged.
  void run(const std::function<void()>& work);
  // run() of write(path(name)).
  void write(const std::string& name, const std::function<void(const std::string&)>& write);
  // Moves every staged file into DIR, replacing files of the same names. If
  // one cannot be moved, those already moved are put back (and the files they
  // replaced restored) before it throws.
  void commit();
  // "nothing was written" or "DIR was left unchanged", for error messages.
  std::string unchanged_note() const;

 private:
  std::filesystem::path dir_;
  std::filesystem::path staging_;
  bool created_dir_ = false;
  bool committed_ = false;
};

}  // namespace normlab
