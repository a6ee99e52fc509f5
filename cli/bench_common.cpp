// Shared pieces of diffrt bench / profile (contracts in bench_common.h).
#include "cli/bench_common.h"

#include "base/atomic_file.h"

namespace diffrt::cli {

void add_workload_options(CLI::App* c, bench::Workload& o, const char* steps_help) {
  c->add_option("-b,--batch", o.batch, "images per sampling run (the UNet runs at twice this with guidance)")
      ->capture_default_str();
  c->add_option("-H,--height", o.height,
                "image height in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("-W,--width", o.width,
                "image width in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("--steps", o.steps, steps_help)->capture_default_str();
  c->add_option("--sampler", o.sampler,
                "sampler, as diffrt sample --sampler: ddpm ddim pndm dpmpp-2m dpmpp-2m-sde euler euler-a heun unipc lcm "
                "or a diffusers class name (default: the model's own scheduler)");
  c->add_flag("--karras", o.karras, "Karras sigmas (dpmpp-2m, dpmpp-2m-sde, euler, heun, unipc)");
  c->add_option("--eta", o.eta, "DDIM eta (eta > 0 draws noise every step)")->capture_default_str();
  c->add_option("--guidance-scale", o.guidance_scale,
                "classifier-free guidance scale; > 1 runs the UNet on [uncond; cond] (twice the batch). Default: 7.5 "
                "for text-conditioned models (as StableDiffusionPipeline), else 1");
  c->add_option("--context-len", o.context_len,
                "text-conditioned models: tokens of the random text embeddings (77 for CLIP)")->capture_default_str();
  c->add_option("--prompt-embeds", o.prompt_embeds,
                "text-conditioned models: prompt embeddings .npy float32 [B, L, D] instead of random ones");
  c->add_option("--negative-prompt-embeds", o.negative_prompt_embeds,
                "text-conditioned models: negative prompt embeddings, same shape (random when not given)");
  c->add_option("--seed", o.seed, "seed of the sampler noise and of the random inputs")->capture_default_str();
}

void write_json_file(const std::string& path, const nlohmann::json& j) {
  const std::string text = j.dump(1) + "\n";
  write_file_atomic(path, text.data(), text.size());
}

}  // namespace diffrt::cli
