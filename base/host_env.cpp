// Host environment facts for benchmark results (contracts in bench_env.h).
#include "base/host_env.h"

#include <omp.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <thread>

namespace diffrt {

std::string utc_now_iso() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json host_environment_json() {
  nlohmann::json j;
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) j["host"] = host;
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) j["cpu"] = line.substr(line.find_first_not_of(' ', colon + 1));
      break;
    }
  j["logical_cores"] = std::thread::hardware_concurrency();
  j["omp_threads"] = omp_get_max_threads();
  utsname u{};
  if (uname(&u) == 0) j["os"] = std::string(u.sysname) + " " + u.release;
  j["diffrt_version"] = DIFFRT_VERSION_STRING;
  if (const char* sha = std::getenv("DIFFRT_GIT_SHA")) j["git_sha"] = sha;
  return j;
}

std::string command_line(int argc, const char* const* argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i] ? argv[i] : "";
    if (a.empty() || a.find_first_of(" \t\"'$\\") != std::string::npos) {
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      a = q + "'";
    }
    if (i) s += ' ';
    s += a;
  }
  return s;
}

}  // namespace diffrt
