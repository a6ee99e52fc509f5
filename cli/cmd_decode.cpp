// diffrt decode: what StableDiffusionPipeline does after its loop: latents / scaling_factor ->
// VAE decoder -> (x/2 + 0.5).clamp(0, 1), written as NHWC float32 .npy or a PNG grid.
#include <cstdio>

#include "api/diffrt.hpp"
#include "base/error.h"
#include "base/image_png.h"
#include "base/npy.h"
#include "cli/commands.h"

namespace diffrt::cli {

void add_decode_command(CLI::App& app) {
  struct Opts {
    std::string model, latents, output, device = "auto";
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand("decode", "Decode latents with the model file's VAE decoder -> images (.npy or .png)");
  c->add_option("-m,--model", o->model, "model file (.drt) with a VAE decoder (a converted Stable Diffusion pipeline)")->required();
  c->add_option("--latents", o->latents,
                "latents as .npy float32 [N, C, h, w] (NCHW, as the pipeline's output_type=\"latent\"; not yet divided "
                "by the VAE's scaling_factor)")->required();
  c->add_option("-o,--output", o->output,
                "output: .npy (NHWC float32 in [0, 1], like diffusers output_type=\"np\") or .png (a grid when N > 1)")
      ->required();
  c->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  c->add_flag("-q,--quiet", o->quiet, "no notices");
  c->callback([o]() {
    const bool png = o->output.size() >= 4 && o->output.compare(o->output.size() - 4, 4, ".png") == 0;
    const bool npy = o->output.size() >= 4 && o->output.compare(o->output.size() - 4, 4, ".npy") == 0;
    if (!png && !npy) fail(ErrorCode::InvalidArgument, "-o: output must end in .png or .npy, got '" + o->output + "'");
    const std::string device = resolve_device(o->device, o->quiet);
    const std::shared_ptr<const Model> model = Model::load(o->model);
    const ModelInfo& info = model->info();
    if (!info.has_vae) fail(ErrorCode::InvalidArgument, o->model + ": this model file has no VAE decoder");
    NpyArray z = read_npy(o->latents);
    const int lc = info.in_channels;
    if (z.type != NpyType::F32 || z.shape.size() != 4 || z.shape[1] != lc)
      fail(ErrorCode::InvalidArgument, o->latents + ": expected float32 [N, " + std::to_string(lc) + ", h, w]");
    const int n = int(z.shape[0]), h = int(z.shape[2]), w = int(z.shape[3]);
    Session session = open_session(model, device);
    const std::vector<float> img = session.decode(z.as_f32().data(), n, h, w);
    const int f = info.vae_scale_factor, oh = f * h, ow = f * w, oc = info.image_channels;
    if (png)
      write_png_grid(o->output, img.data(), n, oh, ow, oc, 0, {{"Software", "diffrt " DIFFRT_VERSION_STRING}});
    else
      write_npy_f32(o->output, {n, oh, ow, oc}, img.data());
    if (!o->quiet) std::fprintf(stderr, "wrote %s [%d, %d, %d, %d]\n", o->output.c_str(), n, oh, ow, oc);
  });
}

}  // namespace diffrt::cli
