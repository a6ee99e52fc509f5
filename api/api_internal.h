// Internals of the embedding API (api/), shared by its .cpp files and never installed:
//  * Model::Impl: the engine's LoadedModel (the file and its shared backend weights) and the model's info.
//  * Session::Impl: the session's engine backend and its busy flag (SessionAccess lets the bench hooks in).
//  * prepare(): a validated sample request as an engine Job (request.cpp), the same checks for every front end.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/diffrt.hpp"
#include "runtime/engine/engine.h"

namespace diffrt {

struct Model::Impl {
  std::shared_ptr<engine::LoadedModel> loaded;
  ModelInfo info;
};

struct ModelAccess {
  static Model::Impl& impl(const Model& m) { return *m.impl_; }
  static const ModelFile& file(const Model& m) { return m.impl_->loaded->file(); }
};

struct Session::Impl {
  std::shared_ptr<const Model> model;
  SessionOptions options;
  std::unique_ptr<engine::Backend> backend;
  std::atomic<bool> busy{false};
};

struct SessionAccess {
  static Session::Impl& impl(Session& s) { return *s.impl_; }
};

namespace api {

constexpr int kMaxContextLen = 65536;

[[noreturn]] void bad(const std::string& msg);
using engine::bytes_str;

// A validated request; its job has no text context yet (fill_text_context).
struct Prepared {
  engine::Job job;
  ImageShape out;                   // what the caller receives
  SampleDescription description;    // Session::describe
};
// Checks the options against the model (no memory limit, no allocation beyond the request's own size).
Prepared prepare(const Model& model, const SampleOptions& o);
// The scheduler config a request runs (sampler, karras, scheduler_config, scheduler_overrides; see SampleOptions).
SchedulerConfig request_scheduler(const ModelFile& mf, const SampleOptions& o);
// The job's encoder_hidden_states for a text-conditioned model: from the prompt embeddings (checked finite), or
// the prompts run through `encode` (the session backend's text encoder), as StableDiffusionPipeline does.
void fill_text_context(const Model& model, const SampleOptions& o, const TextEncodeFn& encode, engine::Job& job);

// Marks a session busy for the duration of one call; a second, overlapping call is refused.
class BusyScope {
 public:
  explicit BusyScope(std::atomic<bool>& flag);
  ~BusyScope() { flag_.store(false, std::memory_order_release); }
  BusyScope(const BusyScope&) = delete;
  BusyScope& operator=(const BusyScope&) = delete;

 private:
  std::atomic<bool>& flag_;
};

// Sets the calling thread's OpenMP thread count for one call and restores it after.
class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int threads);
  ~OmpThreadsScope();
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int prev_;
  bool set_;
};

}  // namespace api
}  // namespace diffrt
