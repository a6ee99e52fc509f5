// The L2 flush and the event timing loop of bench::Timer (timer.cuh says why each step is there).
#include "bench/kernels/timer.cuh"

namespace bench {
namespace {

// Reads n int4s; writes only if a value equals an impossible pattern, so the loads cannot be removed.
__global__ void flush_read_kernel(const int4* __restrict__ p, size_t n, int* __restrict__ sink) {
  int acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    int4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x7eadbeef) *sink = acc;
}

}  // namespace

Timer::Timer(cudaStream_t stream, const TimerConfig& cfg) : stream_(stream), cfg_(cfg) {
  if (cfg_.flush_l2) {
    flush_.allocate(cfg_.flush_bytes);
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(flush_.get(), 0x3c, cfg_.flush_bytes, stream_));
    sink_.allocate(sizeof(int));
  }
}

Timer::~Timer() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

void Timer::flush() {
  if (!cfg_.flush_l2) return;
  size_t n = cfg_.flush_bytes / sizeof(int4);
  flush_read_kernel<<<1024, 512, 0, stream_>>>(flush_.as<int4>(), n, sink_.as<int>());
  DIFFRT_CUDA_CHECK_LAUNCH();
}

Stats Timer::time(const std::function<void()>& fn, int reps_override) {
  // First call: plans, algorithm search, lazy module load. Then a short timed probe to size reps.
  fn();
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  ensure_events(2);
  flush();
  DIFFRT_CUDA_CHECK(cudaEventRecord(events_[0], stream_));
  fn();
  DIFFRT_CUDA_CHECK(cudaEventRecord(events_[1], stream_));
  DIFFRT_CUDA_CHECK(cudaEventSynchronize(events_[1]));
  float probe_ms = 0;
  DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&probe_ms, events_[0], events_[1]));
  for (int i = 0; i < cfg_.warmup; ++i) fn();

  int reps = reps_override > 0 ? reps_override : cfg_.reps;
  if (reps_override <= 0) {
    double per = std::max(1e-3, double(probe_ms)) * 1e-3 + (cfg_.flush_l2 ? 100e-6 : 0.0);
    int fit = int(cfg_.case_budget_s / per);
    reps = std::max(std::min(cfg_.reps, cfg_.min_reps), std::min(reps, fit));
  }
  ensure_events(2 * size_t(reps));
  for (int r = 0; r < reps; ++r) {
    flush();
    DIFFRT_CUDA_CHECK(cudaEventRecord(events_[2 * r], stream_));
    fn();
    DIFFRT_CUDA_CHECK(cudaEventRecord(events_[2 * r + 1], stream_));
  }
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::vector<double> us(reps);
  for (int r = 0; r < reps; ++r) {
    float ms = 0;
    DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[2 * r], events_[2 * r + 1]));
    us[r] = double(ms) * 1e3;
  }
  return summarize(std::move(us));
}

void Timer::ensure_events(size_t n) {
  while (events_.size() < n) {
    cudaEvent_t e;
    DIFFRT_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
}

}  // namespace bench
