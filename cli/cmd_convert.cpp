#include <cstdio>

#include "base/error.h"
#include "cli/commands.h"
#include "weights_converter/converter.h"

namespace diffrt::cli {

void add_convert_command(CLI::App& app) {
  auto opt = std::make_shared<ConvertOptions>();
  auto dtype = std::make_shared<std::string>("fp32");
  auto null_class = std::make_shared<std::string>("auto");
  auto quiet = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("convert", "Convert a diffusers UNet2DModel folder, or a pipeline folder (DDPM/DDIM or Stable Diffusion "
                                   "1.x/2.x), into a .drt model file");
  c->add_option("input", opt->input, "diffusers folder: config.json + diffusion_pytorch_model.safetensors "
                                     "(or a sharded .safetensors.index.json), or a pipeline folder with model_index.json, "
                                     "unet/, scheduler/ and, for Stable Diffusion, vae/ (and text_encoder/ + tokenizer/ "
                                     "when model_index.json names them: sample --prompt then works)")
      ->required();
  c->add_option("-o,--output", opt->output, "output model file (.drt), written atomically")->required();
  c->add_option("--dtype", *dtype, "weight storage dtype")->check(CLI::IsMember({"fp32", "fp16", "bf16"}))->capture_default_str();
  c->add_option("--scheduler", opt->scheduler_config,
                "diffusers scheduler_config.json to store as the default (default: the folder's own, if any)");
  c->add_flag("--strict", opt->strict, "treat tensors the config does not use as errors (default: warn)");
  c->add_flag("--no-vae", opt->no_vae,
              "Stable Diffusion: convert the UNet alone, without the VAE decoder and encoder (sampling then writes "
              "latents only)");
  c->add_flag("--no-vae-encoder", opt->no_vae_encoder,
              "Stable Diffusion: keep the VAE decoder but leave out its encoder (no encode, image-to-image or inpainting)");
  c->add_flag("--no-text-encoder", opt->no_text_encoder,
              "Stable Diffusion: leave out text_encoder/ and tokenizer/ (sampling then needs --prompt-embeds)");
  c->add_option("--null-class", *null_class,
                "class index used as the unconditional class for classifier-free guidance: an index, 'auto' "
                "(the last class of a class-conditional model) or 'none'")
      ->capture_default_str();
  c->add_flag("-q,--quiet", *quiet, "print nothing on success");
  c->callback([=]() {
    if (!parse_dtype(*dtype, &opt->dtype)) fail(ErrorCode::InvalidArgument, "--dtype: " + *dtype);
    if (*null_class == "auto") opt->null_class = -2;
    else if (*null_class == "none") opt->null_class = -1;
    else {
      try {
        size_t pos = 0;
        int v = std::stoi(*null_class, &pos);
        if (pos != null_class->size() || v < 0) throw std::invalid_argument("");
        opt->null_class = v;
      } catch (const std::exception&) {
        fail(ErrorCode::InvalidArgument, "--null-class: expected an index, 'auto' or 'none', got '" + *null_class + "'");
      }
    }
    ConvertReport r = convert_diffusers(*opt);
    for (const auto& w : r.warnings) std::fprintf(stderr, "diffrt: warning: %s\n", w.c_str());
    if (!*quiet) {
      std::printf("wrote %s (%s): %zu tensors (%s), %zu graph nodes, %.1f MiB\n  weights: %s\n  scheduler: %s\n",
                  opt->output.c_str(), r.family.c_str(), r.tensors, dtype->c_str(), r.nodes, double(r.bytes) / (1 << 20),
                  r.weights_source.c_str(), r.scheduler_source.empty() ? "(none: diffusers DDPMScheduler defaults)" : r.scheduler_source.c_str());
      if (!r.vae_source.empty()) std::printf("  vae decoder: %s (%zu graph nodes)\n", r.vae_source.c_str(), r.vae_nodes);
      if (r.vae_encoder_nodes)
        std::printf("  vae encoder: %s (%zu graph nodes)\n", r.vae_source.c_str(), r.vae_encoder_nodes);
      if (!r.text_encoder_source.empty())
        std::printf("  text encoder: %s (%zu graph nodes) + tokenizer\n", r.text_encoder_source.c_str(),
                    r.text_encoder_nodes);
    }
  });
}

}  // namespace diffrt::cli
