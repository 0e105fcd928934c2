// Tests of ostrov::nn: conv-bn-act blocks, up-sampling, skip fusion, receptive fields.

#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>
#include <torch/nn/functional/padding.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/options/padding.h>
#include <torch/nn/options/upsampling.h>
#include <torch/utils.h>

#include "ostrov/core/compat.h"
#include "ostrov/nn/conv_bn_act.h"
#include "ostrov/nn/fusion.h"
#include "ostrov/nn/receptive_field.h"
#include "ostrov/nn/upsample.h"

#include "catch.h"

namespace F = torch::nn::functional;
using namespace ostrov::nn;

namespace {

// x[..., lo:H-lo, lo:W-lo]
torch::Tensor interior(const torch::Tensor& x, int64_t lo) {
  return x.slice(-2, lo, x.size(-2) - lo).slice(-1, lo, x.size(-1) - lo);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Runs backward on sum(module(x)) and checks that x and every parameter received a gradient.
template <typename Module>
void check_gradients_flow(Module& module, std::vector<int64_t> input_shape) {
  auto x = torch::randn(input_shape, torch::requires_grad());
  module->train();
  auto y = module->forward(x);
  y.pow(2).sum().backward();
  REQUIRE(x.grad().defined());
  REQUIRE(x.grad().abs().sum().item<double>() > 0.0);
  for (const auto& p : module->named_parameters()) {
    INFO("parameter " << p.key());
    REQUIRE(p.value().grad().defined());
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Receptive fields

TEST_CASE("receptive_fields: AlexNet pool5 sees 195 pixels with jump 32", "[nn][receptive]") {
  const auto fields = receptive_fields(alexnet_layers());
  REQUIRE(fields.size() == 8);
  CHECK(fields[0].name == "conv1");
  CHECK(fields[0].receptive_field == 11);
  CHECK(fields[0].jump == 4);
  CHECK(fields[0].start == Approx(3.0));  // (11-1)/2 - 2
  CHECK(fields[1].receptive_field == 19);
  CHECK(fields[3].receptive_field == 67);
  CHECK(fields[3].jump == 16);
  const auto& pool5 = fields.back();
  CHECK(pool5.name == "pool5");
  CHECK(pool5.receptive_field == 195);
  CHECK(pool5.jump == 32);
  CHECK(pool5.start == Approx(31.0));
}

TEST_CASE("receptive_fields: VGG16 pool5 sees 212 pixels with jump 32", "[nn][receptive]") {
  const auto fields = receptive_fields(vgg16_layers());
  REQUIRE(fields.size() == 18);  // 13 convolutions + 5 poolings
  int convs = 0;
  int pools = 0;
  for (const auto& spec : vgg16_layers()) {
    convs += spec.kind == "conv";
    pools += spec.kind == "pool";
  }
  CHECK(convs == 13);
  CHECK(pools == 5);
  CHECK(fields[2].name == "pool1");
  CHECK(fields[2].receptive_field == 6);
  CHECK(fields[2].jump == 2);
  CHECK(fields[13].name == "pool4");
  CHECK(fields[13].receptive_field == 100);
  CHECK(fields[13].jump == 16);
  const auto& pool5 = fields.back();
  CHECK(pool5.name == "pool5");
  CHECK(pool5.receptive_field == 212);
  CHECK(pool5.jump == 32);
  CHECK(pool5.start == Approx(15.5));  // 0.5 * (1 + 2 + 4 + 8 + 16)
}

TEST_CASE("receptive_fields: dilated stack computed by hand", "[nn][receptive]") {
  // conv 3/2 p1:         j=2, r=1+2*1=3,   start=0+(1-1)*1=0
  // conv 3 d2 p2 (k=5):  j=2, r=3+4*2=11,  start=0+(2-2)*2=0
  // pool 2/2:            j=4, r=11+1*2=13, start=0+(0.5-0)*2=1
  // conv 3 d3 (k=7):     j=4, r=13+6*4=37, start=1+(3-0)*4=13
  const std::vector<LayerSpec> layers{
      {"c1", "conv", 3, 2, 1, 1},
      {"c2", "conv", 3, 1, 2, 2},
      {"p1", "pool", 2, 2, 0, 1},
      {"c3", "conv", 3, 1, 0, 3},
  };
  const auto fields = receptive_fields(layers);
  REQUIRE(fields.size() == 4);
  CHECK(fields[0].jump == 2);
  CHECK(fields[0].receptive_field == 3);
  CHECK(fields[0].start == Approx(0.0));
  CHECK(fields[1].jump == 2);
  CHECK(fields[1].receptive_field == 11);
  CHECK(fields[1].start == Approx(0.0));
  CHECK(fields[1].dilation == 2);
  CHECK(fields[2].jump == 4);
  CHECK(fields[2].receptive_field == 13);
  CHECK(fields[2].start == Approx(1.0));
  CHECK(fields[3].jump == 4);
  CHECK(fields[3].receptive_field == 37);
  CHECK(fields[3].start == Approx(13.0));

  // The classic 1-2-4 dilated context module grows the field 3 -> 7 -> 15.
  const auto context = receptive_fields({{"d1", "conv", 3, 1, 1, 1},
                                         {"d2", "conv", 3, 1, 2, 2},
                                         {"d4", "conv", 3, 1, 4, 4}});
  CHECK(context[0].receptive_field == 3);
  CHECK(context[1].receptive_field == 7);
  CHECK(context[2].receptive_field == 15);
  CHECK(context[2].start == Approx(0.0));
  CHECK(context[2].jump == 1);

  // input_start shifts every start.
  const auto shifted = receptive_fields(layers, 0.5);
  CHECK(shifted[3].start == Approx(13.5));
}

TEST_CASE("receptive_fields: invalid layers are rejected with their name", "[nn][receptive]") {
  REQUIRE_THROWS_WITH(receptive_fields({{"relu1", "relu", 1, 1, 0, 1}}),
                      Catch::Contains("relu1") && Catch::Contains("relu"));
  REQUIRE_THROWS_WITH(receptive_fields({{"bad", "conv", 0, 1, 0, 1}}),
                      Catch::Contains("bad") && Catch::Contains("kernel=0"));
  REQUIRE_THROWS_AS(receptive_fields({{"neg", "pool", 2, 2, -1, 1}}), c10::Error);
  CHECK(receptive_fields({}).empty());
}

TEST_CASE("format_receptive_fields: aligned table", "[nn][receptive]") {
  const std::string table = format_receptive_fields(receptive_fields(alexnet_layers()));
  std::istringstream in(table);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  REQUIRE(lines.size() == 9);  // header + 8 layers
  for (const auto& column :
       {"layer", "kernel", "stride", "padding", "dilation", "jump", "rf", "start"}) {
    CHECK(lines[0].find(column) != std::string::npos);
  }
  for (const auto& line : lines) {
    CHECK(line.size() == lines[0].size());
  }
  CHECK(lines[8].rfind("pool5", 0) == 0);
  CHECK(lines[8].find(" 195 ") != std::string::npos);
  CHECK(lines[8].find(" 32 ") != std::string::npos);
  // Right-aligned numbers: the rf column ends at the same place in every row.
  const auto rf_end = lines[0].find(" rf") + 3;
  CHECK(lines[8].substr(rf_end - 3, 3) == "195");
  CHECK(lines[1].substr(rf_end - 2, 2) == "11");
}

// ---------------------------------------------------------------------------------------------
// Up-sampling

TEST_CASE("up-sampling blocks give exactly H*f x W*f, odd sizes included", "[nn][upsample]") {
  torch::NoGradGuard no_grad;
  struct Case {
    int64_t h, w, factor;
  };
  const std::vector<Case> cases{{7, 9, 2}, {5, 5, 8}, {7, 9, 3}, {3, 5, 32},
                                {7, 9, 1}, {1, 1, 4}, {6, 7, 5}};
  for (const auto& c : cases) {
    INFO("input " << c.h << "x" << c.w << " factor " << c.factor);
    const auto x = torch::randn({2, 3, c.h, c.w});
    const std::vector<int64_t> expected{2, 5, c.h * c.factor, c.w * c.factor};
    TransposedUpsample transposed(3, 5, c.factor);
    CHECK(transposed(x).sizes().vec() == expected);
    BilinearConvUpsample bilinear(3, 5, c.factor);
    CHECK(bilinear(x).sizes().vec() == expected);
    PixelShuffleUpsample shuffle(3, 5, c.factor);
    CHECK(shuffle(x).sizes().vec() == expected);
  }
}

TEST_CASE("TransposedUpsample: kernel sizes and padding", "[nn][upsample]") {
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 2, 7, 9});
  SECTION("defaults follow FCN: k = 2f for even f, 2f-1 for odd f") {
    CHECK(TransposedUpsample(2, 2, 2)->kernel_size() == 4);
    CHECK(TransposedUpsample(2, 2, 8)->kernel_size() == 16);
    CHECK(TransposedUpsample(2, 2, 32)->kernel_size() == 64);
    CHECK(TransposedUpsample(2, 2, 3)->kernel_size() == 5);
    CHECK(TransposedUpsample(2, 2, 1)->kernel_size() == 1);
    const auto deconv = TransposedUpsample(2, 2, 8)->deconv;
    CHECK(deconv->options.stride()->at(0) == 8);
    CHECK(ostrov::compat::get<torch::ExpandingArray<2>>(deconv->options.padding())->at(0) == 4);
    CHECK(deconv->options.output_padding()->at(0) == 0);
  }
  SECTION("explicit kernels still give input*factor") {
    for (const auto& [factor, kernel] : std::vector<std::pair<int64_t, int64_t>>{
             {2, 2}, {2, 3}, {4, 2}, {3, 6}, {1, 3}, {4, 7}}) {
      INFO("factor " << factor << " kernel " << kernel);
      TransposedUpsample up(TransposedUpsampleOptions(2, 4, factor).kernel_size(kernel));
      CHECK(up(x).sizes().vec() == std::vector<int64_t>{1, 4, 7 * factor, 9 * factor});
    }
  }
  SECTION("stride 1 with an even kernel has no exact padding") {
    REQUIRE_THROWS_WITH(TransposedUpsample(TransposedUpsampleOptions(2, 2, 1).kernel_size(2)),
                        Catch::Contains("kernel_size=2"));
  }
  SECTION("wrong input channels") {
    TransposedUpsample up(3, 3, 2);
    REQUIRE_THROWS_WITH(up(x), Catch::Contains("[1, 2, 7, 9]"));
  }
}

TEST_CASE("bilinear_kernel matches FCN's get_upsampling_weight", "[nn][upsample]") {
  const auto w = bilinear_kernel(2, 2, 4);
  REQUIRE(w.sizes().vec() == std::vector<int64_t>{2, 2, 4, 4});
  REQUIRE(w.scalar_type() == torch::kFloat);
  const auto og = torch::tensor({0.25f, 0.75f, 0.75f, 0.25f});
  const auto filter = og.unsqueeze(1) * og.unsqueeze(0);
  CHECK(torch::allclose(w[0][0], filter));
  CHECK(torch::allclose(w[1][1], filter));
  CHECK(w[0][1].abs().sum().item<double>() == 0.0);
  CHECK(w[1][0].abs().sum().item<double>() == 0.0);

  const auto odd = bilinear_kernel(1, 1, 5)[0][0];
  const auto og5 = torch::tensor({1.f / 3, 2.f / 3, 1.f, 2.f / 3, 1.f / 3});
  CHECK(torch::allclose(odd, og5.unsqueeze(1) * og5.unsqueeze(0)));

  CHECK(bilinear_kernel(1, 1, 1).item<float>() == 1.0f);

  // in != out: the diagonal of the shared channels.
  const auto rect = bilinear_kernel(3, 2, 4);
  REQUIRE(rect.sizes().vec() == std::vector<int64_t>{3, 2, 4, 4});
  CHECK(torch::allclose(rect[1][1], filter));
  CHECK(rect[2].abs().sum().item<double>() == 0.0);
}

TEST_CASE("TransposedUpsample with bilinear_init up-samples bilinearly in the interior",
          "[nn][upsample]") {
  torch::NoGradGuard no_grad;
  const int64_t h = 6;
  const int64_t w = 7;
  for (const int64_t f : {2, 3, 4, 8}) {
    INFO("factor " << f);
    TransposedUpsample up(TransposedUpsampleOptions(3, 3, f).bilinear_init(true));
    REQUIRE(up->deconv->bias.defined());
    CHECK(up->deconv->bias.abs().sum().item<double>() == 0.0);

    // A constant image stays constant away from the zero-padded border.
    const auto constant = torch::full({1, 3, h, w}, 2.5);
    const auto y_const = up(constant);
    REQUIRE(y_const.sizes().vec() == std::vector<int64_t>{1, 3, h * f, w * f});
    CHECK(max_abs_diff(interior(y_const, f), torch::full_like(interior(y_const, f), 2.5)) <
          1e-5);

    // A linear ramp v = 1 + 0.5*y - 0.25*x is reproduced: output pixel o samples the input at
    // (o + 0.5)/f - 0.5 (align_corners=false).
    const auto iy = torch::arange(h, torch::kFloat).view({h, 1});
    const auto ix = torch::arange(w, torch::kFloat).view({1, w});
    const auto ramp = (1.0 + 0.5 * iy - 0.25 * ix).expand({1, 3, h, w}).contiguous();
    const auto sy = ((torch::arange(h * f, torch::kFloat) + 0.5) / f - 0.5).view({h * f, 1});
    const auto sx = ((torch::arange(w * f, torch::kFloat) + 0.5) / f - 0.5).view({1, w * f});
    const auto expected_ramp = (1.0 + 0.5 * sy - 0.25 * sx).expand({1, 3, h * f, w * f});
    const auto y_ramp = up(ramp);
    CHECK(max_abs_diff(interior(y_ramp, f), interior(expected_ramp, f)) < 1e-4);

    // Any image: equal to bilinear interpolation in the interior, channel by channel.
    const auto x = torch::randn({2, 3, h, w});
    const auto reference = F::interpolate(x, F::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{h * f, w * f})
                                                 .mode(torch::kBilinear)
                                                 .align_corners(false));
    CHECK(max_abs_diff(interior(up(x), f), interior(reference, f)) < 1e-4);
  }

  // Factor 1 (kernel 1) with bilinear init is the identity.
  TransposedUpsample identity(TransposedUpsampleOptions(3, 3, 1).bilinear_init(true));
  const auto x = torch::randn({1, 3, 5, 4});
  CHECK(max_abs_diff(identity(x), x) < 1e-6);
}

TEST_CASE("BilinearConvUpsample interpolates then convolves", "[nn][upsample]") {
  torch::NoGradGuard no_grad;
  BilinearConvUpsample up(BilinearConvUpsampleOptions(2, 2, 2).bias(false));
  REQUIRE(up->conv->options.kernel_size()->at(0) == 3);
  // Make the 3x3 convolution the identity: the block is then plain bilinear interpolation.
  up->conv->weight.zero_();
  up->conv->weight[0][0][1][1] = 1.0;
  up->conv->weight[1][1][1][1] = 1.0;
  const auto x = torch::randn({1, 2, 5, 7});
  const auto reference = F::interpolate(x, F::InterpolateFuncOptions()
                                               .size(std::vector<int64_t>{10, 14})
                                               .mode(torch::kBilinear)
                                               .align_corners(false));
  CHECK(max_abs_diff(up(x), reference) < 1e-5);
}

TEST_CASE("PixelShuffleUpsample with ICNR starts as nearest-neighbour up-sampling",
          "[nn][upsample]") {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const int64_t r = 3;
  PixelShuffleUpsample up(3, 4, r);
  REQUIRE(up->conv->weight.size(0) == 4 * r * r);
  const auto y = up(torch::randn({1, 3, 5, 6}));
  REQUIRE(y.sizes().vec() == std::vector<int64_t>{1, 4, 15, 18});
  // Each r x r block is constant: y equals its top-left samples repeated. The r*r sub-pixel
  // channels share their weights but not their summation order (the GEMM blocks channels),
  // so they agree to float rounding: 1.4e-6 was seen on outputs of magnitude ~1.
  const auto corners = y.slice(2, 0, 15, r).slice(3, 0, 18, r);
  const auto nearest = corners.repeat_interleave(r, 2).repeat_interleave(r, 3);
  CHECK(max_abs_diff(y, nearest) < 1e-5);

  PixelShuffleUpsample plain(PixelShuffleUpsampleOptions(3, 4, r).icnr_init(false));
  const auto y_plain = plain(torch::randn({1, 3, 5, 6}));
  const auto plain_corners = y_plain.slice(2, 0, 15, r).slice(3, 0, 18, r);
  CHECK(max_abs_diff(y_plain,
                     plain_corners.repeat_interleave(r, 2).repeat_interleave(r, 3)) > 1e-3);
}

TEST_CASE("up-sampling blocks pass gradients", "[nn][upsample][grad]") {
  TransposedUpsample transposed(TransposedUpsampleOptions(3, 4, 2).bilinear_init(true));
  check_gradients_flow(transposed, {2, 3, 5, 7});
  BilinearConvUpsample bilinear(3, 4, 2);
  check_gradients_flow(bilinear, {2, 3, 5, 7});
  PixelShuffleUpsample shuffle(3, 4, 2);
  check_gradients_flow(shuffle, {2, 3, 5, 7});
}

// ---------------------------------------------------------------------------------------------
// ConvBnAct

TEST_CASE("ConvBnAct 'same' keeps the size, 'valid' shrinks by dilation*(k-1)", "[nn][conv]") {
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 9, 11});
  for (const int64_t k : {3, 5, 4}) {
    for (const int64_t d : {1, 2}) {
      for (const auto mode : {PaddingMode::kSame, PaddingMode::kSameMirror}) {
        INFO("kernel " << k << " dilation " << d << " padding " << to_string(mode));
        ConvBnAct block(ConvBnActOptions(3, 8, k).dilation(d).padding(mode));
        block->eval();
        CHECK(block(x).sizes().vec() == std::vector<int64_t>{2, 8, 9, 11});
      }
      INFO("kernel " << k << " dilation " << d << " valid");
      ConvBnAct valid(ConvBnActOptions(3, 8, k).dilation(d).padding("valid"));
      valid->eval();
      const int64_t shrink = d * (k - 1);
      CHECK(valid(x).sizes().vec() == std::vector<int64_t>{2, 8, 9 - shrink, 11 - shrink});
    }
  }
  ConvBnAct strided(ConvBnActOptions(3, 8, 3).stride(2));
  strided->eval();
  CHECK(strided(x).sizes().vec() == std::vector<int64_t>{2, 8, 5, 6});
}

