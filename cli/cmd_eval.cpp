// diffrt eval: one UNet forward pass on NCHW .npy inputs, like calling the diffusers model.
#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "base/error.h"
#include "cli/commands.h"
#include "runtime/cpu_executor.h"
#include "runtime/latent_pipeline.h"
#include "base/layout.h"
#include "base/npy.h"
#include "runtime/plan.h"
#ifdef DIFFRT_HAVE_CUDA
#include "runtime/cuda/cuda_executor.h"
#endif

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
    ModelFile mf = read_model_file(o->model);
    NpyArray x = read_npy(o->sample);
    if (x.type != NpyType::F32 || x.shape.size() != 4)
      fail(ErrorCode::InvalidArgument, o->sample + ": expected float32 [N, C, H, W]");
    const int n = int(x.shape[0]), ch = int(x.shape[1]), h = int(x.shape[2]), w = int(x.shape[3]);
    if (ch != mf.graph.in_channels)
      fail(ErrorCode::InvalidArgument, o->sample + ": has " + std::to_string(ch) + " channels, the model takes " +
                                           std::to_string(mf.graph.in_channels));
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
      for (int64_t v : l.as_i64()) labels.push_back(int32_t(std::clamp<int64_t>(v, -1, INT32_MAX)));  // range-checked by the executor
    }
    TextEmbeds ctx;
    if (!o->context.empty()) {
      ctx = read_text_embeds(o->context);
      if (ctx.batch != n)
        fail(ErrorCode::InvalidArgument, o->context + ": batch " + std::to_string(ctx.batch) + " but the sample has " +
                                             std::to_string(n));
      (void)model_context(mf.graph, ctx, nullptr, false);  // checks dim and that the model takes a context
    } else if (mf.graph.context >= 0) {
      fail(ErrorCode::InvalidArgument, "this model is text-conditioned: give --encoder-hidden-states");
    }
    std::vector<float> in_nhwc = nchw_to_nhwc(x.as_f32(), n, ch, h, w);
    GraphInputs in;
    in.sample = in_nhwc.data();
    in.timesteps = ts.data();
    in.labels = labels.empty() ? nullptr : labels.data();
    in.context = ctx.data.empty() ? nullptr : ctx.data.data();
    const PlanInputs pin{n, h, w, ctx.len};
    const ValueShape os = plan_memory(mf.graph, pin).shapes[mf.graph.output];
    std::vector<float> out(os.numel());
    if (device == "cuda") {
#ifdef DIFFRT_HAVE_CUDA
      CudaContext cctx;
      CudaWeights weights(mf);
      CudaExecutor ex(mf, weights, cctx, mf.graph, pin);
      ex.run(in, out.data());
#endif
    } else {
      CpuWeights weights(mf);
      CpuExecutor ex(mf, weights, mf.graph, pin);
      ex.run(in, out.data());
    }
    std::vector<float> out_nchw = nhwc_to_nchw(out, n, int(os.h), int(os.w), int(os.c));
    write_npy_f32(o->output, {n, os.c, os.h, os.w}, out_nchw.data());
    if (!o->quiet) std::fprintf(stderr, "wrote %s [%d, %lld, %lld, %lld]\n", o->output.c_str(), n, (long long)os.c, (long long)os.h, (long long)os.w);
  });
}

}  // namespace diffrt::cli
