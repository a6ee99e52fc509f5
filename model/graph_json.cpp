// Graph <-> JSON for the model-file header. graph_from_json treats its input as hostile: op names
// must be known, every attribute is present, typed and in range, value ids exist, every value is
// produced exactly once (graph input or one node) and before it is used. Errors name the file and
// the field path, e.g. "m.drt: graph.nodes[3].attrs.kh: value 9 out of range [1, 7]".
#include <set>
#include <unordered_set>

#include "model/model_file.h"
#include "base/strict_json.h"

namespace diffrt {

using nlohmann::json;

namespace {

constexpr int64_t kMaxChannels = (1 << 20) - 1;  // channels, dims, classes: > 0 and < 2^20
constexpr int64_t kMaxValues = 1 << 20;
constexpr int64_t kMaxGateOffset = (int64_t(1) << 30) - 1;  // channel offsets into a modulation vector

const char* emb_mode_name(EmbMode m) {
  switch (m) {
    case EmbMode::None: return "none";
    case EmbMode::AddBeforeNorm: return "add";
    case EmbMode::ScaleShift: return "scale_shift";
  }
  return "?";
}

struct AttrsToJson {
  json operator()(const TimeEmbeddingAttrs& a) const {
    return {{"dim", a.dim}, {"out_dim", a.out_dim}, {"num_classes", a.num_classes}, {"flip", a.flip},
            {"freq_shift", a.freq_shift}};
  }
  json operator()(const Conv2dAttrs& a) const {
    return {{"cin", a.cin}, {"cout", a.cout}, {"kh", a.kh}, {"kw", a.kw}, {"stride", a.stride},
            {"pad_top", a.pad_top}, {"pad_left", a.pad_left}, {"pad_bottom", a.pad_bottom},
            {"pad_right", a.pad_right}, {"out_scale", a.out_scale}};
  }
  json operator()(const LinearAttrs& a) const {
    json j = {{"in", a.in}, {"out", a.out}, {"silu_input", a.silu_input}, {"out_scale", a.out_scale}};
    if (a.gate_offset >= 0) j["gate_offset"] = a.gate_offset;  // optional key: files without it read as before
    return j;
  }
  json operator()(const GroupNormAttrs& a) const {
    return {{"groups", a.groups}, {"eps", a.eps}, {"silu", a.silu}, {"emb_mode", emb_mode_name(a.emb_mode)}};
  }
  json operator()(const AttentionAttrs& a) const {
    json j = {{"heads", a.heads}, {"head_dim", a.head_dim}, {"scale", a.scale}};
    if (a.causal) j["causal"] = true;  // optional key: files without it read as before
    return j;
  }
  json operator()(const ConcatAttrs&) const { return json::object(); }
  json operator()(const Upsample2xAttrs&) const { return json::object(); }
  json operator()(const AffineAttrs& a) const { return {{"scale", a.scale}, {"shift", a.shift}}; }
  json operator()(const LayerNormAttrs& a) const {
    json j = {{"eps", a.eps}};
    if (a.shift_offset >= 0) {  // optional keys (adaLN modulation)
      j["shift_offset"] = a.shift_offset;
      j["scale_offset"] = a.scale_offset;
    }
    return j;
  }
  json operator()(const GegluAttrs&) const { return json::object(); }
  json operator()(const EmbeddingAttrs& a) const {
    return {{"vocab", a.vocab}, {"dim", a.dim}, {"max_positions", a.max_positions}};
  }
  json operator()(const ActivationAttrs& a) const { return {{"kind", activation_name(a.kind)}}; }
  json operator()(const PatchEmbedAttrs& a) const {
    return {{"patch", a.patch}, {"cin", a.cin}, {"dim", a.dim}, {"pos_embed", a.pos_embed},
            {"base_size", a.base_size}, {"interpolation_scale", a.interpolation_scale}};
  }
  json operator()(const UnpatchifyAttrs& a) const { return {{"patch", a.patch}, {"channels", a.channels}}; }
};

int to_int(int64_t v) { return static_cast<int>(v); }  // callers range-check first

// Attribute parsers: exact field set, typed, in range. `p` is the attrs path.
OpAttrs parse_time_embedding(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"dim", "out_dim", "num_classes", "flip", "freq_shift"});
  TimeEmbeddingAttrs a;
  a.dim = to_int(c.int_at(j, p, "dim", 1, kMaxChannels));
  a.out_dim = to_int(c.int_at(j, p, "out_dim", 1, kMaxChannels));
  a.num_classes = to_int(c.int_at(j, p, "num_classes", 0, kMaxChannels));
  a.flip = c.bool_at(j, p, "flip");
  a.freq_shift = c.f32_at(j, p, "freq_shift");
  return a;
}
OpAttrs parse_conv2d(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"cin", "cout", "kh", "kw", "stride", "pad_top", "pad_left", "pad_bottom",
                     "pad_right", "out_scale"});
  Conv2dAttrs a;
  a.cin = to_int(c.int_at(j, p, "cin", 1, kMaxChannels));
  a.cout = to_int(c.int_at(j, p, "cout", 1, kMaxChannels));
  a.kh = to_int(c.int_at(j, p, "kh", 1, 7));
  a.kw = to_int(c.int_at(j, p, "kw", 1, 7));
  a.stride = to_int(c.int_at(j, p, "stride", 1, 4));
  // Padding of a whole kernel or more would only add outputs that see no input.
  a.pad_top = to_int(c.int_at(j, p, "pad_top", 0, a.kh - 1));
  a.pad_left = to_int(c.int_at(j, p, "pad_left", 0, a.kw - 1));
  a.pad_bottom = to_int(c.int_at(j, p, "pad_bottom", 0, a.kh - 1));
  a.pad_right = to_int(c.int_at(j, p, "pad_right", 0, a.kw - 1));
  a.out_scale = c.f32_at(j, p, "out_scale");
  return a;
}
OpAttrs parse_linear(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"in", "out", "silu_input", "out_scale", "gate_offset"});
  LinearAttrs a;
  a.in = to_int(c.int_at(j, p, "in", 1, kMaxChannels));
  a.out = to_int(c.int_at(j, p, "out", 1, kMaxChannels));
  a.silu_input = c.bool_at(j, p, "silu_input");
  a.out_scale = c.f32_at(j, p, "out_scale");
  if (j.contains("gate_offset")) {
    a.gate_offset = to_int(c.int_at(j, p, "gate_offset", 0, kMaxGateOffset));
    if (a.out_scale != 1.0f) c.fail(json_path(p, "out_scale"), "must be 1 for a gated linear");
  }
  return a;
}
OpAttrs parse_group_norm(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"groups", "eps", "silu", "emb_mode"});
  GroupNormAttrs a;
  a.groups = to_int(c.int_at(j, p, "groups", 1, kMaxChannels));
  a.eps = c.f32_at(j, p, "eps");
  if (!(a.eps > 0.0f && a.eps < 1.0f)) c.fail(json_path(p, "eps"), "must be in (0, 1)");
  a.silu = c.bool_at(j, p, "silu");
  const std::string m = c.string_at(j, p, "emb_mode");
  if (m == "none") a.emb_mode = EmbMode::None;
  else if (m == "add") a.emb_mode = EmbMode::AddBeforeNorm;
  else if (m == "scale_shift") a.emb_mode = EmbMode::ScaleShift;
  else c.fail(json_path(p, "emb_mode"), "unknown value " + quote_for_error(m) + " (none, add, scale_shift)");
  return a;
}
OpAttrs parse_attention(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"heads", "head_dim", "scale", "causal"});
  AttentionAttrs a;
  a.heads = to_int(c.int_at(j, p, "heads", 1, kMaxChannels));
  a.head_dim = to_int(c.int_at(j, p, "head_dim", 1, kMaxChannels));
  if (int64_t(a.heads) * a.head_dim > kMaxChannels)
    c.fail(json_path(p, "heads"), "heads*head_dim = " + std::to_string(int64_t(a.heads) * a.head_dim) +
                                      " above " + std::to_string(kMaxChannels));
  a.scale = c.f32_at(j, p, "scale");
  if (!(a.scale > 0.0f)) c.fail(json_path(p, "scale"), "must be > 0");
  if (j.contains("causal")) a.causal = c.bool_at(j, p, "causal");
  return a;
}
OpAttrs parse_concat(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {});
  return ConcatAttrs{};
}
OpAttrs parse_upsample2x(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {});
  return Upsample2xAttrs{};
}
OpAttrs parse_affine(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"scale", "shift"});
  AffineAttrs a;
  a.scale = c.f32_at(j, p, "scale");
  a.shift = c.f32_at(j, p, "shift");
  return a;
}