TEST_CASE("ConvBnAct mirror padding differs from zero padding only at the border",
          "[nn][conv]") {
  torch::NoGradGuard no_grad;
  for (const auto& [k, d] : std::vector<std::pair<int64_t, int64_t>>{{3, 1}, {5, 1}, {3, 2}}) {
    INFO("kernel " << k << " dilation " << d);
    auto options = ConvBnActOptions(2, 4, k).dilation(d).batch_norm(false).activation("none");
    ConvBnAct zero(ConvBnActOptions(options).padding(PaddingMode::kSame));
    ConvBnAct mirror(ConvBnActOptions(options).padding("mirror"));
    mirror->conv->weight.copy_(zero->conv->weight);
    mirror->conv->bias.copy_(zero->conv->bias);
    const auto x = torch::rand({1, 2, 10, 12}) + 1.0;  // far from zero everywhere
    const auto y_zero = zero(x);
    const auto y_mirror = mirror(x);
    const int64_t pad = d * (k - 1) / 2;
    CHECK(max_abs_diff(interior(y_zero, pad), interior(y_mirror, pad)) < 1e-5);
    CHECK(max_abs_diff(y_zero, y_mirror) > 1e-2);
    // Mirror padding is reflection: the same as reflect-padding by hand, then no padding.
    const auto reflected =
        F::pad(x, F::PadFuncOptions({pad, pad, pad, pad}).mode(torch::kReflect));
    const std::vector<int64_t> stride{1, 1};
    const std::vector<int64_t> no_padding{0, 0};
    const std::vector<int64_t> dilation{d, d};
    const auto by_hand = torch::conv2d(reflected, zero->conv->weight, zero->conv->bias, stride,
                                       no_padding, dilation);
    CHECK(max_abs_diff(y_mirror, by_hand) < 1e-5);
  }
}

