// diffrt eval: one UNet forward pass on NCHW .npy inputs, like calling the diffusers model.
#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "api/diffrt.hpp"
#include "base/error.h"
#include "base/npy.h"
#include "cli/commands.h"

namespace diffrt::cli {

void add_eval_command(CLI::App& app) {
  struct Opts {
    std::string model, sample, timesteps, labels, context, output, device = "auto";
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand(
      "eval", "Run one UNet forward pass: model(sample, timesteps[, class_labels | encoder_hidden_states]) -> .npy");
  c->add_option("-m,--model", o->model, "model file (.drt)")->required();
  c->add_option("--sample", o->sample, "input x_t as .npy float32 [N, C, H, W] (NCHW, like diffusers)")->required();
  c->add_option("--timesteps", o->timesteps, "timesteps as .npy int64 or float32, shape [N] or [1] (broadcast)")->required();
  c->add_option("--class-labels", o->labels, "class labels as .npy int64/int32 [N] (class-conditional models)");
  c->add_option("--encoder-hidden-states", o->context,
                "text embeddings as .npy float32 [N, L, D] (text-conditioned models; D = cross_attention_dim, any L)");
  c->add_option("-o,--output", o->output, "output .npy float32 [N, Cout, H, W]")->required();
  c->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  c->add_flag("-q,--quiet", o->quiet, "no notices");
  c->callback([o]() {
    const std::string device = resolve_device(o->device, o->quiet);
    const std::shared_ptr<const Model> model = Model::load(o->model);
    const ModelInfo& info = model->info();
    NpyArray x = read_npy(o->sample);
    if (x.type != NpyType::F32 || x.shape.size() != 4)
      fail(ErrorCode::InvalidArgument, o->sample + ": expected float32 [N, C, H, W]");
    if (x.shape[0] < 1 || x.shape[0] > kMaxBatch) fail(ErrorCode::InvalidArgument, o->sample + ": batch out of range");
    const int n = int(x.shape[0]), ch = int(x.shape[1]), h = int(x.shape[2]), w = int(x.shape[3]);
    if (ch != info.in_channels)
      fail(ErrorCode::InvalidArgument, o->sample + ": has " + std::to_string(ch) + " channels, the model takes " +
                                           std::to_string(info.in_channels));
    NpyArray t = read_npy(o->timesteps);
    if (t.shape.size() != 1 || (t.shape[0] != n && t.shape[0] != 1))
      fail(ErrorCode::InvalidArgument, o->timesteps + ": expected shape [" + std::to_string(n) + "] or [1]");
    std::vector<float> ts(static_cast<size_t>(n));
    if (t.type == NpyType::F32) { auto v = t.as_f32(); for (int i = 0; i < n; ++i) ts[i] = v[t.shape[0] == 1 ? 0 : i]; }
    else { auto v = t.as_i64(); for (int i = 0; i < n; ++i) ts[i] = float(v[t.shape[0] == 1 ? 0 : i]); }
    std::vector<int32_t> labels;
    if (!o->labels.empty()) {
      NpyArray l = read_npy(o->labels);
      if (l.type == NpyType::F32 || l.shape.size() != 1 || l.shape[0] != n)
        fail(ErrorCode::InvalidArgument, o->labels + ": expected int64/int32 [" + std::to_string(n) + "]");
      for (int64_t v : l.as_i64()) labels.push_back(int32_t(std::clamp<int64_t>(v, -1, INT32_MAX)));  // range-checked by the API
    }
    std::vector<float> ctx;
    TextEmbeddings context;
    if (!o->context.empty()) {
      NpyArray e = read_npy(o->context);
      if (e.type != NpyType::F32 || e.shape.size() != 3 || e.shape[1] < 1 || e.shape[2] < 1 || e.shape[1] > 65536 ||
          e.shape[2] > 65536)
        fail(ErrorCode::InvalidArgument, o->context + ": expected float32 text embeddings [batch, tokens, dim]");
      if (e.shape[0] != n)
        fail(ErrorCode::InvalidArgument, o->context + ": batch " + std::to_string(e.shape[0]) + " but the sample has " +
                                             std::to_string(n));
      ctx = e.as_f32();
      context = {ctx.data(), n, int(e.shape[1]), int(e.shape[2])};
    } else if (info.context_dim > 0) {
      fail(ErrorCode::InvalidArgument, "this model is text-conditioned: give --encoder-hidden-states");
    }
    Session session = open_session(model, device);
    const std::vector<float> out = session.eval(x.as_f32().data(), n, h, w, ts.data(), labels.empty() ? nullptr : labels.data(),
                                                context);
    write_npy_f32(o->output, {n, info.out_channels, h, w}, out.data());
    if (!o->quiet) std::fprintf(stderr, "wrote %s [%d, %d, %d, %d]\n", o->output.c_str(), n, info.out_channels, h, w);
  });
}

}  // namespace diffrt::cli
