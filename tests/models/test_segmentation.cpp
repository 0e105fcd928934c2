// Segmentation models: output size equals input size for odd and tiny sizes, gradients reach
// every parameter, geometry (flip equivariance of U-Net's padding/cropping, FCN variants
// agreeing when their skip scores are zero, PSPNet's dilation), the paper's FC-DenseNet sizes,
// and ostrov::models::build's configs and errors.
#include "catch.h"

#include <array>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/alexnet.h"
#include "ostrov/models/build.h"
#include "ostrov/models/instance/build.h"
#include "ostrov/models/instance/deep_coloring.h"
#include "ostrov/models/instance/deep_watershed.h"
#include "ostrov/models/instance/ssd_mask.h"
#include "ostrov/models/instance/unet_border.h"
#include "ostrov/losses/mask.h"
#include "ostrov/losses/watershed.h"
#include "ostrov/ops/instance.h"
#include "ostrov/losses/halo.h"
#include "ostrov/models/segmentation/fc_densenet.h"
#include "ostrov/models/segmentation/fcn.h"
#include "ostrov/models/segmentation/padding.h"
#include "ostrov/models/segmentation/pspnet.h"
#include "ostrov/models/segmentation/resnet_unet.h"
#include "ostrov/models/segmentation/unet.h"
#include "ostrov/nn/receptive_field.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;
using nlohmann::json;

namespace {

at::Tensor random_image(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed = 1) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({n, c, h, w}, gen);
}

// Every parameter receives a gradient and none of them is all zero. The loss weights the
// logits randomly: a plain sum would give batch-normalised layers a zero gradient.
void check_gradients(torch::nn::Module& module,
                     const std::function<at::Tensor(const at::Tensor&)>& loss_of,
                     const at::Tensor& x) {
  module.train();
  module.zero_grad();
  const auto loss = loss_of(x);
  REQUIRE(loss.dim() == 0);
  loss.backward();
  size_t checked = 0;
  for (const auto& p : module.named_parameters()) {
    INFO(p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(at::isfinite(p.value().grad()).all().item<bool>());
    CHECK(p.value().grad().abs().sum().item<double>() > 0.0);
    ++checked;
  }
  CHECK(checked > 0);
}

at::Tensor weighted_sum(const at::Tensor& logits, uint64_t seed = 7) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return (logits * at::randn(logits.sizes(), gen)).sum();
}

// Makes every conv kernel of `module` symmetric under a left-right flip.
void symmetrise_width(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters()) {
    if (p.value().dim() == 4) {
      p.value().copy_((p.value() + p.value().flip({3})) / 2);
    }
  }
}

int64_t parameter_count(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) {
    n += p.numel();
  }
  return n;
}

void copy_parameters(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto target = to.named_parameters();
  for (const auto& p : from.named_parameters()) {
    if (auto* t = target.find(p.key())) {
      if (t->sizes() == p.value().sizes()) {
        t->copy_(p.value());
      }
    }
  }
}

}  // namespace

TEST_CASE("pad_to_multiple centres the image and crop_to_input undoes it", "[models][segmentation]") {
  const auto x = random_image(1, 2, 5, 7);
  const auto p = models::pad_to_multiple(x, 8, models::InputPadding::kReflect);
  CHECK(p.tensor.sizes() == at::IntArrayRef({1, 2, 8, 8}));
  CHECK(p.top == 1);  // 3 rows: 1 above, 2 below
  CHECK(p.left == 0);
  CHECK(at::equal(models::crop_to_input(p.tensor, p), x));
  // Reflection: the row above the image is the image's second row.
  CHECK(at::equal(p.tensor.select(2, 0).narrow(2, 0, 7), x.select(2, 1)));
  // 8k+1 sizes and margins larger than the image (mirrored repeatedly).
  const auto q = models::pad_to_multiple(x, 8, models::InputPadding::kZero, 1, 9);
  CHECK(q.tensor.sizes() == at::IntArrayRef({1, 2, 9, 9}));
  CHECK(q.tensor.select(2, 0).abs().sum().item<double>() == 0.0);
  const auto big = models::pad_input(x, 20, 13, 30, 1, models::InputPadding::kReflect);
  CHECK(big.tensor.sizes() == at::IntArrayRef({1, 2, 38, 38}));
  CHECK(at::equal(models::crop_to_input(big.tensor, big), x));
  const auto one = models::pad_input(x.narrow(2, 0, 1), 3, 3, 0, 0, models::InputPadding::kReflect);
  CHECK(one.tensor.size(2) == 7);
  CHECK_THROWS_WITH(models::input_padding_from_string("wrap"), Contains("wrap"));
}

TEST_CASE("U-Net keeps odd input sizes in every padding and up-sampling mode", "[models][segmentation]") {
  torch::NoGradGuard no_grad;
  const auto x = random_image(1, 1, 67, 93);
  for (const std::string padding : {"same", "mirror", "valid"}) {
    for (const std::string up : {"transposed", "bilinear"}) {
      INFO(padding << " " << up);
      models::UNet net(models::UNetOptions(5).in_channels(1).depth(3).base_width(4)
                           .padding(padding).upsampling(up));
      net->eval();
      CHECK(net->forward(x).sizes() == at::IntArrayRef({1, 5, 67, 93}));
      CHECK(net->forward(x.narrow(2, 0, 1).narrow(3, 0, 2)).sizes() ==
            at::IntArrayRef({1, 5, 1, 2}));
    }
  }
  models::UNet net(models::UNetOptions(5).in_channels(1).depth(2).base_width(4));
  CHECK_THROWS_WITH(net->forward(random_image(1, 3, 8, 8)),
                    Contains("[N,1,H,W]") && Contains("[1, 3, 8, 8]"));
  CHECK_THROWS_WITH(models::UNet(models::UNetOptions(5).depth(0)), Contains("depth"));
}

TEST_CASE("U-Net's padding and cropping keep it aligned with its input (flip equivariance)", "[models][segmentation]") {
  // With left-right symmetric kernels the network commutes with a horizontal flip, provided
  // the padding and the crops (the encoder crop of valid mode included) are placed
  // symmetrically; a misplaced margin or crop breaks the equality. Widths are chosen where
  // the added margins are equal on both sides: valid, depth 2: margin 6*4-4 = 20 on the left,
  // 20 + (u0 - W) on the right with u0 = 4b - 12 the output side, u0 = 28 for b = 10, so W = 28;
  // same, depth 3: 60 -> 64 adds 2 + 2.
  torch::NoGradGuard no_grad;
  struct Case {
    std::string padding;
    int64_t depth;
    int64_t width;
  };
  for (const Case& c : {Case{"valid", 2, 28}, Case{"same", 3, 60}, Case{"mirror", 3, 60}}) {
    for (const std::string up : {"transposed", "bilinear"}) {
      INFO(c.padding << " " << up);
      models::UNet net(models::UNetOptions(3).depth(c.depth).base_width(4).padding(c.padding)
                           .upsampling(up));
      symmetrise_width(*net);
      net->eval();
      const auto x = random_image(1, 3, 20, c.width);
      const auto y = net->forward(x);
      // A network whose output does not depend on its input would pass both checks below.
      REQUIRE(y.std().item<double>() > 0.05);
      const auto y_flipped = net->forward(x.flip({3}));
      CHECK(at::allclose(y_flipped, y.flip({3}), 1e-4, 1e-5));
      // Control: shifting the input by one column changes the output (the check can fail).
      const auto shifted = net->forward(at::cat({x.narrow(3, 1, c.width - 1), x.narrow(3, 0, 1)}, 3));
      CHECK_FALSE(at::allclose(shifted.flip({3}), y_flipped, 1e-4, 1e-5));
    }
  }
}

TEST_CASE("U-Net gradients reach every parameter", "[models][segmentation]") {
  models::UNet net(models::UNetOptions(3).depth(2).base_width(4).padding("valid"));
  check_gradients(*net, [&](const at::Tensor& x) { return weighted_sum(net->forward(x)); },
                  random_image(2, 3, 19, 23));
}