TEST_CASE("ConvBnAct children, bias default and activation", "[nn][conv]") {
  ConvBnAct with_bn(4, 8, 3);
  std::vector<std::string> children;
  for (const auto& child : with_bn->named_children()) {
    children.push_back(child.key());
  }
  CHECK(children == std::vector<std::string>{"conv", "bn"});
  CHECK_FALSE(with_bn->conv->bias.defined());  // bias defaults to !batch_norm
  CHECK(with_bn->named_parameters().contains("conv.weight"));
  CHECK(with_bn->named_parameters().contains("bn.weight"));
  CHECK(with_bn->named_buffers().contains("bn.running_mean"));

  ConvBnAct without_bn(ConvBnActOptions(4, 8, 3).batch_norm(false));
  CHECK(without_bn->named_children().size() == 1);
  CHECK(without_bn->bn.is_empty());
  CHECK(without_bn->conv->bias.defined());

  ConvBnAct forced_bias(ConvBnActOptions(4, 8, 3).bias(true));
  CHECK(forced_bias->conv->bias.defined());

  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 4, 6, 6});
  ConvBnAct relu(ConvBnActOptions(4, 8, 3).batch_norm(false));
  CHECK(relu(x).min().item<double>() >= 0.0);
  ConvBnAct leaky(ConvBnActOptions(4, 8, 3).batch_norm(false).activation("leaky_relu"));
  CHECK(leaky(x).min().item<double>() < 0.0);
  ConvBnAct linear(ConvBnActOptions(4, 8, 3).batch_norm(false).activation(Activation::kNone));
  CHECK(linear(x).min().item<double>() < 0.0);

  // clone() gives an independent copy with the same weights.
  with_bn->eval();
  auto copy = std::dynamic_pointer_cast<ConvBnActImpl>(with_bn->clone());
  REQUIRE(copy);
  CHECK(max_abs_diff(copy->forward(x), with_bn(x)) < 1e-6);
  CHECK(copy->conv->weight.data_ptr() != with_bn->conv->weight.data_ptr());
}

