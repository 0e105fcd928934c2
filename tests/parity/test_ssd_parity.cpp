// SSD300-VGG16 parity with torchvision 0.14's ssd300_vgg16(weights=None, weights_backbone=None):
// its random weights saved with torch.save(model.state_dict()) load into ostrov's SSD; the
// transform, the head outputs, the default boxes and postprocess_detections agree.
#include <ATen/ATen.h>
#include <torch/types.h>

#include "catch.h"
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ostrov/io/weights.h"
#include "ostrov/models/detection/ssd.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

at::Tensor read_floats(const TempDir& dir, const std::string& name, std::vector<int64_t> shape,
                       at::ScalarType dtype = at::kFloat) {
  const std::string raw = test::read_bytes(dir / name);
  const size_t item = dtype == at::kFloat ? 4 : 8;
  if (!shape.empty() && shape[0] < 0) {  // leading size from the file's length
    int64_t rest = 1;
    for (size_t i = 1; i < shape.size(); ++i) rest *= shape[i];
    shape[0] = static_cast<int64_t>(raw.size() / item) / rest;
  }
  REQUIRE(raw.size() == static_cast<size_t>(c10::multiply_integers(shape)) * item);
  return at::from_blob(const_cast<char*>(raw.data()), shape, dtype).clone();
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

/// The lines of a text file.
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream file(path);
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  return lines;
}

/// "key d0,d1,..." for each state_dict entry, in order (the Python side writes keys.txt so).
std::vector<std::string> key_shape_lines(const torch::nn::Module& module) {
  std::vector<std::string> lines;
  for (const auto& item : io::module_state_dict(module)) {
    std::ostringstream line;
    line << item.key() << ' ';
    for (size_t i = 0; i < item.value().sizes().size(); ++i) {
      line << (i ? "," : "") << item.value().size(static_cast<int64_t>(i));
    }
    lines.push_back(line.str());
  }
  return lines;
}

void check_close(const at::Tensor& ours, const at::Tensor& reference, double tolerance = 1e-4) {
  REQUIRE(ours.sizes() == reference.sizes());
  const double scale = reference.abs().max().item<double>();
  REQUIRE(scale > 0.0);
  const double diff = max_diff(ours, reference);
  INFO("max |diff| " << diff << " vs max |ref| " << scale);
  CHECK(diff <= tolerance * scale);
}

}  // namespace

TEST_CASE(
    "SSD300-VGG16 equals torchvision's ssd300_vgg16: keys, transform, heads, boxes, detections",
    "[parity][models][detection]") {
  TempDir dir;
  const auto r = test::run_python(dir, R"(
import os, torch, torchvision
os.chdir(os.path.dirname(os.path.abspath(__file__)))
torch.manual_seed(0)
m = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None).eval()
sd = m.state_dict()
torch.save(sd, 'ssd.pth')
with open('keys.txt', 'w') as f:
    for k, v in sd.items():
        f.write(k + ' ' + ','.join(str(s) for s in v.shape) + '\n')
img = (torch.sin(torch.arange(3 * 240 * 320, dtype=torch.float64) * 0.0123) * 0.5 + 0.5)
img = img.reshape(3, 240, 320).float()
img.numpy().tofile('image.bin')
with torch.no_grad():
    images, _ = m.transform([img])
    images.tensors.numpy().tofile('input.bin')
    feats = list(m.backbone(images.tensors).values())
    head = m.head(feats)
    head['bbox_regression'].numpy().tofile('loc.bin')
    head['cls_logits'].numpy().tofile('logits.bin')
    anchors = m.anchor_generator(images, feats)
    anchors[0].numpy().tofile('anchors.bin')
    dets = m.postprocess_detections(head, anchors, images.image_sizes)
    dets = m.transform.postprocess(dets, images.image_sizes, [(240, 320)])
    dets[0]['boxes'].numpy().tofile('boxes.bin')
    dets[0]['scores'].numpy().tofile('scores.bin')
    dets[0]['labels'].numpy().tofile('labels.bin')
    print(len(dets[0]['boxes']), 'detections')
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);

  torch::NoGradGuard no_grad;
  models::SSD net(models::SSDOptions::ssd300_vgg16(91));
  net->eval();

  // Same keys, same order, same shapes as torchvision's state_dict.
  const auto theirs = read_lines(dir / "keys.txt");
  const auto ours = key_shape_lines(*net);
  REQUIRE(theirs.size() == 71);
  CHECK(ours == theirs);

  // The transform: normalise, resize 240x320 -> 300x300.
  const auto image = read_floats(dir, "image.bin", {3, 240, 320});
  const auto input = read_floats(dir, "input.bin", {1, 3, 300, 300});
  check_close(net->preprocess(image), input, 1e-6);

  const auto loc_ref = read_floats(dir, "loc.bin", {1, 8732, 4});
  const auto logits_ref = read_floats(dir, "logits.bin", {1, 8732, 91});
  io::load_weights(*net, dir / "ssd.pth");
  const auto out = net->forward(input);
  check_close(out.locations, loc_ref);
  check_close(out.scores, logits_ref);
  CHECK(max_diff(out.priors, read_floats(dir, "anchors.bin", {8732, 4})) == 0.0);

  // Post-processing on torchvision's own head outputs: the same detections in the same order.
  const auto boxes_ref = read_floats(dir, "boxes.bin", {-1, 4});
  const auto scores_ref = read_floats(dir, "scores.bin", {-1});
  const auto labels_ref = read_floats(dir, "labels.bin", {-1}, at::kLong);
  REQUIRE(boxes_ref.size(0) > 10);
  models::SSDOutput reference{loc_ref, logits_ref, out.priors, {{300, 300}}};
  const auto dets = net->postprocess(reference, {{240, 320}});
  REQUIRE(dets.size() == 1);
  REQUIRE(dets[0].boxes.sizes() == boxes_ref.sizes());
  CHECK(at::equal(dets[0].labels, labels_ref));
  CHECK(max_diff(dets[0].boxes, boxes_ref) <= 1e-3);
  CHECK(max_diff(dets[0].scores, scores_ref) <= 1e-6);
  CHECK(dets[0].labels.min().item<int64_t>() >= 1);
}

