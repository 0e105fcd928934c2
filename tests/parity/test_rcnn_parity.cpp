// Mask R-CNN parity with torchvision's maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
// (0.14 on Debian 12, 0.21 on Debian 13): its random weights, with random BatchNorm statistics,
// load into ostrov's FasterRCNN; on two images of different sizes the transform, the RPN's
// proposals, the final boxes, scores, labels and masks agree; in training mode, with the same
// seed on both sides (the transform's draw and both samplers' randperm calls come from the
// default generator in the same order), the five losses agree.
#include <ATen/ATen.h>
#include <torch/types.h>

#include "catch.h"
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ostrov/io/weights.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

at::Tensor read_tensor(const TempDir& dir, const std::string& name, std::vector<int64_t> shape,
                       at::ScalarType dtype = at::kFloat) {
  const std::string raw = test::read_bytes(dir / name);
  const size_t item = c10::elementSize(dtype);
  if (!shape.empty() && shape[0] < 0) {  // leading size from the file's length
    int64_t rest = 1;
    for (size_t i = 1; i < shape.size(); ++i) rest *= shape[i];
    shape[0] = static_cast<int64_t>(raw.size() / item) / rest;
  }
  REQUIRE(raw.size() == static_cast<size_t>(c10::multiply_integers(shape)) * item);
  return at::from_blob(const_cast<char*>(raw.data()), shape, dtype).clone();
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream file(path);
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  return lines;
}

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

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return a.numel() == 0 ? 0.0 : (a - b).abs().max().item<double>();
}

const char* kScript = R"(
import inspect, os, torch, torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection import transform as tv_transform
os.chdir(os.path.dirname(os.path.abspath(__file__)))
# torchvision 0.14 computes the resize scale in float32, later versions in Python floats.
source = inspect.getsource(tv_transform._resize_image_and_masks)
with open('scale.txt', 'w') as f:
    f.write('float32' if 'normal way' not in source else 'double')
torch.manual_seed(0)
m = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=256,
                          max_size=400)
with torch.no_grad():  # random BN statistics and affine values: no BN layer may hide
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
    # scores and deltas that differ between classes and boxes
    m.rpn.head.cls_logits.weight.normal_(0, 0.05)
    m.rpn.head.bbox_pred.weight.normal_(0, 0.0005)
    m.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.002)
    m.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.003)
m.eval()
sd = m.state_dict()
torch.save(sd, 'mrcnn.pth')
with open('keys.txt', 'w') as f:
    for k, v in sd.items():
        f.write(k + ' ' + ','.join(str(s) for s in v.shape) + '\n')
def image(h, w, f):
    x = torch.sin(torch.arange(3 * h * w, dtype=torch.float64) * f) * 0.5 + 0.5
    return x.reshape(3, h, w).float()
a, b = image(240, 320, 0.0123), image(300, 200, 0.0071)
a.numpy().tofile('a.bin'); b.numpy().tofile('b.bin')
with torch.no_grad():
    images, _ = m.transform([a, b])
    images.tensors.numpy().tofile('input.bin')
    with open('sizes.txt', 'w') as f:
        f.write(' '.join(str(s) for s in images.tensors.shape) + '\n')
        for s in images.image_sizes:
            f.write('%d %d\n' % tuple(s))
    feats = m.backbone(images.tensors)
    for k, v in feats.items():
        v.numpy().tofile('level_%s.bin' % k)
    proposals, _ = m.rpn(images, feats)
    for i, p in enumerate(proposals):
        p.numpy().tofile('proposals%d.bin' % i)
    dets, _ = m.roi_heads(feats, proposals, images.image_sizes)
    dets = m.transform.postprocess(dets, images.image_sizes, [(240, 320), (300, 200)])
    for i, d in enumerate(dets):
        d['boxes'].numpy().tofile('boxes%d.bin' % i)
        d['scores'].numpy().tofile('scores%d.bin' % i)
        d['labels'].numpy().tofile('labels%d.bin' % i)
        (d['masks'] > 0.5).to(torch.uint8).numpy().tofile('masks%d.bin' % i)
        print(len(d['boxes']), 'detections in image', i)