OpAttrs parse_layer_norm(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"eps", "shift_offset", "scale_offset"});
  LayerNormAttrs a;
  a.eps = c.f32_at(j, p, "eps");
  if (!(a.eps > 0.0f && a.eps < 1.0f)) c.fail(json_path(p, "eps"), "must be in (0, 1)");
  if (j.contains("shift_offset") != j.contains("scale_offset"))
    c.fail(json_path(p, j.contains("shift_offset") ? "scale_offset" : "shift_offset"),
           "shift_offset and scale_offset come together");
  if (j.contains("shift_offset")) {
    a.shift_offset = to_int(c.int_at(j, p, "shift_offset", 0, kMaxGateOffset));
    a.scale_offset = to_int(c.int_at(j, p, "scale_offset", 0, kMaxGateOffset));
  }
  return a;
}
OpAttrs parse_patch_embed(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"patch", "cin", "dim", "pos_embed", "base_size", "interpolation_scale"});
  PatchEmbedAttrs a;
  a.patch = to_int(c.int_at(j, p, "patch", 1, 64));
  a.cin = to_int(c.int_at(j, p, "cin", 1, 4096));
  a.dim = to_int(c.int_at(j, p, "dim", 1, kMaxChannels));
  a.pos_embed = c.bool_at(j, p, "pos_embed");
  a.base_size = to_int(c.int_at(j, p, "base_size", 1, 65536));
  a.interpolation_scale = c.f32_at(j, p, "interpolation_scale");
  if (!(a.interpolation_scale > 0.0f)) c.fail(json_path(p, "interpolation_scale"), "must be > 0");
  if (a.pos_embed && a.dim % 4 != 0)
    c.fail(json_path(p, "dim"), std::to_string(a.dim) + " is not divisible by 4 (the 2-D sin-cos table needs it)");
  return a;
}
OpAttrs parse_unpatchify(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"patch", "channels"});
  UnpatchifyAttrs a;
  a.patch = to_int(c.int_at(j, p, "patch", 1, 64));
  a.channels = to_int(c.int_at(j, p, "channels", 1, 4096));
  return a;
}
OpAttrs parse_geglu(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {});
  return GegluAttrs{};
}

