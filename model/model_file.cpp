// Reading, validating and writing the diffrt model file (.drt); the layout is in model_file.h.
// The reader treats the file as hostile: the preamble is checked before anything is allocated,
// the header is strict JSON with every field typed and ranged, the tensor table is checked with
// overflow-safe arithmetic, and the file must end exactly at the end of the data section.
// The writer re-validates the header it produced, so it never writes a file the reader refuses.
#include "model/model_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "base/checked_math.h"
#include "base/error.h"
#include "base/strict_json.h"
#include "model/pipeline_json.h"
#include "model/tokenizer_json.h"

namespace diffrt {

using nlohmann::json;

namespace {

constexpr uint64_t kPreambleBytes = 24;
constexpr int64_t kMaxClasses = (1 << 20) - 1;

uint64_t get_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
void put_le(uint8_t* out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out[i] = uint8_t(v >> (8 * i));
}

// Checks bytes 0..23 against the file size; returns the header length.
uint64_t check_preamble(const uint8_t* p, uint64_t file_size, const JsonCheck& c) {
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) c.fail("magic", "not a diffrt model file");
  const uint64_t version = get_le(p + 8, 4);
  if (version < kMinFormatVersion || version > kFormatVersion)
    c.fail("version", "unsupported format version " + std::to_string(version) + " (this build reads " +
                          std::to_string(kMinFormatVersion) + " to " + std::to_string(kFormatVersion) + ")");
  if (get_le(p + 12, 4) != 0) c.fail("reserved", "must be 0");
  const uint64_t h = get_le(p + 16, 8);
  if (h > kMaxHeaderBytes)
    c.fail("header_length", std::to_string(h) + " bytes, above the limit of " + std::to_string(kMaxHeaderBytes));
  if (h > file_size - kPreambleBytes)
    c.fail("header_length", std::to_string(h) + " bytes, beyond the end of the " + std::to_string(file_size) + "-byte file");
  return h;
}

std::vector<TensorInfo> parse_tensor_table(const json& arr, uint64_t data_size, const JsonCheck& c) {
  const std::string tp = "tensors";
  c.array(arr, tp);
  std::vector<TensorInfo> out;
  std::set<std::string> names;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& e = arr[i];
    std::string p = json_index(tp, i);
    c.object(e, p);
    c.only_keys(e, p, {"name", "dtype", "shape", "offset", "nbytes"});
    TensorInfo t;
    t.name = c.string_at(e, p, "name");
    if (t.name.empty()) c.fail(json_path(p, "name"), "empty tensor name");
    if (!names.insert(t.name).second) c.fail(json_path(p, "name"), "duplicate tensor " + quote_for_error(t.name));
    p = "tensors[" + quote_for_error(t.name) + "]";  // name the tensor from here on
    const std::string dt = c.string_at(e, p, "dtype");
    if (!parse_dtype(dt, &t.dtype))
      c.fail(json_path(p, "dtype"), "unsupported dtype " + quote_for_error(dt) + " (fp32, fp16, bf16)");
    const std::string sp = json_path(p, "shape");
    const json& shape = c.array(c.member(e, p, "shape"), sp);
    if (shape.size() > size_t(kMaxRank)) c.fail(sp, "rank " + std::to_string(shape.size()) + " above " + std::to_string(kMaxRank));
    uint64_t numel = 1, nbytes = 0;
    for (size_t k = 0; k < shape.size(); ++k) {
      t.shape.push_back(c.int_in(shape[k], json_index(sp, k), 0, INT64_MAX));
      if (!mul_ok(numel, uint64_t(t.shape.back()), &numel)) c.fail(sp, "element count overflows 64 bits");
    }
    if (!mul_ok(numel, dtype_size(t.dtype), &nbytes)) c.fail(sp, "byte size overflows 64 bits");
    t.nbytes = c.u64_at(e, p, "nbytes");
    if (t.nbytes != nbytes)
      c.fail(json_path(p, "nbytes"), std::to_string(t.nbytes) + " but shape and dtype need " + std::to_string(nbytes));
    t.offset = c.u64_at(e, p, "offset");
    if (t.offset % kDataAlignment != 0)
      c.fail(json_path(p, "offset"), std::to_string(t.offset) + " is not " + std::to_string(kDataAlignment) + "-byte aligned");
    uint64_t end = 0;
    if (!add_ok(t.offset, t.nbytes, &end) || end > data_size)
      c.fail(json_path(p, "offset"), "tensor bytes [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                                         ") exceed data_size " + std::to_string(data_size));
    out.push_back(std::move(t));
  }
  std::vector<const TensorInfo*> order;
  for (const TensorInfo& t : out) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->nbytes < b->nbytes;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo* a = order[i - 1];
    const TensorInfo* b = order[i];
    if (b->offset < a->offset + a->nbytes)
      c.fail("tensors[" + quote_for_error(b->name) + "].offset", "overlaps tensor " + quote_for_error(a->name));
  }
  return out;
}