TEST_CASE("FCN-32s/16s/8s over AlexNet keep odd input sizes", "[models][segmentation]") {
  torch::NoGradGuard no_grad;
  for (const std::string variant : {"32s", "16s", "8s"}) {
    INFO(variant);
    models::FCN net(models::FCNOptions(4).variant(variant).fc_channels(16));
    net->eval();
    CHECK(net->input_margin() == 111);
    CHECK(net->forward(random_image(1, 3, 67, 93)).sizes() == at::IntArrayRef({1, 4, 67, 93}));
    CHECK(net->forward(random_image(1, 3, 1, 33)).sizes() == at::IntArrayRef({1, 4, 1, 33}));
  }
  models::FCN net(models::FCNOptions(4).variant("8s").fc_channels(8));
  net->eval();
  for (const int64_t side : {31, 32, 64, 65, 97}) {
    INFO(side);
    CHECK(net->forward(random_image(1, 3, side, 130 - side)).sizes() ==
          at::IntArrayRef({1, 4, side, 130 - side}));
  }
  CHECK_THROWS_WITH(net->forward(random_image(1, 4, 40, 40)), Contains("[N,3,H,W]"));
  CHECK_THROWS_WITH(models::FCN(models::FCNOptions(4).variant("16s").skip16_stage("relu1")),
                    Contains("relu1") && Contains("stride 4"));
  CHECK_THROWS_WITH(models::FCNOptions(4).variant("4s"), Contains("4s"));
}

TEST_CASE("FCN's features are AlexNet's: torchvision keys, shapes and stages", "[models][segmentation]") {
  models::AlexNet alexnet;
  models::FCN fcn(models::FCNOptions(2).fc_channels(4));
  std::vector<std::pair<std::string, std::vector<int64_t>>> ours;
  std::vector<std::pair<std::string, std::vector<int64_t>>> theirs;
  for (const auto& p : fcn->features->named_parameters()) {
    ours.emplace_back(p.key(), p.value().sizes().vec());
  }
  for (const auto& p : alexnet->features->named_parameters()) {
    theirs.emplace_back(p.key(), p.value().sizes().vec());
  }
  CHECK(ours == theirs);
  CHECK(fcn->features->size() == alexnet->features->size());
  // Every stride-16 and stride-8 stage can be a skip, with AlexNet's channel count.
  for (const std::string stage : {"pool2", "relu3", "relu4", "relu5"}) {
    models::FCN net(models::FCNOptions(2).variant("16s").fc_channels(4).skip16_stage(stage));
    CHECK(net->score_skip16->weight.size(1) == alexnet->stage_channels(stage));
  }
  for (const std::string stage : {"pool1", "relu2"}) {
    models::FCN net(models::FCNOptions(2).variant("8s").fc_channels(4).skip8_stage(stage));
    CHECK(net->score_skip8->weight.size(1) == alexnet->stage_channels(stage));
  }
  CHECK_THROWS_WITH(models::FCN(models::FCNOptions(2).variant("16s").skip16_stage("conv5")),
                    Contains("conv5") && Contains("relu5"));
}

TEST_CASE("FCN variants agree while their skip scores are zero (aligned up-sampling and crops)", "[models][segmentation]") {
  // The skip score layers start at zero, and a bilinear x2 followed by a bilinear x16 (or x2,
  // x2, x8) interpolates the same piecewise-linear function as one x32 when the fine grids
  // are nested. So with shared weights the three variants give the same logits on the whole
  // image exactly when every up-sampling and crop offset puts score unit i at the same pixel.
  torch::NoGradGuard no_grad;
  models::FCN fcn32(models::FCNOptions(3).variant("32s").fc_channels(8));
  models::FCN fcn16(models::FCNOptions(3).variant("16s").fc_channels(8));
  models::FCN fcn8(models::FCNOptions(3).variant("8s").fc_channels(8));
  copy_parameters(*fcn32, *fcn16);
  copy_parameters(*fcn32, *fcn8);
  for (auto* m : {fcn32.get(), fcn16.get(), fcn8.get()}) {
    m->eval();
  }
  const auto x = random_image(1, 3, 45, 70);
  const auto y32 = fcn32->forward(x);
  CHECK(y32.abs().max().item<double>() > 0.0);
  CHECK(at::allclose(fcn16->forward(x), y32, 1e-4, 1e-5));
  CHECK(at::allclose(fcn8->forward(x), y32, 1e-4, 1e-5));
  // Once the skip scores are non-zero the variants differ (the check above can fail).
  fcn8->score_skip8->weight.fill_(0.01);
  CHECK_FALSE(at::allclose(fcn8->forward(x), y32, 1e-4, 1e-5));
}

TEST_CASE("FCN logits at score-unit centres equal the score maps (margin, skip and crop offsets)", "[models][segmentation]") {
  // Score unit i is centred on padded pixel 111 + 32 i and the image starts at padded pixel
  // 111, so image pixel 32 i is unit i's centre, where every bilinear up-sampling passes the
  // coarse value through unchanged (weight 1 at a knot, 0 at the neighbouring knots). There
  // the 8s logits are score_fr[i] + score_skip16[2 i + 6] + score_skip8[4 i + 13]: pool2 unit
  // v is centred on 15 + 16 v = 111 + 16 * 2i for v = 2i + 6, pool1 unit w on 7 + 8 w = 111 +
  // 8 * 4i for w = 4i + 13. The maps are recomputed here from the same padding.
  torch::NoGradGuard no_grad;
  models::FCN net(models::FCNOptions(3).variant("8s").fc_channels(8));
  net->eval();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  net->score_skip16->weight.copy_(at::randn(net->score_skip16->weight.sizes(), gen) * 0.1);
  net->score_skip8->weight.copy_(at::randn(net->score_skip8->weight.sizes(), gen) * 0.1);
  const auto x = random_image(1, 3, 97, 70);
  const auto logits = net->forward(x);

  const int64_t hp = net->padded_side(x.size(2));
  const int64_t wp = net->padded_side(x.size(3));
  auto y = models::pad_input(x, 111, hp - 111 - x.size(2), 111, wp - 111 - x.size(3),
                             models::InputPadding::kReflect)
               .tensor;
  std::vector<at::Tensor> outputs;
  for (auto& module : *net->features) {
    y = module.forward(y);
    outputs.push_back(y);
  }
  const auto scores = net->score_fr->forward(
      at::relu(net->fc7->forward(at::relu(net->fc6->forward(outputs[12])))));
  const auto skip16 = net->score_skip16->forward(outputs[5]);  // pool2
  const auto skip8 = net->score_skip8->forward(outputs[2]);    // pool1
  int64_t checked = 0;
  for (int64_t i = 0; 32 * i < x.size(2); ++i) {
    for (int64_t j = 0; 32 * j < x.size(3); ++j) {
      const auto expected = scores.select(2, i).select(2, j) +
                            skip16.select(2, 2 * i + 6).select(2, 2 * j + 6) +
                            skip8.select(2, 4 * i + 13).select(2, 4 * j + 13);
      const auto actual = logits.select(2, 32 * i).select(2, 32 * j);
      INFO(i << "," << j << ": " << actual << " vs " << expected);
      CHECK(at::allclose(actual, expected, 1e-4, 1e-5));
      ++checked;
    }
  }
  CHECK(checked == 4 * 3);
}

TEST_CASE("FCN gradients reach every parameter", "[models][segmentation]") {
  models::FCN net(models::FCNOptions(3).variant("8s").fc_channels(8).dropout(0.1));
  check_gradients(*net, [&](const at::Tensor& x) { return weighted_sum(net->forward(x)); },
                  random_image(2, 3, 33, 41));
}

