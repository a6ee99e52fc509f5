#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace diffrt::cli {

ProgressBar::ProgressBar(std::string label, int total, bool quiet)
    : label_(std::move(label)), total_(total), enabled_(!quiet && isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int done) {
  if (!enabled_ || finished_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double eta = done > 0 ? secs / done * (total_ - done) : 0.0;
  constexpr int kWidth = 30;
  int filled = total_ > 0 ? done * kWidth / total_ : kWidth;
  std::string bar(size_t(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r%s [%s] %d/%d  %.1fs elapsed, %.1fs left   ", label_.c_str(), bar.c_str(), done,
               total_, secs, eta);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::fprintf(stderr, "\n");
}

}  // namespace diffrt::cli
