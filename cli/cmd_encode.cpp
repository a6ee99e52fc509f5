// diffrt encode: what StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline do with an image before
// their loop: VaeImageProcessor.preprocess (cli/image_input.h), vae.encode(x).latent_dist, then sample(generator)
// (or mode() with --mean), times the VAE's scaling_factor -- the pipelines' init_latents -- written as NCHW float32
// .npy. Runs on the C++ API's Session::encode; every check that needs only the command line comes first, and
// nothing is written unless everything succeeded.
#include <cstdio>

#include "api/diffrt.hpp"
#include "base/error.h"
#include "base/layout.h"
#include "base/npy.h"
#include "cli/commands.h"
#include "cli/image_input.h"

namespace diffrt::cli {

void add_encode_command(CLI::App& app) {
  struct Opts {
    std::string model, image, output, device = "auto", rng = "philox", seed;
    int height = 0, width = 0, threads = 0;
    bool sample = false, mean = false, unscaled = false, moments = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand(
      "encode", "Encode images with the model file's VAE encoder -> latents (.npy), as image-to-image and inpainting do");
  c->add_option("-m,--model", o->model, "model file (.drt) with a VAE encoder (a converted Stable Diffusion pipeline)")
      ->required();
  c->add_option("--image", o->image,
                "image: .png (8-bit RGB or greyscale; resized with Pillow's LANCZOS) or .npy (float32 NHWC [B, H, W, 3] "
                "or [H, W, 3] in [0, 1], like diffusers' output_type=\"np\"; resized with nearest)")
      ->required();
  c->add_option("-o,--output", o->output,
                "output .npy: latents float32 [B, C, H/f, W/f] (NCHW), scaling_factor * the posterior sample (the "
                "pipelines' init_latents)")
      ->required();
  c->add_flag("--sample", o->sample, "draw a posterior sample, as the pipelines do (the default)");
  c->add_flag("--mean", o->mean, "the posterior mean instead (latent_dist.mode()): deterministic, no seed");
  c->add_option("--seed", o->seed, "random seed in [0, 2^64-1] (default: random; the seed used is printed)");
  c->add_option("--rng", o->rng,
                "noise generator: philox (counter-based, the same latents per seed and image index on every device) or "
                "torch (torch.randn([B, C, h, w]) with a seeded CPU generator, as diffusers draws the posterior sample)")
      ->check(CLI::IsMember({"philox", "torch"}))
      ->capture_default_str();
  c->add_option("--height", o->height, "resize to this height first (floored to the VAE factor; default: the image's)")
      ->check(CLI::Range(1, 8192));
  c->add_option("--width", o->width, "resize to this width first (floored to the VAE factor; default: the image's)")
      ->check(CLI::Range(1, 8192));
  c->add_flag("--unscaled", o->unscaled, "do not multiply by the VAE's scaling_factor (latent_dist.sample() itself)");
  c->add_flag("--moments", o->moments,
              "write the posterior's parameters [B, 2C, h, w] instead (latent_dist.parameters: mean, then raw logvar)");
  c->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  c->add_option("--threads", o->threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024));
  c->add_flag("-q,--quiet", o->quiet, "no notices (the seed is still printed)");
  c->callback([o]() {
    const std::string& out = o->output;
    if (out.size() < 4 || out.compare(out.size() - 4, 4, ".npy") != 0)
      fail(ErrorCode::InvalidArgument, "-o: output must end in .npy, got '" + out + "'");
    if (o->sample && o->mean) fail(ErrorCode::InvalidArgument, "--sample and --mean: give one of them");
    if (o->moments && (o->sample || o->mean || o->unscaled || !o->seed.empty() || o->rng != "philox"))
      fail(ErrorCode::InvalidArgument, "--moments writes the posterior's parameters: it takes no --sample, --mean, "
                                       "--unscaled, --seed or --rng");
    const bool sample = !o->mean && !o->moments;
    if (!sample && !o->seed.empty()) fail(ErrorCode::InvalidArgument, "--seed: --mean draws no noise");
    const uint64_t seed = sample ? parse_seed(o->seed) : 0;
    const std::string device = resolve_device(o->device, o->quiet);
    const std::shared_ptr<const Model> model = Model::load(o->model);
    const ModelInfo& info = model->info();
    if (!info.has_vae_encoder)
      fail(ErrorCode::InvalidArgument,
           o->model + (info.has_vae ? ": this model file has no VAE encoder (converted before diffrt stored it, or with "
                                      "--no-vae-encoder): reconvert the pipeline folder"
                                    : ": this model file has no VAE (a pixel-space model or --no-vae): nothing to encode with"));
    const ImageInput in = load_image_input(o->image, "--image", info.encoder_image_channels, info.vae_scale_factor,
                                           o->height, o->width);
    if (!o->quiet && !in.notice.empty()) std::fprintf(stderr, "diffrt: --image: %s\n", in.notice.c_str());
    const ImageBatch& x = in.images;
    if (!o->quiet && (x.h != in.source_h || x.w != in.source_w))
      std::fprintf(stderr, "diffrt: --image: resized %dx%d -> %dx%d (%s; a multiple of %d)\n", in.source_h, in.source_w,
                   x.h, x.w, in.png ? "LANCZOS" : "nearest", info.vae_scale_factor);
    Session session = open_session(model, device, o->threads);
    const ImageShape shape = session.encode_output_shape(x.n, x.h, x.w);
    std::vector<float> z;
    int channels = shape.channels;
    if (o->moments) {
      z = session.encode_moments(x.data.data(), x.n, x.h, x.w);
      channels *= 2;
    } else {
      EncodeOptions eo;
      eo.sample = sample;
      eo.seed = seed;
      eo.rng = o->rng == "torch" ? Rng::Torch : Rng::Philox;
      eo.scaled = !o->unscaled;
      z = session.encode(x.data.data(), x.n, x.h, x.w, eo);
    }
    if (sample) std::printf("seed: %llu\n", (unsigned long long)seed);
    write_npy_f32(out, {shape.batch, channels, shape.height, shape.width}, z.data());
    if (!o->quiet)
      std::fprintf(stderr, "wrote %s [%d, %d, %d, %d] (%s)\n", out.c_str(), shape.batch, channels, shape.height,
                   shape.width,
                   o->moments ? "posterior parameters" : (std::string(sample ? "posterior sample" : "posterior mean") +
                                                          (o->unscaled ? ", unscaled" : ", x scaling_factor")).c_str());
  });
}

}  // namespace diffrt::cli
