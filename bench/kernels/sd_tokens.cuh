// Token shapes of Stable Diffusion's transformer blocks, shared by the layer_norm and geglu cases.
#pragma once

namespace bench {

// SD 1.x UNet2DConditionModel at 512x512 with CFG (batch 2): tokens per level 64x64, 32x32, 16x16, 8x8 at
// C = 320, 640, 1280, 1280 (LayerNorm) and GEGLU width F = 4C; plus CLIP text encoders (77 tokens, C = 768
// for SD 1.x, 1024 for SD 2.x).
struct TokenShape { const char* name; long long rows; int c; };
const TokenShape kSdTokens[] = {{"T4096x320_B2", 2 * 4096, 320}, {"T1024x640_B2", 2 * 1024, 640},
                                {"T256x1280_B2", 2 * 256, 1280},  {"T64x1280_B2", 2 * 64, 1280}};

}  // namespace bench
