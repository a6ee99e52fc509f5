// Atomic whole-file writes (temp file in the same directory, checked writes, fsync, rename) and
// capped whole-file reads. Every failure is Error(Io, "<path>: ...") and leaves no temp file.
#include "base/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"

namespace diffrt {

namespace {
[[noreturn]] void io_fail(const std::string& path, const std::string& what, int err) {
  throw Error(ErrorCode::Io, path + ": " + what + (err ? std::string(": ") + std::strerror(err) : ""));
}

// Best effort: makes the rename durable. Failure here does not undo a completed write.
void fsync_parent_dir(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}
}  // namespace

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  if (path.empty()) throw Error(ErrorCode::Io, "<empty path>: cannot write a file with no name");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  // A stale temp file of ours (same pid after a crash) is removed; O_EXCL|O_NOFOLLOW then refuses
  // to write through anything that reappears at that name (e.g. a planted symlink).
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) io_fail(path, "cannot create temporary file " + tmp, errno);
  FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    io_fail(path, "cannot open temporary file " + tmp, err);
  }
  int err = 0;
  const char* what = nullptr;
  if (size > 0 && std::fwrite(data, 1, size, f) != size) { err = errno; what = "write failed"; }
  if (!what && std::fflush(f) != 0) { err = errno; what = "write failed"; }
  if (!what && ::fsync(::fileno(f)) != 0) { err = errno; what = "fsync failed"; }
  if (std::fclose(f) != 0 && !what) { err = errno; what = "close failed"; }
  if (!what && std::rename(tmp.c_str(), path.c_str()) != 0) { err = errno; what = "rename failed"; }
  if (what) {
    ::unlink(tmp.c_str());
    io_fail(path, what, err);
  }
  fsync_parent_dir(path);
}

std::string read_file_bytes(const std::string& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_fail(path, "cannot open", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    io_fail(path, "cannot stat", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    io_fail(path, "not a regular file", 0);
  }
  uint64_t size = uint64_t(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    io_fail(path, "file is " + std::to_string(size) + " bytes, above the limit of " +
                      std::to_string(max_bytes), 0);
  }
  std::string out(size_t(size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(fd, &out[got], out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = r < 0 ? errno : 0;
      ::close(fd);
      io_fail(path, r < 0 ? "read failed" : "file shrank while being read", err);
    }
    got += size_t(r);
  }
  // The size is taken once (fstat); a file that grew meanwhile is refused, not half-read.
  char extra;
  ssize_t r;
  do { r = ::read(fd, &extra, 1); } while (r < 0 && errno == EINTR);
  ::close(fd);
  if (r != 0) io_fail(path, r < 0 ? "read failed" : "file grew while being read", r < 0 ? errno : 0);
  return out;
}

}  // namespace diffrt