OpAttrs parse_embedding(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"vocab", "dim", "max_positions"});
  EmbeddingAttrs a;
  a.vocab = to_int(c.int_at(j, p, "vocab", 1, kMaxChannels));
  a.dim = to_int(c.int_at(j, p, "dim", 1, kMaxChannels));
  a.max_positions = to_int(c.int_at(j, p, "max_positions", 1, 65536));
  return a;
}
OpAttrs parse_activation(const JsonCheck& c, const json& j, const std::string& p) {
  c.only_keys(j, p, {"kind"});
  ActivationAttrs a;
  const std::string k = c.string_at(j, p, "kind");
  if (!parse_activation(k, &a.kind))
    c.fail(json_path(p, "kind"), "unknown activation " + quote_for_error(k) + " (gelu, gelu_tanh, quick_gelu)");
  return a;
}

struct OpRow {
  const char* name;
  OpAttrs (*parse)(const JsonCheck&, const json&, const std::string&);
  size_t min_inputs, max_inputs;
};
constexpr OpRow kOps[] = {
    {"time_embedding", parse_time_embedding, 1, 2}, {"conv2d", parse_conv2d, 1, 2},
    {"linear", parse_linear, 1, 3},                 {"group_norm", parse_group_norm, 1, 2},
    {"attention", parse_attention, 1, 2},           {"concat", parse_concat, 2, 2},
    {"upsample2x", parse_upsample2x, 1, 1},         {"affine", parse_affine, 1, 1},
    {"layer_norm", parse_layer_norm, 1, 2},         {"geglu", parse_geglu, 1, 1},
    {"embedding", parse_embedding, 1, 1},           {"activation", parse_activation, 1, 1},
    {"patch_embed", parse_patch_embed, 1, 1},       {"unpatchify", parse_unpatchify, 1, 1},
};

