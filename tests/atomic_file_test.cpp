// Atomic file writes and capped reads: content round trip, atomic replacement, failures (missing
// or non-directory parent, read-only directory, target is a directory, file-size limit standing in
// for a full disk) report Error(Io) naming the path and leave no temp file behind.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>

#include "base/error.h"
#include "base/atomic_file.h"
#include "tests/test_util.h"

namespace diffrt {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}
void write_str(const std::string& path, const std::string& s) { write_file_atomic(path, s.data(), s.size()); }

void expect_io_error(const std::function<void()>& fn, const std::string& path, const std::string& what = "") {
  try {
    fn();
    FAIL() << "no error for " << path;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), ErrorCode::Io) << msg;
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    if (!what.empty()) {
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  }
}

TEST(AtomicFile, WritesAndReadsBack) {
  const std::string dir = test::temp_dir("atomic");
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char(i * 31 + 7);
  write_str(dir + "/a.bin", data);
  EXPECT_EQ(read_file_bytes(dir + "/a.bin", data.size()), data);
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"a.bin"}));
}

TEST(AtomicFile, WritesEmptyFile) {
  const std::string dir = test::temp_dir("atomic");
  write_file_atomic(dir + "/e", nullptr, 0);
  EXPECT_EQ(fs::file_size(dir + "/e"), 0u);
  EXPECT_EQ(read_file_bytes(dir + "/e", 0), "");
}

TEST(AtomicFile, ReplacesExistingFile) {
  const std::string dir = test::temp_dir("atomic");
  const std::string path = dir + "/out.png";
  write_str(path, std::string(5000, 'o'));
  // A reader holding the old file keeps seeing the complete old content: the new file is renamed in.
  std::ifstream old_reader(path, std::ios::binary);
  write_str(path, "new");
  EXPECT_EQ(read_file_bytes(path, 100), "new");
  std::string old((std::istreambuf_iterator<char>(old_reader)), std::istreambuf_iterator<char>());
  EXPECT_EQ(old, std::string(5000, 'o'));
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"out.png"}));
}

TEST(AtomicFile, MissingDirectoryIsIoErrorNamingPath) {
  const std::string dir = test::temp_dir("atomic");
  const std::string path = dir + "/no/such/dir/x.bin";
  expect_io_error([&] { write_str(path, "x"); }, path, "No such file or directory");
  EXPECT_TRUE(listing(dir).empty());
}

TEST(AtomicFile, ParentIsAFileIsIoError) {
  const std::string dir = test::temp_dir("atomic");
  write_str(dir + "/file", "x");
  const std::string path = dir + "/file/x.bin";
  expect_io_error([&] { write_str(path, "y"); }, path, "Not a directory");
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"file"}));
}

TEST(AtomicFile, ReadOnlyDirectoryIsIoErrorAndKeepsOldFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const std::string dir = test::temp_dir("atomic");
  write_str(dir + "/keep", "old");
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  expect_io_error([&] { write_str(dir + "/keep", "new"); }, dir + "/keep", "Permission denied");
  fs::permissions(dir, fs::perms::owner_all);
  EXPECT_EQ(read_file_bytes(dir + "/keep", 10), "old");
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"keep"}));
}

TEST(AtomicFile, TargetIsADirectoryFailsAtRenameAndRemovesTemp) {
  const std::string dir = test::temp_dir("atomic");
  fs::create_directory(dir + "/target");
  write_str(dir + "/target/inside", "x");
  expect_io_error([&] { write_str(dir + "/target", "data"); }, dir + "/target", "rename failed");
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"target"}));
}

// A full disk, simulated with RLIMIT_FSIZE (writes past the limit fail with EFBIG once SIGXFSZ is
// ignored): the write error is reported, the temp file removed and the old file kept.
TEST(AtomicFile, WriteFailureLikeDiskFullLeavesOldFileAndNoTemp) {
  const std::string dir = test::temp_dir("atomic");
  const std::string path = dir + "/big.bin";
  write_str(path, "old");
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = saved;
  lim.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string big(1 << 20, 'z');
  bool threw = false;
  std::string msg;
  try {
    write_str(path, big);
  } catch (const Error& e) {
    threw = true;
    msg = e.what();
    EXPECT_EQ(e.code(), ErrorCode::Io);
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_TRUE(threw);
  EXPECT_EQ(msg.rfind(path + ": write failed: File too large", 0), 0u) << msg;
  EXPECT_EQ(read_file_bytes(path, 10), "old");
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"big.bin"}));
}

TEST(AtomicFile, DoesNotWriteThroughPlantedTempSymlink) {
  const std::string dir = test::temp_dir("atomic");
  const std::string victim = dir + "/victim";
  write_str(victim, "precious");
  const std::string path = dir + "/out.bin";
  fs::create_symlink(victim, path + ".tmp." + std::to_string(::getpid()));
  write_str(path, "payload");
  EXPECT_EQ(read_file_bytes(victim, 100), "precious");
  EXPECT_EQ(read_file_bytes(path, 100), "payload");
  EXPECT_FALSE(fs::is_symlink(path));
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"out.bin", "victim"}));
}

TEST(ReadFileBytes, RefusesFileAboveCapBeforeReading) {
  const std::string dir = test::temp_dir("atomic");
  write_str(dir + "/f", std::string(1000, 'a'));
  expect_io_error([&] { read_file_bytes(dir + "/f", 999); }, dir + "/f", "1000 bytes, above the limit of 999");
  EXPECT_EQ(read_file_bytes(dir + "/f", 1000).size(), 1000u);
}
TEST(ReadFileBytes, MissingFile) {
  expect_io_error([] { read_file_bytes("/nonexistent/f", 10); }, "/nonexistent/f", "cannot open");
}
TEST(ReadFileBytes, DirectoryIsNotARegularFile) {
  const std::string dir = test::temp_dir("atomic");
  expect_io_error([&] { read_file_bytes(dir, 10); }, dir, "not a regular file");
}

}  // namespace
}  // namespace diffrt