def target(h, w, boxes, labels):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    masks = torch.zeros(len(boxes), h, w, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[k, y1:y2, x1:x2] = 1
        masks[k, y1 + (y2 - y1) // 3:y2 - (y2 - y1) // 3, x1:(x1 + x2) // 2] = 0
    return {'boxes': boxes, 'labels': torch.tensor(labels), 'masks': masks}
targets = [target(240, 320, [[30, 40, 120, 150], [150, 60, 300, 200]], [1, 3]),
           target(300, 200, [[20, 30, 180, 250]], [2])]
for i, t in enumerate(targets):
    t['boxes'].numpy().tofile('tboxes%d.bin' % i)
    t['labels'].numpy().tofile('tlabels%d.bin' % i)
    t['masks'].numpy().tofile('tmasks%d.bin' % i)
m.train()
torch.manual_seed(123)
losses = m([a, b], targets)
with open('losses.txt', 'w') as f:
    for k, v in losses.items():
        f.write('%s %.10g\n' % (k, v.item()))
print({k: v.item() for k, v in losses.items()})
)";

}  // namespace

TEST_CASE(
    "Mask R-CNN equals torchvision's maskrcnn_resnet50_fpn: keys, transform, proposals, "
    "detections, masks and the five training losses",
    "[parity][models][detection][rcnn]") {
  TempDir dir;
  const auto r = test::run_python(dir, kScript);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);

  auto options = models::FasterRCNNOptions::maskrcnn_resnet50_fpn(4);
  const auto scale = read_lines(dir / "scale.txt");
  REQUIRE(scale.size() == 1);
  INFO("torchvision's resize scale: " << scale[0]);
  options.transform(options.transform()
                        .min_size(std::vector<int64_t>{256})
                        .max_size(400)
                        .float32_scale(scale[0] == "float32"));
  models::FasterRCNN net(options);

  // Same keys, same order, same shapes as torchvision's state_dict.
  const auto theirs = read_lines(dir / "keys.txt");
  REQUIRE(theirs.size() > 300);
  CHECK(key_shape_lines(*net) == theirs);
  io::load_weights(*net, dir / "mrcnn.pth");
  net->eval();

  const auto a = read_tensor(dir, "a.bin", {3, 240, 320});
  const auto b = read_tensor(dir, "b.bin", {3, 300, 200});
  {
    torch::NoGradGuard no_grad;
    // The transform: sizes and values.
    const auto batch = net->transform({a, b}, /*training=*/false);
    const auto sizes = read_lines(dir / "sizes.txt");
    REQUIRE(sizes.size() == 3);
    std::ostringstream shape;
    shape << batch.tensors.size(0) << ' ' << batch.tensors.size(1) << ' ' << batch.tensors.size(2)
          << ' ' << batch.tensors.size(3);
    CHECK(shape.str() == sizes[0]);
    CHECK(std::to_string(batch.image_sizes[0][0]) + " " + std::to_string(batch.image_sizes[0][1]) ==
          sizes[1]);
    CHECK(std::to_string(batch.image_sizes[1][0]) + " " + std::to_string(batch.image_sizes[1][1]) ==
          sizes[2]);
    const auto input = read_tensor(dir, "input.bin", batch.tensors.sizes().vec());
    CHECK(max_diff(batch.tensors, input) <= 1e-5);

    // The backbone and pyramid: every level within float32 rounding (the two sides' kernels
    // may sum in another order: about 2e-6 of the largest value here).
    const auto pyramid = net->backbone->forward(batch.tensors);
    std::vector<at::Tensor> levels, roi_levels;
    for (const auto& item : pyramid) {
      INFO("level " << item.key());
      const auto ref = read_tensor(dir, "level_" + item.key() + ".bin", item.value().sizes().vec());
      CHECK(max_diff(item.value(), ref) <= 1e-5 * ref.abs().max().item<double>());
      levels.push_back(ref);  // the stages below start from torchvision's own features
      if (item.key() != "pool") roi_levels.push_back(ref);
    }

    // The RPN on those features: the same proposals in the same order.
    const auto proposals = net->rpn->forward(batch, levels);
    std::vector<at::Tensor> reference_proposals;
    for (size_t i = 0; i < 2; ++i) {
      INFO("image " << i);
      const auto ref = read_tensor(dir, "proposals" + std::to_string(i) + ".bin", {-1, 4});
      REQUIRE(ref.size(0) > 100);
      REQUIRE(proposals.boxes[i].sizes() == ref.sizes());
      CHECK(max_diff(proposals.boxes[i], ref) <= 1e-3);
      reference_proposals.push_back(ref);
    }

    // The RoI heads on torchvision's features and proposals, mapped back to the original sizes:
    // the same detections in the same order, the same masks.
    auto dets = net->roi_heads->forward(roi_levels, reference_proposals, batch.image_sizes).detections;
    const std::vector<models::ImageSize> original = {{240, 320}, {300, 200}};
    net->transform.postprocess(dets, batch.image_sizes, original);
    REQUIRE(dets.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
      INFO("image " << i);
      const auto n = std::to_string(i);
      const auto boxes = read_tensor(dir, "boxes" + n + ".bin", {-1, 4});
      REQUIRE(boxes.size(0) > 10);
      REQUIRE(dets[i].boxes.sizes() == boxes.sizes());
      CHECK(max_diff(dets[i].boxes, boxes) <= 1e-3);
      CHECK(max_diff(dets[i].scores, read_tensor(dir, "scores" + n + ".bin", {-1})) <= 1e-5);
      CHECK(at::equal(dets[i].labels, read_tensor(dir, "labels" + n + ".bin", {-1}, at::kLong)));
      const auto masks = read_tensor(dir, "masks" + n + ".bin",
                                     {-1, 1, original[i][0], original[i][1]}, at::kByte);
      REQUIRE(dets[i].masks.sizes() == masks.sizes());
      const double agreement =
          dets[i].masks.gt(0.5).to(at::kByte).eq(masks).to(at::kDouble).mean().item<double>();
      CHECK(agreement >= 0.999);
      CHECK(masks.to(at::kDouble).mean().item<double>() > 0.01);  // not all empty
    }

    // End to end from the images (ostrov's own features): the same detections up to the
    // rounding the features carry; two near-equal scores may trade places, so each of
    // torchvision's detections is looked up among ostrov's.
    const auto ours = net->detect({a, b});
    for (size_t i = 0; i < 2; ++i) {
      INFO("image " << i);
      const auto n = std::to_string(i);
      const auto boxes = read_tensor(dir, "boxes" + n + ".bin", {-1, 4});
      const auto labels = read_tensor(dir, "labels" + n + ".bin", {-1}, at::kLong);
      REQUIRE(ours[i].boxes.size(0) == boxes.size(0));
      const auto distance =
          (ours[i].boxes.unsqueeze(1) - boxes.unsqueeze(0)).abs().amax(2);  // [ours, theirs]
      const auto same_label = ours[i].labels.unsqueeze(1).eq(labels.unsqueeze(0));
      const auto found = distance.le(0.05).logical_and(same_label).any(0);
      CHECK(found.to(at::kDouble).mean().item<double>() >= 0.98);
    }
  }

  // Training mode: the same seed, the same samples, the same five losses.
  std::vector<models::RCNNTarget> targets;
  const std::vector<std::array<int64_t, 2>> sizes = {{240, 320}, {300, 200}};
  for (size_t i = 0; i < 2; ++i) {
    const auto n = std::to_string(i);
    models::RCNNTarget t;
    t.boxes = read_tensor(dir, "tboxes" + n + ".bin", {-1, 4});
    t.labels = read_tensor(dir, "tlabels" + n + ".bin", {-1}, at::kLong);
    t.masks = read_tensor(dir, "tmasks" + n + ".bin", {-1, sizes[i][0], sizes[i][1]}, at::kByte);
    targets.push_back(t);
  }
  net->train();
  torch::manual_seed(123);
  const auto losses = net->forward({a, b}, targets).losses;
  std::map<std::string, double> reference;
  for (const auto& line : read_lines(dir / "losses.txt")) {
    std::istringstream in(line);
    std::string name;
    double value = 0;
    in >> name >> value;
    reference[name] = value;
  }
  REQUIRE(reference.size() == 5);
  REQUIRE(losses.size() == 5);
  for (const auto& [name, value] : reference) {
    INFO(name << ": ostrov " << losses.at(name).item<double>() << ", torchvision " << value);
    REQUIRE(losses.count(name) == 1);
    CHECK(std::abs(losses.at(name).item<double>() - value) <= 1e-4 * std::abs(value) + 1e-7);
  }
}