TEST_CASE("FC-DenseNet 56/67/103 have the paper's sizes and keep odd input sizes", "[models][segmentation]") {
  // Jégou et al. 2017, table 2 (11 CamVid classes): FC-DenseNet67 3.5M and FC-DenseNet103 9.4M
  // parameters, counted as the reference Lasagne code does (batch-norm mean and inv_std
  // included: 2 more numbers per normalised channel). FC-DenseNet56 as described (growth 12, 4
  // layers per block) has 1.38M trainable + 0.02M statistics = 1.40M, not the table's 1.5M, so
  // only the structural ratio is checked for it: 56 has fewer parameters than 67.
  const auto paper_count = [](torch::nn::Module& net) {
    double n = static_cast<double>(parameter_count(net));
    for (const auto& b : net.named_buffers()) {
      if (b.key().find("running_") != std::string::npos) {
        n += static_cast<double>(b.value().numel());
      }
    }
    return n / 1e6;
  };
  models::FCDenseNet net56(models::FCDenseNetOptions(11).depth(56));
  models::FCDenseNet net67(models::FCDenseNetOptions(11).depth(67));
  models::FCDenseNet net103(models::FCDenseNetOptions(11).depth(103));
  CHECK(std::abs(paper_count(*net67) - 3.5) < 0.05);
  CHECK(std::abs(paper_count(*net103) - 9.4) < 0.05);
  CHECK(paper_count(*net56) < 0.5 * paper_count(*net67));
  CHECK(net103->down_blocks->size() == 5);
  // Channels into the classifier: skip 1 (48 + 4*12) + up-sampled new maps of the previous
  // block (4*12) + the last block's new maps (4*12) = 192 for 56; the paper's table 1 gives
  // m = 256 for 103 (112 + 5*16 + 4*16).
  CHECK(net56->head->weight.size(1) == 192);
  CHECK(net103->head->weight.size(1) == 256);
  torch::NoGradGuard no_grad;
  models::FCDenseNet small(models::FCDenseNetOptions(4).growth_rate(4).first_channels(8)
                               .layers_per_block(std::vector<int64_t>{2, 2, 3, 2, 2}));
  small->eval();
  CHECK(small->forward(random_image(1, 3, 67, 93)).sizes() == at::IntArrayRef({1, 4, 67, 93}));
  CHECK(small->forward(random_image(1, 3, 1, 1)).sizes() == at::IntArrayRef({1, 4, 1, 1}));
  models::FCDenseNet paper56(models::FCDenseNetOptions(4).depth(56));
  paper56->eval();
  CHECK(paper56->forward(random_image(1, 3, 35, 41)).sizes() == at::IntArrayRef({1, 4, 35, 41}));
  CHECK_THROWS_WITH(models::FCDenseNet(models::FCDenseNetOptions(4).depth(57)), Contains("57"));
  CHECK_THROWS_WITH(models::FCDenseNet(models::FCDenseNetOptions(4).layers_per_block(
                        std::vector<int64_t>{2, 2})),
                    Contains("odd"));
}

TEST_CASE("FC-DenseNet gradients reach every parameter", "[models][segmentation]") {
  models::FCDenseNet net(models::FCDenseNetOptions(3).growth_rate(3).first_channels(6)
                             .layers_per_block(std::vector<int64_t>{2, 3, 2}));
  check_gradients(*net, [&](const at::Tensor& x) { return weighted_sum(net->forward(x)); },
                  random_image(2, 3, 13, 17));
}

TEST_CASE("PSPNet on a dilated ResNet-18 keeps odd sizes and has stride 8", "[models][segmentation]") {
  torch::NoGradGuard no_grad;
  models::PSPNet net(models::PSPNetOptions(4).head_channels(32).aux_channels(16));
  net->eval();
  // Output stride 8 by dilation: a 65x65 input gives 9x9 maps in layer2, layer3 and layer4.
  const auto stages = net->backbone->forward_features(random_image(1, 3, 65, 65));
  CHECK(stages["layer2"].sizes() == at::IntArrayRef({1, 128, 9, 9}));
  CHECK(stages["layer4"].sizes() == at::IntArrayRef({1, 512, 9, 9}));
  CHECK(net->backbone->named_parameters().find("fc.weight") == nullptr);
  const auto x = random_image(1, 3, 67, 93);
  const auto out = net->forward_with_aux(x);
  CHECK(out.main.sizes() == at::IntArrayRef({1, 4, 67, 93}));
  CHECK(out.aux.sizes() == at::IntArrayRef({1, 4, 67, 93}));
  CHECK(out.aux_weight == 0.4);
  CHECK(at::allclose(net->forward(x), out.main));
  CHECK(net->forward(random_image(1, 3, 2, 3)).sizes() == at::IntArrayRef({1, 4, 2, 3}));

  // B1 + MAX, no auxiliary head, no dimension reduction (the paper's ablations).
  models::PSPNet b1(models::PSPNetOptions(4).bins({1}).pooling("max").aux(false)
                        .reduce_dimension(false).head_channels(16));
  b1->eval();
  const auto plain = b1->forward_with_aux(x);
  CHECK(plain.main.sizes() == at::IntArrayRef({1, 4, 67, 93}));
  CHECK_FALSE(plain.aux.defined());
  CHECK(plain.aux_weight == 0.0);

  // A clone (data-parallel replica) is the same network: no fc, still dilated.
  auto copy = std::dynamic_pointer_cast<models::PSPNetImpl>(net->clone());
  REQUIRE(copy != nullptr);
  CHECK(at::allclose(copy->forward(x), net->forward(x)));
  CHECK(copy->named_parameters().size() == net->named_parameters().size());
  CHECK(models::as_segmentation_network(copy)->num_classes() == 4);

  net->train();
  CHECK_THROWS_WITH(net->forward(x), Contains("batch of 1"));
  CHECK_THROWS_WITH(net->forward(random_image(1, 1, 9, 9)), Contains("[N,3,H,W]"));
  CHECK_THROWS_WITH(models::PSPNet(models::PSPNetOptions(4).backbone_depth(20)), Contains("20"));
}

TEST_CASE("PSPNet gradients reach every parameter, auxiliary head included", "[models][segmentation]") {
  models::PSPNet net(models::PSPNetOptions(3).head_channels(8).aux_channels(8));
  check_gradients(*net,
                  [&](const at::Tensor& x) {
                    const auto out = net->forward_with_aux(x);
                    return weighted_sum(out.main) + out.aux_weight * weighted_sum(out.aux, 9);
                  },
                  random_image(2, 3, 33, 35));
}