TEST_CASE("ConvBnAct errors name the values", "[nn][conv]") {
  REQUIRE_THROWS_WITH(padding_mode_from_string("full"), Catch::Contains("full"));
  REQUIRE_THROWS_WITH(activation_from_string("gelu"), Catch::Contains("gelu"));
  REQUIRE_THROWS_WITH(ConvBnAct(ConvBnActOptions(6, 8, 3).groups(4)),
                      Catch::Contains("groups=4"));
  ConvBnAct block(3, 8, 3);
  REQUIRE_THROWS_WITH(block(torch::randn({1, 4, 8, 8})), Catch::Contains("[1, 4, 8, 8]"));
  ConvBnAct wide(ConvBnActOptions(3, 8, 7).padding("mirror"));
  REQUIRE_THROWS_WITH(wide(torch::randn({1, 3, 3, 3})), Catch::Contains("[1, 3, 3, 3]"));
}

TEST_CASE("ConvBnAct passes gradients", "[nn][conv][grad]") {
  ConvBnAct block(ConvBnActOptions(3, 4, 3).padding("mirror"));
  check_gradients_flow(block, {2, 3, 6, 7});
  ConvBnAct dilated(ConvBnActOptions(3, 4, 3).dilation(2).batch_norm(false).activation(
      Activation::kLeakyReLU));
  check_gradients_flow(dilated, {2, 3, 6, 7});
}