// Version 1 and 2 files record no graph dtype: the dtype every tensor of the graph shares. A v1 graph whose tensors
// disagree (never written by the converter) gets fp32: the CPU backend widens any tensor, and the CUDA backend
// refuses a tensor whose dtype differs from its graph's (CudaWeights).
DType v1_graph_dtype(const Graph& g, const std::map<std::string, const TensorInfo*>& by_name) {
  bool any = false;
  DType dt = DType::F32;
  for (const Node& n : g.nodes)
    for (const auto& w : n.weights) {
      auto it = by_name.find(w.second);
      if (it == by_name.end()) continue;  // reported by check_weight_refs
      if (any && it->second->dtype != dt) return DType::F32;
      dt = it->second->dtype;
      any = true;
    }
  return dt;
}

// Cross-checks between a graph and the tensor table. `gp` is the graph's path in errors. From version 3 on,
// every tensor a graph reads is stored in the graph's dtype (the executors read them as such).
void check_weight_refs(const Graph& g, const std::map<std::string, const TensorInfo*>& by_name,
                       const std::string& gp, uint32_t version, const JsonCheck& c) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const std::string p = gp + ".nodes[" + std::to_string(i) + "]";
    for (const auto& w : n.weights) {
      auto t = by_name.find(w.second);
      if (t == by_name.end())
        c.fail(json_path(p, "weights." + w.first), "tensor " + quote_for_error(w.second) + " is not in the tensor table");
      if (version >= 3 && t->second->dtype != g.dtype)
        c.fail(json_path(p, "weights." + w.first), "tensor " + quote_for_error(w.second) + " is " +
                                                       dtype_name(t->second->dtype) + " but " + gp + ".dtype is " +
                                                       dtype_name(g.dtype));
    }
    // Weight sizes the attributes fix (the executors index the tensors with them).
    auto want_numel = [&](const char* role, uint64_t numel) {
      auto it = n.weights.find(role);
      if (it == n.weights.end()) return;
      const TensorInfo* t = by_name.at(it->second);
      if (t->numel() != numel)
        c.fail(json_path(p, std::string("weights.") + role), "tensor " + quote_for_error(t->name) + " has " +
                                                                std::to_string(t->numel()) + " elements, the op needs " +
                                                                std::to_string(numel));
    };
    if (auto* e = std::get_if<EmbeddingAttrs>(&n.attrs)) {
      if (!n.weights.count("token")) c.fail(json_path(p, "weights"), "an embedding needs a token table");
      want_numel("token", uint64_t(e->vocab) * uint64_t(e->dim));
      want_numel("position", uint64_t(e->max_positions) * uint64_t(e->dim));
    } else if (auto* l = std::get_if<LinearAttrs>(&n.attrs)) {
      want_numel("weight", uint64_t(l->in) * uint64_t(l->out));
      want_numel("bias", uint64_t(l->out));
    } else if (auto* cv = std::get_if<Conv2dAttrs>(&n.attrs)) {
      want_numel("weight", uint64_t(cv->cout) * uint64_t(cv->kh) * uint64_t(cv->kw) * uint64_t(cv->cin));
      want_numel("bias", uint64_t(cv->cout));
    } else if (auto* pe = std::get_if<PatchEmbedAttrs>(&n.attrs)) {
      if (!n.weights.count("weight")) c.fail(json_path(p, "weights"), "a patch embedding needs a weight");
      want_numel("weight", uint64_t(pe->dim) * uint64_t(pe->patch) * uint64_t(pe->patch) * uint64_t(pe->cin));
      want_numel("bias", uint64_t(pe->dim));
    }
    auto* gn = std::get_if<GroupNormAttrs>(&n.attrs);
    auto w = n.weights.find("weight");
    if (gn && w != n.weights.end()) {
      const TensorInfo* t = by_name.at(w->second);
      if (t->shape.size() != 1 || t->shape[0] == 0 || t->shape[0] % gn->groups != 0)
        c.fail(json_path(p, "attrs.groups"), std::to_string(gn->groups) + " groups do not divide the channels of " +
                                                 quote_for_error(t->name));
    }
  }
}

