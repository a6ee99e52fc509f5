#include "request_inputs.h"

#include <cstring>
#include <limits>

namespace diffrt_triton {

namespace {

constexpr uint64_t kMaxTextBytes = 1 << 20;  // a prompt or sampler name; far above any real one

enum class Kind { Scalar, Vector, Embeds, Text, Image, Mask };

struct Spec {
  const char* name;
  TRITONSERVER_DataType dtype;
  Kind kind;
};

// The request contract: every input is optional.
const Spec kSpecs[] = {
    {"PROMPT", TRITONSERVER_TYPE_BYTES, Kind::Text},
    {"NEGATIVE_PROMPT", TRITONSERVER_TYPE_BYTES, Kind::Text},
    {"PROMPT_EMBEDS", TRITONSERVER_TYPE_FP32, Kind::Embeds},
    {"NEGATIVE_PROMPT_EMBEDS", TRITONSERVER_TYPE_FP32, Kind::Embeds},
    {"CLASS_LABELS", TRITONSERVER_TYPE_INT32, Kind::Vector},
    {"SEED", TRITONSERVER_TYPE_UINT64, Kind::Scalar},
    {"STEPS", TRITONSERVER_TYPE_INT32, Kind::Scalar},
    {"GUIDANCE_SCALE", TRITONSERVER_TYPE_FP32, Kind::Scalar},
    {"NUM_IMAGES", TRITONSERVER_TYPE_INT32, Kind::Scalar},
    {"HEIGHT", TRITONSERVER_TYPE_INT32, Kind::Scalar},
    {"WIDTH", TRITONSERVER_TYPE_INT32, Kind::Scalar},
    {"SAMPLER", TRITONSERVER_TYPE_BYTES, Kind::Text},
    {"KARRAS", TRITONSERVER_TYPE_BOOL, Kind::Scalar},
    {"INIT_IMAGE", TRITONSERVER_TYPE_FP32, Kind::Image},
    {"MASK", TRITONSERVER_TYPE_FP32, Kind::Mask},
    {"STRENGTH", TRITONSERVER_TYPE_FP32, Kind::Scalar},
};

size_t dtype_size(TRITONSERVER_DataType t) {
  switch (t) {
    case TRITONSERVER_TYPE_UINT64: return 8;
    case TRITONSERVER_TYPE_INT32:
    case TRITONSERVER_TYPE_FP32: return 4;
    case TRITONSERVER_TYPE_BOOL: return 1;
    default: return 0;  // BYTES: variable
  }
}

std::string shape_str(const int64_t* shape, uint32_t dims) {
  std::string s = "[";
  for (uint32_t i = 0; i < dims; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The input's bytes, gathered from its buffers (all in host memory).
Error gather(TRITONBACKEND_Input* input, const char* name, uint32_t buffer_count, uint64_t byte_size,
             std::vector<char>* out) {
  out->resize(size_t(byte_size));
  uint64_t at = 0;
  for (uint32_t b = 0; b < buffer_count; ++b) {
    const void* buf = nullptr;
    uint64_t size = 0;
    TRITONSERVER_MemoryType mt = TRITONSERVER_MEMORY_CPU;
    int64_t mt_id = 0;
    DIFFRT_TRITON_TRY(TRITONBACKEND_InputBuffer(input, b, &buf, &size, &mt, &mt_id));
    if (mt == TRITONSERVER_MEMORY_GPU)
      return invalid_arg(std::string(name) + ": input in GPU memory is not supported; send it in host memory");
    if (size > byte_size - at) return internal_error(std::string(name) + ": buffers larger than the input's byte size");
    if (size) std::memcpy(out->data() + at, buf, size_t(size));
    at += size;
  }
  if (at != byte_size) return internal_error(std::string(name) + ": buffers smaller than the input's byte size");
  return nullptr;
}

// One BYTES element: a 4-byte little-endian length, then the bytes.
Error parse_text(const char* name, const std::vector<char>& raw, std::string* out) {
  if (raw.size() < 4) return invalid_arg(std::string(name) + ": BYTES element without its 4-byte length");
  uint32_t len = 0;
  for (int i = 3; i >= 0; --i) len = (len << 8) | uint8_t(raw[size_t(i)]);
  if (uint64_t(len) + 4 != raw.size())
    return invalid_arg(std::string(name) + ": BYTES element length " + std::to_string(len) + " does not match the " +
                       std::to_string(raw.size() - 4) + " bytes sent");
  if (len > kMaxTextBytes) return invalid_arg(std::string(name) + ": longer than 1 MiB");
  out->assign(raw.data() + 4, len);
  return nullptr;
}

Error read_one(TRITONBACKEND_Input* input, RequestInputs* r) {
  const char* name = nullptr;
  TRITONSERVER_DataType dtype = TRITONSERVER_TYPE_INVALID;
  const int64_t* shape = nullptr;
  uint32_t dims = 0, buffer_count = 0;
  uint64_t byte_size = 0;
  DIFFRT_TRITON_TRY(TRITONBACKEND_InputProperties(input, &name, &dtype, &shape, &dims, &byte_size, &buffer_count));
  if (!name) return internal_error("an input without a name");
  const Spec* spec = nullptr;
  for (const Spec& s : kSpecs)
    if (std::strcmp(s.name, name) == 0) spec = &s;
  if (!spec)
    return invalid_arg(std::string("unknown input '") + name +
                       "' (known: PROMPT, NEGATIVE_PROMPT, PROMPT_EMBEDS, NEGATIVE_PROMPT_EMBEDS, CLASS_LABELS, SEED, "
                       "STEPS, GUIDANCE_SCALE, NUM_IMAGES, HEIGHT, WIDTH, SAMPLER, KARRAS, INIT_IMAGE, MASK, STRENGTH)");
  if (dtype != spec->dtype)
    return invalid_arg(std::string(name) + ": expected datatype " + TRITONSERVER_DataTypeString(spec->dtype) + ", got " +
                       TRITONSERVER_DataTypeString(dtype));
  // Element count, overflow-checked (Triton checks shapes against the config's dims, but a config may
  // declare -1 everywhere).
  uint64_t count = 1;
  for (uint32_t i = 0; i < dims; ++i) {
    if (shape[i] < 0) return invalid_arg(std::string(name) + ": negative dimension in shape " + shape_str(shape, dims));
    if (shape[i] > 0 && count > std::numeric_limits<uint64_t>::max() / uint64_t(shape[i]))
      return invalid_arg(std::string(name) + ": shape " + shape_str(shape, dims) + " is too large");
    count *= uint64_t(shape[i]);
  }
  const std::string shp = shape_str(shape, dims);
  if ((spec->kind == Kind::Scalar || spec->kind == Kind::Text) && count != 1)
    return invalid_arg(std::string(name) + ": expected one value (shape [1]), got shape " + shp);
  if (spec->kind == Kind::Vector && count == 0) return invalid_arg(std::string(name) + ": empty (shape " + shp + ")");
  if (spec->kind == Kind::Embeds) {
    if (dims != 3) return invalid_arg(std::string(name) + ": expected shape [batch, tokens, dim], got " + shp);
    for (uint32_t i = 0; i < 3; ++i)
      if (shape[i] < 1 || shape[i] > (1 << 24))
        return invalid_arg(std::string(name) + ": shape " + shp + ": each dimension must be in [1, 16777216]");
  }
  if (spec->kind == Kind::Image || spec->kind == Kind::Mask) {
    const uint32_t want = spec->kind == Kind::Image ? 4 : 3;
    if (dims != want)
      return invalid_arg(std::string(name) + ": expected shape " + (want == 4 ? "[N, H, W, C]" : "[N, H, W]") + ", got " + shp);
    for (uint32_t i = 0; i < dims; ++i)
      if (shape[i] < 1 || shape[i] > 8192)
        return invalid_arg(std::string(name) + ": shape " + shp + ": each dimension must be in [1, 8192]");
    if (count > (uint64_t(1) << 30)) return invalid_arg(std::string(name) + ": shape " + shp + " is too large");
  }
  if (const size_t es = dtype_size(dtype); es && (count > byte_size / es || count * es != byte_size))
    return invalid_arg(std::string(name) + ": " + std::to_string(byte_size) + " bytes for shape " + shp + " of " +
                       TRITONSERVER_DataTypeString(dtype));
  if (spec->kind == Kind::Text && byte_size > kMaxTextBytes + 4)
    return invalid_arg(std::string(name) + ": longer than 1 MiB");
  std::vector<char> raw;
  try {
    DIFFRT_TRITON_TRY(gather(input, name, buffer_count, byte_size, &raw));
  } catch (const std::bad_alloc&) {
    return make_error(TRITONSERVER_ERROR_UNAVAILABLE, std::string(name) + ": out of host memory copying " +
                                                          std::to_string(byte_size) + " bytes");
  }

  const std::string n = name;
  auto scalar_i32 = [&]() { int32_t v; std::memcpy(&v, raw.data(), 4); return v; };
  if (spec->kind == Kind::Text) {
    std::string s;
    DIFFRT_TRITON_TRY(parse_text(name, raw, &s));
    if (n == "PROMPT") r->prompt = std::move(s);
    else if (n == "NEGATIVE_PROMPT") r->negative_prompt = std::move(s);
    else r->sampler = std::move(s);
  } else if (spec->kind == Kind::Embeds) {
    Embeds e;
    e.batch = int(shape[0]);
    e.len = int(shape[1]);
    e.dim = int(shape[2]);
    e.data.resize(size_t(count));
    std::memcpy(e.data.data(), raw.data(), raw.size());
    (n == "PROMPT_EMBEDS" ? r->prompt_embeds : r->negative_prompt_embeds) = std::move(e);
  } else if (spec->kind == Kind::Image || spec->kind == Kind::Mask) {
    ImageTensor t;
    t.n = int(shape[0]);
    t.h = int(shape[1]);
    t.w = int(shape[2]);
    t.c = spec->kind == Kind::Image ? int(shape[3]) : 1;
    t.data.resize(size_t(count));
    std::memcpy(t.data.data(), raw.data(), raw.size());
    (n == "INIT_IMAGE" ? r->init_image : r->mask) = std::move(t);
  } else if (n == "STRENGTH") {
    float v;
    std::memcpy(&v, raw.data(), 4);
    r->strength = v;
  } else if (n == "CLASS_LABELS") {
    std::vector<int32_t> v(static_cast<size_t>(count));
    std::memcpy(v.data(), raw.data(), raw.size());
    r->class_labels = std::move(v);
  } else if (n == "SEED") {
    uint64_t v;
    std::memcpy(&v, raw.data(), 8);
    r->seed = v;
  } else if (n == "GUIDANCE_SCALE") {
    float v;
    std::memcpy(&v, raw.data(), 4);
    r->guidance_scale = v;
  } else if (n == "STEPS") {
    r->steps = scalar_i32();
  } else if (n == "NUM_IMAGES") {
    r->num_images = scalar_i32();
  } else if (n == "HEIGHT") {
    r->height = scalar_i32();
  } else if (n == "WIDTH") {
    r->width = scalar_i32();
  } else if (n == "KARRAS") {
    r->karras = raw[0] != 0;
  }
  return nullptr;
}

}  // namespace

Error read_inputs(TRITONBACKEND_Request* request, RequestInputs* out) {
  uint32_t n = 0;
  DIFFRT_TRITON_TRY(TRITONBACKEND_RequestInputCount(request, &n));
  RequestInputs r;
  for (uint32_t i = 0; i < n; ++i) {
    TRITONBACKEND_Input* input = nullptr;
    DIFFRT_TRITON_TRY(TRITONBACKEND_RequestInputByIndex(request, i, &input));
    DIFFRT_TRITON_TRY(read_one(input, &r));
  }
  *out = std::move(r);
  return nullptr;
}

Error read_requested_outputs(TRITONBACKEND_Request* request, RequestedOutputs* out) {
  uint32_t n = 0;
  DIFFRT_TRITON_TRY(TRITONBACKEND_RequestOutputCount(request, &n));
  RequestedOutputs o;
  if (n == 0) o.images = o.step = o.total = true;
  for (uint32_t i = 0; i < n; ++i) {
    const char* name = nullptr;
    DIFFRT_TRITON_TRY(TRITONBACKEND_RequestOutputName(request, i, &name));
    if (!name) continue;
    if (std::strcmp(name, "IMAGES") == 0) o.images = true;
    else if (std::strcmp(name, "STEP") == 0) o.step = true;
    else if (std::strcmp(name, "TOTAL") == 0) o.total = true;
  }
  *out = o;
  return nullptr;
}

}  // namespace diffrt_triton