TEST_CASE(
    "SSDLite320-MobileNetV3 equals torchvision's ssdlite320_mobilenet_v3_large: keys, transform, "
    "features, heads, boxes, detections",
    "[parity][models][detection]") {
  TempDir dir;
  const auto r = test::run_python(dir, R"(
import os, torch, torchvision
os.chdir(os.path.dirname(os.path.abspath(__file__)))
torch.manual_seed(0)
m = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
with torch.no_grad():  # random BN statistics and affine values: no BN layer may hide
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
m.eval()
sd = m.state_dict()
torch.save(sd, 'ssdlite.pth')
with open('keys.txt', 'w') as f:
    for k, v in sd.items():
        f.write(k + ' ' + ','.join(str(s) for s in v.shape) + '\n')
img = (torch.sin(torch.arange(3 * 240 * 330, dtype=torch.float64) * 0.0123) * 0.5 + 0.5)
img = img.reshape(3, 240, 330).float()
img.numpy().tofile('image.bin')
odd = torch.rand(1, 3, 250, 310)
odd.numpy().tofile('odd.bin')
with torch.no_grad():
    images, _ = m.transform([img])
    images.tensors.numpy().tofile('input.bin')
    feats = list(m.backbone(images.tensors).values())
    for i, f in enumerate(feats):
        f.numpy().tofile('map%d.bin' % i)
    for i, f in enumerate(m.backbone(odd).values()):
        f.numpy().tofile('odd%d.bin' % i)
    head = m.head(feats)
    head['bbox_regression'].numpy().tofile('loc.bin')
    head['cls_logits'].numpy().tofile('logits.bin')
    anchors = m.anchor_generator(images, feats)
    anchors[0].numpy().tofile('anchors.bin')
    dets = m.postprocess_detections(head, anchors, images.image_sizes)
    dets = m.transform.postprocess(dets, images.image_sizes, [(240, 330)])
    dets[0]['boxes'].numpy().tofile('boxes.bin')
    dets[0]['scores'].numpy().tofile('scores.bin')
    dets[0]['labels'].numpy().tofile('labels.bin')
    print(len(dets[0]['boxes']), 'detections', [tuple(f.shape) for f in feats])
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);

  torch::NoGradGuard no_grad;
  models::SSD net(models::SSDOptions::ssdlite320_mobilenet_v3_large(91));
  net->eval();

  const auto theirs = read_lines(dir / "keys.txt");
  const auto ours = key_shape_lines(*net);
  REQUIRE(theirs.size() > 300);
  CHECK(ours == theirs);

  // The transform: normalise with mean and std 0.5, resize 240x330 -> 320x320.
  const auto image = read_floats(dir, "image.bin", {3, 240, 330});
  const auto input = read_floats(dir, "input.bin", {1, 3, 320, 320});
  check_close(net->preprocess(image), input, 1e-6);

  io::load_weights(*net, dir / "ssdlite.pth");
  // Every feature map, at 320x320 and at 250x310 (not square, no multiple of 32).
  const std::vector<int64_t> channels{672, 480, 512, 256, 256, 128};
  const auto maps = net->forward_maps(input);
  const auto odd = net->forward_maps(read_floats(dir, "odd.bin", {1, 3, 250, 310}));
  REQUIRE(maps.size() == 6);
  REQUIRE(odd.size() == 6);
  for (size_t i = 0; i < maps.size(); ++i) {
    INFO("feature map " << i);
    check_close(maps[i], read_floats(dir, "map" + std::to_string(i) + ".bin",
                                     {1, channels[i], maps[i].size(2), maps[i].size(3)}));
    check_close(odd[i], read_floats(dir, "odd" + std::to_string(i) + ".bin",
                                    {1, channels[i], odd[i].size(2), odd[i].size(3)}));
  }

  const auto loc_ref = read_floats(dir, "loc.bin", {1, 3234, 4});
  const auto logits_ref = read_floats(dir, "logits.bin", {1, 3234, 91});
  const auto out = net->forward(input);
  check_close(out.locations, loc_ref);
  check_close(out.scores, logits_ref);
  CHECK(max_diff(out.priors, read_floats(dir, "anchors.bin", {3234, 4})) <= 1e-4);

  // Post-processing on torchvision's own head outputs: the same detections in the same order.
  const auto boxes_ref = read_floats(dir, "boxes.bin", {-1, 4});
  const auto scores_ref = read_floats(dir, "scores.bin", {-1});
  const auto labels_ref = read_floats(dir, "labels.bin", {-1}, at::kLong);
  REQUIRE(boxes_ref.size(0) == 300);
  models::SSDOutput reference{loc_ref, logits_ref, out.priors, {{320, 320}}};
  const auto dets = net->postprocess(reference, {{240, 330}});
  REQUIRE(dets.size() == 1);
  REQUIRE(dets[0].boxes.sizes() == boxes_ref.sizes());
  CHECK(at::equal(dets[0].labels, labels_ref));
  CHECK(max_diff(dets[0].boxes, boxes_ref) <= 1e-3);
  CHECK(max_diff(dets[0].scores, scores_ref) <= 1e-6);
}