// Cross-checks between the graphs, the tensor table and the conditioning; sets each graph's dtype from its
// tensors for version 1 and 2 files.
void check_graph_refs(ModelFile& m, const JsonCheck& c) {
  std::map<std::string, const TensorInfo*> by_name;
  for (const TensorInfo& t : m.tensors) by_name[t.name] = &t;
  const uint32_t v = m.version;
  if (v < 3) {
    m.graph.dtype = v1_graph_dtype(m.graph, by_name);
    m.vae.graph.dtype = v1_graph_dtype(m.vae.graph, by_name);
    m.vae_encoder.graph.dtype = v1_graph_dtype(m.vae_encoder.graph, by_name);
    m.text_encoder.graph.dtype = v1_graph_dtype(m.text_encoder.graph, by_name);
  }
  check_weight_refs(m.graph, by_name, "graph", v, c);
  if (m.graph.timestep < 0) c.fail("graph.inputs", "the denoiser graph needs a timestep input");
  if (m.graph.sample < 0) c.fail("graph.inputs", "the denoiser graph needs a sample input");
  const bool class_input = m.graph.class_labels >= 0;
  if (class_input != (m.conditioning.num_classes > 0))
    c.fail("conditioning.num_classes", std::to_string(m.conditioning.num_classes) + " but the graph " +
                                           (class_input ? "has" : "has no") + " class_labels input");
  if (m.vae.present()) {
    check_weight_refs(m.vae.graph, by_name, "vae.graph", v, c);
    const Graph& v = m.vae.graph;
    if (v.timestep >= 0 || v.class_labels >= 0 || v.context >= 0)
      c.fail("vae.graph.inputs", "a VAE decoder takes the latents only");
    if (v.in_channels != m.graph.out_channels && 2 * v.in_channels != m.graph.out_channels)
      c.fail("vae.graph.in_channels", std::to_string(v.in_channels) + " latent channels but the denoiser outputs " +
                                          std::to_string(m.graph.out_channels));
    if (v.sample < 0) c.fail("vae.graph.inputs", "a VAE decoder takes the latents as its sample");
  }
  if (m.vae_encoder.present()) {
    const Graph& e = m.vae_encoder.graph;
    check_weight_refs(e, by_name, "vae_encoder.graph", v, c);
    if (!m.vae.present()) c.fail("vae_encoder", "a VAE encoder needs the VAE (the vae section) for its config and scaling factor");
    if (e.sample < 0) c.fail("vae_encoder.graph.inputs", "a VAE encoder takes the images as its sample");
    if (e.timestep >= 0 || e.class_labels >= 0 || e.context >= 0 || e.input_ids >= 0)
      c.fail("vae_encoder.graph.inputs", "a VAE encoder takes the images only");
    if (e.out_channels != 2 * m.vae.graph.in_channels)
      c.fail("vae_encoder.graph.out_channels", std::to_string(e.out_channels) + " but the posterior of " +
                                                   std::to_string(m.vae.graph.in_channels) +
                                                   " latent channels needs twice that (mean and logvar)");
  }
  if (m.text_encoder.present() != m.has_tokenizer)
    c.fail(m.has_tokenizer ? "tokenizer" : "text_encoder", "a text encoder and its tokenizer come together");
  if (m.text_encoder.present()) {
    const Graph& t = m.text_encoder.graph;
    check_weight_refs(t, by_name, "text_encoder.graph", v, c);
    if (t.input_ids < 0) c.fail("text_encoder.graph.inputs", "a text encoder takes input_ids");
    if (m.graph.context < 0)
      c.fail("text_encoder", "the denoiser takes no encoder_hidden_states: a text encoder has nothing to condition");
    if (t.out_channels != m.graph.context_dim)
      c.fail("text_encoder.graph.out_channels", std::to_string(t.out_channels) + " but the denoiser's context_dim is " +
                                                    std::to_string(m.graph.context_dim));
    // Every id the tokenizer can produce must index every embedding table, at every position it pads to.
    for (size_t i = 0; i < t.nodes.size(); ++i)
      if (const auto* e = std::get_if<EmbeddingAttrs>(&t.nodes[i].attrs)) {
        const std::string ap = "text_encoder.graph.nodes[" + std::to_string(i) + "].attrs";
        if (uint64_t(e->vocab) < m.tokenizer.vocab.size())
          c.fail(json_path(ap, "vocab"), std::to_string(e->vocab) + " rows but the tokenizer has " +
                                             std::to_string(m.tokenizer.vocab.size()) + " tokens");
        if (e->max_positions < m.tokenizer.max_length)
          c.fail(json_path(ap, "max_positions"), std::to_string(e->max_positions) + " but the tokenizer pads to " +
                                                     std::to_string(m.tokenizer.max_length) + " tokens");
      }
  }
}