// Arity rules that depend on the attributes (the optional second input).
void check_inputs_against_attrs(const JsonCheck& c, const Node& n, const Graph& g, const std::string& p) {
  if (auto* gn = std::get_if<GroupNormAttrs>(&n.attrs)) {
    size_t want = gn->emb_mode == EmbMode::None ? 1 : 2;
    if (n.inputs.size() != want)
      c.fail(json_path(p, "inputs"), "group_norm with emb_mode " + std::string(emb_mode_name(gn->emb_mode)) +
                                         " takes " + std::to_string(want) + " input(s)");
  }
  if (auto* l = std::get_if<LinearAttrs>(&n.attrs)) {
    if ((l->gate_offset >= 0) != (n.inputs.size() == 3))
      c.fail(json_path(p, "inputs"), l->gate_offset >= 0 ? "a gated linear takes [x, residual, gate source]"
                                                         : "a linear takes [x] or [x, residual] (3 inputs need gate_offset)");
  }
  if (auto* ln = std::get_if<LayerNormAttrs>(&n.attrs)) {
    if ((ln->shift_offset >= 0) != (n.inputs.size() == 2))
      c.fail(json_path(p, "inputs"), ln->shift_offset >= 0 ? "a modulated layer_norm takes [x, mod]"
                                                           : "a layer_norm takes [x] (2 inputs need shift_offset)");
  }
  if (auto* te = std::get_if<TimeEmbeddingAttrs>(&n.attrs)) {
    size_t want = te->num_classes > 0 ? 2 : 1;
    if (n.inputs.size() != want)
      c.fail(json_path(p, "inputs"), "time_embedding with num_classes " + std::to_string(te->num_classes) +
                                         " takes " + std::to_string(want) + " input(s)");
  }
  if (std::holds_alternative<EmbeddingAttrs>(n.attrs) && (g.input_ids < 0 || n.inputs[0] != g.input_ids))
    c.fail(json_path(p, "inputs"), "an embedding node reads the graph's input_ids");
  for (int v : n.inputs)
    if (v == g.input_ids && !std::holds_alternative<EmbeddingAttrs>(n.attrs))
      c.fail(json_path(p, "inputs"), "input_ids (token ids) can only be read by an embedding node");
  if (auto* at = std::get_if<AttentionAttrs>(&n.attrs)) {
    if (at->causal && n.inputs.size() != 1)
      c.fail(json_path(p, "attrs.causal"), "causal masking applies to self-attention (one qkv input) only");
    // Self: the qkv input carries 3*heads*head_dim channels. Cross: q carries heads*head_dim and kv
    // twice that. Checked where the producer says so (plan_memory checks every shape again).
    const int64_t c1 = int64_t(at->heads) * at->head_dim;
    const bool cross = n.inputs.size() == 2;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const int64_t want = cross ? (k == 0 ? c1 : 2 * c1) : 3 * c1;
      for (const Node& prod : g.nodes) {
        if (prod.output != n.inputs[k]) continue;
        int64_t have = -1;
        if (auto* l = std::get_if<LinearAttrs>(&prod.attrs)) have = l->out;
        if (auto* cv = std::get_if<Conv2dAttrs>(&prod.attrs)) have = cv->cout;
        if (have >= 0 && have != want)
          c.fail(json_path(p, "attrs"), "attention input " + std::to_string(k) + " needs " + std::to_string(want) +
                                            " channels but " + quote_for_error(prod.name) + " has " +
                                            std::to_string(have));
      }
    }
  }
}

}  // namespace

