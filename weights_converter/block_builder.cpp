#include "weights_converter/block_builder.h"

#include <cmath>

#include "base/error.h"

namespace diffrt {

std::string shape_str(const TensorShape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

int GraphBuilder::value(const std::string& name) {
  graph.values.push_back(name);
  return int(graph.values.size()) - 1;
}

int GraphBuilder::node(const std::string& name, OpAttrs attrs, std::vector<int> inputs,
                       std::map<std::string, std::string> weights) {
  Node n;
  n.name = name;
  n.attrs = std::move(attrs);
  n.inputs = std::move(inputs);
  n.output = value(name);
  n.weights = std::move(weights);
  graph.nodes.push_back(std::move(n));
  return graph.nodes.back().output;
}

void GraphBuilder::set_output(int v) {
  graph.values[size_t(v)] = "out";
  graph.output = v;
}

void GraphBuilder::expect(const std::string& name, TensorShape shape) {
  auto [it, inserted] = expected.emplace(name, shape);
  if (!inserted && it->second != shape)  // a builder bug, never input-dependent
    fail(ErrorCode::Internal, "graph builder: tensor " + name + " expected with two shapes");
}

std::string GraphBuilder::copy(const std::string& name, TensorShape shape, TensorShape stored_shape) {
  expect(name, shape);
  plans[stored(name)] = {Xform::Copy, {name}, stored_shape.empty() ? shape : stored_shape};
  return stored(name);
}

std::string GraphBuilder::concat0(const std::string& stored_name, std::vector<std::string> sources,
                                  TensorShape shape) {
  plans[stored(stored_name)] = {Xform::Concat0, std::move(sources), std::move(shape)};
  return stored(stored_name);
}

int GraphBuilder::conv(const std::string& p, int x, int cin, int cout, int k, int stride, int pt, int pl, int pb,
                       int pr, int residual, float out_scale) {
  Conv2dAttrs a;
  a.cin = cin; a.cout = cout; a.kh = a.kw = k; a.stride = stride;
  a.pad_top = pt; a.pad_left = pl; a.pad_bottom = pb; a.pad_right = pr;
  a.out_scale = out_scale;
  expect(p + ".weight", {cout, cin, k, k});
  plans[stored(p + ".weight")] = {Xform::ConvKRSC, {p + ".weight"}, {cout, k, k, cin}};
  std::vector<int> in{x};
  if (residual >= 0) in.push_back(residual);
  return node(p, a, in, {{"weight", stored(p + ".weight")}, {"bias", copy(p + ".bias", {cout})}});
}

int GraphBuilder::linear(const std::string& p, int x, int in, int out, bool bias, bool silu_input, int residual,
                         float out_scale, TensorShape weight_shape) {
  LinearAttrs a;
  a.in = in; a.out = out; a.silu_input = silu_input; a.out_scale = out_scale;
  std::vector<int> inputs{x};
  if (residual >= 0) inputs.push_back(residual);
  std::map<std::string, std::string> w;
  w["weight"] = weight_shape.empty() ? copy(p + ".weight", {out, in})
                                     : copy(p + ".weight", std::move(weight_shape), {out, in});
  if (bias) w["bias"] = copy(p + ".bias", {out});
  return node(p, a, inputs, std::move(w));
}

int GraphBuilder::group_norm(const std::string& p, int x, int ch, int groups, float eps, bool silu, int emb,
                             EmbMode mode) {
  GroupNormAttrs a;
  a.groups = groups; a.eps = eps; a.silu = silu; a.emb_mode = mode;
  std::vector<int> in{x};
  if (emb >= 0) in.push_back(emb);
  return node(p, a, in, {{"weight", copy(p + ".weight", {ch})}, {"bias", copy(p + ".bias", {ch})}});
}

int GraphBuilder::layer_norm(const std::string& p, int x, int ch, float eps) {
  LayerNormAttrs a;
  a.eps = eps;
  return node(p, a, {x}, {{"weight", copy(p + ".weight", {ch})}, {"bias", copy(p + ".bias", {ch})}});
}

int GraphBuilder::resnet(const std::string& p, int x, int temb, int cin, int cout, const ResnetSpec& s) {
  int h = group_norm(p + ".norm1", x, cin, s.groups, s.eps, true);
  h = conv3(p + ".conv1", h, cin, cout);
  if (s.temb_dim) {
    int e = linear(p + ".time_emb_proj", temb, s.temb_dim, s.scale_shift ? 2 * cout : cout, true, true);
    h = group_norm(p + ".norm2", h, cout, s.groups, s.eps, true, e,
                   s.scale_shift ? EmbMode::ScaleShift : EmbMode::AddBeforeNorm);
  } else {
    h = group_norm(p + ".norm2", h, cout, s.groups, s.eps, true);
  }
  int sc = x;
  if (cin != cout) sc = conv(p + ".conv_shortcut", x, cin, cout, 1, 1, 0, 0, 0, 0);
  return conv3(p + ".conv2", h, cout, cout, sc, 1.0f / s.output_scale_factor);
}

int GraphBuilder::spatial_attention(const std::string& p, int x, int ch, const SpatialAttentionSpec& s) {
  const int hd = s.head_dim ? s.head_dim : ch;
  const int heads = ch / hd;
  int h = s.has_norm ? group_norm(p + ".group_norm", x, ch, s.groups, s.eps, false) : x;
  for (const char* w : {"to_q", "to_k", "to_v"}) {
    expect(p + "." + w + ".weight", {ch, ch});
    expect(p + "." + w + ".bias", {ch});
  }
  LinearAttrs la;
  la.in = ch; la.out = 3 * ch;
  int qkv = node(p + ".to_qkv", la, {h},
                 {{"weight", concat0(p + ".to_qkv.weight", {p + ".to_q.weight", p + ".to_k.weight", p + ".to_v.weight"},
                                     {3 * ch, ch})},
                  {"bias", concat0(p + ".to_qkv.bias", {p + ".to_q.bias", p + ".to_k.bias", p + ".to_v.bias"},
                                   {3 * ch})}});
  AttentionAttrs aa;
  aa.heads = heads; aa.head_dim = hd; aa.scale = float(1.0 / std::sqrt(double(hd)));
  int o = node(p + ".attention", aa, {qkv});
  return linear(p + ".to_out.0", o, ch, ch, true, false, x, 1.0f / s.output_scale_factor);
}

int GraphBuilder::downsample(const std::string& p, int x, int ch, int padding) {
  return conv(p + ".conv", x, ch, ch, 3, 2, padding, padding, 1, 1);
}

int GraphBuilder::vae_mid_block(const std::string& p, int x, int ch, const ResnetSpec& s, bool attention) {
  int h = resnet(p + ".resnets.0", x, -1, ch, ch, s);
  if (attention) {
    SpatialAttentionSpec as;
    as.head_dim = ch;  // attention_head_dim = block_out_channels[-1]: one head
    as.groups = s.groups; as.eps = s.eps; as.has_norm = true;
    h = spatial_attention(p + ".attentions.0", h, ch, as);
  }
  return resnet(p + ".resnets.1", h, -1, ch, ch, s);
}

int GraphBuilder::center_input(int x) {
  AffineAttrs a;
  a.scale = 2.0f; a.shift = -1.0f;
  return node("center_input_sample", a, {x});
}

std::map<std::string, std::string> GraphBuilder::time_embedding_weights(int in_dim, int t_dim) {
  const int T = t_dim;
  return {{"w1", copy("time_embedding.linear_1.weight", {T, in_dim})},
          {"b1", copy("time_embedding.linear_1.bias", {T})},
          {"w2", copy("time_embedding.linear_2.weight", {T, T})},
          {"b2", copy("time_embedding.linear_2.bias", {T})}};
}

int GraphBuilder::upsample(const std::string& p, int x, int ch) {
  int h = node(p + ".upsample", Upsample2xAttrs{}, {x});
  return conv3(p + ".conv", h, ch, ch);
}

namespace {

TensorBlob make_blob(const std::string& name, const TensorPlan& plan, const std::map<std::string, SafeTensor>& w,
                     DType dtype) {
  std::vector<float> v;
  if (plan.xform == Xform::Copy) {
    v = w.at(plan.sources[0]).to_f32();
  } else if (plan.xform == Xform::Concat0) {
    for (const auto& s : plan.sources) {
      auto part = w.at(s).to_f32();
      v.insert(v.end(), part.begin(), part.end());
    }
  } else {  // OIHW -> OHWI
    auto src = w.at(plan.sources[0]).to_f32();
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

BuiltModel finish_model(GraphBuilder& b, const std::map<std::string, SafeTensor>& weights, DType dtype, bool strict,
                        const std::string& origin, const std::function<bool(const std::string&)>& ignore) {
  std::vector<std::string> missing, misshaped, extra;
  for (const auto& [name, shape] : b.expected) {
    auto it = weights.find(name);
    if (it == weights.end()) missing.push_back(name);
    else if (it->second.shape != shape)
      misshaped.push_back(name + ": expected " + shape_str(shape) + ", got " + shape_str(it->second.shape));
  }
  for (const auto& [name, t] : weights)
    if (!b.expected.count(name) && !(ignore && ignore(name))) extra.push_back(name);

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
  if (!report.empty()) fail(ErrorCode::InvalidModel, origin + ": checkpoint does not match its config:" + report);
  for (const auto& e : extra) m.warnings.push_back("ignoring unexpected tensor " + e);

  m.graph = std::move(b.graph);
  m.graph.dtype = dtype;  // the graph runs in the dtype its tensors are stored in
  for (const auto& [name, plan] : b.plans) m.tensors.push_back(make_blob(name, plan, weights, dtype));
  return m;
}

uint64_t expected_param_count(const std::map<std::string, TensorShape>& expected) {
  uint64_t total = 0;
  for (const auto& [name, shape] : expected) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= uint64_t(d);
    total += n;
  }
  return total;
}

void rename_legacy_attention(std::map<std::string, SafeTensor>& weights, const std::string& origin) {
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
    if (out.count(n) || (n != name && weights.count(n)))
      fail(ErrorCode::InvalidModel, (origin.empty() ? "" : origin + ": ") + "tensor " + name +
                                        " and its legacy/current twin " + n + " are both present");
    t.name = n;
    out[n] = std::move(t);
  }
  weights = std::move(out);
}

}  // namespace diffrt