// ---------------------------------------------------------------------------------------------
// Fusion

TEST_CASE("center_crop and pad_to centre with the extra pixel at the bottom/right",
          "[nn][fusion]") {
  const auto x = torch::arange(2 * 7 * 8, torch::kFloat).view({1, 2, 7, 8});
  SECTION("crop by one pixel keeps the top-left") {
    const auto c = center_crop(x, 6, 7);
    REQUIRE(c.sizes().vec() == std::vector<int64_t>{1, 2, 6, 7});
    CHECK(torch::equal(c, x.slice(2, 0, 6).slice(3, 0, 7)));
  }
  SECTION("crop by three and four pixels") {
    const auto c = center_crop(x, 4, 4);
    CHECK(torch::equal(c, x.slice(2, 1, 5).slice(3, 2, 6)));
  }
  SECTION("same size is a no-op") { CHECK(torch::equal(center_crop(x, 7, 8), x)); }
  SECTION("pad by one pixel adds a zero row and column at the bottom/right") {
    const auto p = pad_to(x, 8, 9);
    REQUIRE(p.sizes().vec() == std::vector<int64_t>{1, 2, 8, 9});
    CHECK(torch::equal(p.slice(2, 0, 7).slice(3, 0, 8), x));
    CHECK(p.select(2, 7).abs().sum().item<double>() == 0.0);
    CHECK(p.select(3, 8).abs().sum().item<double>() == 0.0);
    CHECK(torch::equal(center_crop(p, 7, 8), x));
  }
  SECTION("pad by three pixels: one above, two below") {
    const auto p = pad_to(x, 10, 8);
    CHECK(torch::equal(p.slice(2, 1, 8), x));
    CHECK(p.slice(2, 0, 1).abs().sum().item<double>() == 0.0);
    CHECK(p.slice(2, 8, 10).abs().sum().item<double>() == 0.0);
  }
  SECTION("mixed: crop one dimension, pad the other") {
    const auto m = crop_or_pad(x, 6, 9);
    REQUIRE(m.sizes().vec() == std::vector<int64_t>{1, 2, 6, 9});
    CHECK(torch::equal(m.slice(3, 0, 8), x.slice(2, 0, 6)));
  }
  SECTION("wrong direction is an error with the sizes") {
    REQUIRE_THROWS_WITH(center_crop(x, 8, 8), Catch::Contains("[1, 2, 7, 8]"));
    REQUIRE_THROWS_WITH(pad_to(x, 6, 8), Catch::Contains("[1, 2, 7, 8]"));
  }
}

