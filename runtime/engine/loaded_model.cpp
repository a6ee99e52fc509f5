// LoadedModel (contract in engine.h): the file, and backend weights made once and shared. The CUDA half of
// cuda_weights() lives in cuda_backend.cpp (it needs the complete CudaWeights type).
#include <new>

#include "base/error.h"
#include "runtime/engine/engine.h"

namespace diffrt::engine {

std::string bytes_str(uint64_t bytes) {
  return std::to_string(bytes) + " bytes (" + std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB)";
}

std::shared_ptr<LoadedModel> LoadedModel::load(const std::string& path) {
  try {
    return std::make_shared<LoadedModel>(read_model_file(path));
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, path + ": out of host memory while loading the model");
  }
}

LoadedModel::LoadedModel(ModelFile file) : file_(std::move(file)) {}
LoadedModel::~LoadedModel() = default;

std::shared_ptr<const CpuWeights> LoadedModel::cpu_weights() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!cpu_) {
    try {
      cpu_ = std::make_shared<const CpuWeights>(file_);
    } catch (const std::bad_alloc&) {
      fail(ErrorCode::OutOfMemory, "out of host memory widening the model's " + std::to_string(file_.data.size()) +
                                       " bytes of weights to fp32 for the CPU backend");
    }
    ++uploads_;
  }
  return cpu_;
}

int LoadedModel::weight_uploads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return uploads_;
}

}  // namespace diffrt::engine
