#include <cstdio>
#include <map>

#include "api/diffrt.hpp"
#include "cli/commands.h"
#include "model/model_file.h"
#include "model/scheduler_config.h"

namespace diffrt::cli {

void add_info_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto graph = std::make_shared<bool>(false);
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("info", "Describe what a .drt model file holds (validates it fully)");
  c->add_option("model", *path, "model file (.drt)")->required();
  c->add_flag("--graph", *graph, "also list every graph node with its output shape at the default size");
  c->add_flag("--json", *json, "print the file header as JSON instead (without tensor data)");
  c->callback([=]() {
    ModelFile mf = read_model_file(*path);
    if (*json) {
      nlohmann::json j = {{"version", mf.version}, {"family", mf.family}, {"config", mf.config}, {"scheduler", mf.scheduler},
                          {"provenance", mf.provenance}, {"graph", graph_to_json(mf.graph)},
                          {"conditioning", {{"num_classes", mf.conditioning.num_classes}, {"null_class", mf.conditioning.null_class}}}};
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    uint64_t params = 0, bytes = 0;
    std::map<std::string, int> dtypes, ops;
    for (const auto& t : mf.tensors) {
      params += t.numel();
      bytes += t.nbytes;
      dtypes[dtype_name(t.dtype)]++;
    }
    for (const auto& n : mf.graph.nodes) ops[op_name(n.attrs)]++;
    std::printf("file:        %s (format version %u)\nfamily:      %s\n", path->c_str(), unsigned(mf.version),
                mf.family.c_str());
    std::printf("channels:    in %d, out %d; spatial size must be a multiple of %d\n", mf.graph.in_channels,
                mf.graph.out_channels, mf.graph.downsample_factor);
    if (mf.config.contains("sample_size")) std::printf("sample_size: %s\n", mf.config["sample_size"].dump().c_str());
    std::printf("parameters:  %llu in %zu tensors, %.2f MiB (", (unsigned long long)params, mf.tensors.size(),
                double(bytes) / (1 << 20));
    bool first = true;
    for (const auto& [d, n] : dtypes) { std::printf("%s%s x%d", first ? "" : ", ", d.c_str(), n); first = false; }
    std::printf(")\ngraph:       %zu nodes (", mf.graph.nodes.size());
    first = true;
    for (const auto& [o, n] : ops) { std::printf("%s%s x%d", first ? "" : ", ", o.c_str(), n); first = false; }
    std::printf(")\n");
    if (mf.conditioning.num_classes)
      std::printf("classes:     %d (null class for guidance: %s)\n", mf.conditioning.num_classes,
                  mf.conditioning.null_class >= 0 ? std::to_string(mf.conditioning.null_class).c_str() : "none");
    else
      std::printf("classes:     unconditional\n");
    if (mf.vae.present()) {
      uint64_t enc_params = 0;
      for (const auto& t : mf.tensors)
        if (t.name.rfind("vae.encoder.", 0) == 0 || t.name.rfind("vae.quant_conv.", 0) == 0) enc_params += t.numel();
      std::printf("vae:         decoder (%zu nodes, scaling_factor %g)", mf.vae.graph.nodes.size(),
                  double(mf.vae.scaling_factor));
      if (mf.vae_encoder.present())
        std::printf(" + encoder (%zu nodes, %llu parameters): encode and image-to-image work\n",
                    mf.vae_encoder.graph.nodes.size(), (unsigned long long)enc_params);
      else
        std::printf("; no encoder%s\n", mf.version < 2 ? " (format version 1: reconvert to add it)" : "");
    }
    if (mf.text_encoder.present())
      std::printf("text:        CLIP text encoder (%zu nodes, width %d, %s) + BPE tokenizer (%zu tokens, %zu merges, "
                  "pads to %d with id %d): sample --prompt works\n",
                  mf.text_encoder.graph.nodes.size(), mf.text_encoder.graph.out_channels,
                  mf.text_encoder.config.value("hidden_act", std::string("quick_gelu")).c_str(), mf.tokenizer.vocab.size(),
                  mf.tokenizer.merges.size(), mf.tokenizer.max_length, mf.tokenizer.pad_id);
    else if (mf.graph.context >= 0)
      std::printf("text:        no text encoder (sample with --prompt-embeds)\n");
    try {  // the sampler `diffrt sample` runs by default, and the options that shape it
      const SchedulerConfig sc = scheduler_config_from_json(mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object(),
                                                            "model scheduler config");
      std::printf("sampler:     %s (default steps %d; --sampler NAME converts it, see sample --help)\n",
                  describe_scheduler(sc).c_str(), default_steps(sc.klass));
    } catch (const Error& e) {
      std::printf("sampler:     invalid scheduler config: %s\n", e.what());
    }
    std::printf("scheduler:   %s\n", mf.scheduler.empty() ? "(diffusers DDPMScheduler defaults)" : mf.scheduler.dump().c_str());
    std::printf("provenance:  %s\n", mf.provenance.dump().c_str());
    if (*graph) {
      int s = mf.config.contains("sample_size") && mf.config["sample_size"].is_number_integer()
                  ? mf.config["sample_size"].get<int>() : mf.graph.downsample_factor * 4;
      const PlanSummary p = Model::load(*path)->plan_summary(1, s, s);
      std::printf("\nnodes at batch 1, %dx%d (arena %.2f MiB fp32, %.2f MiB without reuse):\n", s, s,
                  double(p.arena_bytes_fp32) / (1 << 20), double(p.naive_bytes_fp32) / (1 << 20));
      for (const PlanSummary::Node& n : p.nodes)
        std::printf("  %-14s %-52s -> %s\n", n.op.c_str(), n.name.c_str(), n.shape.c_str());
    }
  });
}

}  // namespace diffrt::cli