TEST_CASE("ResNet-encoder U-Net: odd sizes, torchvision encoder keys, encoder weights, clone",
          "[models][segmentation]") {
  torch::NoGradGuard no_grad;
  models::ResNetUNet net(models::ResNetUNetOptions(5).encoder_channels(8));
  net->eval();
  const auto x = random_image(2, 3, 37, 50);
  CHECK(net->forward(x).sizes() == at::IntArrayRef({2, 5, 37, 50}));
  CHECK(net->forward(random_image(1, 3, 1, 2)).sizes() == at::IntArrayRef({1, 5, 1, 2}));
  // The default decoder: {4B, 2B, B, B/2, B/4} (segmentation_models_pytorch's at B = 64).
  CHECK(models::ResNetUNetOptions(2).effective_decoder_channels() ==
        std::vector<int64_t>{256, 128, 64, 32, 16});
  const auto params = net->named_parameters();
  CHECK(params.find("encoder.layer4.1.conv2.weight") != nullptr);
  CHECK(params.find("encoder.fc.weight") == nullptr);
  // Block 0 takes layer4 (8B = 64) + layer3 (4B = 32) -> 4B; the last block has no skip.
  CHECK(params["decoder.0.0.conv.weight"].sizes() == at::IntArrayRef({32, 96, 3, 3}));
  CHECK(params["decoder.3.0.conv.weight"].sizes() == at::IntArrayRef({4, 8 + 8, 3, 3}));
  CHECK(params["decoder.4.0.conv.weight"].sizes() == at::IntArrayRef({2, 4, 3, 3}));
  CHECK(params["head.weight"].sizes() == at::IntArrayRef({5, 2, 1, 1}));

  // A classifier's state dict (torchvision keys, fc included) initialises the encoder.
  models::ResNet classifier(models::ResNetOptions(18).base_channels(8).num_classes(10));
  net->load_encoder_weights(io::module_state_dict(*classifier), "classifier.pt");
  const auto encoder = net->encoder->named_parameters();
  for (const auto& item : classifier->named_parameters()) {
    if (item.key().rfind("fc.", 0) != 0) {
      INFO(item.key());
      CHECK(at::equal(encoder[item.key()], item.value()));
    }
  }
  models::ResNet wider(models::ResNetOptions(18).base_channels(16));
  CHECK_THROWS_AS(net->load_encoder_weights(io::module_state_dict(*wider), "wide.pt"), IoError);
  CHECK_THROWS_WITH(net->load_encoder_weights(io::module_state_dict(*wider), "wide.pt"),
                    Contains("wide.pt") && Contains("conv1.weight"));

  // A clone (data-parallel replica) is the same network, still without fc.
  auto copy = std::dynamic_pointer_cast<models::ResNetUNetImpl>(net->clone());
  REQUIRE(copy != nullptr);
  CHECK(at::allclose(copy->forward(x), net->forward(x)));
  CHECK(copy->named_parameters().size() == params.size());

  CHECK_THROWS_WITH(net->forward(random_image(1, 1, 9, 9)), Contains("[N,3,H,W]"));
  CHECK_THROWS_WITH(models::ResNetUNet(models::ResNetUNetOptions(2).decoder_channels({8, 4})),
                    Contains("5 entries"));
  CHECK_THROWS_WITH(models::ResNetUNet(models::ResNetUNetOptions(2).encoder_depth(20)),
                    Contains("20"));
}

TEST_CASE("ResNet-encoder U-Net gradients reach every parameter", "[models][segmentation]") {
  models::ResNetUNet net(models::ResNetUNetOptions(3).encoder_channels(4).encoder_depth(34));
  check_gradients(*net, [&](const at::Tensor& x) { return weighted_sum(net->forward(x)); },
                  random_image(2, 3, 33, 35));
}

TEST_CASE("build() makes every model from its config", "[models][segmentation][build]") {
  torch::NoGradGuard no_grad;
  const std::vector<json> configs = {
      {{"name", "unet"}, {"depth", 2}, {"base_width", 4}, {"padding", "mirror"}},
      {{"name", "unet"}, {"backbone", "resnet18"}, {"backbone_channels", 4},
       {"decoder_channels", {8, 8, 4, 4, 2}}},
      {{"name", "fcn32s"}, {"fc_channels", 8}},
      {{"name", "fcn16s"}, {"fc_channels", 8}, {"skip16_stage", "relu5"}},
      {{"name", "fcn8s"}, {"fc_channels", 8}, {"skip8_stage", "relu2"}, {"input_padding", "zero"}},
      {{"name", "fc_densenet56"}, {"growth_rate", 2}, {"first_channels", 4},
       {"layers_per_block", {1, 1, 1}}},
      {{"name", "fc_densenet103"}, {"growth_rate", 2}, {"first_channels", 4},
       {"layers_per_block", {1, 2, 1}}, {"dropout", 0.0}},
      {{"name", "pspnet"}, {"bins", {1, 2}}, {"pooling", "max"}, {"head_channels", 8},
       {"aux_channels", 8}, {"aux_weight", 0.5}},
  };
  const auto x = random_image(2, 3, 21, 27);
  for (const auto& config : configs) {
    INFO(config.dump());
    const auto model = models::build(config, 5, "run.json");
    CHECK(model.name == config["name"].get<std::string>());
    model.module->eval();
    CHECK(model.forward(x).sizes() == at::IntArrayRef({2, 5, 21, 27}));
    CHECK(model.network->num_classes() == 5);
    const auto out = model.forward_with_aux(x);
    CHECK(out.aux.defined() == (model.name == "pspnet"));
    CHECK(out.aux_weight == (model.name == "pspnet" ? 0.5 : 0.0));
    CHECK(models::as_segmentation_network(model.module->clone()) != nullptr);
  }
  CHECK(models::segmentation_model_names().size() == 12);
}

TEST_CASE("build() rejects bad configs naming the key", "[models][segmentation][build]") {
  using Catch::Contains;
  const auto fails = [](const json& config) {
    return [config] { models::build(config, 3, "run.json"); };
  };
  CHECK_THROWS_AS(fails({{"name", "unet"}, {"depht", 3}})(), ConfigError);
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"depht", 3}})(),
                    Contains("run.json") && Contains("model.depht"));
  CHECK_THROWS_WITH(fails({{"name", "unet2"}})(), Contains("model.name") && Contains("unet2"));
  CHECK_THROWS_WITH(fails({{"depth", 3}})(), Contains("model.name"));
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"depth", "4"}})(), Contains("model.depth"));
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"padding", "circular"}})(),
                    Contains("model.padding") && Contains("circular"));
  CHECK_THROWS_WITH(fails({{"name", "pspnet"}, {"pooling", "min"}})(), Contains("model.pooling"));
  CHECK_THROWS_WITH(fails({{"name", "fcn8s"}, {"depth", 4}})(), Contains("model.depth"));
  CHECK_THROWS_AS(fails({{"name", "unet"}, {"depth", 0}})(), ConfigError);
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"depth", 0}})(), Contains("depth"));
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"backbone_weights", "vgg.pth"}})(),
                    Contains("model.backbone_weights"));
  CHECK_THROWS_AS(fails({{"name", "fcn8s"}, {"backbone_weights", "/nonexistent/alexnet.pth"}})(),
                  IoError);
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"backbone", "resnet19"}})(),
                    Contains("model.backbone") && Contains("resnet19") && Contains("resnet34"));
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"backbone", "resnet18"}, {"depth", 3}})(),
                    Contains("model.depth") && Contains("plain U-Net"));
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"backbone", "resnet18"}, {"decoder_channels", {4}}})(),
                    Contains("5 entries"));
  CHECK_THROWS_WITH(fails({{"name", "unet"}, {"backbone", "resnet18"}, {"backbone_chanels", 4}})(),
                    Contains("model.backbone_chanels"));
  CHECK_THROWS_AS(fails(json::array({1, 2}))(), ConfigError);
}

TEST_CASE("build() loads model.weights strictly: another class count is listed by key", "[models][segmentation][build]") {
  test::TempDir dir;
  const json config = {{"name", "unet"}, {"depth", 1}, {"base_width", 2}};
  const auto three = models::build(config, 3, "run.json");
  const std::string path = dir / "unet3.pt";
  io::save_state_dict(io::module_state_dict(*three.module), path);

  json with_weights = config;
  with_weights["weights"] = path;
  const auto again = models::build(with_weights, 3, "run.json");
  CHECK(at::equal(again.module->named_parameters()["head.weight"],
                  three.module->named_parameters()["head.weight"]));
  CHECK_THROWS_AS(models::build(with_weights, 4, "run.json"), IoError);
  CHECK_THROWS_WITH(models::build(with_weights, 4, "run.json"),
                    Contains("head.weight") && Contains(path));

  // A ResNet U-Net's model.backbone_weights: a classifier of the same width, fc ignored.
  models::ResNet classifier(models::ResNetOptions(18).base_channels(4).num_classes(10));
  const std::string backbone = dir / "resnet18_w4.pt";
  io::save_state_dict(io::module_state_dict(*classifier), backbone);
  const json resnet_unet = {{"name", "unet"}, {"backbone", "resnet18"}, {"backbone_channels", 4},
                            {"backbone_weights", backbone}};
  const auto pretrained = models::build(resnet_unet, 3, "run.json");
  CHECK(at::equal(pretrained.module->named_parameters()["encoder.layer3.0.conv1.weight"],
                  classifier->named_parameters()["layer3.0.conv1.weight"]));
  json too_wide = resnet_unet;
  too_wide["backbone_channels"] = 8;
  CHECK_THROWS_WITH(models::build(too_wide, 3, "run.json"),
                    Contains(backbone) && Contains("conv1.weight"));
}

