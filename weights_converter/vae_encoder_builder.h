// The encoder half of a diffusers AutoencoderKL (diffusers 0.27.2 `Encoder` + `quant_conv`): the graph
//   x (images in [-1, 1]) -> encoder.conv_in (3x3) -> encoder.down_blocks (DownEncoderBlock2D: layers_per_block
//   ResnetBlock2D without time embedding, GroupNorm eps 1e-6; every level but the last ends with Downsample2D:
//   zero-pad (left 0, right 1, top 0, bottom 1), 3x3 conv stride 2, so odd sizes floor) -> encoder.mid_block
//   (resnet, 1-head self-attention with GroupNorm eps 1e-6 and residual, resnet; the attention only when
//   mid_block_add_attention) -> encoder.conv_norm_out + SiLU -> encoder.conv_out (3x3, 2*latent_channels:
//   double_z) -> quant_conv (1x1, when use_quant_conv)
// Graph input "sample" [N,H,W,in_channels] (no timestep, any H and W >= 2^(levels-1)); output "out"
// [N, floor(H/2^(levels-1)), floor(W/2^(levels-1)), 2*latent_channels] NHWC = the posterior's parameters
// (channels [0, L): mean; [L, 2L): raw logvar). DiagonalGaussianDistribution (clamp, sample, scaling factor) is
// the runtime's (runtime/vae_encode.h), not part of the graph. Stored tensor names are "vae.<diffusers name>",
// beside the decoder's in the same model file.
#pragma once
#include <map>
#include <string>

#include "weights_converter/vae_decoder_builder.h"

namespace diffrt {

// Whether `weights` holds any encoder tensor ("encoder.*"): VAE checkpoints stripped to their decoder have none
// (then the converter stores the decoder alone and says so).
bool has_vae_encoder_weights(const std::map<std::string, SafeTensor>& weights);

// `strict`: unexpected tensors of the encoder side (encoder.*, quant_conv.*) are errors, else warnings; the
// decoder side is the decoder builder's. Error(Unsupported) for down block types other than DownEncoderBlock2D.
BuiltModel build_vae_encoder(const AutoencoderKLConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                             DType dtype, bool strict, const std::string& origin);
Graph build_vae_encoder_graph(const AutoencoderKLConfig& cfg);
// The checkpoint tensors (diffusers names, without the "vae." prefix) the encoder needs.
std::map<std::string, TensorShape> vae_encoder_expected_tensors(const AutoencoderKLConfig& cfg);

}  // namespace diffrt
