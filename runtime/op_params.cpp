// Shared params builders (contract in op_params.h). Tested through both executors: tests/dit_parity_test.cpp (CPU)
// and tests/gpu/dit_test.cpp (CUDA vs CPU).
#include "runtime/op_params.h"

namespace diffrt {

PatchEmbedParams patch_embed_params(const PatchEmbedAttrs& a, const ValueShape& x, const void* xp, const void* w,
                                    const void* bias, void* y) {
  PatchEmbedParams p;
  p.x = xp; p.w = w; p.bias = bias; p.y = y;
  p.n = int(x.n); p.h = int(x.h); p.w_in = int(x.w); p.cin = a.cin; p.dim = a.dim; p.patch = a.patch;
  p.pos_embed = a.pos_embed; p.base_size = a.base_size; p.interpolation_scale = a.interpolation_scale;
  return p;
}

UnpatchifyParams unpatchify_params(const UnpatchifyAttrs& a, const ValueShape& x, const void* xp, void* y) {
  UnpatchifyParams p;
  p.x = xp; p.y = y;
  p.n = int(x.n); p.gh = int(x.h); p.gw = int(x.w); p.patch = a.patch; p.c = a.channels;
  return p;
}

void bind_layer_norm_mod(LayerNormParams& p, const LayerNormAttrs& a, const void* mod, const ValueShape& mod_shape,
                         const ValueShape& y, size_t elem_bytes) {
  if (a.shift_offset < 0) return;
  const char* m = static_cast<const char*>(mod);
  p.shift = m + size_t(a.shift_offset) * elem_bytes;
  p.scale = m + size_t(a.scale_offset) * elem_bytes;
  p.mod_ld = mod_shape.c;
  p.rows_per_sample = (long long)(y.numel() / uint64_t(y.c) / uint64_t(y.n));
}

void bind_linear_gate(LinearParams& p, const LinearAttrs& a, const void* gate_src, const ValueShape& gate_shape,
                      const ValueShape& y, size_t elem_bytes) {
  if (a.gate_offset < 0) return;
  p.gate = static_cast<const char*>(gate_src) + size_t(a.gate_offset) * elem_bytes;
  p.gate_ld = gate_shape.c;
  p.rows_per_gate = (long long)(y.numel() / uint64_t(y.c) / uint64_t(y.n));
}

}  // namespace diffrt