TEST_CASE("receptive_field_layers describes each model's encoder", "[models][segmentation][build]") {
  // U-Net (valid, depth 4): per level two 3x3 convs and a 2x2 pool; by hand r = 1 + 2 + 2 = 5,
  // pool 6 (jump 2); 6 + 4 + 4 = 14, pool 16 (jump 4); 16 + 8 + 8 = 32, pool 36 (jump 8);
  // 36 + 16 + 16 = 68, pool 76 (jump 16); bottleneck 76 + 32 + 32 = 140.
  auto fields = nn::receptive_fields(
      models::receptive_field_layers({{"name", "unet"}, {"padding", "valid"}}, "run.json"));
  REQUIRE(fields.size() == 14);
  CHECK(fields.back().name == "conv5_2");
  CHECK(fields.back().receptive_field == 140);
  CHECK(fields.back().jump == 16);
  // FCN: pool5 195 (jump 32) + fc6's 5 more units of 32 = 355; fc6's unit 0 is centred on
  // pixel 31 + 2.5 * 32 = 111 (the FCN's input margin).
  fields = nn::receptive_fields(models::receptive_field_layers({{"name", "fcn8s"}}, "run.json"));
  CHECK(fields[fields.size() - 2].name == "fc6");
  CHECK(fields[fields.size() - 2].receptive_field == 355);
  CHECK(fields[fields.size() - 2].start == 111.0);
  // PSPNet-R18: stride 8 after layer2, then dilation keeps the jump at 8.
  fields = nn::receptive_fields(models::receptive_field_layers({{"name", "pspnet"}}, "run.json"));
  CHECK(fields.back().name == "bottleneck");
  CHECK(fields.back().jump == 8);
  const auto layers = models::receptive_field_layers({{"name", "pspnet"}}, "run.json");
  CHECK(layers[layers.size() - 2].name == "layer4.1.conv2");
  CHECK(layers[layers.size() - 2].dilation == 4);
  fields = nn::receptive_fields(
      models::receptive_field_layers({{"name", "fc_densenet103"}}, "run.json"));
  CHECK(fields.back().name == "bottleneck_layer15");
  CHECK(fields.back().jump == 32);
  // ResNet-18 U-Net: the encoder's layers, stride 32 at the end (jump 32).
  fields = nn::receptive_fields(models::receptive_field_layers(
      {{"name", "unet"}, {"backbone", "resnet18"}}, "run.json"));
  CHECK(fields.front().name == "conv1");
  CHECK(fields.back().name == "layer4.1.conv2");
  CHECK(fields.back().jump == 32);
  CHECK_THROWS_AS(models::receptive_field_layers({{"name", "unet"}, {"dpeth", 2}}, "run.json"),
                  ConfigError);
}

// ------------------------------------------------------------------------------ DeepColoring

TEST_CASE("deep_coloring_instances: components per colour, fragments dropped, mean scores",
          "[models][instance]") {
  // 3 maps over 6x8: colour 1 holds two separate blobs, colour 2 one blob of 6 px and one
  // stray pixel; everything else is background.
  auto logits = at::zeros({3, 6, 8});
  logits[0].fill_(5.0);
  auto paint = [&](int64_t c, int64_t y0, int64_t y1, int64_t x0, int64_t x1, double v) {
    logits[c].slice(0, y0, y1).slice(1, x0, x1).fill_(v);
  };
  paint(1, 0, 2, 0, 2, 10.0);   // 4 px at the top left
  paint(1, 4, 6, 6, 8, 10.0);   // 4 px at the bottom right
  paint(2, 0, 3, 4, 6, 10.0);   // 6 px
  paint(2, 5, 6, 0, 1, 10.0);   // 1 px fragment
  auto found = models::deep_coloring_instances(logits, /*min_size=*/2);
  REQUIRE(found.masks.sizes() == at::IntArrayRef({3, 6, 8}));
  CHECK(found.masks[0].sum().item<int64_t>() == 4);
  CHECK(found.masks[0][0][0].item<int>() == 1);
  CHECK(found.masks[1][5][7].item<int>() == 1);
  CHECK(found.masks[2].sum().item<int64_t>() == 6);
  // Score = softmax probability of the colour: e^10 / (e^10 + e^5 + e^0) on every pixel here.
  const double p = std::exp(10.0) / (std::exp(10.0) + std::exp(5.0) + 1.0);
  CHECK(found.scores[0].item<float>() == Approx(p).epsilon(1e-5));
  // With min_size 1 the stray pixel is an instance too.
  CHECK(models::deep_coloring_instances(logits, 1).masks.size(0) == 4);
  // Nothing but background: no instances, still [0,H,W].
  CHECK(models::deep_coloring_instances(at::zeros({3, 6, 8}).index_put_({0}, 1.0), 1)
            .masks.sizes() == at::IntArrayRef({0, 6, 8}));
  CHECK_THROWS_WITH(models::deep_coloring_instances(at::zeros({1, 4, 4})),
                    Catch::Contains("[1+K,H,W]"));
  // The label image of the masks numbers them from 1.
  const auto labels = models::masks_to_label_image(found.masks, 6, 8);
  CHECK(labels[0][0].item<int64_t>() == 1);
  CHECK(labels[5][7].item<int64_t>() == 2);
  CHECK(labels[0][4].item<int64_t>() == 3);
  CHECK(labels[3][3].item<int64_t>() == 0);
}

TEST_CASE("DeepColoring: shapes for any size, halo-loss gradients, save and load",
          "[models][instance]") {
  models::DeepColoring net(models::DeepColoringOptions().num_colors(4).unet(
      models::UNetOptions(2).depth(2).base_width(4)));
  auto x = at::rand({2, 3, 29, 35});
  auto logits = net->forward(x);
  CHECK(logits.sizes() == at::IntArrayRef({2, 5, 29, 35}));
  auto instances = at::zeros({2, 29, 35}, at::kLong);
  instances[0].slice(0, 2, 10).slice(1, 3, 12).fill_(1);
  instances[0].slice(0, 12, 20).slice(1, 3, 12).fill_(2);
  instances[1].slice(0, 5, 15).slice(1, 20, 30).fill_(7);
  auto loss = losses::functional::halo_loss(logits, instances,
                                            losses::HaloLossOptions().margin(3).mu(5.0));
  REQUIRE(std::isfinite(loss.item<double>()));
  loss.backward();
  int64_t with_grad = 0;
  for (const auto& p : net->parameters()) with_grad += p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
  // Every layer learns (a bias right before a batch norm would get ~0, hence not "all").
  CHECK(with_grad * 10 >= static_cast<int64_t>(net->parameters().size()) * 9);
  net->eval();
  const auto predictions = net->predict(x);
  REQUIRE(predictions.size() == 2);
  CHECK(predictions[0].masks.size(1) == 29);

  models::DeepColoring other(models::DeepColoringOptions().num_colors(4).unet(
      models::UNetOptions(2).depth(2).base_width(4)));
  io::load_state_dict_into(*other, io::module_state_dict(*net));
  other->eval();
  CHECK(at::equal(other->forward(x), net->forward(x)));
  CHECK_THROWS_WITH(models::DeepColoring(models::DeepColoringOptions().num_colors(0)),
                    Catch::Contains("num_colors"));
}

// ----------------------------------------------------------------------------- Deep Watershed

namespace {

// Energy logits that put all mass on the given levels [H,W] (what a perfect network predicts).
at::Tensor one_hot_logits(const at::Tensor& levels, int64_t k) {
  return at::one_hot(levels, k).permute({2, 0, 1}).to(at::kFloat) * 20.0f;
}

}  // namespace

