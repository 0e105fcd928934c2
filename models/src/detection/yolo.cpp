#include "ostrov/models/detection/yolo.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/nn/modules/conv.h>

#include "ostrov/nn/conv_bn_act.h"
#include "ostrov/ops/boxes.h"
#include "postprocess.h"

namespace ostrov::models {

namespace {

at::IntArrayRef shape_of(const at::Tensor& t) {
  return t.defined() ? t.sizes() : at::IntArrayRef{};
}

/// Checks a YOLOOutput's tensors against each other: boxes [N,S,S,B,4], confidence [N,S,S,B],
/// class_logits [N,S,S,K].
void check_output(const YOLOOutput& output, const char* fn) {
  const auto& boxes = output.boxes;
  TORCH_CHECK(boxes.defined() && boxes.dim() == 5 && boxes.size(4) == 4, fn,
              ": boxes should be [N,S,S,B,4], got ", shape_of(boxes));
  TORCH_CHECK(output.confidence.defined() &&
                  output.confidence.sizes() == boxes.sizes().slice(0, 4),
              fn, ": confidence should be [N,S,S,B] = ", boxes.sizes().slice(0, 4), ", got ",
              shape_of(output.confidence));
  TORCH_CHECK(output.class_logits.defined() && output.class_logits.dim() == 4 &&
                  output.class_logits.sizes().slice(0, 3) == boxes.sizes().slice(0, 3) &&
                  output.class_logits.size(3) >= 1,
              fn, ": class_logits should be [N,S,S,K] with [N,S,S] = ",
              boxes.sizes().slice(0, 3), " and K >= 1, got ", shape_of(output.class_logits));
}

}  // namespace

// ------------------------------------------------------------------------------------ YOLO

YOLOImpl::YOLOImpl(YOLOOptions options) : options(std::move(options)) { reset(); }

void YOLOImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_classes() >= 2, "YOLO num_classes counts the background and must be >= 2, got ",
              o.num_classes());
  TORCH_CHECK(o.grid() >= 1, "YOLO grid must be >= 1, got ", o.grid());
  TORCH_CHECK(o.boxes_per_cell() >= 1, "YOLO boxes_per_cell must be >= 1, got ",
              o.boxes_per_cell());
  TORCH_CHECK(o.head_channels() >= 1, "YOLO head_channels must be >= 1, got ", o.head_channels());
  TORCH_CHECK(o.image_size() >= 1, "YOLO image_size must be >= 1, got ", o.image_size());
  TORCH_CHECK(o.image_mean().size() == 3 && o.image_std().size() == 3,
              "YOLO image_mean and image_std need 3 values, got ", o.image_mean().size(), " and ",
              o.image_std().size());
  const auto& names = detail::yolo_backbone_names();
  TORCH_CHECK(std::find(names.begin(), names.end(), o.backbone().name()) != names.end(),
              "YOLO backbone must be one of ", c10::Join(", ", names), ", got \"",
              o.backbone().name(), "\"");
  backbone = register_module("backbone", make_backbone(o.backbone()));
  features_ = as_backbone(backbone);
  const std::string last = features_->stage_names().back();
  // Stride-2 layers padded to "same" give ceil(size / 2) each, so the last map is
  // ceil(image_size / stride).
  const int64_t stride = features_->stage_stride(last);
  const int64_t map = (o.image_size() + stride - 1) / stride;
  TORCH_CHECK(map >= o.grid(), "YOLO grid ", o.grid(), " is larger than the backbone's last map (",
              map, "x", map, " for image_size ", o.image_size(), " at stride ", stride,
              "): use a smaller grid or a larger image_size");

  // The paper's two fully connected layers replaced by convolutions (see the header).
  const int64_t in = features_->stage_channels(last), hidden = o.head_channels();
  const auto conv_bn_leaky = [](int64_t from, int64_t to, int64_t kernel) {
    // LeakyReLU with slope 0.1, the paper's activation (section 2.2, eq. 2).
    return ostrov::nn::ConvBnAct(ostrov::nn::ConvBnActOptions(from, to, kernel)
                                     .activation(ostrov::nn::Activation::kLeakyReLU)
                                     .negative_slope(0.1));
  };
  const int64_t outputs = o.boxes_per_cell() * 5 + o.num_classes() - 1;
  head = register_module(
      "head", torch::nn::Sequential(
                  conv_bn_leaky(in, hidden, 1), conv_bn_leaky(hidden, hidden, 3),
                  torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, outputs, 1).bias(true))));
}