json graph_to_json(const Graph& g) {
  json inputs = json::object();
  if (g.sample >= 0) inputs["sample"] = g.sample;
  if (g.input_ids >= 0) inputs["input_ids"] = g.input_ids;
  if (g.timestep >= 0) inputs["timestep"] = g.timestep;
  if (g.class_labels >= 0) inputs["class_labels"] = g.class_labels;
  if (g.context >= 0) inputs["encoder_hidden_states"] = g.context;
  json nodes = json::array();
  for (const Node& n : g.nodes) {
    nodes.push_back({{"name", n.name}, {"op", op_name(n.attrs)}, {"inputs", n.inputs}, {"output", n.output},
                     {"attrs", std::visit(AttrsToJson{}, n.attrs)}, {"weights", n.weights}});
  }
  json out = {{"values", g.values}, {"inputs", inputs}, {"output", g.output}, {"in_channels", g.in_channels},
              {"out_channels", g.out_channels}, {"downsample_factor", g.downsample_factor}, {"nodes", nodes}};
  if (g.context >= 0) out["context_dim"] = g.context_dim;
  out["dtype"] = dtype_name(g.dtype);
  return out;
}

Graph graph_from_json(const json& j, const std::string& origin, const std::string& gp) {
  const JsonCheck c(origin);
  c.object(j, gp);
  c.only_keys(j, gp, {"values", "inputs", "output", "in_channels", "out_channels", "context_dim",
                      "downsample_factor", "nodes", "dtype"});
  Graph g;
  // Optional here (format version 1 has no graph dtype); the model-file reader requires it from version 2 on.
  if (j.contains("dtype")) {
    const std::string dt = c.string_at(j, gp, "dtype");
    if (!parse_dtype(dt, &g.dtype))
      c.fail(json_path(gp, "dtype"), "unsupported dtype " + quote_for_error(dt) + " (fp32, fp16, bf16)");
  }

  const std::string vp = json_path(gp, "values");
  const json& values = c.array(c.member(j, gp, "values"), vp);
  if (int64_t(values.size()) > kMaxValues) c.fail(vp, "more than " + std::to_string(kMaxValues) + " values");
  std::unordered_set<std::string> seen_values;
  for (size_t i = 0; i < values.size(); ++i) {
    std::string v = c.string(values[i], json_index(vp, i));
    if (v.empty()) c.fail(json_index(vp, i), "empty value name");
    if (!seen_values.insert(v).second) c.fail(json_index(vp, i), "duplicate value name " + quote_for_error(v));
    g.values.push_back(std::move(v));
  }
  const int64_t max_id = int64_t(g.values.size()) - 1;
  auto value_id = [&](const json& v, const std::string& p) {
    if (max_id < 0) c.fail(p, "refers to a value but graph.values is empty");
    return to_int(c.int_in(v, p, 0, max_id));
  };

  std::vector<char> produced(g.values.size(), 0);
  const std::string ip = json_path(gp, "inputs");
  const json& inputs = c.object(c.member(j, gp, "inputs"), ip);
  c.only_keys(inputs, ip, {"sample", "timestep", "class_labels", "encoder_hidden_states", "input_ids"});
  // Image graphs take a sample; a text encoder takes input_ids alone.
  if (inputs.contains("sample") == inputs.contains("input_ids"))
    c.fail(ip, "needs exactly one of sample (image graphs) and input_ids (text encoders)");
  auto optional_input = [&](const char* key, int* id) {
    if (!inputs.contains(key)) return;
    *id = value_id(inputs[key], json_path(ip, key));
    if (produced[size_t(*id)]) c.fail(json_path(ip, key), "same value as another graph input");
    produced[size_t(*id)] = 1;
  };
  optional_input("sample", &g.sample);
  optional_input("input_ids", &g.input_ids);
  if (g.input_ids >= 0 && (inputs.contains("timestep") || inputs.contains("class_labels") ||
                           inputs.contains("encoder_hidden_states")))
    c.fail(ip, "a text encoder (input_ids) takes no other input");
  optional_input("timestep", &g.timestep);
  optional_input("class_labels", &g.class_labels);
  optional_input("encoder_hidden_states", &g.context);
  if ((g.context >= 0) != j.contains("context_dim"))
    c.fail(json_path(gp, "context_dim"), "must be present exactly when inputs.encoder_hidden_states is");
  if (g.context >= 0) g.context_dim = to_int(c.int_at(j, gp, "context_dim", 1, kMaxChannels));
  g.output = value_id(c.member(j, gp, "output"), json_path(gp, "output"));
  g.in_channels = to_int(c.int_at(j, gp, "in_channels", 1, kMaxChannels));
  g.out_channels = to_int(c.int_at(j, gp, "out_channels", 1, kMaxChannels));
  // UNets halve per level (powers of two); a DiT's factor is its patch size, any value.
  g.downsample_factor = to_int(c.int_at(j, gp, "downsample_factor", 1, 1024));

  const std::string np = json_path(gp, "nodes");
  const json& nodes = c.array(c.member(j, gp, "nodes"), np);
  std::set<std::string> node_names;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const std::string p = json_index(np, i);
    const json& jn = c.object(nodes[i], p);
    c.only_keys(jn, p, {"name", "op", "inputs", "output", "attrs", "weights"});
    Node n;
    n.name = c.string_at(jn, p, "name");
    if (n.name.empty()) c.fail(json_path(p, "name"), "empty node name");
    if (!node_names.insert(n.name).second) c.fail(json_path(p, "name"), "duplicate node name " + quote_for_error(n.name));
    const std::string op = c.string_at(jn, p, "op");
    const OpRow* row = nullptr;
    for (const OpRow& r : kOps)
      if (op == r.name) row = &r;
    if (!row) c.fail(json_path(p, "op"), "unknown op " + quote_for_error(op));
    const std::string ap = json_path(p, "attrs");
    n.attrs = row->parse(c, c.object(c.member(jn, p, "attrs"), ap), ap);

    const std::string inp = json_path(p, "inputs");
    const json& ins = c.array(c.member(jn, p, "inputs"), inp);
    if (ins.size() < row->min_inputs || ins.size() > row->max_inputs)
      c.fail(inp, op + " takes " + std::to_string(row->min_inputs) + ".." + std::to_string(row->max_inputs) +
                      " inputs, got " + std::to_string(ins.size()));
    for (size_t k = 0; k < ins.size(); ++k) {
      int id = value_id(ins[k], json_index(inp, k));
      if (!produced[size_t(id)])
        c.fail(json_index(inp, k), "value " + quote_for_error(g.values[size_t(id)]) + " is used before it is produced");
      n.inputs.push_back(id);
    }
    n.output = value_id(c.member(jn, p, "output"), json_path(p, "output"));
    if (produced[size_t(n.output)])
      c.fail(json_path(p, "output"), "value " + quote_for_error(g.values[size_t(n.output)]) + " is produced twice");
    produced[size_t(n.output)] = 1;

    const std::string wp = json_path(p, "weights");
    const json& w = c.object(c.member(jn, p, "weights"), wp);
    for (auto it = w.begin(); it != w.end(); ++it) {
      if (it.key().empty()) c.fail(wp, "empty weight role");
      std::string t = c.string(*it, json_path(wp, it.key()));
      if (t.empty()) c.fail(json_path(wp, it.key()), "empty tensor name");
      n.weights[it.key()] = std::move(t);
    }
    check_inputs_against_attrs(c, n, g, p);
    g.nodes.push_back(std::move(n));
  }
  for (size_t v = 0; v < produced.size(); ++v)
    if (!produced[v]) c.fail(json_index(vp, v), "value " + quote_for_error(g.values[v]) + " is never produced");
  if (g.output == g.sample || g.output == g.timestep || g.output == g.class_labels || g.output == g.context ||
      g.output == g.input_ids)
    c.fail(json_path(gp, "output"), "the graph output must be produced by a node");
  return g;
}

}  // namespace diffrt