// A graph's JSON from a file of `version`: from version 3 on, every graph records its dtype.
Graph read_graph(const json& j, const std::string& path, uint32_t version, const JsonCheck& c) {
  if (version >= 3 && j.is_object() && !j.contains("dtype"))
    c.fail(json_path(path, "dtype"), "missing (format version " + std::to_string(version) +
                                         " records each graph's dtype)");
  if (version < 3 && j.is_object() && j.contains("dtype"))
    c.fail(json_path(path, "dtype"), "not part of format version " + std::to_string(version));
  return graph_from_json(j, c.origin(), path);
}

// Validates the header JSON (everything but the data bytes) of a file of `file_size` bytes whose
// data section starts at `data_start`; `version` is the preamble's.
ModelFile parse_header(std::string_view text, uint64_t file_size, uint64_t data_start, uint32_t version,
                       const JsonCheck& c) {
  json h = c.parse_strict(text, "header");
  c.object(h, "header");
  c.only_keys(h, "header", {"format", "version", "family", "config", "graph", "tensors", "scheduler",
                            "conditioning", "provenance", "vae", "text_encoder", "tokenizer", "vae_encoder",
                            "pipeline", "data_size"});
  if (c.string_at(h, "", "format") != "diffrt") c.fail("format", "must be \"diffrt\"");
  if (c.u64_at(h, "", "version") != version) c.fail("version", "header version differs from the preamble");
  ModelFile m;
  m.version = version;
  m.family = c.string_at(h, "", "family");
  if (m.family.empty()) c.fail("family", "empty");
  m.config = c.object(c.member(h, "", "config"), "config");
  const uint64_t data_size = c.u64_at(h, "", "data_size");
  uint64_t end = 0;
  if (!add_ok(data_start, data_size, &end) || end != file_size)
    c.fail("data_size", std::to_string(data_size) + " bytes of data after offset " + std::to_string(data_start) +
                            " does not match the file size " + std::to_string(file_size));
  m.tensors = parse_tensor_table(c.member(h, "", "tensors"), data_size, c);
  m.graph = read_graph(c.member(h, "", "graph"), "graph", version, c);
  m.scheduler = c.object(c.member(h, "", "scheduler"), "scheduler");
  const json& cj = c.object(c.member(h, "", "conditioning"), "conditioning");
  c.only_keys(cj, "conditioning", {"num_classes", "null_class"});
  m.conditioning.num_classes = int(c.int_at(cj, "conditioning", "num_classes", 0, kMaxClasses));
  m.conditioning.null_class = int(c.int_at(cj, "conditioning", "null_class", -1, m.conditioning.num_classes));
  if (m.conditioning.num_classes == 0 && m.conditioning.null_class != -1)
    c.fail("conditioning.null_class", "must be -1 when num_classes is 0");
  m.provenance = c.object(c.member(h, "", "provenance"), "provenance");
  if (h.contains("vae")) {
    const json& vj = c.object(h["vae"], "vae");
    c.only_keys(vj, "vae", {"config", "scaling_factor", "graph"});
    m.vae.config = c.object(c.member(vj, "vae", "config"), "vae.config");
    m.vae.scaling_factor = c.f32_at(vj, "vae", "scaling_factor");
    if (!(m.vae.scaling_factor > 0.0f && m.vae.scaling_factor < 1e6f))
      c.fail("vae.scaling_factor", "must be in (0, 1e6)");
    m.vae.graph = read_graph(c.member(vj, "vae", "graph"), "vae.graph", version, c);
    if (!m.vae.present()) c.fail("vae.graph.nodes", "empty");
  }
  if (h.contains("vae_encoder")) {
    if (version < 2) c.fail("vae_encoder", "needs format version 2 or later (the file says " + std::to_string(version) + ")");
    const json& ej = c.object(h["vae_encoder"], "vae_encoder");
    c.only_keys(ej, "vae_encoder", {"graph"});
    m.vae_encoder.graph = read_graph(c.member(ej, "vae_encoder", "graph"), "vae_encoder.graph", version, c);
    if (!m.vae_encoder.present()) c.fail("vae_encoder.graph.nodes", "empty");
  }
  if (h.contains("text_encoder")) {
    const json& tj = c.object(h["text_encoder"], "text_encoder");
    c.only_keys(tj, "text_encoder", {"config", "graph"});
    m.text_encoder.config = c.object(c.member(tj, "text_encoder", "config"), "text_encoder.config");
    m.text_encoder.graph = read_graph(c.member(tj, "text_encoder", "graph"), "text_encoder.graph", version, c);
    if (!m.text_encoder.present()) c.fail("text_encoder.graph.nodes", "empty");
  }
  if (h.contains("tokenizer")) {
    m.tokenizer = tokenizer_from_json(h["tokenizer"], c, "tokenizer");
    m.has_tokenizer = true;
  }
  if (h.contains("pipeline")) {
    m.pipeline = pipeline_from_json(h["pipeline"], c, "pipeline");
    for (size_t i = 0; i < m.pipeline.id2label.size(); ++i)
      if (m.pipeline.id2label[i].first >= m.conditioning.num_classes)
        c.fail("pipeline.id2label[" + std::to_string(i) + "][0]",
               "class id " + std::to_string(m.pipeline.id2label[i].first) + " is not below conditioning.num_classes " +
                   std::to_string(m.conditioning.num_classes));
  }
  check_graph_refs(m, c);
  return m;
}