TEST_CASE("Deep Watershed: masks -> targets -> extraction recovers non-touching shapes exactly",
          "[models][instance]") {
  // A rectangle, a disc and an L shape, apart from each other, on 40x48.
  auto instances = at::zeros({40, 48}, at::kLong);
  instances.slice(0, 2, 12).slice(1, 3, 20).fill_(1);
  for (int64_t y = 0; y < 40; ++y) {
    for (int64_t x = 0; x < 48; ++x) {
      if ((y - 28) * (y - 28) + (x - 12) * (x - 12) <= 49) instances[y][x] = 2;
    }
  }
  instances.slice(0, 18, 38).slice(1, 30, 36).fill_(3);
  instances.slice(0, 32, 38).slice(1, 30, 46).fill_(3);
  const auto t = losses::watershed_targets(instances, losses::WatershedTargetOptions().num_levels(8));
  const auto found = models::watershed_instances(
      one_hot_logits(t.energy[0], 8), models::WatershedExtractOptions().cut_level(2).min_size(1));
  REQUIRE(found.masks.size(0) == 3);
  // Seeds come in row-major order of their first pixel: the rectangle, the L, the disc.
  const int64_t order[3] = {1, 3, 2};
  for (int64_t k = 0; k < 3; ++k) {
    CHECK(at::equal(found.masks[k].to(at::kBool), instances.eq(order[k])));
    CHECK(found.scores[k].item<float>() == Approx(1.0).margin(1e-6));
  }
  // Cut above every object's highest level: no seeds, the foreground parts still come back.
  const auto unseeded = models::watershed_instances(
      one_hot_logits(t.energy[0], 8), models::WatershedExtractOptions().cut_level(7).min_size(1));
  CHECK(unseeded.masks.size(0) == 3);
  // min_size drops the disc (149 px) but keeps the rectangle (170) and the L (180).
  CHECK(models::watershed_instances(one_hot_logits(t.energy[0], 8),
                                    models::WatershedExtractOptions().cut_level(2).min_size(160))
            .masks.size(0) == 2);
}

TEST_CASE("Deep Watershed: touching objects stay apart, bad arguments are named",
          "[models][instance]") {
  // Two squares sharing an edge: one foreground region, two basins.
  auto instances = at::zeros({20, 30}, at::kLong);
  instances.slice(0, 4, 16).slice(1, 2, 14).fill_(1);
  instances.slice(0, 4, 16).slice(1, 14, 26).fill_(2);
  const auto t = losses::watershed_targets(instances);
  const auto found = models::watershed_instances(one_hot_logits(t.energy[0], 16),
                                                 models::WatershedExtractOptions().cut_level(3).min_size(1));
  REQUIRE(found.masks.size(0) == 2);
  // Every object pixel is in exactly one instance, and each instance is mostly one square.
  CHECK(at::equal(found.masks.sum(0).to(at::kBool), instances.gt(0)));
  for (int64_t k = 0; k < 2; ++k) {
    const auto overlap = (found.masks[k].to(at::kBool) & instances.eq(k + 1)).sum().item<int64_t>();
    CHECK(overlap >= 132);  // of 144: at most the shared boundary column goes the other way
  }
  CHECK_THROWS_WITH(models::watershed_instances(at::zeros({1, 4, 4})), Catch::Contains("[K,H,W]"));
  CHECK_THROWS_WITH(models::watershed_instances(at::zeros({4, 4, 4}),
                                                models::WatershedExtractOptions().cut_level(4)),
                    Catch::Contains("cut_level"));
}

TEST_CASE("DeepWatershed: shapes, both losses reach every head, save and load", "[models][instance]") {
  for (const bool feed : {true, false}) {
    models::DeepWatershed net(models::DeepWatershedOptions()
                                  .num_levels(6)
                                  .direction_to_energy(feed)
                                  .unet(models::UNetOptions(2).depth(2).base_width(4)));
    auto x = at::rand({2, 3, 27, 33});
    auto out = net->forward(x);
    CHECK(out.direction.sizes() == at::IntArrayRef({2, 2, 27, 33}));
    CHECK(out.energy.sizes() == at::IntArrayRef({2, 6, 27, 33}));
    auto instances = at::zeros({2, 27, 33}, at::kLong);
    instances[0].slice(0, 2, 12).slice(1, 3, 15).fill_(1);
    instances[1].slice(0, 10, 25).slice(1, 10, 30).fill_(4);
    const auto t = losses::watershed_targets(instances, losses::WatershedTargetOptions().num_levels(6));
    auto loss = losses::functional::direction_loss(out.direction, t.direction) +
                losses::functional::energy_loss(out.energy, t.energy);
    REQUIRE(std::isfinite(loss.item<double>()));
    loss.backward();
    for (const auto& item : net->named_parameters()) {
      const auto& name = item.key();
      if (name.rfind("direction_head.1", 0) == 0 || name.rfind("energy_head.1", 0) == 0) {
        INFO(name);
        CHECK(item.value().grad().abs().sum().item<double>() > 0);
      }
    }
    // With the direction fed to the energy head, the energy loss alone reaches the direction head.
    net->zero_grad();
    losses::functional::energy_loss(net->forward(x).energy, t.energy).backward();
    const auto& g = net->direction_head[1]->as<torch::nn::Conv2dImpl>()->weight.grad();
    CHECK((g.defined() && g.abs().sum().item<double>() > 0) == feed);
    net->eval();
    CHECK(net->predict(x).size() == 2);
    models::DeepWatershed other(net->options);
    io::load_state_dict_into(*other, io::module_state_dict(*net));
    other->eval();
    CHECK(at::equal(other->forward(x).energy, net->forward(x).energy));
  }
  CHECK_THROWS_WITH(models::DeepWatershed(models::DeepWatershedOptions().num_levels(1)),
                    Catch::Contains("num_levels"));
}

// ------------------------------------------------------------------------- U-Net, border class

TEST_CASE("unet_border_instances: cells are seeds, borders go back to them, the baseline merges",
          "[models][instance]") {
  // 6x10, columns of rows 1-4: 0 background, 1 border, 2-3 cell (A), 4-5 border, 6-7 cell (B),
  // 8 border, 9 background; rows 0 and 5 background except one stray cell pixel at (5,9).
  // Probabilities (background, cell, border): cell A (.1,.8,.1), cell B (.3,.6,.1), border
  // (.1,.2,.7), background (.8,.1,.1).
  auto probs = at::empty({3, 6, 10}, at::kDouble);
  auto paint = [&](int64_t y0, int64_t y1, int64_t x0, int64_t x1, std::array<double, 3> p) {
    for (int64_t c = 0; c < 3; ++c) probs[c].slice(0, y0, y1).slice(1, x0, x1).fill_(p[c]);
  };
  paint(0, 6, 0, 10, {0.8, 0.1, 0.1});
  paint(1, 5, 1, 2, {0.1, 0.2, 0.7});
  paint(1, 5, 2, 4, {0.1, 0.8, 0.1});
  paint(1, 5, 4, 6, {0.1, 0.2, 0.7});
  paint(1, 5, 6, 8, {0.3, 0.6, 0.1});
  paint(1, 5, 8, 9, {0.1, 0.2, 0.7});
  paint(5, 6, 9, 10, {0.1, 0.8, 0.1});
  const auto logits = probs.log().to(at::kFloat);
  auto options = models::UNetBorderOptions().border_width(1).min_size(2);
  auto found = models::unet_border_instances(logits, options);
  REQUIRE(found.masks.sizes() == at::IntArrayRef({2, 6, 10}));  // the stray pixel is dropped
  // Border width 1: column 1 and 4 join A (their neighbour to the left or right at the step's
  // start), columns 5 and 8 join B.
  auto expect_a = at::zeros({6, 10}, at::kByte);
  expect_a.slice(0, 1, 5).slice(1, 1, 5).fill_(1);
  auto expect_b = at::zeros({6, 10}, at::kByte);
  expect_b.slice(0, 1, 5).slice(1, 5, 9).fill_(1);
  CHECK(at::equal(found.masks[0], expect_a));
  CHECK(at::equal(found.masks[1], expect_b));
  // Score = mean of 1 - p(background): A 0.9 everywhere; B 8 cell pixels of 0.7, 8 border of 0.9.
  CHECK(found.scores[0].item<float>() == Approx(0.9).epsilon(1e-5));
  CHECK(found.scores[1].item<float>() == Approx(0.8).epsilon(1e-5));
  // Every border pixel here is taken in the first step: width 2 gives the same objects.
  CHECK(at::equal(models::unet_border_instances(logits, options.border_width(2)).masks,
                  found.masks));
  options.border_width(1);
  // min_size 1 keeps the stray pixel as a third object.
  CHECK(models::unet_border_instances(logits, models::UNetBorderOptions(options).min_size(1))
            .masks.size(0) == 3);
  // The foreground baseline on the same scene (object = cell or border): A and B touch, one
  // object of 32 pixels.
  auto fg = at::stack({probs[0], probs[1] + probs[2]}).log().to(at::kFloat);
  auto merged = models::unet_border_instances(
      fg, models::UNetBorderOptions().target(models::UNetBorderTarget::kForeground).min_size(2));
  REQUIRE(merged.masks.size(0) == 1);
  CHECK(merged.masks[0].sum().item<int64_t>() == 32);
  // Diagonal contact does not connect seeds (4-connectivity).
  auto diagonal = at::zeros({3, 4, 4});
  diagonal[0].fill_(5.0);
  diagonal[1][1][1] = 10.0;
  diagonal[1][2][2] = 10.0;
  CHECK(models::unet_border_instances(diagonal, models::UNetBorderOptions().min_size(1))
            .masks.size(0) == 2);
  CHECK_THROWS_WITH(models::unet_border_instances(fg, options), Catch::Contains("three_class"));
}

