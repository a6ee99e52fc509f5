// diffrt encode-prompt: prompt(s) -> CLIP text embeddings with the model file's tokenizer and text encoder,
// as StableDiffusionPipeline.encode_prompt computes prompt_embeds (for debugging, and for --prompt-embeds).
#include <cstdio>

#include "api/diffrt.hpp"
#include "base/error.h"
#include "base/npy.h"
#include "cli/commands.h"

namespace diffrt::cli {

namespace {
struct EncodeOpts {
  std::string model, output, device = "auto";
  std::vector<std::string> prompts;
  bool print_ids = false, quiet = false;
};
}  // namespace

void add_encode_prompt_command(CLI::App& app) {
  auto o = std::make_shared<EncodeOpts>();
  CLI::App* c = app.add_subcommand(
      "encode-prompt", "Tokenize prompts and run the model file's CLIP text encoder: last_hidden_state as .npy "
                       "float32 [prompts, max_length, hidden] (what --prompt-embeds takes)");
  c->add_option("-m,--model", o->model, "model file (.drt) converted with its text encoder and tokenizer")->required();
  c->add_option("--prompt", o->prompts, "a prompt (repeatable: one row each; \"\" is the unconditional prompt)")
      ->required();
  c->add_option("-o,--output", o->output, "output .npy (float32 [prompts, max_length, hidden])");
  c->add_flag("--print-ids", o->print_ids, "print each prompt's token ids (input_ids, padded) to stdout");
  c->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  c->add_flag("-q,--quiet", o->quiet, "no notices");
  c->callback([o]() {
    if (o->output.empty() && !o->print_ids) fail(ErrorCode::InvalidArgument, "give -o out.npy and/or --print-ids");
    if (!o->output.empty() && (o->output.size() < 4 || o->output.compare(o->output.size() - 4, 4, ".npy") != 0))
      fail(ErrorCode::InvalidArgument, "-o: output must end in .npy, got '" + o->output + "'");
    const std::shared_ptr<const Model> model = Model::load(o->model);
    if (!model->info().has_text_encoder)
      fail(ErrorCode::InvalidArgument, o->model + ": this model file has no text encoder and tokenizer (convert the "
                                       "pipeline folder with its text_encoder/ and tokenizer/)");
    const std::string device = o->output.empty() ? "cpu" : resolve_device(o->device, o->quiet);
    Session session = open_session(model, device);
    int len = 0, dim = 0;
    const std::vector<int32_t> ids = session.tokenize(o->prompts, &len);
    const int n = int(o->prompts.size());
    if (o->print_ids)
      for (int i = 0; i < n; ++i) {
        std::printf("[");
        for (int t = 0; t < len; ++t) std::printf("%s%d", t ? ", " : "", ids[size_t(i) * size_t(len) + size_t(t)]);
        std::printf("]\n");
      }
    if (o->output.empty()) return;
    const std::vector<float> e = session.encode_prompts(o->prompts, &len, &dim);
    write_npy_f32(o->output, {n, len, dim}, e.data());
    if (!o->quiet) std::fprintf(stderr, "wrote %s [%d, %d, %d] (%s)\n", o->output.c_str(), n, len, dim, device.c_str());
  });
}

}  // namespace diffrt::cli