// The preamble and header region [0, data_start) of a file of file_size bytes -> ModelFile.
ModelFile parse_head(const uint8_t* head, uint64_t head_size, uint64_t file_size, uint64_t h,
                     const JsonCheck& c) {
  for (uint64_t i = kPreambleBytes + h; i < head_size; ++i)
    if (head[i] != 0) c.fail("header_padding", "non-zero byte at offset " + std::to_string(i));
  std::string_view text(reinterpret_cast<const char*>(head + kPreambleBytes), size_t(h));
  return parse_header(text, file_size, head_size, uint32_t(get_le(head + 8, 4)), c);  // checked by check_preamble
}

uint64_t data_start_of(uint64_t h, uint64_t file_size, const JsonCheck& c) {
  const uint64_t start = align_up(kPreambleBytes + h, kDataAlignment);  // h <= 64 MiB: no overflow
  if (start > file_size) c.fail("header_padding", "file ends inside the padding after the header");
  return start;
}

void pread_all(int fd, uint8_t* dst, uint64_t n, uint64_t off, const std::string& path) {
  while (n > 0) {
    ssize_t r = ::pread(fd, dst, size_t(std::min<uint64_t>(n, 1ull << 30)), off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw Error(ErrorCode::Io, path + ": read failed: " + std::strerror(errno));
    if (r == 0) throw Error(ErrorCode::Io, path + ": file truncated while being read");
    dst += r;
    off += uint64_t(r);
    n -= uint64_t(r);
  }
}

}  // namespace

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);  // validated when read
  return n;
}