TEST_CASE("UNetBorder: outputs per target, built from a config, save and load",
          "[models][instance]") {
  auto small = models::UNetOptions(3).depth(2).base_width(4);
  models::UNetBorder three(models::UNetBorderOptions().unet(small));
  auto x = at::rand({2, 3, 27, 33});
  CHECK(three->forward(x).sizes() == at::IntArrayRef({2, 3, 27, 33}));
  models::UNetBorder two(
      models::UNetBorderOptions().target(models::UNetBorderTarget::kForeground).unet(small));
  CHECK(two->forward(x).sizes() == at::IntArrayRef({2, 2, 27, 33}));
  three->eval();
  CHECK(three->predict(x).size() == 2);
  models::UNetBorder other(three->options);
  io::load_state_dict_into(*other, io::module_state_dict(*three));
  other->eval();
  CHECK(at::equal(other->forward(x), three->forward(x)));

  auto built = models::build_instance({{"name", "unet_border"}, {"target", "foreground"},
                                       {"border_width", 3}, {"depth", 2}, {"base_width", 4}},
                                      11, 64, "u.json");
  auto* net = built.as<models::UNetBorderImpl>();
  REQUIRE(net != nullptr);
  CHECK(net->options.target() == models::UNetBorderTarget::kForeground);
  CHECK(net->options.border_width() == 3);
  CHECK(net->num_outputs() == 2);
  CHECK_THROWS_WITH(models::build_instance({{"name", "unet_border"}, {"target", "borders"}}, 11,
                                           64, "u.json"),
                    Catch::Contains("model.target") && Catch::Contains("three_class"));
  CHECK_THROWS_WITH(models::build_instance({{"name", "unet_border"}, {"border_width", 0}}, 11,
                                           64, "u.json"),
                    Catch::Contains("border_width must be >= 1"));
}

// ------------------------------------------------------------------------- Mask R-CNN-style

TEST_CASE("mask_targets crop each mask to its box like torchvision, jitter_boxes stays inside",
          "[models][instance]") {
  // A 10x10 square mask at columns 4..13, rows 6..15 of a 20x24 image. Legacy roi_align samples
  // at pixel indices, so with the box (4,6,14,16) the last samples fall between the last row or
  // column of the object and the first outside; torchvision's targets lose the bottom-right
  // corner bin (its 4 samples average 0.39 < 0.5) and keep everything else.
  auto masks = at::zeros({2, 20, 24}, at::kByte);
  masks[0].slice(0, 6, 16).slice(1, 4, 14).fill_(1);
  masks[1].slice(0, 6, 16).slice(1, 4, 14).fill_(1);
  const auto boxes = at::tensor({4.f, 6.f, 14.f, 16.f, 4.f, 6.f, 24.f, 16.f}).view({2, 4});
  const auto t = models::mask_targets(masks, boxes, 8);
  REQUIRE(t.sizes() == at::IntArrayRef({2, 8, 8}));
  CHECK(t[0].sum().item<float>() == 63.0f);
  CHECK(t[0][7][7].item<float>() == 0.0f);
  // A box twice as wide (extending right): the left half is the object, the right half is not.
  CHECK(t[1].slice(1, 0, 4).min().item<float>() == 1.0f);  // torchvision 0.14 gives the same
  CHECK(t[1].slice(1, 4, 8).max().item<float>() == 0.0f);
  CHECK(models::mask_targets(at::zeros({0, 5, 5}), at::zeros({0, 4}), 4).sizes() ==
        at::IntArrayRef({0, 4, 4}));

  std::mt19937_64 rng(3);
  const auto many = boxes.repeat({50, 1});
  const auto j = models::jitter_boxes(many, 0.2, {20, 24}, rng);
  CHECK(!at::equal(j, many));
  CHECK(j.select(1, 0).min().item<float>() >= 0.0f);
  CHECK(j.select(1, 2).max().item<float>() <= 24.0f);
  CHECK(j.select(1, 3).max().item<float>() <= 20.0f);
  CHECK((j.select(1, 2) - j.select(1, 0)).min().item<float>() >= 1.0f);
  // Corners move by at most 20% of the box's size (before clipping).
  CHECK((j - many).select(1, 0).abs().max().item<float>() <= 0.2f * 20.0f + 1e-4f);
  CHECK(at::equal(models::jitter_boxes(many, 0.0, {20, 24}, rng), many));
}

TEST_CASE("mask_loss: BCE of each box's class mask only, by hand", "[losses][instance]") {
  auto logits = at::zeros({2, 3, 2, 2});
  logits[0][1].fill_(2.0);   // box 0, class 1: logit 2 everywhere
  logits[0][2].fill_(-50.0); // another class: must not count
  logits[1][2].fill_(-1.0);  // box 1, class 2: logit -1
  logits.requires_grad_(true);
  const auto labels = at::tensor({1, 2}, at::kLong);
  auto targets = at::zeros({2, 2, 2});
  targets[0].fill_(1.0);
  // box 0: -log(sigmoid(2)) on 4 px; box 1: -log(1 - sigmoid(-1)) on 4 px.
  const double expected = (4 * std::log1p(std::exp(-2.0)) + 4 * std::log1p(std::exp(-1.0))) / 8.0;
  auto loss = losses::functional::mask_loss(logits, labels, targets);
  CHECK(loss.item<double>() == Approx(expected).epsilon(1e-6));
  loss.backward();
  CHECK(logits.grad()[0][2].abs().sum().item<float>() == 0.0f);
  CHECK(logits.grad()[0][1].abs().sum().item<float>() > 0.0f);
  auto none = at::zeros({0, 3, 2, 2}).requires_grad_(true);
  auto zero = losses::functional::mask_loss(none, at::zeros({0}, at::kLong), at::zeros({0, 2, 2}));
  CHECK(zero.item<double>() == 0.0);
  zero.backward();
  CHECK_THROWS_WITH(losses::functional::mask_loss(logits, at::tensor({1, 3}, at::kLong), targets),
                    Catch::Contains("labels must lie in [0, 3)"));
}

