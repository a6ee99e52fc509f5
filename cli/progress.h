// A progress bar on stderr for long runs: redrawn in place on a TTY, silent otherwise (logs stay
// clean); --quiet turns it off everywhere.
#pragma once
#include <chrono>
#include <string>

namespace diffrt::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, int total, bool quiet);
  ~ProgressBar();
  void update(int done);  // done in [0, total]
  void finish();

 private:
  std::string label_;
  int total_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace diffrt::cli
