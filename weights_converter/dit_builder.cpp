// DiT graph builder (contract in dit_builder.h). Tested by tests/dit_converter_test.cpp (key set and parameter count
// against the DiT-XL/2 checkpoint, both conditioning forms) and tests/dit_parity_test.cpp (diffusers outputs).
#include "weights_converter/dit_builder.h"

#include <cmath>

#include "base/error.h"

namespace diffrt {

namespace {

const char* const kEmbTensors[] = {"timestep_embedder.linear_1.weight", "timestep_embedder.linear_1.bias",
                                   "timestep_embedder.linear_2.weight", "timestep_embedder.linear_2.bias",
                                   "class_embedder.embedding_table.weight"};

// Widest fused modulation vector (the graph's channel limit, 2^20 - 1): DiT-XL/2 needs 6*1152*28 + 2*1152 = 195840.
constexpr int64_t kMaxFusedModulation = (int64_t(1) << 20) - 1;

std::string block(int i) { return "transformer_blocks." + std::to_string(i); }

class DiTGraph {
 public:
  DiTGraph(const DiTConfig& c, bool shared) : c_(c), shared_(shared), D_(c.dim()) {}

  GraphBuilder build() {
    GraphBuilder& b = b_;
    Graph& g = b.graph;
    g.sample = b.value("sample");
    g.timestep = b.value("timestep");
    g.class_labels = b.value("class_labels");
    g.in_channels = c_.in_channels;
    g.out_channels = c_.out_channels;
    g.downsample_factor = c_.patch_size;
    expect_all();

    int x = patch_embed();
    // Conditioning: one c (shared) or one per block; the modulation vectors and each consumer's offset into them.
    std::vector<int> mods(size_t(c_.num_layers));
    std::vector<int64_t> offs(size_t(c_.num_layers));
    int mod_final = -1;
    int64_t off_final = 0;
    const int64_t total = int64_t(6) * D_ * c_.num_layers + 2 * D_;
    if (shared_ && total <= kMaxFusedModulation) {
      const int cond = embedding(0);
      std::vector<std::string> w, bias;
      for (int i = 0; i < c_.num_layers; ++i) {
        w.push_back(block(i) + ".norm1.linear.weight");
        bias.push_back(block(i) + ".norm1.linear.bias");
        offs[size_t(i)] = int64_t(6) * D_ * i;
      }
      w.push_back("proj_out_1.weight");
      bias.push_back("proj_out_1.bias");
      LinearAttrs la;
      la.in = D_; la.out = int(total); la.silu_input = true;
      const int mod = b.node("adaln_modulation", la, {cond},
                             {{"weight", b.concat0("adaln_modulation.weight", w, {total, D_})},
                              {"bias", b.concat0("adaln_modulation.bias", bias, {total})}});
      for (int& m : mods) m = mod;
      mod_final = mod;
      off_final = int64_t(6) * D_ * c_.num_layers;
    } else {
      // Per-block modulation linears, fed by one shared c or by each block's own embedding.
      int cond0 = -1;
      for (int i = 0; i < c_.num_layers; ++i) {
        const int cond = (shared_ && i > 0) ? cond0 : embedding(i);
        if (i == 0) cond0 = cond;
        mods[size_t(i)] = plain_linear(block(i) + ".norm1.linear", cond, D_, 6 * D_, true, true);
        offs[size_t(i)] = 0;
      }
      mod_final = plain_linear("proj_out_1", cond0, D_, 2 * D_, true, true);
      off_final = 0;
    }
    for (int i = 0; i < c_.num_layers; ++i) x = transformer_block(i, x, mods[size_t(i)], offs[size_t(i)]);

    // Final layer: proj_out_1 gives [shift | scale] (shift first), then norm_out, proj_out_2, unpatchify.
    int h = ada_layer_norm("norm_out", x, mod_final, off_final, off_final + D_, 1e-6f, false);
    const int p = c_.patch_size;
    h = plain_linear("proj_out_2", h, D_, p * p * c_.out_channels, true, false);
    UnpatchifyAttrs ua;
    ua.patch = p;
    ua.channels = c_.out_channels;
    b.set_output(b.node("unpatchify", ua, {h}));
    return std::move(b_);
  }