YOLOOutput YOLOImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3, "YOLO expects input [N,3,H,W], got ",
              shape_of(x));
  const std::string last = features_->stage_names().back();
  const auto map = features_->forward_features(x, {last})[last];
  const int64_t s = options.grid();
  TORCH_CHECK(map.size(2) >= s && map.size(3) >= s, "YOLO: the backbone's last map is ",
              map.size(2), "x", map.size(3), " for input ", x.sizes(), ", smaller than the grid ",
              s, "x", s, " (use a larger input or a smaller grid)");
  auto y = head->forward(map);
  // The header places the pooling before the last 1x1 convolution; an affine map per pixel
  // commutes with averaging, so pooling its output is the same.
  if (y.size(2) != s || y.size(3) != s) y = at::adaptive_avg_pool2d(y, {s, s});

  // Channels: B x (x, y, sqrt w, sqrt h, confidence), then the C-1 class logits -> [N,S,S,...].
  const int64_t n = y.size(0), b = options.boxes_per_cell();
  y = y.permute({0, 2, 3, 1});
  const auto per_box = y.slice(3, 0, b * 5).reshape({n, s, s, b, 5}).sigmoid();
  YOLOOutput out;
  out.boxes = per_box.slice(4, 0, 4).contiguous();
  out.confidence = per_box.select(4, 4).contiguous();
  out.class_logits = y.slice(3, b * 5).contiguous();
  return out;
}

std::vector<Detections> YOLOImpl::postprocess(const YOLOOutput& output,
                                              const std::vector<ops::GridSize>& sizes) const {
  return yolo_postprocess(output, options.image_size(), options.postprocess(), sizes);
}

void YOLOImpl::load_backbone_weights(const io::StateDict& state, const std::string& source) {
  features_->load_torchvision(state, source);
}

// --------------------------------------------------------------------------------- targets

YOLOTargets yolo_targets(const std::vector<at::Tensor>& boxes,
                         const std::vector<at::Tensor>& labels, int64_t grid,
                         int64_t image_size) {
  TORCH_CHECK(grid >= 1, "yolo_targets: grid must be >= 1, got ", grid);
  TORCH_CHECK(image_size >= 1, "yolo_targets: image_size must be >= 1, got ", image_size);
  TORCH_CHECK(boxes.size() == labels.size(), "yolo_targets: ", boxes.size(), " box tensors but ",
              labels.size(), " label tensors");
  const int64_t n = static_cast<int64_t>(boxes.size());
  YOLOTargets t;
  t.has_object = at::zeros({n, grid, grid}, at::kBool);
  t.boxes = at::zeros({n, grid, grid, 4}, at::kFloat);
  t.classes = at::full({n, grid, grid}, -1, at::kLong);
  auto has_object = t.has_object.accessor<bool, 3>();
  auto target_boxes = t.boxes.accessor<float, 4>();
  auto classes = t.classes.accessor<int64_t, 3>();
  // The area of the object each cell holds, to keep the largest (v1 gives a cell one object).
  std::vector<double> kept_area(static_cast<size_t>(n * grid * grid), 0.0);
  const double size = static_cast<double>(image_size), cells = static_cast<double>(grid);

  for (int64_t i = 0; i < n; ++i) {
    const auto& b = boxes[static_cast<size_t>(i)];
    const auto& l = labels[static_cast<size_t>(i)];
    TORCH_CHECK(b.defined() && b.dim() == 2 && b.size(1) == 4,
                "yolo_targets: boxes of image ", i, " should be [G,4], got ", shape_of(b));
    TORCH_CHECK(l.defined() && l.dim() == 1 && l.size(0) == b.size(0),
                "yolo_targets: labels of image ", i, " should be [", b.size(0), "], got ",
                shape_of(l));
    TORCH_CHECK(!at::isFloatingType(l.scalar_type()),
                "yolo_targets: labels of image ", i, " should be integers, got ", l.scalar_type());
    const auto box = b.to(at::kCPU, at::kDouble).contiguous();
    const auto label = l.to(at::kCPU, at::kLong).contiguous();
    const auto bx = box.accessor<double, 2>();
    const auto lx = label.accessor<int64_t, 1>();
    for (int64_t g = 0; g < box.size(0); ++g) {
      const double x1 = bx[g][0], y1 = bx[g][1], x2 = bx[g][2], y2 = bx[g][3];
      const double w = x2 - x1, h = y2 - y1;
      TORCH_CHECK(lx[g] >= 1, "yolo_targets: image ", i, ", box ", g, " has label ", lx[g],
                  "; labels are 1..C-1 (0 is the background)");
      TORCH_CHECK(w > 0 && h > 0, "yolo_targets: image ", i, ", box ", g, " (", x1, ",", y1,
                  ",", x2, ",", y2, ") has width ", w, " and height ", h, "; both must be > 0");
      // The centre in cells (one division last, so that a centre on a cell border lands on
      // it exactly); one on the far edge (== grid) belongs to the last cell.
      const double cx = (x1 + x2) * cells / (2.0 * size), cy = (y1 + y2) * cells / (2.0 * size);
      TORCH_CHECK(cx >= 0 && cx <= cells && cy >= 0 && cy <= cells, "yolo_targets: image ", i,
                  ", box ", g, " (", x1, ",", y1, ",", x2, ",", y2,
                  ") has its centre outside the ", image_size, "x", image_size, " input");
      const int64_t col = std::min(static_cast<int64_t>(std::floor(cx)), grid - 1);
      const int64_t row = std::min(static_cast<int64_t>(std::floor(cy)), grid - 1);
      double& area = kept_area[static_cast<size_t>((i * grid + row) * grid + col)];
      if (has_object[i][row][col]) {
        ++t.dropped;
        if (w * h <= area) continue;  // the larger object stays (the first on equal areas)
      }
      has_object[i][row][col] = true;
      area = w * h;
      target_boxes[i][row][col][0] = static_cast<float>(cx - static_cast<double>(col));
      target_boxes[i][row][col][1] = static_cast<float>(cy - static_cast<double>(row));
      target_boxes[i][row][col][2] = static_cast<float>(std::sqrt(w / size));
      target_boxes[i][row][col][3] = static_cast<float>(std::sqrt(h / size));
      classes[i][row][col] = lx[g] - 1;
    }
  }
  return t;
}

