#pragma once
// Receptive-field arithmetic for stacks of convolutions and poolings (the FCN lecture's
// calculator; Araujo et al. 2019, "Computing Receptive Fields of Convolutional Neural
// Networks"). For every layer it gives the jump (distance in input pixels between adjacent
// output units, the cumulative stride), the receptive field (side of the input window one
// output unit sees) and the input position of the first output unit's centre.
//
// Recurrence, starting from j = 1, r = 1, start = input_start:
//   k_eff     = dilation*(k-1) + 1
//   j_out     = j_in * stride
//   r_out     = r_in + (k_eff-1) * j_in
//   start_out = start_in + ((k_eff-1)/2 - padding) * j_in
// Output unit i of a layer is centred on input coordinate `start + i*jump`.

#include <cstdint>
#include <string>
#include <vector>

namespace ostrov::nn {

/// One layer of the stack: a square convolution or pooling window.
struct LayerSpec {
  /// Row label in the table, e.g. "conv1".
  std::string name;
  /// "conv" or "pool" (the arithmetic is the same; other values are rejected).
  std::string kind;
  int64_t kernel = 1;    ///< window side k (>= 1)
  int64_t stride = 1;    ///< stride (>= 1)
  int64_t padding = 0;   ///< padding added on each side (>= 0)
  int64_t dilation = 1;  ///< dilation (>= 1); the effective window is dilation*(k-1) + 1
};

/// The receptive-field arithmetic after one layer.
struct LayerField {
  std::string name;  ///< the layer's LayerSpec::name
  int64_t kernel;    ///< the layer's LayerSpec::kernel
  int64_t stride;    ///< the layer's LayerSpec::stride
  int64_t padding;   ///< the layer's LayerSpec::padding
  int64_t dilation;  ///< the layer's LayerSpec::dilation
  /// Distance in input pixels between adjacent output units (product of the strides so far).
  int64_t jump;
  /// Side in input pixels of the window one output unit sees.
  int64_t receptive_field;
  /// Input coordinate of the centre of output unit 0 (pixel i of the input has centre i when
  /// input_start is 0; may be negative or fractional).
  double start;
};

/// Applies the recurrence above layer by layer; one LayerField per LayerSpec, in order.
/// `input_start` is the coordinate of the input's first pixel centre (0 for pixel indices,
/// 0.5 for the convention where pixel i covers [i, i+1)). Throws c10::Error naming the layer
/// for a kind other than "conv"/"pool", kernel/stride/dilation < 1 or padding < 0.
std::vector<LayerField> receptive_fields(const std::vector<LayerSpec>& layers,
                                         double input_start = 0.0);

/// torchvision's AlexNet `features`: conv1 11/4 p2, pool1 3/2, conv2 5 p2, pool2 3/2,
/// conv3..conv5 3 p1, pool5 3/2 (pool5: receptive field 195, jump 32).
std::vector<LayerSpec> alexnet_layers();

/// torchvision's VGG16 `features`: conv1_1..conv5_3 (3x3, padding 1) with pool1..pool5
/// (2x2, stride 2) after each block (pool5: receptive field 212, jump 32).
std::vector<LayerSpec> vgg16_layers();

/// An aligned text table with a header row and one row per layer, columns
/// `layer kernel stride padding dilation jump rf start`, each line ending in '\n'.
std::string format_receptive_fields(const std::vector<LayerField>& fields);

}  // namespace ostrov::nn
