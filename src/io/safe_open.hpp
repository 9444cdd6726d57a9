// Opening files as hostile input and output: without following a planted
// link, and reading no more than a bound, incrementally (a /dev/zero given as
// a config is refused after the bound, not read until memory runs out).
#pragma once

#include <cstddef>
#include <string>

namespace normlab {

// ::open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode). A symbolic link at
// `path` is an error naming it ("PATH: is a symbolic link; normlab does not
// write or read through links in its folders (remove it)"); any other failure
// is "PATH: cannot DOING (the system's reason)". Returns the descriptor.
int open_no_follow(const std::string& path, int flags, const std::string& doing, int mode = 0644);

// The message open_no_follow throws for a link at `path`.
std::string planted_link_message(const std::string& path);

// The whole of file `path`, a `what` ("config file"), if it holds at most
// `max_bytes`; read in pieces, so a larger file or an endless device is refused
// after max_bytes + 1 bytes: "PATH: larger than N bytes, the limit for a WHAT".
// A directory is "PATH: is a directory, not a WHAT". `follow_links` false:
// through open_no_follow.
std::string read_bounded(const std::string& path, std::size_t max_bytes, const std::string& what,
                         bool follow_links = true);

// Lines of a file, each at most `max_line` bytes (a longer one, or an endless
// device, is an error naming the line), read through open_no_follow.
class BoundedLines {
 public:
  BoundedLines(const std::string& path, std::size_t max_line, const std::string& what);
  ~BoundedLines();
  BoundedLines(const BoundedLines&) = delete;
  BoundedLines& operator=(const BoundedLines&) = delete;
  // The next line without its '\n'; false at the end. `ended_with_newline`
  // tells whether the line was ended by '\n' (a last line cut short is not).
  bool next(std::string& line, bool& ended_with_newline);
  std::size_t line_number() const { return line_number_; }

 private:
  bool fill();  // false at the end of the file
  std::string path_, what_;
  std::size_t max_line_;
  int fd_ = -1;
  std::string buffer_;
  std::size_t start_ = 0;  // of the unread part of buffer_
  std::size_t line_number_ = 0;
  bool end_ = false;
};

}  // namespace normlab