TEST_CASE("fuse_sum crops or pads the skip to the decoder's size", "[nn][fusion]") {
  const auto a = torch::randn({2, 3, 8, 8});
  SECTION("skip one pixel larger (odd input size)") {
    const auto b = torch::randn({2, 3, 9, 9});
    const auto y = fuse_sum(a, b);
    REQUIRE(y.sizes() == a.sizes());
    CHECK(torch::allclose(y, a + b.slice(2, 0, 8).slice(3, 0, 8)));
  }
  SECTION("skip one pixel smaller") {
    const auto b = torch::randn({2, 3, 7, 7});
    const auto y = fuse_sum(a, b);
    REQUIRE(y.sizes() == a.sizes());
    CHECK(torch::allclose(y.slice(2, 0, 7).slice(3, 0, 7), a.slice(2, 0, 7).slice(3, 0, 7) + b));
    CHECK(torch::allclose(y.select(2, 7), a.select(2, 7)));
  }
  SECTION("FCN-style crop of a larger score map") {
    const auto b = torch::randn({2, 3, 18, 18});
    CHECK(torch::allclose(fuse_sum(a, b), a + b.slice(2, 5, 13).slice(3, 5, 13)));
  }
  SECTION("mismatched channels name both sizes") {
    const auto b = torch::randn({2, 4, 8, 8});
    REQUIRE_THROWS_WITH(fuse_sum(a, b),
                        Catch::Contains("[2, 3, 8, 8]") && Catch::Contains("[2, 4, 8, 8]"));
  }
  SECTION("mismatched batch names both sizes") {
    const auto b = torch::randn({1, 3, 9, 9});
    REQUIRE_THROWS_WITH(fuse_sum(a, b),
                        Catch::Contains("[2, 3, 8, 8]") && Catch::Contains("[1, 3, 9, 9]"));
  }
}

