// Elementwise activations of transformer MLPs (CLIP's text encoder: fc1 -> act -> fc2), y = act(x):
//   gelu        x * Phi(x) = 0.5 x erfc(-x / sqrt 2)             (torch F.gelu, exact erf; SD 2's OpenCLIP-H)
//   gelu_tanh   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (F.gelu(approximate="tanh"); "gelu_new")
//   quick_gelu  x * sigmoid(1.702 x)                              (CLIP's QuickGELU; SD 1's ViT-L/14)
// Math in fp32 on the GPU (double in the CPU reference), one rounding to the storage type.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "base/dtype.h"

namespace diffrt {

enum class ActivationKind : uint8_t { Gelu, GeluTanh, QuickGelu };

// "gelu", "gelu_tanh", "quick_gelu"; parse returns false for anything else.
const char* activation_name(ActivationKind k);
bool parse_activation(const std::string& name, ActivationKind* out);

struct ActivationParams {
  const void* x = nullptr;  // x: [count] (dtype)
  void* y = nullptr;        // y: [count] (dtype); may alias x exactly (no partial overlap)
  long long count = 0;      // 0 is a no-op
  ActivationKind kind = ActivationKind::Gelu;
  DType dtype = DType::F32;
};

void activation_ref(const ActivationParams& p);  // CPU reference; dtype must be F32
void activation_cuda(const ActivationParams& p, cudaStream_t stream);

}  // namespace diffrt
