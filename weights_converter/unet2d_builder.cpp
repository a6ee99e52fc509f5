#include "weights_converter/unet2d_builder.h"

#include <cmath>
#include <functional>
#include <set>

#include "kernels/common/error.h"

namespace diffrt {

namespace {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

// How a stored tensor is produced from checkpoint tensors.
enum class Xform { Copy, ConvKRSC, FuseQKV };
struct TensorPlan {
  Xform xform = Xform::Copy;
  std::vector<std::string> sources;  // diffusers names
  Shape shape;                       // stored shape
};

// Emits nodes and records the checkpoint tensors (diffusers name -> expected shape) they need.
class Builder {
 public:
  explicit Builder(const UNet2DConfig& c) : c_(c) {}

  Graph graph;
  std::map<std::string, Shape> expected;
  std::map<std::string, TensorPlan> plans;  // stored tensor name -> how to make it

  int value(const std::string& name) {
    graph.values.push_back(name);
    return int(graph.values.size()) - 1;
  }

  int node(const std::string& name, OpAttrs attrs, std::vector<int> inputs,
           std::map<std::string, std::string> weights = {}) {
    Node n;
    n.name = name;
    n.attrs = std::move(attrs);
    n.inputs = std::move(inputs);
    n.output = value(name);
    n.weights = std::move(weights);
    graph.nodes.push_back(std::move(n));
    return graph.nodes.back().output;
  }

  void expect(const std::string& name, Shape shape) { expected[name] = std::move(shape); }
  std::string copy(const std::string& name, Shape shape) {
    expect(name, shape);
    plans[name] = {Xform::Copy, {name}, shape};
    return name;
  }

  int conv(const std::string& p, int x, int cin, int cout, int k, int stride, int pt, int pl, int pb,
           int pr, int residual = -1, float out_scale = 1.0f) {
    Conv2dAttrs a;
    a.cin = cin; a.cout = cout; a.kh = a.kw = k; a.stride = stride;
    a.pad_top = pt; a.pad_left = pl; a.pad_bottom = pb; a.pad_right = pr;
    a.out_scale = out_scale;
    expect(p + ".weight", {cout, cin, k, k});
    plans[p + ".weight"] = {Xform::ConvKRSC, {p + ".weight"}, {cout, k, k, cin}};
    std::vector<int> in{x};
    if (residual >= 0) in.push_back(residual);
    return node(p, a, in, {{"weight", p + ".weight"}, {"bias", copy(p + ".bias", {cout})}});
  }
  int conv3(const std::string& p, int x, int cin, int cout, int residual = -1, float scale = 1.0f) {
    return conv(p, x, cin, cout, 3, 1, 1, 1, 1, 1, residual, scale);
  }

  int linear(const std::string& p, int x, int in, int out, bool silu_input, int residual = -1,
             float out_scale = 1.0f) {
    LinearAttrs a;
    a.in = in; a.out = out; a.silu_input = silu_input; a.out_scale = out_scale;
    std::vector<int> inputs{x};
    if (residual >= 0) inputs.push_back(residual);
    return node(p, a, inputs, {{"weight", copy(p + ".weight", {out, in})}, {"bias", copy(p + ".bias", {out})}});
  }

  int group_norm(const std::string& p, int x, int ch, int groups, bool silu, int emb = -1,
                 EmbMode mode = EmbMode::None) {
    GroupNormAttrs a;
    a.groups = groups; a.eps = float(c_.norm_eps); a.silu = silu; a.emb_mode = mode;
    std::vector<int> in{x};
    if (emb >= 0) in.push_back(emb);
    return node(p, a, in, {{"weight", copy(p + ".weight", {ch})}, {"bias", copy(p + ".bias", {ch})}});
  }

  // diffusers ResnetBlock2D: out = (shortcut(x) + conv2(act(norm2(conv1(act(norm1(x))), temb)))) / osf
  int resnet(const std::string& p, int x, int temb, int cin, int cout, float osf) {
    int G = c_.norm_num_groups;
    int h = group_norm(p + ".norm1", x, cin, G, true);
    h = conv3(p + ".conv1", h, cin, cout);
    int e = linear(p + ".time_emb_proj", temb, c_.temb_dim(), c_.scale_shift ? 2 * cout : cout, true);
    h = group_norm(p + ".norm2", h, cout, G, true, e,
                   c_.scale_shift ? EmbMode::ScaleShift : EmbMode::AddBeforeNorm);
    int sc = x;
    if (cin != cout) sc = conv(p + ".conv_shortcut", x, cin, cout, 1, 1, 0, 0, 0, 0);
    return conv3(p + ".conv2", h, cout, cout, sc, 1.0f / osf);
  }