TEST_CASE("fuse_concat stacks a's channels then the cropped skip", "[nn][fusion]") {
  SECTION("U-Net: encoder 136x136 cropped to the decoder's 104x104") {
    const auto a = torch::randn({1, 4, 104, 104});
    const auto b = torch::randn({1, 2, 136, 136});
    const auto y = fuse_concat(a, b);
    REQUIRE(y.sizes().vec() == std::vector<int64_t>{1, 6, 104, 104});
    CHECK(torch::equal(y.slice(1, 0, 4), a));
    CHECK(torch::equal(y.slice(1, 4, 6), b.slice(2, 16, 120).slice(3, 16, 120)));
  }
  SECTION("sizes one pixel apart both ways") {
    const auto a = torch::randn({2, 3, 8, 9});
    const auto b = torch::randn({2, 5, 9, 8});
    const auto y = fuse_concat(a, b);
    REQUIRE(y.sizes().vec() == std::vector<int64_t>{2, 8, 8, 9});
    CHECK(torch::equal(y.slice(1, 3, 8).slice(3, 0, 8), b.slice(2, 0, 8)));
    CHECK(y.slice(1, 3, 8).select(3, 8).abs().sum().item<double>() == 0.0);
  }
  SECTION("batch mismatch") {
    REQUIRE_THROWS_WITH(fuse_concat(torch::randn({2, 3, 8, 8}), torch::randn({3, 3, 8, 8})),
                        Catch::Contains("[3, 3, 8, 8]"));
  }
}