// --------------------------------------------------------------------------- decoding

at::Tensor yolo_decode_boxes(const at::Tensor& boxes, int64_t image_size) {
  TORCH_CHECK(boxes.defined() && boxes.dim() == 5 && boxes.size(4) == 4,
              "yolo_decode_boxes: boxes should be [N,S,S,B,4], got ", shape_of(boxes));
  TORCH_CHECK(image_size >= 1, "yolo_decode_boxes: image_size must be >= 1, got ", image_size);
  const int64_t rows = boxes.size(1), cols = boxes.size(2);
  const auto opts = boxes.options();
  const auto row = at::arange(rows, opts).view({1, rows, 1, 1});
  const auto col = at::arange(cols, opts).view({1, 1, cols, 1});
  const auto v = boxes.unbind(-1);
  const double size = static_cast<double>(image_size);
  // Offsets are fractions of a cell, sizes square roots of fractions of the input.
  const auto cx = (col + v[0]) * (size / static_cast<double>(cols));
  const auto cy = (row + v[1]) * (size / static_cast<double>(rows));
  const auto half_w = v[2] * v[2] * (size / 2.0);
  const auto half_h = v[3] * v[3] * (size / 2.0);
  return at::stack({cx - half_w, cy - half_h, cx + half_w, cy + half_h}, -1);
}

std::vector<Detections> yolo_postprocess(const YOLOOutput& output, int64_t image_size,
                                         const SSDPostprocessOptions& options,
                                         const std::vector<ops::GridSize>& sizes) {
  check_output(output, "yolo_postprocess");
  const int64_t n = output.boxes.size(0);
  TORCH_CHECK(sizes.empty() || static_cast<int64_t>(sizes.size()) == n, "yolo_postprocess: ",
              sizes.size(), " sizes for ", n, " images");
  TORCH_CHECK(options.topk_candidates() > 0 && options.detections_per_image() > 0,
              "yolo_postprocess: topk_candidates and detections_per_image must be positive, got ",
              options.topk_candidates(), " and ", options.detections_per_image());
  for (const auto& size : sizes) {
    TORCH_CHECK(size[0] > 0 && size[1] > 0, "yolo_postprocess: image sizes must be positive, got ",
                size[0], "x", size[1]);
  }

  // Every predictor of every cell is a candidate: [N, S*S*B, 4] boxes, and class-specific
  // scores Pr(class | object) x Pr(object) x IoU = softmax x confidence (section 2, eq. 1).
  const int64_t k = output.class_logits.size(3);
  const int64_t candidates = output.boxes.size(1) * output.boxes.size(2) * output.boxes.size(3);
  const auto decoded = ops::clip_boxes_to_image(yolo_decode_boxes(output.boxes, image_size),
                                                image_size, image_size)
                           .reshape({n, candidates, 4});
  const auto scores =
      (at::softmax(output.class_logits, -1).unsqueeze(3) * output.confidence.unsqueeze(-1))
          .reshape({n, candidates, k});
  std::vector<Detections> detections;
  detections.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    detections.push_back(detail::select_detections(
        decoded[i], scores[i], options, {image_size, image_size},
        sizes.empty() ? nullptr : &sizes[static_cast<size_t>(i)]));
  }
  return detections;
}

namespace detail {

const std::vector<std::string>& yolo_backbone_names() {
  static const std::vector<std::string> names = {
      "resnet18", "resnet34",     "resnet50",           "resnet101",
      "resnet152", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"};
  return names;
}

}  // namespace detail

}  // namespace ostrov::models