 private:
  // Every checkpoint tensor, every per-block copy included (the checkpoint's key set).
  void expect_all() {
    const int D = D_, p = c_.patch_size, C = c_.in_channels;
    b_.expect("pos_embed.proj.weight", {D, C, p, p});
    b_.expect("pos_embed.proj.bias", {D});
    for (int i = 0; i < c_.num_layers; ++i) {
      const std::string e = block(i) + ".norm1.emb.";
      b_.expect(e + kEmbTensors[0], {D, kDiTTimestepChannels});
      b_.expect(e + kEmbTensors[1], {D});
      b_.expect(e + kEmbTensors[2], {D, D});
      b_.expect(e + kEmbTensors[3], {D});
      b_.expect(e + kEmbTensors[4], {c_.label_rows(), D});
      b_.expect(block(i) + ".norm1.linear.weight", {6 * D, D});
      b_.expect(block(i) + ".norm1.linear.bias", {6 * D});
    }
    b_.expect("proj_out_1.weight", {2 * D, D});
    b_.expect("proj_out_1.bias", {2 * D});
  }

  int patch_embed() {
    const int D = D_, p = c_.patch_size, C = c_.in_channels;
    b_.plans[b_.stored("pos_embed.proj.weight")] = {Xform::ConvKRSC, {"pos_embed.proj.weight"}, {D, p, p, C}};
    PatchEmbedAttrs a;
    a.patch = p; a.cin = C; a.dim = D; a.pos_embed = true;
    a.base_size = c_.base_size();
    a.interpolation_scale = c_.interpolation_scale;
    return b_.node("pos_embed", a, {b_.graph.sample},
                   {{"weight", b_.stored("pos_embed.proj.weight")}, {"bias", b_.copy("pos_embed.proj.bias", {D})}});
  }

  int embedding(int i) {
    const std::string e = block(i) + ".norm1.emb.";
    TimeEmbeddingAttrs a;
    a.dim = kDiTTimestepChannels; a.out_dim = D_; a.num_classes = c_.label_rows();
    a.flip = true; a.freq_shift = 1.0f;
    return b_.node(block(i) + ".norm1.emb", a, {b_.graph.timestep, b_.graph.class_labels},
                   {{"w1", b_.copy(e + kEmbTensors[0], {D_, kDiTTimestepChannels})},
                    {"b1", b_.copy(e + kEmbTensors[1], {D_})},
                    {"w2", b_.copy(e + kEmbTensors[2], {D_, D_})},
                    {"b2", b_.copy(e + kEmbTensors[3], {D_})},
                    {"class_table", b_.copy(e + kEmbTensors[4], {c_.label_rows(), D_})}});
  }

  int plain_linear(const std::string& p, int x, int in, int out, bool bias, bool silu) {
    return b_.linear(p, x, in, out, bias, silu);
  }

  // x + gate[gate_off ..] * (h W^T + b): the adaLN-Zero gated residual, one linear node.
  int gated_linear(const std::string& p, int h, int x, int mod, int64_t gate_off, int in, int out) {
    LinearAttrs a;
    a.in = in; a.out = out; a.gate_offset = int(gate_off);
    return b_.node(p, a, {h, x, mod}, {{"weight", b_.copy(p + ".weight", {out, in})}, {"bias", b_.copy(p + ".bias", {out})}});
  }

  int ada_layer_norm(const std::string& p, int x, int mod, int64_t shift, int64_t scale, float eps, bool affine) {
    LayerNormAttrs a;
    a.eps = eps; a.shift_offset = int(shift); a.scale_offset = int(scale);
    std::map<std::string, std::string> w;
    if (affine) {
      w["weight"] = b_.copy(p + ".weight", {D_});
      w["bias"] = b_.copy(p + ".bias", {D_});
    }
    return b_.node(p, a, {x, mod}, std::move(w));
  }

