// Argument parsers shared by the subcommands (contracts in commands.h).
#include <cerrno>
#include <cstdlib>
#include <random>

#include "base/error.h"
#include "cli/commands.h"

namespace diffrt::cli {

uint64_t parse_seed(const std::string& s) {
  if (s.empty()) {
    std::random_device rd;
    return (uint64_t(rd()) << 32 | rd()) & ((1ull << 53) - 1);  // printable and exact as a JSON number
  }
  if (s.find_first_not_of("0123456789") != std::string::npos || s.size() > 20)
    fail(ErrorCode::InvalidArgument, "--seed: expected an integer in [0, 2^64-1], got '" + s + "'");
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno == ERANGE) fail(ErrorCode::InvalidArgument, "--seed: '" + s + "' is larger than 2^64-1");
  return v;
}

}  // namespace diffrt::cli