std::vector<std::pair<std::string, const Graph*>> model_graphs(const ModelFile& mf) {
  std::vector<std::pair<std::string, const Graph*>> out{{"graph", &mf.graph}};
  if (mf.vae.present()) out.emplace_back("vae.graph", &mf.vae.graph);
  if (mf.vae_encoder.present()) out.emplace_back("vae_encoder.graph", &mf.vae_encoder.graph);
  if (mf.text_encoder.present()) out.emplace_back("text_encoder.graph", &mf.text_encoder.graph);
  return out;
}

const TensorInfo* ModelFile::find(const std::string& name) const {
  for (const TensorInfo& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

ModelFile parse_model_file(const uint8_t* bytes, size_t size, const std::string& origin) {
  const JsonCheck c(origin);
  if (size < kPreambleBytes)
    c.fail("", "file is " + std::to_string(size) + " bytes, too small for a diffrt model file");
  const uint64_t h = check_preamble(bytes, size, c);
  const uint64_t start = data_start_of(h, size, c);
  ModelFile m = parse_head(bytes, start, size, h, c);
  m.data.assign(bytes + start, bytes + size);
  return m;
}

ModelFile read_model_file(const std::string& path) {
  const JsonCheck c(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::Io, path + ": cannot open: " + std::strerror(errno));
  struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(ErrorCode::Io, path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::Io, path + ": not a regular file");
  const uint64_t size = uint64_t(st.st_size);  // taken once: later short reads are errors
  if (size < kPreambleBytes)
    c.fail("", "file is " + std::to_string(size) + " bytes, too small for a diffrt model file");
  uint8_t pre[kPreambleBytes];
  pread_all(fd, pre, kPreambleBytes, 0, path);
  const uint64_t h = check_preamble(pre, size, c);
  const uint64_t start = data_start_of(h, size, c);
  std::vector<uint8_t> head(static_cast<size_t>(start));
  std::memcpy(head.data(), pre, kPreambleBytes);
  pread_all(fd, head.data() + kPreambleBytes, start - kPreambleBytes, kPreambleBytes, path);
  ModelFile m = parse_head(head.data(), start, size, h, c);
  m.data.resize(size_t(size - start));
  pread_all(fd, m.data.data(), m.data.size(), start, path);
  return m;
}

std::vector<uint8_t> serialize_model_file(const std::string& family, const json& config, const Graph& graph,
                                          const std::vector<TensorBlob>& tensors, const json& scheduler,
                                          const Conditioning& cond, const json& provenance, const VaeDecoder* vae,
                                          const TextEncoder* text_encoder, const ClipTokenizerSpec* tokenizer,
                                          const VaeEncoder* vae_encoder, const PipelineInfo* pipeline) {
  auto arg_fail = [](const std::string& what) { throw Error(ErrorCode::InvalidArgument, "serialize_model_file: " + what); };
  json table = json::array();
  uint64_t cursor = 0;
  std::vector<uint64_t> offsets;
  for (const TensorBlob& t : tensors) {
    uint64_t numel = 1, nbytes = 0;
    if (t.shape.size() > size_t(kMaxRank)) arg_fail("tensor " + quote_for_error(t.name) + ": rank too high");
    for (int64_t d : t.shape)
      if (d < 0 || !mul_ok(numel, uint64_t(d), &numel)) arg_fail("tensor " + quote_for_error(t.name) + ": bad shape");
    if (!mul_ok(numel, dtype_size(t.dtype), &nbytes) || nbytes != t.bytes.size())
      arg_fail("tensor " + quote_for_error(t.name) + ": " + std::to_string(t.bytes.size()) +
               " bytes do not match shape and dtype");
    cursor = align_up(cursor, kDataAlignment);
    offsets.push_back(cursor);
    table.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"offset", cursor},
                     {"nbytes", nbytes}});
    cursor += nbytes;
  }
  json header = {{"format", "diffrt"},
                 {"version", kFormatVersion},
                 {"family", family},
                 {"config", config.is_null() ? json::object() : config},
                 {"graph", graph_to_json(graph)},
                 {"tensors", table},
                 {"scheduler", scheduler.is_null() ? json::object() : scheduler},
                 {"conditioning", {{"num_classes", cond.num_classes}, {"null_class", cond.null_class}}},
                 {"provenance", provenance.is_null() ? json::object() : provenance},
                 {"data_size", cursor}};
  if (vae && vae->present())
    header["vae"] = {{"config", vae->config.is_null() ? json::object() : vae->config},
                     {"scaling_factor", vae->scaling_factor},
                     {"graph", graph_to_json(vae->graph)}};
  if (text_encoder && text_encoder->present())
    header["text_encoder"] = {{"config", text_encoder->config.is_null() ? json::object() : text_encoder->config},
                              {"graph", graph_to_json(text_encoder->graph)}};
  if (tokenizer) header["tokenizer"] = tokenizer_to_json(*tokenizer);
  if (vae_encoder && vae_encoder->present()) header["vae_encoder"] = {{"graph", graph_to_json(vae_encoder->graph)}};
  if (pipeline && pipeline->present()) header["pipeline"] = pipeline_to_json(*pipeline);
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    arg_fail(std::string("header is not valid UTF-8: ") + e.what());
  }
  if (text.size() > kMaxHeaderBytes) arg_fail("header above " + std::to_string(kMaxHeaderBytes) + " bytes");
  const uint64_t start = align_up(kPreambleBytes + text.size(), kDataAlignment);
  std::vector<uint8_t> out(size_t(start + cursor), 0);  // padding after the header and tensors stays zero
  std::memcpy(out.data(), kMagic, sizeof(kMagic));
  put_le(out.data() + 8, kFormatVersion, 4);
  put_le(out.data() + 12, 0, 4);
  put_le(out.data() + 16, text.size(), 8);
  std::memcpy(out.data() + kPreambleBytes, text.data(), text.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!tensors[i].bytes.empty())
      std::memcpy(out.data() + start + offsets[i], tensors[i].bytes.data(), tensors[i].bytes.size());
  // Never write what the reader would refuse: validate the header we just produced.
  (void)parse_head(out.data(), start, out.size(), text.size(), JsonCheck("serialize_model_file", ErrorCode::InvalidArgument));
  return out;
}

}  // namespace diffrt