  // diffusers Attention (spatial self-attention, residual, rescale): one fused QKV projection,
  // the attention op, and the output projection with the residual add.
  int attention(const std::string& p, int x, int ch, int groups, bool has_norm, float osf) {
    int hd = c_.attention_head_dim ? c_.attention_head_dim : ch;
    int heads = ch / hd;
    int h = has_norm ? group_norm(p + ".group_norm", x, ch, groups, false) : x;
    for (const char* w : {"to_q", "to_k", "to_v"}) {
      expect(p + "." + w + ".weight", {ch, ch});
      expect(p + "." + w + ".bias", {ch});
    }
    std::string qw = p + ".to_qkv.weight", qb = p + ".to_qkv.bias";
    plans[qw] = {Xform::FuseQKV, {p + ".to_q.weight", p + ".to_k.weight", p + ".to_v.weight"}, {3 * ch, ch}};
    plans[qb] = {Xform::FuseQKV, {p + ".to_q.bias", p + ".to_k.bias", p + ".to_v.bias"}, {3 * ch}};
    LinearAttrs la;
    la.in = ch; la.out = 3 * ch;
    int qkv = node(p + ".to_qkv", la, {h}, {{"weight", qw}, {"bias", qb}});
    AttentionAttrs aa;
    aa.heads = heads; aa.head_dim = hd; aa.scale = float(1.0 / std::sqrt(double(hd)));
    int o = node(p + ".attention", aa, {qkv});
    return linear(p + ".to_out.0", o, ch, ch, false, x, 1.0f / osf);
  }

  void build() {
    const auto& boc = c_.block_out_channels;
    const int n = int(boc.size()), L = c_.layers_per_block, G = c_.norm_num_groups, T = c_.temb_dim();
    graph.sample = value("sample");
    graph.timestep = value("timestep");
    if (c_.num_class_embeds) graph.class_labels = value("class_labels");
    graph.in_channels = c_.in_channels;
    graph.out_channels = c_.out_channels;
    graph.downsample_factor = 1 << (n - 1);

    int x = graph.sample;
    if (c_.center_input_sample) {
      AffineAttrs a;
      a.scale = 2.0f; a.shift = -1.0f;
      x = node("center_input_sample", a, {x});
    }
    TimeEmbeddingAttrs ta;
    ta.dim = boc[0]; ta.out_dim = T; ta.flip = c_.flip_sin_to_cos; ta.freq_shift = float(c_.freq_shift);
    ta.num_classes = c_.num_class_embeds;
    std::map<std::string, std::string> tw = {
        {"w1", copy("time_embedding.linear_1.weight", {T, boc[0]})},
        {"b1", copy("time_embedding.linear_1.bias", {T})},
        {"w2", copy("time_embedding.linear_2.weight", {T, T})},
        {"b2", copy("time_embedding.linear_2.bias", {T})}};
    std::vector<int> tin{graph.timestep};
    if (c_.num_class_embeds) {
      tw["class_table"] = copy("class_embedding.weight", {c_.num_class_embeds, T});
      tin.push_back(graph.class_labels);
    }
    int temb = node("time_embedding", ta, tin, tw);

    int h = conv3("conv_in", x, c_.in_channels, boc[0]);
    std::vector<std::pair<int, int>> skips{{h, boc[0]}};
    int ch = boc[0];
    for (int i = 0; i < n; ++i) {
      std::string p = "down_blocks." + std::to_string(i);
      bool attn = c_.down_block_types[i] == "AttnDownBlock2D";
      for (int j = 0; j < L; ++j) {
        h = resnet(p + ".resnets." + std::to_string(j), h, temb, ch, boc[i], 1.0f);
        ch = boc[i];
        if (attn) h = attention(p + ".attentions." + std::to_string(j), h, ch, G, true, 1.0f);
        skips.push_back({h, ch});
      }
      if (i < n - 1) {
        int pad = c_.downsample_padding;  // 0: TF "SAME" (pad right/bottom only)
        h = conv(p + ".downsamplers.0.conv", h, ch, ch, 3, 2, pad, pad, 1, 1);
        skips.push_back({h, ch});
      }
    }
    if (c_.has_mid_block) {
      float osf = float(c_.mid_block_scale_factor);
      h = resnet("mid_block.resnets.0", h, temb, ch, ch, osf);
      if (c_.add_attention) {
        int ag = c_.attn_norm_num_groups;
        bool has_norm = ag || !c_.scale_shift;
        h = attention("mid_block.attentions.0", h, ch, ag ? ag : G, has_norm, osf);
      }
      h = resnet("mid_block.resnets.1", h, temb, ch, ch, osf);
    }
    for (int i = 0; i < n; ++i) {
      std::string p = "up_blocks." + std::to_string(i);
      int out = boc[n - 1 - i];
      bool attn = c_.up_block_types[i] == "AttnUpBlock2D";
      for (int j = 0; j <= L; ++j) {
        auto [s, sch] = skips.back();
        skips.pop_back();
        std::string r = p + ".resnets." + std::to_string(j);
        int cat = node(r + ".concat", ConcatAttrs{}, {h, s});
        h = resnet(r, cat, temb, ch + sch, out, 1.0f);
        ch = out;
        if (attn) h = attention(p + ".attentions." + std::to_string(j), h, ch, G, true, 1.0f);
      }
      if (i < n - 1) {
        h = node(p + ".upsamplers.0.upsample", Upsample2xAttrs{}, {h});
        h = conv3(p + ".upsamplers.0.conv", h, ch, ch);
      }
    }
    h = group_norm("conv_norm_out", h, boc[0], G, true);
    h = conv3("conv_out", h, boc[0], c_.out_channels);
    graph.values[h] = "out";
    graph.output = h;
  }