TEST_CASE("SSDMask: shapes, gradients of both heads, predictions at input size, save and load",
          "[models][instance]") {
  models::SSDMask net(models::SSDMaskOptions(4).image_size(128).feature_channels(16)
                           .mask_channels(16).mask_convs(2).roi_size(7));
  auto x = at::rand({2, 3, 128, 128});
  auto out = net->forward(x);
  CHECK(out.mask_features.sizes() == at::IntArrayRef({2, 16, 32, 32}));
  CHECK(out.detector.scores.size(2) == 4);
  CHECK(out.detector.locations.size(1) == out.detector.priors.size(0));
  const auto rois = at::tensor({0.f, 10.f, 12.f, 60.f, 50.f, 1.f, 30.f, 30.f, 90.f, 100.f}).view({2, 5});
  const auto logits = net->mask_logits(out.mask_features, rois);
  CHECK(logits.sizes() == at::IntArrayRef({2, 4, 14, 14}));
  auto loss = losses::functional::mask_loss(logits, at::tensor({1, 3}, at::kLong), at::ones({2, 14, 14})) +
              out.detector.scores.logsumexp(2).mean() + out.detector.locations.abs().mean();
  loss.backward();
  CHECK(net->mask_head->predictor->weight.grad().abs().sum().item<double>() > 0);
  CHECK(net->lateral[0]->as<torch::nn::Conv2dImpl>()->weight.grad().abs().sum().item<double>() > 0);
  CHECK(net->detector->head->classification_head->module_list[0]
            ->as<torch::nn::Conv2dImpl>()->weight.grad().abs().sum().item<double>() > 0);
  net->eval();
  const auto found = net->predict(x);
  REQUIRE(found.size() == 2);
  for (const auto& f : found) {
    const int64_t k = f.scores.size(0);
    CHECK(f.masks.sizes() == at::IntArrayRef({k, 128, 128}));
    CHECK(f.boxes.sizes() == at::IntArrayRef({k, 4}));
    CHECK(f.labels.size(0) == k);
    if (k > 0) CHECK(f.scores.min().item<float>() >= 0.05f);
  }
  models::SSDMask other(net->options);
  io::load_state_dict_into(*other, io::module_state_dict(*net));
  other->eval();
  CHECK(at::equal(other->forward(x).mask_features, net->forward(x).mask_features));
  CHECK(io::module_state_dict(*net).contains("detector.backbone.layer1.0.conv1.weight"));
}

TEST_CASE("build_instance makes the three methods and names bad keys", "[models][instance][build]") {
  auto dc = models::build_instance({{"name", "deep_coloring"}, {"num_colors", 3}, {"depth", 2},
                                    {"base_width", 4}}, 11, 64, "run.json");
  REQUIRE(dc.as<models::DeepColoringImpl>() != nullptr);
  CHECK(dc.as<models::DeepColoringImpl>()->options.num_colors() == 3);
  CHECK(dc.network.get() == dynamic_cast<models::InstanceNetwork*>(dc.as<models::DeepColoringImpl>()));
  CHECK_FALSE(dc.network->has_classes());
  auto ws = models::build_instance({{"name", "deep_watershed"}, {"cut_level", 4}, {"depth", 2},
                                    {"base_width", 4}}, 11, 64, "run.json");
  REQUIRE(ws.as<models::DeepWatershedImpl>() != nullptr);
  CHECK(ws.as<models::SSDMaskImpl>() == nullptr);
  CHECK(ws.as<models::DeepWatershedImpl>()->options.extract().cut_level() == 4);
  auto mr = models::build_instance({{"name", "ssd_mask"}, {"count_score", 0.25}}, 11, 96, "run.json");
  auto* ssd_mask = mr.as<models::SSDMaskImpl>();
  REQUIRE(ssd_mask != nullptr);
  CHECK(ssd_mask->options.image_size() == 96);  // the caller's size unless the config says
  CHECK(ssd_mask->options.count_score() == 0.25);
  CHECK(mr.network->has_classes());
  // A clone (a data-parallel replica) is still an instance network.
  CHECK(models::as_instance_network(mr.module->clone()) != nullptr);
  CHECK_THROWS_WITH(models::as_instance_network(std::make_shared<torch::nn::Module>()),
                    Catch::Contains("not an ostrov instance network"));
  auto narrow = models::build_instance({{"name", "ssd_mask"}, {"backbone_channels", 16}}, 11, 64,
                                       "run.json");
  auto* narrow_net = narrow.as<models::SSDMaskImpl>();
  CHECK(narrow_net->detector->options.backbone_channels() == 16);
  CHECK(narrow_net->lateral[0]->as<torch::nn::Conv2dImpl>()->weight.size(1) == 16);
  CHECK(narrow_net->lateral[2]->as<torch::nn::Conv2dImpl>()->weight.size(1) == 64);
  CHECK(narrow_net->forward(at::rand({2, 3, 64, 64})).mask_features.sizes() ==
        at::IntArrayRef({2, 64, 16, 16}));
  CHECK_THROWS_WITH(models::build_instance({{"name", "deep_coloring"}, {"backbone_weights", "r18.pth"}},
                                           11, 64, "run.json"),
                    Catch::Contains("model.backbone_weights") &&
                        Catch::Contains("deep_coloring has no pretrained backbone"));
  // Validation alone names the same problems without allocating a network.
  CHECK_NOTHROW(models::check_instance_model({{"name", "ssd_mask"}}, 11, 64, "run.json"));
  CHECK_THROWS_WITH(models::check_instance_model({{"name", "ssd_mask"}, {"roi_sise", 7}}, 11, 64,
                                                 "run.json"),
                    Catch::Contains("model.roi_sise"));
  CHECK_THROWS_WITH(models::build_instance({{"name", "ssd_mask"}, {"backbone_channels", -1}}, 11, 64,
                                           "run.json"),
                    Catch::Contains("model.backbone_channels"));
  CHECK_THROWS_WITH(models::build_instance({{"name", "ssd_mask"}, {"image_size", 24}}, 11, 64,
                                           "run.json"),
                    Catch::Contains("run.json") && Catch::Contains("model.image_size") &&
                        Catch::Contains(">= 32, got 24"));
  CHECK_THROWS_WITH(models::build_instance({{"name", "deep_watershed"}, {"cut_levle", 4}}, 11, 64, "run.json"),
                    Catch::Contains("run.json") && Catch::Contains("model.cut_levle"));
  CHECK_THROWS_WITH(models::build_instance({{"name", "yolact"}}, 11, 64, "run.json"),
                    Catch::Contains("model.name") && Catch::Contains("deep_watershed"));
  CHECK_THROWS_WITH(models::build_instance({{"name", "deep_watershed"}, {"cut_level", 16}}, 11, 64, "run.json"),
                    Catch::Contains("cut_level"));
  // The detector's post-processing keys are checked as build_detector checks them.
  CHECK_THROWS_WITH(models::build_instance({{"name", "ssd_mask"}, {"nms_threshold", 0}}, 11, 64, "run.json"),
                    Catch::Contains("model.nms_threshold") && Catch::Contains("(0,1]"));

  // Two detections of one object as two classes and one elsewhere: one object and one other.
  models::InstancePrediction p;
  p.boxes = at::tensor({10.f, 10.f, 30.f, 30.f, 11.f, 10.f, 31.f, 30.f, 40.f, 40.f, 60.f, 60.f}).view({3, 4});
  p.scores = at::tensor({0.9f, 0.6f, 0.3f});
  p.labels = at::tensor({2, 5, 1}, at::kLong);
  p.masks = at::zeros({3, 64, 64}, at::kByte);
  for (int64_t k = 0; k < 3; ++k) p.masks[k][k][k] = 1;
  CHECK(at::equal(mr.class_agnostic(p, 0.0), at::tensor({0, 2}, at::kLong)));
  const auto counted = mr.counted_masks(p);  // >= 0.25: the best of the pair, then the other
  REQUIRE(counted.size(0) == 2);
  CHECK(counted[0][2][2].item<int>() == 1);  // weakest first
  CHECK(counted[1][0][0].item<int>() == 1);
  // Class-agnostic methods keep every instance.
  CHECK(at::equal(dc.class_agnostic(p, 0.5), at::arange(3, at::kLong)));
  CHECK(dc.counted_masks(p).size(0) == 3);
}