  int transformer_block(int i, int x, int mod, int64_t o) {
    const int D = D_;
    const std::string pb = block(i);
    // 1. adaLN-Zero self-attention.
    int h = ada_layer_norm(pb + ".norm1.norm", x, mod, o, o + D, 1e-6f, false);
    const std::string pa = pb + ".attn1";
    for (const char* w : {"to_q", "to_k", "to_v"}) {
      b_.expect(pa + "." + w + ".weight", {D, D});
      if (c_.attention_bias) b_.expect(pa + "." + w + ".bias", {D});
    }
    LinearAttrs qa;
    qa.in = D; qa.out = 3 * D;
    std::map<std::string, std::string> qw;
    qw["weight"] = b_.concat0(pa + ".to_qkv.weight", {pa + ".to_q.weight", pa + ".to_k.weight", pa + ".to_v.weight"},
                              {3 * D, D});
    if (c_.attention_bias)
      qw["bias"] = b_.concat0(pa + ".to_qkv.bias", {pa + ".to_q.bias", pa + ".to_k.bias", pa + ".to_v.bias"}, {3 * D});
    const int qkv = b_.node(pa + ".to_qkv", qa, {h}, std::move(qw));
    AttentionAttrs aa;
    aa.heads = c_.heads; aa.head_dim = c_.head_dim;
    aa.scale = float(1.0 / std::sqrt(double(c_.head_dim)));
    const int attn = b_.node(pa + ".attention", aa, {qkv});
    x = gated_linear(pa + ".to_out.0", attn, x, mod, o + 2 * D, D, D);
    // 2. adaLN-Zero MLP.
    h = ada_layer_norm(pb + ".norm3", x, mod, o + 3 * D, o + 4 * D, c_.norm_eps, c_.norm_elementwise_affine);
    const int F = c_.ff_inner();
    const std::string pf = pb + ".ff.net";
    int f = -1;
    if (c_.activation == DiTActivation::Geglu) {
      f = plain_linear(pf + ".0.proj", h, D, 2 * F, true, false);
      f = b_.node(pf + ".0.geglu", GegluAttrs{}, {f});
    } else {
      f = plain_linear(pf + ".0.proj", h, D, F, true, false);
      ActivationAttrs act;
      act.kind = c_.activation == DiTActivation::GeluTanh ? ActivationKind::GeluTanh : ActivationKind::Gelu;
      f = b_.node(pf + ".0.act", act, {f});
    }
    return gated_linear(pf + ".2", f, x, mod, o + 5 * D, F, D);
  }

  const DiTConfig& c_;
  const bool shared_;
  const int D_;
  GraphBuilder b_;
};

bool same_tensor(const SafeTensor& a, const SafeTensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
}

}  // namespace

bool dit_embeddings_identical(const DiTConfig& cfg, const std::map<std::string, SafeTensor>& weights) {
  for (int i = 1; i < cfg.num_layers; ++i)
    for (const char* t : kEmbTensors) {
      auto a = weights.find(block(0) + ".norm1.emb." + t), b = weights.find(block(i) + ".norm1.emb." + t);
      if (a == weights.end() || b == weights.end() || !same_tensor(a->second, b->second)) return false;
    }
  return true;
}

Graph build_dit_graph(const DiTConfig& cfg, bool shared_embedding) {
  return DiTGraph(cfg, shared_embedding).build().graph;
}

std::map<std::string, TensorShape> dit_stored_tensors(const DiTConfig& cfg, bool shared_embedding) {
  std::map<std::string, TensorShape> out;
  for (const auto& [name, plan] : DiTGraph(cfg, shared_embedding).build().plans) out[name] = plan.shape;
  return out;
}

std::map<std::string, TensorShape> dit_expected_tensors(const DiTConfig& cfg) {
  return DiTGraph(cfg, false).build().expected;
}

BuiltModel build_dit(const DiTConfig& cfg, const std::map<std::string, SafeTensor>& weights, DType dtype, bool strict,
                     const std::string& origin) {
  const bool shared = dit_embeddings_identical(cfg, weights);
  GraphBuilder b = DiTGraph(cfg, shared).build();
  const bool stale_pos = weights.count("pos_embed.pos_embed") > 0;
  BuiltModel m = finish_model(b, weights, dtype, strict, origin,
                              [](const std::string& n) { return n == "pos_embed.pos_embed"; });
  if (stale_pos)
    m.warnings.push_back("ignoring pos_embed.pos_embed: the 2-D sin-cos position table is computed, never read "
                         "(diffusers ignores it too)");
  if (!shared && cfg.num_layers > 1)
    m.warnings.push_back("the per-block timestep/label embedder copies (transformer_blocks.*.norm1.emb) differ: each "
                         "block keeps its own (" + std::to_string(cfg.num_layers) + " embeddings per call)");
  return m;
}

}  // namespace diffrt