 private:
  const UNet2DConfig& c_;
};

// Converts a checkpoint tensor's elements to fp32 (checkpoints may be fp16/bf16).
std::vector<float> source_f32(const std::map<std::string, SafeTensor>& w, const std::string& name) {
  return w.at(name).to_f32();
}

TensorBlob make_blob(const std::string& name, const TensorPlan& plan,
                     const std::map<std::string, SafeTensor>& w, DType dtype) {
  std::vector<float> v;
  if (plan.xform == Xform::Copy) {
    v = source_f32(w, plan.sources[0]);
  } else if (plan.xform == Xform::FuseQKV) {
    for (const auto& s : plan.sources) {
      auto part = source_f32(w, s);
      v.insert(v.end(), part.begin(), part.end());
    }
  } else {  // OIHW -> OHWI
    auto src = source_f32(w, plan.sources[0]);
    int64_t co = plan.shape[0], kh = plan.shape[1], kw = plan.shape[2], ci = plan.shape[3];
    v.resize(src.size());
    for (int64_t o = 0; o < co; ++o)
      for (int64_t i = 0; i < ci; ++i)
        for (int64_t y = 0; y < kh; ++y)
          for (int64_t x = 0; x < kw; ++x)
            v[((o * kh + y) * kw + x) * ci + i] = src[((o * ci + i) * kh + y) * kw + x];
  }
  TensorBlob b;
  b.name = name;
  b.dtype = dtype;
  b.shape = plan.shape;
  b.bytes.resize(v.size() * dtype_size(dtype));
  from_f32(dtype, v.data(), b.bytes.data(), v.size());
  return b;
}

}  // namespace

void rename_legacy_attention(std::map<std::string, SafeTensor>& weights) {
  static const std::pair<const char*, const char*> kMap[] = {
      {".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
  std::map<std::string, SafeTensor> out;
  for (auto& [name, t] : weights) {
    std::string n = name;
    if (n.find("attentions.") != std::string::npos) {
      for (auto [from, to] : kMap) {
        size_t pos = n.rfind(from);
        if (pos != std::string::npos && n.find('.', pos + std::string(from).size()) == std::string::npos) {
          n = n.substr(0, pos) + to + n.substr(pos + std::string(from).size());
          // Legacy 1x1-conv attention weights [C, C, 1, 1] are Linear weights.
          if (t.shape.size() == 4 && t.shape[2] == 1 && t.shape[3] == 1) t.shape.resize(2);
          break;
        }
      }
    }
    t.name = n;
    out[n] = std::move(t);
  }
  weights = std::move(out);
}

Graph build_unet2d_graph(const UNet2DConfig& cfg) {
  Builder b(cfg);
  b.build();
  return b.graph;
}

BuiltModel build_unet2d(const UNet2DConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                        DType dtype, bool strict, const std::string& origin) {
  Builder b(cfg);
  b.build();
  std::vector<std::string> missing, misshaped, extra;
  for (const auto& [name, shape] : b.expected) {
    auto it = weights.find(name);
    if (it == weights.end()) missing.push_back(name);
    else if (it->second.shape != shape)
      misshaped.push_back(name + ": expected " + shape_str(shape) + ", got " + shape_str(it->second.shape));
  }
  for (const auto& [name, t] : weights)
    if (!b.expected.count(name)) extra.push_back(name);

  BuiltModel m;
  std::string report;
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return;
    report += "\n  " + std::string(what) + " (" + std::to_string(v.size()) + "):";
    for (const auto& s : v) report += "\n    " + s;
  };
  list("missing tensors", missing);
  list("mis-shaped tensors", misshaped);
  if (strict) list("unexpected tensors", extra);
  if (!report.empty())
    fail(ErrorCode::InvalidModel, origin + ": checkpoint does not match its config:" + report);
  for (const auto& e : extra) m.warnings.push_back("ignoring unexpected tensor " + e);

  m.graph = std::move(b.graph);
  for (const auto& [name, plan] : b.plans) m.tensors.push_back(make_blob(name, plan, weights, dtype));
  return m;
}

}  // namespace diffrt