TEST_CASE("fusion passes gradients to both inputs", "[nn][fusion][grad]") {
  const auto a = torch::randn({1, 2, 6, 6}, torch::requires_grad());
  const auto b = torch::randn({1, 2, 7, 5}, torch::requires_grad());
  (fuse_sum(a, b).pow(2).sum() + fuse_concat(a, b).sum()).backward();
  REQUIRE(a.grad().defined());
  REQUIRE(b.grad().defined());
  // The skip's cropped-away last row gets no gradient; the rest does.
  CHECK(b.grad().select(2, 6).abs().sum().item<double>() == 0.0);
  CHECK(b.grad().slice(2, 0, 6).abs().min().item<double>() > 0.0);
}

TEST_CASE("ConvBnAct in eval mode folds the batch norm into the convolution", "[nn][conv]") {
  torch::manual_seed(3);
  for (const bool bias : {false, true}) {
    for (const auto stride : {1, 2}) {
      INFO("bias " << bias << ", stride " << stride);
      ConvBnAct block(ConvBnActOptions(5, 7, 3).stride(stride).bias(bias).activation(Activation::kNone));
      {
        torch::NoGradGuard no_grad;  // statistics and affine parameters far from identity
        block->bn->running_mean.uniform_(-1, 1);
        block->bn->running_var.uniform_(0.5, 2.0);
        block->bn->weight.uniform_(0.5, 1.5);
        block->bn->bias.uniform_(-1, 1);
      }
      block->eval();
      const auto x = torch::randn({2, 5, 9, 11});
      const auto folded = block(x);
      const auto reference = block->bn(block->conv(x));  // the two-pass computation
      CHECK(max_abs_diff(ostrov::nn::conv_bn(block->conv, block->bn, x), reference) <
            1e-5 * (1 + reference.abs().max().item<double>()));
      CHECK(max_abs_diff(folded, reference) < 1e-5 * (1 + reference.abs().max().item<double>()));
      // Gradients reach the convolution and the batch norm's affine parameters as unfolded.
      folded.square().sum().backward();
      const auto g_conv = block->conv->weight.grad().clone(), g_gamma = block->bn->weight.grad().clone();
      block->zero_grad();
      reference.square().sum().backward();
      CHECK(max_abs_diff(g_conv, block->conv->weight.grad()) < 1e-3 * (1 + g_conv.abs().max().item<double>()));
      CHECK(max_abs_diff(g_gamma, block->bn->weight.grad()) < 1e-3 * (1 + g_gamma.abs().max().item<double>()));
      // Training mode still normalises with the batch statistics.
      block->train();
      const auto trained = block(x);
      CHECK(trained.mean({0, 2, 3}).abs().max().item<double>() < 0.1 + block->bn->bias.abs().max().item<double>());
    }
  }
}
